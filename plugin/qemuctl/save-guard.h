/* vmsnap plugin: what keeps a save honest (doc/spec.md section 10).
 *
 * - Someone else may continue the VM while a save holds it stopped (a `cont`
 *   on QEMU's own monitor, `virsh resume`): the memory could then change
 *   under the capture, so the save must notice, fail and commit nothing.
 *   QEMU sends its RESUME event to every QMP connection, the plugin's too,
 *   and query-status says whether the VM runs now.
 * - A test-only step hook lets the fault-injection tests act at an exact
 *   step of a save, without timed sleeps.
 *
 * Worker threads only (both block on QMP or on the hook).
 */
#pragma once

#include <glib.h>
#include "qmp.h"

G_BEGIN_DECLS

/* Fails with VMS_ERROR_RESUMED if QEMU sent RESUME after event sequence
 * @since_seq (vms_qmp_client_event_seq taken before the save stopped the
 * VM) or query-status says the VM runs. The message says that the VM was
 * resumed by someone else and nothing was committed. */
gboolean vms_save_guard_not_resumed(VmsQmpClient *qmp, guint64 since_seq, GError **error);

/* The test-only step hook, read from VMSNAP_TEST_SAVE_HOOK in QEMU's
 * environment as "STEP:ACTION" (unset: nothing happens, at the cost of one
 * getenv). Called by save.c at the start of each step (STEP is the step's
 * name: prepare, stop, state, memory, resume, strip, commit, digests) and
 * by restore.c before it loads state.bin (STEP "restore").
 * ACTION "kill": the process kills itself with SIGKILL (QEMU dies mid-save).
 * ACTION "wait=FILE": creates FILE and waits until someone removes it (at
 * most 60 s), so a test can act while the save is at STEP. */
void vms_save_test_hook(const char *step);

G_END_DECLS
