/* vmsnap plugin: vCPU count and quiescence, from callbacks or QMP (vcpus.h). */
#include "vcpus.h"

#include <stdio.h>
#include <string.h>

#include "error.h"

#define QMP_TIMEOUT_MS 30000
#define QMP_POLL_US 1000

static gint vcpus_live;     /* init - exit */
static gint vcpus_idle;     /* idle - resume */
static guint vcpus_smp;
static gint vcpus_waiters;  /* threads in wait_idle */
static GMutex vcpus_lock;
static GCond vcpus_cond;

static VmsVcpuEvents vcpus_asked;     /* the plugin argument */
static gint vcpus_events;             /* atomic: settled to events mode */
static gint vcpus_qmp_count;          /* atomic: the last query-cpus-fast */
static const char *vcpus_accel = "unknown";
static VmsQmpClient *vcpus_qmp;       /* set once by attach */

gboolean
vms_vcpu_events_parse(const char *value, VmsVcpuEvents *ret_events, GError **error)
{
  static const char *const names[] = { "auto", "on", "off" };

  for (guint i = 0; i < G_N_ELEMENTS(names); i++) {
    if (strcmp(value, names[i]) == 0) {
      *ret_events = (VmsVcpuEvents)i;
      return TRUE;
    }
  }
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "bad argument vcpu-events=%s: expected on, off or auto", value);
  return FALSE;
}

/* Wakes waiters, but only when there are any: the common case (a guest
 * halting and waking thousands of times a second) stays lock-free. */
static void
vcpus_wake(void)
{
  if (g_atomic_int_get(&vcpus_waiters) == 0)
    return;
  g_mutex_lock(&vcpus_lock);
  g_cond_broadcast(&vcpus_cond);
  g_mutex_unlock(&vcpus_lock);
}

static void
on_vcpu_init(qemu_plugin_id_t id, unsigned int vcpu_index)
{
  g_atomic_int_inc(&vcpus_live);
}

static void
on_vcpu_exit(qemu_plugin_id_t id, unsigned int vcpu_index)
{
  g_atomic_int_add(&vcpus_live, -1);
  vcpus_wake();
}

static void
on_vcpu_idle(qemu_plugin_id_t id, unsigned int vcpu_index)
{
  g_atomic_int_inc(&vcpus_idle);
  vcpus_wake();
}

static void
on_vcpu_resume(qemu_plugin_id_t id, unsigned int vcpu_index)
{
  g_atomic_int_add(&vcpus_idle, -1);
}

void
vms_vcpus_register(qemu_plugin_id_t id, guint smp_vcpus, VmsVcpuEvents events)
{
  vcpus_smp = smp_vcpus;
  vcpus_asked = events;
  if (events == VMS_VCPU_EVENTS_OFF)
    return;
  qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
  qemu_plugin_register_vcpu_exit_cb(id, on_vcpu_exit);
  qemu_plugin_register_vcpu_idle_cb(id, on_vcpu_idle);
  qemu_plugin_register_vcpu_resume_cb(id, on_vcpu_resume);
}

static guint
events_live(void)
{
  return (guint)MAX(0, g_atomic_int_get(&vcpus_live));
}

/* query-cpus-fast: one entry per vCPU, whatever the accelerator. */
static gboolean
qmp_count(GError **error)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(vcpus_qmp, "query-cpus-fast", NULL, -1,
                                                   QMP_TIMEOUT_MS, error);
  if (ret == NULL)
    return FALSE;
  if (!JSON_NODE_HOLDS_ARRAY(ret))
    return g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "query-cpus-fast: not a list"), FALSE;
  g_atomic_int_set(&vcpus_qmp_count, (gint)json_array_get_length(json_node_get_array(ret)));
  return TRUE;
}

/* "kvm" from query-kvm; "tcg" when only TCG could have called the init
 * callbacks or x-query-jit (TCG's statistics) answers; else "other". */
static const char *
qmp_accelerator(GError **error)
{
  g_autoptr(JsonNode) kvm = vms_qmp_client_execute(vcpus_qmp, "query-kvm", NULL, -1,
                                                   QMP_TIMEOUT_MS, error);
  g_autoptr(JsonNode) jit = NULL;

  if (kvm == NULL)
    return NULL;
  if (JSON_NODE_HOLDS_OBJECT(kvm) &&
      json_object_get_boolean_member_with_default(json_node_get_object(kvm), "enabled", FALSE))
    return "kvm";
  if (events_live() > 0)
    return "tcg";
  jit = vms_qmp_client_execute(vcpus_qmp, "x-query-jit", NULL, -1, QMP_TIMEOUT_MS, NULL);
  return jit != NULL ? "tcg" : "other";
}

gboolean
vms_vcpus_attach(VmsQmpClient *qmp, GError **error)
{
  const char *accel;

  vcpus_qmp = qmp;
  accel = qmp_accelerator(error);
  if (accel == NULL)
    return FALSE;
  vcpus_accel = accel;
  if (vcpus_asked == VMS_VCPU_EVENTS_ON && events_live() == 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                       "vcpu-events=on, but QEMU called no vCPU init callback (accelerator %s; "
                       "QEMU calls them only under TCG): use vcpu-events=auto or off", accel),
           FALSE;
  if (vcpus_asked == VMS_VCPU_EVENTS_ON ||
      (vcpus_asked == VMS_VCPU_EVENTS_AUTO && g_str_equal(accel, "tcg") && events_live() > 0)) {
    g_atomic_int_set(&vcpus_events, 1);
    /* Every vCPU is created with the machine, before QMP answers. */
    if (events_live() != vcpus_smp)
      fprintf(stderr, "vmsnap: warning: %u vCPUs initialised, QEMU announced %u (-smp)\n",
              events_live(), vcpus_smp);
    return TRUE;
  }
  return qmp_count(error);
}

guint
vms_vcpus_count(void)
{
  if (g_atomic_int_get(&vcpus_events))
    return events_live();
  return (guint)MAX(0, g_atomic_int_get(&vcpus_qmp_count));
}

gboolean
vms_vcpus_use_events(void)
{
  return g_atomic_int_get(&vcpus_events) != 0;
}

const char *
vms_vcpus_accelerator(void)
{
  return vcpus_accel;
}

static gboolean
all_idle(void)
{
  return (guint)MAX(0, g_atomic_int_get(&vcpus_idle)) >= events_live();
}

static gboolean
wait_idle(gint64 deadline)
{
  gboolean ok;

  if (all_idle())
    return TRUE;
  g_atomic_int_inc(&vcpus_waiters);
  g_mutex_lock(&vcpus_lock);
  /* The callbacks bump the counters without the lock, so re-check with a
   * bounded wait instead of trusting a single wake-up. */
  while (!(ok = all_idle()) && g_get_monotonic_time() < deadline)
    g_cond_wait_until(&vcpus_cond, &vcpus_lock, MIN(deadline, g_get_monotonic_time() + 1000));
  g_mutex_unlock(&vcpus_lock);
  g_atomic_int_add(&vcpus_waiters, -1);
  return ok;
}

/* query-status until QEMU says the VM is not running (`stop` returns only
 * once every vCPU has stopped, so this is immediate after it). */
static gboolean
wait_stopped_qmp(guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  for (;;) {
    g_autoptr(JsonNode) ret = vms_qmp_client_execute(vcpus_qmp, "query-status", NULL, -1,
                                                     QMP_TIMEOUT_MS, error);
    if (ret == NULL)
      return FALSE;
    JsonObject *st = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;
    if (st != NULL && !json_object_get_boolean_member_with_default(st, "running", TRUE))
      return TRUE;
    if (g_get_monotonic_time() >= deadline)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED,
                         "vCPUs not quiescent after %u ms: query-status says \"%s\"", timeout_ms,
                         st != NULL ? json_object_get_string_member_with_default(st, "status", "?")
                                    : "?"), FALSE;
    g_usleep(QMP_POLL_US);
  }
}

gboolean
vms_vcpus_wait_quiescent(guint timeout_ms, GError **error)
{
  if (vms_vcpus_use_events()) {
    if (wait_idle(g_get_monotonic_time() + (gint64)timeout_ms * 1000))
      return TRUE;
    return g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED,
                       "vCPUs not quiescent after %u ms (%d of %u idle)", timeout_ms,
                       g_atomic_int_get(&vcpus_idle), events_live()), FALSE;
  }
  g_return_val_if_fail(vcpus_qmp != NULL, FALSE);
  return wait_stopped_qmp(timeout_ms, error) && qmp_count(error);
}
