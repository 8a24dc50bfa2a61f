/* vmsnap plugin: QMP conversations for snapshot-save. */
#include "save-qemu.h"

#include <string.h>

#include "error.h"

#define QMP_TIMEOUT_MS 30000
/* Device state is small (hundreds of KiB without guest RAM), but a VM whose
 * RAM cannot be skipped streams all of it: allow for that. */
#define MIGRATE_TIMEOUT_MS (10 * 60 * 1000)

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

/* The migration settings a save changes. QEMU keeps them after the save,
 * and a later real migration by a management layer would inherit them —
 * x-ignore-shared would leave the guest RAM behind — so the save puts back
 * what it found. */
typedef struct {
  gboolean ignore_shared;
  gboolean events;        /* makes QEMU send the MIGRATION events we wait for */
  gint64 max_bandwidth;
} MigrationSettings;

/* QEMU throttles a migration to max-bandwidth (default 128 MiB/s in 7.2).
 * Guest RAM of a VM restored with share=off is not shared, so x-ignore-shared
 * leaves it in the stream: unthrottled, writing it costs what the file
 * write costs instead of seconds of downtime. The VM is stopped: there is
 * no guest to protect from the migration's load. */
#define SAVE_MAX_BANDWIDTH (G_GINT64_CONSTANT(1) << 40)

static gboolean
query_settings(VmsQmpClient *qmp, MigrationSettings *ret_settings, GError **error)
{
  g_autoptr(JsonNode) caps = vms_qmp_client_execute(qmp, "query-migrate-capabilities", NULL, -1,
                                                    QMP_TIMEOUT_MS, error);
  g_autoptr(JsonNode) params = NULL;
  MigrationSettings s = { 0 };

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
  *ret_settings = s;
  return TRUE;
}

static gboolean
apply_settings(VmsQmpClient *qmp, const MigrationSettings *s, GError **error)
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
    JsonObject *cap = json_object_new();
    json_object_set_string_member(cap, "capability", caps[i].name);
    json_object_set_boolean_member(cap, "state", caps[i].on);
    json_array_add_object_element(list, cap);
  }
  json_object_set_array_member(cap_args, "capabilities", list);
  json_object_set_int_member(param_args, "max-bandwidth", s->max_bandwidth);
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

/* getfd, migrate, wait for the outcome; the settings are already ours. */
static gboolean
migrate_and_wait(VmsQmpClient *qmp, int fd, GError **error)
{
  static gint counter;
  g_autofree char *fdname = g_strdup_printf("vmsnap-save-%d", g_atomic_int_add(&counter, 1));
  g_autofree char *uri = g_strdup_printf("fd:%s", fdname);
  g_autoptr(JsonObject) args = json_object_new();
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonObject) event = NULL;
  const char *status;
  guint64 seq;

  if (!pass_fd(qmp, fd, fdname, error))
    return FALSE;
  json_object_set_string_member(args, "uri", uri);
  seq = vms_qmp_client_event_seq(qmp);
  ret = vms_qmp_client_execute(qmp, "migrate", args, -1, QMP_TIMEOUT_MS, error);
  if (ret == NULL) {
    close_fd_name(qmp, fdname);
    return FALSE;
  }
  event = vms_qmp_client_wait_event(qmp, seq, "MIGRATION", migration_finished, NULL,
                                    MIGRATE_TIMEOUT_MS, error);
  if (event == NULL)
    return FALSE;
  status = json_object_get_string_member_with_default(event, "status", "");
  if (strcmp(status, "completed") != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "QEMU's migration into state.bin %s", status);
    return FALSE;
  }
  return wait_postmigrate(qmp, error);
}

gboolean
vms_save_migrate_to_fd(VmsQmpClient *qmp, int fd, GError **error)
{
  const MigrationSettings ours = { .ignore_shared = TRUE, .events = TRUE,
                                   .max_bandwidth = SAVE_MAX_BANDWIDTH };
  MigrationSettings prior;
  g_autoptr(GError) put_back_error = NULL;
  gboolean ok;

  if (!query_settings(qmp, &prior, error) || !apply_settings(qmp, &ours, error))
    return FALSE;
  ok = migrate_and_wait(qmp, fd, error);
  if (!apply_settings(qmp, &prior, &put_back_error)) {
    if (ok)
      g_propagate_prefixed_error(error, g_steal_pointer(&put_back_error),
                                 "cannot put back QEMU's migration settings: ");
    ok = FALSE;
  }
  return ok;
}
