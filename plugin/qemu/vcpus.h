/* vmsnap plugin: vCPU accounting from QEMU's vCPU callbacks.
 *
 * The callbacks run on vCPU threads. They only touch atomics and, when a
 * waiter has announced itself, briefly take a mutex to wake it: they never
 * block on anything a vCPU could wait for and never do I/O. There is no
 * per-instruction or per-memory-access instrumentation.
 *
 * "Idle" is the plugin API's notion: a vCPU thread went to sleep, because
 * the VM was stopped or because the guest executed HLT. So idle alone does
 * not mean paused: callers combine it with QMP `stop` (which returns once
 * every vCPU has stopped).
 */
#pragma once

#include <glib.h>
#include "qemu-plugin.h"

G_BEGIN_DECLS

/* Registers the callbacks for plugin @id. @smp_vcpus is the install info's
 * count, kept to cross-check the vCPUs that actually appear. QEMU's main
 * thread, once, from qemu_plugin_install. */
void vms_vcpus_register(qemu_plugin_id_t id, guint smp_vcpus);

/* vCPUs initialised and not exited. Any thread. */
guint vms_vcpus_count(void);

/* The count the install info announced. */
guint vms_vcpus_expected(void);

/* vCPUs currently idle. Any thread. */
guint vms_vcpus_idle(void);

/* Waits until every vCPU is idle, up to @timeout_ms. Any thread except a
 * vCPU thread. FALSE with an error naming both counts on timeout. */
gboolean vms_vcpus_wait_quiescent(guint timeout_ms, GError **error);

G_END_DECLS
