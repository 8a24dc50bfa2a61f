/* vmsnap plugin: what the plugin knows about the vCPUs — how many there
 * are, and whether they have all stopped — from one of two sources, chosen
 * by the plugin argument vcpu-events=on|off|auto (doc/spec.md section 13):
 *
 * - events: QEMU's vCPU init/exit/idle/resume callbacks. They run on vCPU
 *   threads and only touch atomics and, when a waiter has announced itself,
 *   briefly take a mutex to wake it: they never block on anything a vCPU
 *   could wait for and never do I/O. "Idle" is the plugin API's notion: a
 *   vCPU thread went to sleep, because the VM was stopped or because the
 *   guest executed HLT, so idle alone does not mean paused: callers stop
 *   the VM with QMP `stop` first.
 * - QMP: `query-cpus-fast` for the count, `query-status` for quiescence
 *   (QMP `stop` returns only once every vCPU has stopped). QEMU calls the
 *   init/exit callbacks only under TCG, so under KVM this is the only
 *   source; `off` uses it under TCG too.
 *
 * `auto` uses the events unless `query-kvm` says KVM is enabled or no vCPU
 * init callback has run by the time QMP answers (another accelerator).
 * There is no per-instruction or per-memory-access instrumentation.
 */
#pragma once

#include <glib.h>
#include "qemu-plugin.h"
#include "qmp.h"

G_BEGIN_DECLS

typedef enum {
  VMS_VCPU_EVENTS_AUTO,
  VMS_VCPU_EVENTS_ON,
  VMS_VCPU_EVENTS_OFF,
} VmsVcpuEvents;

/* Parses a vcpu-events= value ("on", "off", "auto"); FALSE with an error
 * naming the value otherwise. */
gboolean vms_vcpu_events_parse(const char *value, VmsVcpuEvents *ret_events, GError **error);

/* Registers the vCPU callbacks for plugin @id unless @events is OFF.
 * @smp_vcpus is the install info's count, kept to cross-check. QEMU's main
 * thread, once, from qemu_plugin_install. */
void vms_vcpus_register(qemu_plugin_id_t id, guint smp_vcpus, VmsVcpuEvents events);

/* Once QMP is connected (the machine and its vCPUs exist by then): asks
 * `query-kvm` for the accelerator, settles `auto`, and in QMP mode reads
 * the count with `query-cpus-fast`. Keeps @qmp (which must outlive the
 * plugin) for vms_vcpus_wait_quiescent. Fails when vcpu-events=on but QEMU
 * has called no init callback (KVM), or on a QMP error. The start-up
 * worker thread, once. */
gboolean vms_vcpus_attach(VmsQmpClient *qmp, GError **error);

/* The vCPUs: initialised and not exited (events), or the last
 * `query-cpus-fast` (QMP: at attach and at every vms_vcpus_wait_quiescent).
 * Any thread. */
guint vms_vcpus_count(void);

/* TRUE once attached in events mode; FALSE in QMP mode or before attach. */
gboolean vms_vcpus_use_events(void);

/* The accelerator, as attach found it: "kvm" (query-kvm), "tcg" (init
 * callbacks ran, which only TCG does, or x-query-jit, TCG's statistics,
 * answers), "other", or "unknown" before attach. */
const char *vms_vcpus_accelerator(void);

/* After QMP `stop` (or a migration that stopped the VM): waits up to
 * @timeout_ms until every vCPU has stopped — every vCPU idle (events), or
 * `query-status` not running (QMP; the count is refreshed too). Any thread
 * except a vCPU thread or the QMP client's. FALSE with an error naming what
 * was seen on timeout. */
gboolean vms_vcpus_wait_quiescent(guint timeout_ms, GError **error);

G_END_DECLS
