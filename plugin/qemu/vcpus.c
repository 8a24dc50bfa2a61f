/* vmsnap plugin: vCPU init/exit/idle/resume accounting. */
#include "vcpus.h"

#include "error.h"

static gint vcpus_live;     /* init - exit */
static gint vcpus_idle;     /* idle - resume */
static guint vcpus_smp;
static gint vcpus_waiters;  /* threads in vms_vcpus_wait_quiescent */
static GMutex vcpus_lock;
static GCond vcpus_cond;

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
vms_vcpus_register(qemu_plugin_id_t id, guint smp_vcpus)
{
  vcpus_smp = smp_vcpus;
  qemu_plugin_register_vcpu_init_cb(id, on_vcpu_init);
  qemu_plugin_register_vcpu_exit_cb(id, on_vcpu_exit);
  qemu_plugin_register_vcpu_idle_cb(id, on_vcpu_idle);
  qemu_plugin_register_vcpu_resume_cb(id, on_vcpu_resume);
}

guint
vms_vcpus_count(void)
{
  return (guint)MAX(0, g_atomic_int_get(&vcpus_live));
}

guint
vms_vcpus_expected(void)
{
  return vcpus_smp;
}

guint
vms_vcpus_idle(void)
{
  return (guint)MAX(0, g_atomic_int_get(&vcpus_idle));
}

static gboolean
all_idle(void)
{
  return vms_vcpus_idle() >= vms_vcpus_count();
}

gboolean
vms_vcpus_wait_quiescent(guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
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
  if (!ok)
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED,
                "vCPUs not quiescent after %u ms (%u of %u idle)", timeout_ms, vms_vcpus_idle(),
                vms_vcpus_count());
  return ok;
}
