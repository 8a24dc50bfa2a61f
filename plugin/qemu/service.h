/* vmsnap plugin: the service — the plugin's own thread and its state.
 *
 * The service thread runs a GMainContext owning the QMP client to QEMU, the
 * control socket (QMP) and the monitor console. Long work (start-up, a
 * restore, a snapshot-save) runs on worker threads so both sockets stay
 * responsive. Nothing here takes QEMU's locks or calls QEMU internals.
 */
#pragma once

#include <glib.h>
#include "memfile.h"
#include "qmp.h"

G_BEGIN_DECLS

/* The plugin arguments (doc/spec.md section 3), owned strings. */
typedef struct {
  char *qmp;        /* required */
  char *control;    /* nullable */
  char *monitor;    /* nullable */
  char *mem;        /* nullable: find the memory by size */
  char *restore;    /* nullable */
  char *overlay;    /* nullable: the memory file mapped over a share=on placeholder (ram-overlay.h) */
  gboolean resume;  /* default TRUE */
} VmsPluginOptions;

void vms_plugin_options_clear(VmsPluginOptions *opts);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsPluginOptions, vms_plugin_options_clear)

typedef struct _VmsMonitor VmsMonitor;

typedef struct {
  VmsPluginOptions opts;
  char *target_name;
  GMainContext *context;
  GMainLoop *loop;
  GThread *thread;
  VmsQmpClient *qmp;
  VmsQmpServer *control;   /* nullable */
  VmsMonitor *monitor;     /* nullable */
  gint saving;             /* atomic: 1 while a snapshot-save runs */

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
  char *vm_generation_id;  /* the vmgenid GUID after start-up; NULL: no vmgenid device */
} VmsService;

/* Creates the listening sockets (so a bad path stops QEMU at start), then
 * starts the service thread and the start-up worker (connect to QMP, find
 * the guest memory, run a restore if asked). Takes ownership of @opts's
 * strings (the struct is zeroed). QEMU's main thread. */
VmsService *vms_service_start(VmsPluginOptions *opts, const char *target_name, GError **error);

/* At QEMU exit: removes the socket files. Does not stop the thread (QEMU is
 * exiting; the process takes it down). */
void vms_service_at_exit(VmsService *svc);

/* Sends an event to every control-socket client. @data consumed. Any thread. */
void vms_service_emit(VmsService *svc, const char *event, JsonObject *data);

/* Waits up to @timeout_ms for start-up (QMP connected, memory found) to
 * finish. FALSE with the reason when it failed or is still running. Not on
 * the service thread. */
gboolean vms_service_wait_ready(VmsService *svc, guint timeout_ms, GError **error);

/* Copies the guest memory info into @ret_mem; fails while start-up has not
 * finished or when it failed (the error says why). Any thread. */
gboolean vms_service_get_memory(VmsService *svc, VmsMemInfo *ret_mem, GError **error);

/* After a link snapshot is committed with then=pause: when the VM is
 * continued by anyone, @dir's manifest.bin is renamed to manifest.bin.invalid
 * and VMSNAP_SNAPSHOT_INVALIDATED is emitted. Any thread. */
void vms_service_arm_invalidation(VmsService *svc, const char *dir);

/* query-vmsnap's answer (a new object). Any thread. */
JsonObject *vms_service_query(VmsService *svc);

G_END_DECLS
