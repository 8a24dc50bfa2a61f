/* vmsnap plugin: the service thread, start-up and QEMU events. */
#include "service.h"
#include "disks.h"

#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "commands.h"
#include "error.h"
#include "monitor.h"
#include "restore.h"
#include "snapdir.h"
#include "vcpus.h"
#include "vmsnap-config.h"

/* QEMU creates its QMP socket and starts serving it only after the plugin is
 * installed and the machine is built; wait this long for it. */
#define QMP_CONNECT_TIMEOUT_MS 60000
#define QMP_TIMEOUT_MS 30000

struct _VmsService {
  VmsPluginOptions opts;
  char *target_name;
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  VmsQmpClient *qmp;
  VmsQmpServer *control;   /* nullable */
  VmsMonitor *monitor;     /* nullable */

  GMutex lock;             /* guards everything below */
  GCond ready_cond;        /* signalled when start-up has finished */
  gboolean started;        /* start-up has finished, well or not */
  gboolean ready;          /* QMP connected and memory found */
  char *init_error;        /* why start-up failed, if it did */
  gboolean running;        /* from query-status, then STOP/RESUME events */
  VmsMemInfo mem;
  char *restored_from;
  guint8 restored_manifest_sha256[32]; /* of restored_from's manifest.bin, as the restore read it */
  GPtrArray *armed;        /* dirs of link snapshots to invalidate on RESUME */
  gboolean saving;         /* a snapshot-save runs */
  const char *save_step;   /* the step it is at (static string), NULL before the first */
  gboolean save_cancelled; /* snapshot-cancel asked */
  char *vm_generation_id;  /* the vmgenid GUID after start-up; NULL: no vmgenid device */
};

void
vms_plugin_options_clear(VmsPluginOptions *opts)
{
  g_clear_pointer(&opts->qmp, g_free);
  g_clear_pointer(&opts->control, g_free);
  g_clear_pointer(&opts->monitor, g_free);
  g_clear_pointer(&opts->mem, g_free);
  g_clear_pointer(&opts->restore, g_free);
  g_clear_pointer(&opts->overlay, g_free);
  vms_peer_policy_clear(&opts->access);
}

void
vms_service_emit(VmsService *svc, const char *event, JsonObject *data)
{
  if (svc->control != NULL)
    vms_qmp_server_emit(svc->control, event, data);
  else if (data != NULL)
    json_object_unref(data);
}

/* The VM was continued (or reset, which reloads ROM images into guest RAM):
 * every armed link snapshot now shares memory that is changing, so it stops
 * being a snapshot. Service thread. */
static void
invalidate_armed(VmsService *svc, const char *reason)
{
  g_autoptr(GPtrArray) armed = NULL;

  g_mutex_lock(&svc->lock);
  armed = g_steal_pointer(&svc->armed);
  svc->armed = g_ptr_array_new_with_free_func(g_free);
  g_mutex_unlock(&svc->lock);
  for (guint i = 0; i < armed->len; i++) {
    const char *dir = armed->pdata[i];
    g_autoptr(GError) error = NULL;
    JsonObject *data = json_object_new();

    json_object_set_string_member(data, "dir", dir);
    if (vms_snapshot_invalidate(dir, &error)) {
      json_object_set_string_member(data, "reason", reason);
    } else {
      g_autofree char *why = g_strdup_printf("%s, and invalidating failed: %s", reason,
                                             error->message);
      fprintf(stderr, "vmsnap: snapshot %s: %s\n", dir, why);
      json_object_set_string_member(data, "reason", why);
    }
    vms_service_emit(svc, "VMSNAP_SNAPSHOT_INVALIDATED", data);
  }
}

static void
on_qemu_event(const char *event, JsonObject *data, gpointer user_data)
{
  VmsService *svc = user_data;

  if (strcmp(event, "STOP") == 0 || strcmp(event, "RESUME") == 0) {
    g_mutex_lock(&svc->lock);
    svc->running = strcmp(event, "RESUME") == 0;
    g_mutex_unlock(&svc->lock);
  }
  if (strcmp(event, "RESUME") == 0)
    invalidate_armed(svc, "the VM was continued, so the memory this link snapshot shares "
                          "with it is changing");
  else if (strcmp(event, "RESET") == 0)
    invalidate_armed(svc, "the VM was reset, which rewrites guest memory this link "
                          "snapshot shares");
}

/* query-memory-size-summary's base-memory: the size to look for in maps. */
static gboolean
query_ram_size(VmsService *svc, guint64 *ret_size, GError **error)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(svc->qmp, "query-memory-size-summary", NULL,
                                                   -1, QMP_TIMEOUT_MS, error);
  if (ret == NULL)
    return FALSE;
  *ret_size = (guint64)json_object_get_int_member_with_default(json_node_get_object(ret),
                                                               "base-memory", 0);
  return TRUE;
}

static gboolean
query_running(VmsService *svc, gboolean *ret_running, GError **error)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(svc->qmp, "query-status", NULL, -1,
                                                   QMP_TIMEOUT_MS, error);
  if (ret == NULL)
    return FALSE;
  *ret_running = json_object_get_boolean_member_with_default(json_node_get_object(ret),
                                                             "running", FALSE);
  return TRUE;
}

/* The control socket's greeting version (doc/spec.md 11): QEMU's own
 * triple — the QEMU the plugin runs in, from its QMP greeting (what
 * query-version returns) — so client libraries that check a minimum QEMU
 * accept it; "package" names vmsnap and its version, then QEMU's package.
 * @qemu_version is NULL when the plugin never reached QEMU's QMP. */
static JsonObject *
greeting_version(JsonObject *qemu_version, const char *why_unknown)
{
  JsonObject *version = json_object_new();
  JsonNode *node = qemu_version != NULL ? json_object_get_member(qemu_version, "qemu") : NULL;
  JsonObject *triple = node != NULL && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node)
                                                                    : NULL;
  const char *package = qemu_version != NULL
                            ? json_object_get_string_member_with_default(qemu_version, "package", "")
                            : NULL;
  g_autofree char *text = NULL;

  if (triple != NULL) {
    json_object_set_object_member(version, "qemu", json_object_ref(triple));
  } else {
    JsonObject *zero = json_object_new();
    json_object_set_int_member(zero, "major", 0);
    json_object_set_int_member(zero, "minor", 0);
    json_object_set_int_member(zero, "micro", 0);
    json_object_set_object_member(version, "qemu", zero);
  }
  if (package != NULL && *package != '\0')
    text = g_strdup_printf("vmsnap " VMSNAP_VERSION " (QEMU %s)", package);
  else if (package != NULL)
    text = g_strdup("vmsnap " VMSNAP_VERSION);
  else
    text = g_strdup_printf("vmsnap " VMSNAP_VERSION " (QEMU version unknown: %s)", why_unknown);
  json_object_set_string_member(version, "package", text);
  return version;
}

/* Greets the control clients that waited for QEMU's version. */
static void
publish_version(VmsService *svc, const GError *error)
{
  g_autoptr(JsonObject) version = NULL;

  if (svc->control == NULL)
    return;
  version = greeting_version(error == NULL ? vms_qmp_client_get_version(svc->qmp) : NULL,
                             error != NULL ? error->message : NULL);
  vms_qmp_server_set_version(svc->control, version);
}

static gboolean
startup_connect(VmsService *svc, VmsMemInfo *ret_mem, GError **error)
{
  guint64 ram_size = 0;
  gboolean running = FALSE;

  gboolean connected = vms_qmp_client_connect_sync(svc->qmp, QMP_CONNECT_TIMEOUT_MS, error);

  publish_version(svc, connected ? NULL : *error);
  if (!connected || !query_running(svc, &running, error))
    return FALSE;
  g_mutex_lock(&svc->lock);
  svc->running = running;
  g_mutex_unlock(&svc->lock);
  return vms_vcpus_attach(svc->qmp, error) && query_ram_size(svc, &ram_size, error) &&
         vms_memfile_find(NULL, svc->opts.mem, ram_size, ret_mem, error);
}

/* In restore mode QEMU waits for the incoming migration (-incoming defer):
 * if the plugin cannot deliver it, nothing else will, so any failure —
 * of the restore or of the start-up before it — ends QEMU with one line. */
static void
restore_failed(const GError *error)
{
  fprintf(stderr, "vmsnap: restore: %s\n", error->message);
  fflush(stderr);
  _exit(1);
}

/* The start-up worker. The guest must never run from a snapshot that did
 * not load. */
static gpointer
startup_thread(gpointer user_data)
{
  VmsService *svc = user_data;
  g_auto(VmsMemInfo) mem = { 0 };
  g_autoptr(GError) error = NULL;
  guint8 restored_sha[32] = { 0 };

  if ((!startup_connect(svc, &mem, &error) ||
       (svc->opts.restore != NULL &&
        !vms_restore_run(svc->opts.restore, svc->opts.resume, svc->opts.libvirt, svc->qmp, &mem,
                         restored_sha,
                         &error))) &&
      svc->opts.restore != NULL)
    restore_failed(error);
  g_autofree char *genid = error == NULL ? vms_disks_query_vmgenid(svc->qmp) : NULL;
  g_mutex_lock(&svc->lock);
  if (error != NULL) {
    svc->init_error = g_strdup(error->message);
    fprintf(stderr, "vmsnap: %s\n", error->message);
  } else {
    svc->mem = mem;
    svc->mem.path = g_strdup(mem.path);
    svc->restored_from = g_strdup(svc->opts.restore);
    memcpy(svc->restored_manifest_sha256, restored_sha, sizeof(restored_sha));
    svc->vm_generation_id = g_steal_pointer(&genid);
    svc->ready = TRUE;
  }
  svc->started = TRUE;
  g_cond_broadcast(&svc->ready_cond);
  g_mutex_unlock(&svc->lock);
  return NULL;
}

static gpointer
service_thread(gpointer user_data)
{
  VmsService *svc = user_data;

  g_main_context_push_thread_default(svc->context);
  g_main_loop_run(svc->loop);
  g_main_context_pop_thread_default(svc->context);
  return NULL;
}

static gboolean
service_listen(VmsService *svc, GError **error)
{
  if (svc->opts.control != NULL) {
    svc->control = vms_qmp_server_new(svc->opts.control, svc->context, NULL,
                                      &svc->opts.access, vms_commands_dispatch, svc, error);
    if (svc->control == NULL) {
      g_prefix_error(error, "control=%s: ", svc->opts.control);
      return FALSE;
    }
  }
  if (svc->opts.monitor != NULL) {
    svc->monitor = vms_monitor_new(svc->opts.monitor, svc->context, &svc->opts.access,
                                   vms_commands_dispatch, svc, error);
    if (svc->monitor == NULL) {
      g_prefix_error(error, "monitor=%s: ", svc->opts.monitor);
      return FALSE;
    }
  }
  return TRUE;
}

VmsService *
vms_service_start(VmsPluginOptions *opts, const char *target_name, GError **error)
{
  VmsService *svc = g_new0(VmsService, 1);

  svc->opts = *opts;
  memset(opts, 0, sizeof(*opts));
  svc->target_name = g_strdup(target_name);
  g_mutex_init(&svc->lock);
  g_cond_init(&svc->ready_cond);
  svc->armed = g_ptr_array_new_with_free_func(g_free);
  svc->context = g_main_context_new();
  svc->loop = g_main_loop_new(svc->context, FALSE);
  svc->qmp = vms_qmp_client_new(svc->opts.qmp, svc->context, on_qemu_event, svc);
  if (!service_listen(svc, error)) {
    /* QEMU exits right after a failed install: only the socket files matter. */
    vms_service_at_exit(svc);
    return NULL;
  }
  svc->thread = g_thread_new("vmsnap-service", service_thread, svc);
  g_thread_unref(g_thread_new("vmsnap-startup", startup_thread, svc));
  return svc;
}

void
vms_service_at_exit(VmsService *svc)
{
  if (svc->opts.control != NULL && svc->control != NULL)
    unlink(svc->opts.control);
  if (svc->opts.monitor != NULL && svc->monitor != NULL)
    unlink(svc->opts.monitor);
}

gboolean
vms_service_wait_ready(VmsService *svc, guint timeout_ms, GError **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  while (!svc->started && g_cond_wait_until(&svc->ready_cond, &svc->lock, deadline))
    ;
  if (svc->ready)
    return TRUE;
  g_set_error(error, VMS_ERROR, VMS_ERROR_BUSY, "%s",
              svc->init_error != NULL ? svc->init_error
                                      : "the plugin is still connecting to QEMU's QMP socket");
  return FALSE;
}

gboolean
vms_service_get_memory(VmsService *svc, VmsMemInfo *ret_mem, GError **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);

  if (!svc->ready) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_BUSY, "%s",
                svc->init_error != NULL ? svc->init_error
                                        : "the plugin is still connecting to QEMU's QMP socket");
    return FALSE;
  }
  *ret_mem = svc->mem;
  ret_mem->path = g_strdup(svc->mem.path);
  return TRUE;
}

void
vms_service_arm_invalidation(VmsService *svc, const char *dir)
{
  g_mutex_lock(&svc->lock);
  g_ptr_array_add(svc->armed, g_strdup(dir));
  g_mutex_unlock(&svc->lock);
}

JsonObject *
vms_service_query(VmsService *svc)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);
  JsonObject *ret = json_object_new();

  json_object_set_string_member(ret, "version", VMSNAP_VERSION);
  json_object_set_int_member(ret, "vcpus", vms_vcpus_count());
  json_object_set_boolean_member(ret, "vcpu-events", vms_vcpus_use_events());
  json_object_set_string_member(ret, "accelerator", vms_vcpus_accelerator());
  json_object_set_boolean_member(ret, "running", svc->running);
  if (svc->ready) {
    JsonObject *mem = json_object_new();
    json_object_set_string_member(mem, "path", svc->mem.path);
    json_object_set_int_member(mem, "size", (gint64)svc->mem.size);
    json_object_set_int_member(mem, "page-size", svc->mem.page_size);
    json_object_set_boolean_member(mem, "shared", svc->mem.shared);
    json_object_set_object_member(ret, "memory", mem);
  } else {
    json_object_set_null_member(ret, "memory");
  }
  if (svc->vm_generation_id != NULL) /* doc/spec.md section 9 */
    json_object_set_string_member(ret, "vm-generation-id", svc->vm_generation_id);
  else
    json_object_set_null_member(ret, "vm-generation-id");
  if (svc->restored_from != NULL)
    json_object_set_string_member(ret, "restored-from", svc->restored_from);
  else
    json_object_set_null_member(ret, "restored-from");
  return ret;
}

VmsQmpClient *
vms_service_get_qmp(VmsService *svc)
{
  return svc->qmp;
}

const char *
vms_service_get_target(VmsService *svc)
{
  return svc->target_name;
}

char *
vms_service_dup_restored(VmsService *svc, guint8 *ret_sha256)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);

  if (ret_sha256 != NULL)
    memcpy(ret_sha256, svc->restored_manifest_sha256, sizeof(svc->restored_manifest_sha256));
  return g_strdup(svc->restored_from);
}

gboolean
vms_service_begin_save(VmsService *svc)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);

  if (svc->saving)
    return FALSE;
  svc->saving = TRUE;
  svc->save_step = NULL;
  svc->save_cancelled = FALSE;
  return TRUE;
}

void
vms_service_end_save(VmsService *svc)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);

  svc->saving = FALSE;
}

/* A cancel during the state capture: QEMU's migration is stopped now, not
 * at the next step. vms_qmp_client_execute must not run on the service
 * thread (it waits for that thread), hence a thread of its own. */
static gpointer
migrate_cancel_thread(gpointer user_data)
{
  VmsService *svc = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(svc->qmp, "migrate_cancel", NULL, -1,
                                                   QMP_TIMEOUT_MS, &error);

  if (ret == NULL)
    g_debug("snapshot-cancel: migrate_cancel: %s", error->message);
  return NULL;
}

gboolean
vms_service_cancel_save(VmsService *svc)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);

  if (!svc->saving || g_strcmp0(svc->save_step, "commit") == 0)
    return FALSE;
  if (!svc->save_cancelled && g_strcmp0(svc->save_step, "state") == 0)
    g_thread_unref(g_thread_new("vmsnap-cancel", migrate_cancel_thread, svc));
  svc->save_cancelled = TRUE;
  return TRUE;
}

gboolean
vms_service_save_step(VmsService *svc, const char *step, GError **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);

  if (svc->save_cancelled) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_FAILED,
                        "cancelled by snapshot-cancel; nothing was committed");
    return FALSE;
  }
  svc->save_step = step;
  return TRUE;
}

gboolean
vms_service_is_running(VmsService *svc)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&svc->lock);

  return svc->running;
}
