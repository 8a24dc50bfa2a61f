/* vmsnap plugin: QMP conversations for snapshot-save. */
#include "save-qemu.h"

#include <string.h>

#include "error.h"

#define QMP_TIMEOUT_MS 30000
/* Device state is small (hundreds of KiB without guest RAM), but a VM whose
 * RAM cannot be skipped streams all of it: allow for that. */
#define MIGRATE_TIMEOUT_MS (10 * 60 * 1000)
/* The last round of a live migration may hold the guest this long (QEMU's
 * default is 300 ms). QEMU sizes that round from its measured bandwidth;
 * the device state itself takes a few ms more. */
#define LIVE_DOWNTIME_LIMIT_MS 5

void
vms_save_facts_clear(VmsSaveFacts *facts)
{
  g_clear_pointer(&facts->hypervisor_version, g_free);
  g_clear_pointer(&facts->machine_type, g_free);
  g_clear_pointer(&facts->argv, g_strfreev);
}

static char *
query_hypervisor_version(VmsQmpClient *qmp, GError **error)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "query-version", NULL, -1,
                                                   QMP_TIMEOUT_MS, error);
  JsonObject *obj, *q;
  g_autofree char *package = NULL;

  if (ret == NULL)
    return NULL;
  obj = json_node_get_object(ret);
  q = json_object_get_object_member(obj, "qemu");
  package = g_strstrip(g_strdup(json_object_get_string_member_with_default(obj, "package", "")));
  return g_strdup_printf("QEMU %" G_GINT64_FORMAT ".%" G_GINT64_FORMAT ".%" G_GINT64_FORMAT "%s%s%s",
                         json_object_get_int_member_with_default(q, "major", 0),
                         json_object_get_int_member_with_default(q, "minor", 0),
                         json_object_get_int_member_with_default(q, "micro", 0),
                         *package ? " (" : "", package, *package ? ")" : "");
}

/* QOM calls the machine "pc-i440fx-7.2-machine"; -machine takes the name
 * without the suffix. */
static char *
query_machine_type(VmsQmpClient *qmp, GError **error)
{
  g_autoptr(JsonObject) args = json_object_new();
  g_autoptr(JsonNode) ret = NULL;
  const char *type;

  json_object_set_string_member(args, "path", "/machine");
  json_object_set_string_member(args, "property", "type");
  ret = vms_qmp_client_execute(qmp, "qom-get", args, -1, QMP_TIMEOUT_MS, error);
  if (ret == NULL)
    return NULL;
  type = json_node_get_string(ret);
  if (type == NULL)
    type = "";
  if (g_str_has_suffix(type, "-machine"))
    return g_strndup(type, strlen(type) - strlen("-machine"));
  return g_strdup(type);
}

/* How many trailing arguments `vmsnap restore` appended for this run only
 * ("-S -incoming defer" and the arguments after its "--"), from
 * VMS_RESTORE_APPENDED_ENV; 0 when QEMU was not started by it or the
 * command line does not end as the variable says. */
static guint
restore_appended(GPtrArray *argv)
{
  const char *env = g_getenv(VMS_RESTORE_APPENDED_ENV);
  guint64 n = env != NULL ? g_ascii_strtoull(env, NULL, 10) : 0;
  guint at;

  if (n < 3 || n >= argv->len)
    return 0;
  at = argv->len - (guint)n;
  if (!g_str_equal(argv->pdata[at], "-S") || !g_str_equal(argv->pdata[at + 1], "-incoming") ||
      !g_str_equal(argv->pdata[at + 2], "defer"))
    return 0;
  return (guint)n;
}

/* QEMU's command line as the manifest records it: /proc/self/cmdline
 * without what a restore appended for this run only, so the recorded
 * command line does not grow down a chain of diffs (doc/restore.md). */
static char **
read_cmdline(GError **error)
{
  g_autofree char *text = NULL;
  gsize len = 0;
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);

  if (!g_file_get_contents("/proc/self/cmdline", &text, &len, error))
    return NULL;
  for (gsize i = 0; i < len; i += strlen(text + i) + 1)
    g_ptr_array_add(argv, g_strdup(text + i));
  g_ptr_array_set_size(argv, argv->len - restore_appended(argv));
  g_ptr_array_add(argv, NULL);
  return (char **)g_ptr_array_free(g_steal_pointer(&argv), FALSE);
}

gboolean
vms_save_query_facts(VmsQmpClient *qmp, VmsSaveFacts *ret_facts, gboolean *ret_running,
                     GError **error)
{
  g_autoptr(JsonNode) status = vms_qmp_client_execute(qmp, "query-status", NULL, -1,
                                                      QMP_TIMEOUT_MS, error);
  g_autofree char *version = NULL;
  g_autofree char *machine = NULL;
  g_auto(GStrv) argv = NULL;

  if (status == NULL || (version = query_hypervisor_version(qmp, error)) == NULL ||
      (machine = query_machine_type(qmp, error)) == NULL || (argv = read_cmdline(error)) == NULL)
    return FALSE;
  *ret_running = json_object_get_boolean_member_with_default(json_node_get_object(status),
                                                             "running", FALSE);
  ret_facts->hypervisor_version = g_steal_pointer(&version);
  ret_facts->machine_type = g_steal_pointer(&machine);
  ret_facts->argv = g_steal_pointer(&argv);
  return TRUE;
}

gboolean
vms_save_qmp_simple(VmsQmpClient *qmp, const char *command, GError **error)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, command, NULL, -1, QMP_TIMEOUT_MS, error);

  return ret != NULL;
}

guint32
vms_save_query_target_page_size(VmsQmpClient *qmp)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "query-migrate", NULL, -1,
                                                   QMP_TIMEOUT_MS, NULL);
  JsonObject *ram = NULL;

  if (ret != NULL && JSON_NODE_HOLDS_OBJECT(ret) &&
      json_object_has_member(json_node_get_object(ret), "ram"))
    ram = json_object_get_object_member(json_node_get_object(ret), "ram");
  if (ram == NULL)
    return 0;
  gint64 size = json_object_get_int_member_with_default(ram, "page-size", 0);
  return size > 0 && size <= G_MAXUINT32 ? (guint32)size : 0;
}

char *
vms_save_query_ram_block(VmsQmpClient *qmp)
{
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonObject) args = json_object_new();

  json_object_set_string_member(args, "path", "/machine");
  json_object_set_string_member(args, "property", "memory-backend");
  ret = vms_qmp_client_execute(qmp, "qom-get", args, -1, QMP_TIMEOUT_MS, NULL);
  if (ret == NULL || json_node_get_value_type(ret) != G_TYPE_STRING)
    return NULL;
  /* 7.2 answers with the object's path, "/objects/ram0"; the block is "ram0" */
  const char *id = strrchr(json_node_get_string(ret), '/');
  id = id != NULL ? id + 1 : json_node_get_string(ret);
  return *id != '\0' ? g_strdup(id) : NULL;
}

/* The migration settings a save changes. QEMU keeps them after the save,
 * and a later real migration by a management layer would inherit them —
 * x-ignore-shared would leave the guest RAM behind — so the save puts back
 * what it found. */

/* QEMU throttles a migration to max-bandwidth (default 128 MiB/s in 7.2).
 * Guest RAM of a VM restored with share=off is not shared, so x-ignore-shared
 * leaves it in the stream: unthrottled, writing it costs what the file
 * write costs instead of seconds of downtime. The VM is stopped: there is
 * no guest to protect from the migration's load. */
#define SAVE_MAX_BANDWIDTH (G_GINT64_CONSTANT(1) << 40)

gboolean
vms_migration_settings_query(VmsQmpClient *qmp, VmsMigrationSettings *ret_settings,
                             GError **error)
{
  g_autoptr(JsonNode) caps = vms_qmp_client_execute(qmp, "query-migrate-capabilities", NULL, -1,
                                                    QMP_TIMEOUT_MS, error);
  g_autoptr(JsonNode) params = NULL;
  VmsMigrationSettings s = { 0 };

  if (caps == NULL || !JSON_NODE_HOLDS_ARRAY(caps))
    return caps != NULL ? (g_set_error(error, VMS_ERROR, VMS_ERROR_QMP,
                                       "query-migrate-capabilities: not a list"), FALSE)
                        : FALSE;
  for (guint i = 0; i < json_array_get_length(json_node_get_array(caps)); i++) {
    JsonObject *c = json_array_get_object_element(json_node_get_array(caps), i);
    const char *name = json_object_get_string_member_with_default(c, "capability", "");
    gboolean on = json_object_get_boolean_member_with_default(c, "state", FALSE);
    if (strcmp(name, "x-ignore-shared") == 0)
      s.ignore_shared = on;
    else if (strcmp(name, "events") == 0)
      s.events = on;
  }
  params = vms_qmp_client_execute(qmp, "query-migrate-parameters", NULL, -1, QMP_TIMEOUT_MS,
                                  error);
  if (params == NULL)
    return FALSE;
  s.max_bandwidth = json_object_get_int_member_with_default(json_node_get_object(params),
                                                            "max-bandwidth", 128 << 20);
  s.downtime_limit = json_object_get_int_member_with_default(json_node_get_object(params),
                                                             "downtime-limit", 300);
  *ret_settings = s;
  return TRUE;
}

gboolean
vms_migration_settings_apply(VmsQmpClient *qmp, const VmsMigrationSettings *s, GError **error)
{
  const struct {
    const char *name;
    gboolean on;
  } caps[] = { { "x-ignore-shared", s->ignore_shared }, { "events", s->events } };
  g_autoptr(JsonObject) cap_args = json_object_new();
  g_autoptr(JsonObject) param_args = json_object_new();
  g_autoptr(JsonNode) r1 = NULL;
  g_autoptr(JsonNode) r2 = NULL;
  JsonArray *list = json_array_new();

  for (guint i = 0; i < G_N_ELEMENTS(caps); i++) {
    if (s->leave_events && g_str_equal(caps[i].name, "events"))
      continue;
    JsonObject *cap = json_object_new();
    json_object_set_string_member(cap, "capability", caps[i].name);
    json_object_set_boolean_member(cap, "state", caps[i].on);
    json_array_add_object_element(list, cap);
  }
  json_object_set_array_member(cap_args, "capabilities", list);
  json_object_set_int_member(param_args, "max-bandwidth", s->max_bandwidth);
  json_object_set_int_member(param_args, "downtime-limit", s->downtime_limit);
  r1 = vms_qmp_client_execute(qmp, "migrate-set-capabilities", cap_args, -1, QMP_TIMEOUT_MS,
                              error);
  if (r1 == NULL)
    return FALSE;
  r2 = vms_qmp_client_execute(qmp, "migrate-set-parameters", param_args, -1, QMP_TIMEOUT_MS,
                              error);
  return r2 != NULL;
}

static gboolean
migration_finished(const char *event, JsonObject *data, gpointer user_data)
{
  const char *status = json_object_get_string_member_with_default(data, "status", "");

  return strcmp(status, "completed") == 0 || strcmp(status, "failed") == 0 ||
         strcmp(status, "cancelled") == 0;
}

static gboolean
pass_fd(VmsQmpClient *qmp, int fd, const char *fdname, GError **error)
{
  g_autoptr(JsonObject) args = json_object_new();
  g_autoptr(JsonNode) ret = NULL;

  json_object_set_string_member(args, "fdname", fdname);
  ret = vms_qmp_client_execute(qmp, "getfd", args, fd, QMP_TIMEOUT_MS, error);
  return ret != NULL;
}

/* The fd stays registered in QEMU if migrate never took it. */
static void
close_fd_name(VmsQmpClient *qmp, const char *fdname)
{
  g_autoptr(JsonObject) args = json_object_new();
  g_autoptr(JsonNode) ret = NULL;

  json_object_set_string_member(args, "fdname", fdname);
  ret = vms_qmp_client_execute(qmp, "closefd", args, -1, QMP_TIMEOUT_MS, NULL);
}

char *
vms_migration_error_desc(VmsQmpClient *qmp)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "query-migrate", NULL, -1, QMP_TIMEOUT_MS,
                                                   NULL);

  if (ret == NULL || !JSON_NODE_HOLDS_OBJECT(ret))
    return g_strdup("QEMU gave no reason");
  return g_strdup(json_object_get_string_member_with_default(json_node_get_object(ret),
                                                             "error-desc", "QEMU gave no reason"));
}

/* QEMU sends MIGRATION "completed" before it leaves the finish-migrate run
 * state, and `cont` is refused until it has ("Migration is not finalized
 * yet"): wait for that, so whoever continues the VM next succeeds. */
static gboolean
wait_postmigrate(VmsQmpClient *qmp, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)QMP_TIMEOUT_MS * 1000;

  for (;;) {
    g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "query-status", NULL, -1,
                                                     QMP_TIMEOUT_MS, error);
    const char *status;

    if (ret == NULL)
      return FALSE;
    status = json_object_get_string_member_with_default(json_node_get_object(ret), "status", "");
    if (strcmp(status, "finish-migrate") != 0)
      return TRUE;
    if (g_get_monotonic_time() > deadline) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP,
                  "QEMU stayed in run state finish-migrate after the migration completed");
      return FALSE;
    }
    g_usleep(200);
  }
}

/* getfd + migrate "fd:NAME". *@ret_seq is the event sequence number from
 * before the migrate command, for waiting on its events without a race. */
static gboolean
start_migration(VmsQmpClient *qmp, int fd, guint64 *ret_seq, GError **error)
{
  static gint counter;
  g_autofree char *fdname = g_strdup_printf("vmsnap-save-%d", g_atomic_int_add(&counter, 1));
  g_autofree char *uri = g_strdup_printf("fd:%s", fdname);
  g_autoptr(JsonObject) args = json_object_new();
  g_autoptr(JsonNode) ret = NULL;

  if (!pass_fd(qmp, fd, fdname, error))
    return FALSE;
  json_object_set_string_member(args, "uri", uri);
  *ret_seq = vms_qmp_client_event_seq(qmp);
  ret = vms_qmp_client_execute(qmp, "migrate", args, -1, QMP_TIMEOUT_MS, error);
  if (ret == NULL) {
    close_fd_name(qmp, fdname);
    return FALSE;
  }
  return TRUE;
}

/* Waits up to @timeout_ms for the migration's outcome: TRUE once it
 * completed; FALSE with VMS_ERROR_FAILED if it failed or was cancelled, or
 * with VMS_ERROR_QMP if the wait ran out or QEMU went away. */
static gboolean
wait_completed(VmsQmpClient *qmp, guint64 seq, guint timeout_ms, GError **error)
{
  g_autoptr(JsonObject) event = vms_qmp_client_wait_event(qmp, seq, "MIGRATION",
                                                          migration_finished, NULL, timeout_ms,
                                                          error);
  const char *status;

  if (event == NULL)
    return FALSE;
  status = json_object_get_string_member_with_default(event, "status", "");
  if (strcmp(status, "completed") != 0) {
    g_autofree char *why = vms_migration_error_desc(qmp);
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED, "QEMU's migration into state.bin %s: %s",
                status, why);
    return FALSE;
  }
  return TRUE;
}

/* The stopped VM's migration; the settings are already ours. */
static gboolean
migrate_and_wait(VmsQmpClient *qmp, int fd, GError **error)
{
  guint64 seq;

  return start_migration(qmp, fd, &seq, error) &&
         wait_completed(qmp, seq, MIGRATE_TIMEOUT_MS, error) && wait_postmigrate(qmp, error);
}

typedef struct LiveMigration LiveMigration;
static gboolean finish_live(VmsQmpClient *qmp, LiveMigration *live, guint64 seq, GError **error);

/* A migration that failed half-way may still run: cancel it (QEMU then
 * resumes a VM the migration stopped) and wait for the end, so the settings
 * can be put back. Best effort. */
static void
cancel_migration(VmsQmpClient *qmp, guint64 seq)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "migrate_cancel", NULL, -1,
                                                   QMP_TIMEOUT_MS, NULL);
  g_autoptr(JsonObject) event = vms_qmp_client_wait_event(qmp, seq, "MIGRATION",
                                                          migration_finished, NULL, 5000, NULL);
}

struct LiveMigration {
  guint converge_ms;      /* in: how long the guest may run while RAM streams */
  gint64 stop_wall_us;    /* out: QEMU's STOP event timestamp */
  gboolean stopped_by_us; /* out: the migration did not converge in time */
};

/* The running VM's migration: QEMU streams guest RAM while the guest runs
 * and stops it only for the last round (downtime-limit). If that has not
 * happened within converge_ms (a guest that dirties memory faster than it
 * is written), the VM is stopped here and the migration finishes stopped. */
static gboolean
migrate_live(VmsQmpClient *qmp, int fd, gpointer data, GError **error)
{
  LiveMigration *live = data;
  guint64 seq;

  if (!start_migration(qmp, fd, &seq, error))
    return FALSE;
  if (!finish_live(qmp, live, seq, error)) {
    cancel_migration(qmp, seq);
    return FALSE;
  }
  return TRUE;
}

/* QEMU's account of a finished migration, for the debug log
 * (G_MESSAGES_DEBUG=vmsnap): where a save's time went. */
static void
log_migration_stats(VmsQmpClient *qmp)
{
  g_autoptr(JsonNode) ret = NULL;
  g_autofree char *text = NULL;

  if (g_getenv("G_MESSAGES_DEBUG") == NULL)
    return;
  ret = vms_qmp_client_execute(qmp, "query-migrate", NULL, -1, QMP_TIMEOUT_MS, NULL);
  if (ret != NULL) {
    text = json_to_string(ret, FALSE);
    g_debug("query-migrate after the live migration: %s", text);
  }
}

/* From a started live migration to the VM stopped in postmigrate. */
static gboolean
finish_live(VmsQmpClient *qmp, LiveMigration *live, guint64 seq, GError **error)
{
  g_autoptr(GError) slow = NULL;
  g_autoptr(JsonObject) stop = NULL;

  if (!wait_completed(qmp, seq, live->converge_ms, &slow)) {
    /* Only a wait that ran out goes on; if QEMU went away, `stop` fails. */
    if (!g_error_matches(slow, VMS_ERROR, VMS_ERROR_QMP)) {
      g_propagate_error(error, g_steal_pointer(&slow));
      return FALSE;
    }
    g_debug("live migration did not converge in %u ms (%s); stopping the VM", live->converge_ms,
            slow->message);
    if (!vms_save_qmp_simple(qmp, "stop", error))
      return FALSE;
    live->stopped_by_us = TRUE;
    if (!wait_completed(qmp, seq, MIGRATE_TIMEOUT_MS, error))
      return FALSE;
  }
  stop = vms_qmp_client_wait_event_at(qmp, seq, "STOP", NULL, NULL, QMP_TIMEOUT_MS,
                                      &live->stop_wall_us, error);
  log_migration_stats(qmp);
  return stop != NULL && wait_postmigrate(qmp, error);
}

/* Runs @migrate with our migration settings in force, and puts back QEMU's
 * own afterwards, also on failure. */
static gboolean
with_our_settings(VmsQmpClient *qmp, gint64 downtime_limit,
                  gboolean (*migrate)(VmsQmpClient *qmp, int fd, gpointer data, GError **error),
                  int fd, gpointer data, GError **error)
{
  VmsMigrationSettings ours = { .ignore_shared = TRUE, .events = TRUE,
                             .max_bandwidth = SAVE_MAX_BANDWIDTH };
  VmsMigrationSettings prior;
  g_autoptr(GError) put_back_error = NULL;
  gboolean ok;

  if (!vms_migration_settings_query(qmp, &prior, error))
    return FALSE;
  ours.downtime_limit = downtime_limit > 0 ? downtime_limit : prior.downtime_limit;
  if (!vms_migration_settings_apply(qmp, &ours, error))
    return FALSE;
  ok = migrate(qmp, fd, data, error);
  if (!vms_migration_settings_apply(qmp, &prior, &put_back_error)) {
    if (ok)
      g_propagate_prefixed_error(error, g_steal_pointer(&put_back_error),
                                 "cannot put back QEMU's migration settings: ");
    ok = FALSE;
  }
  return ok;
}

static gboolean
migrate_stopped(VmsQmpClient *qmp, int fd, gpointer data, GError **error)
{
  return migrate_and_wait(qmp, fd, error);
}

gboolean
vms_save_migrate_to_fd(VmsQmpClient *qmp, int fd, GError **error)
{
  return with_our_settings(qmp, 0, migrate_stopped, fd, NULL, error);
}

gboolean
vms_save_migrate_live_to_fd(VmsQmpClient *qmp, int fd, guint converge_ms, gint64 *ret_stop_wall_us,
                            GError **error)
{
  LiveMigration live = { .converge_ms = converge_ms };

  if (!with_our_settings(qmp, LIVE_DOWNTIME_LIMIT_MS, migrate_live, fd, &live, error))
    return FALSE;
  *ret_stop_wall_us = live.stop_wall_us;
  return TRUE;
}
