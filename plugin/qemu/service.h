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
#include "conn.h"
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
  VmsPeerPolicy access; /* allow-uids=, allow-gid= (doc/spec.md section 11) */
  gboolean libvirt; /* libvirt=on: libvirt runs this QEMU (doc/libvirt.md) */
} VmsPluginOptions;

void vms_plugin_options_clear(VmsPluginOptions *opts);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsPluginOptions, vms_plugin_options_clear)

/* The plugin's service: its thread, the QMP client to QEMU, both socket
 * front ends and the VM facts they share. Opaque; read through the
 * accessors below. */
typedef struct _VmsService VmsService;

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

/* The QMP client that drives QEMU (owned by the service). Any thread. */
VmsQmpClient *vms_service_get_qmp(VmsService *svc);
/* QEMU's target name ("x86_64"). Any thread. */
const char *vms_service_get_target(VmsService *svc);
/* The snapshot this VM was restored from (caller frees; NULL if none), and
 * the SHA-256 of its manifest.bin as the restore read it into @ret_sha256
 * (nullable, 32 bytes). Any thread. */
char *vms_service_dup_restored(VmsService *svc, guint8 *ret_sha256);

/* The one save slot: takes it (FALSE when a save runs). Any thread. */
gboolean vms_service_begin_save(VmsService *svc);
/* Frees the slot. Any thread. */
void vms_service_end_save(VmsService *svc);
/* snapshot-cancel: asks the running save to stop. TRUE when it will (it
 * fails at its next step and commits nothing; during the state capture
 * QEMU's migration is cancelled at once with migrate_cancel); FALSE when no
 * save runs or it is already committing. Any thread but the service
 * thread's callers need not care: it never blocks. */
gboolean vms_service_cancel_save(VmsService *svc);
/* The save's worker, before each step: FALSE with an error when a cancel
 * was asked. @step "commit" is the point of no return: a cancel after it
 * is refused. */
gboolean vms_service_save_step(VmsService *svc, const char *step, GError **error);
/* Whether the VM runs (QEMU's STOP/RESUME events). Any thread. */
gboolean vms_service_is_running(VmsService *svc);

G_END_DECLS
