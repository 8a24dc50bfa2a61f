/* vmsnap plugin: snapshot-save, orchestrated through QEMU's QMP
 * (doc/spec.md section 4). */
#pragma once

#include <json-glib/json-glib.h>
#include "save-modes.h"
#include "service.h"

G_BEGIN_DECLS

/* Checks what can be refused before anything happens (the mode against the
 * mapping and `then`): no VM state is touched. Any thread. */
gboolean vms_save_check(VmsService *svc, VmsSaveMemory memory, VmsSaveThen then,
                        GError **error);

/* Takes a snapshot into @dir. A worker thread (it blocks on QMP for the whole
 * save). On success returns the reply object (dir, kind, memory-capture,
 * state-bytes, memory-bytes-written, downtime-ms, total-ms) and has emitted
 * VMSNAP_SNAPSHOT_COMPLETED; with then=quit the VM is still paused and the
 * caller sends `quit` (vms_save_quit) after replying. On failure the VM is
 * back in its prior run state, @dir holds no manifest.bin, the error names
 * the step, and VMSNAP_SNAPSHOT_FAILED was emitted. The caller guarantees
 * one save at a time (VmsService.saving). */
JsonObject *vms_save_run(VmsService *svc, const char *dir, VmsSaveMemory memory, VmsSaveThen then,
                         GError **error);

/* Asks QEMU to quit (then=quit, after the reply went out). Worker thread. */
void vms_save_quit(VmsService *svc);

G_END_DECLS
