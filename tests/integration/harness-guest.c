/* vmsnap integration tests: talking to the test guest — its debug console,
 * its state in guest RAM, its commands (see harness.h). */
#include "harness.h"
#include "harness-private.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <gio/gunixoutputstream.h>

/* ---- the guest ---- */

gsize
vms_vm_debugcon_size(VmsVm *vm)
{
  g_autofree char *text = vms_test_read_text(vm->debugcon_path);
  return text != NULL ? strlen(text) : 0;
}

gboolean
vms_vm_wait_debugcon(VmsVm *vm, const char *text, gsize from, guint timeout_ms, gsize *ret_end,
                     GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  for (;;) {
    g_autofree char *log = vms_test_read_text(vm->debugcon_path);
    gsize len = log != NULL ? strlen(log) : 0;
    const char *hit = from < len ? strstr(log + from, text) : NULL;
    if (hit != NULL) {
      if (ret_end != NULL)
        *ret_end = (gsize)(hit - log) + strlen(text);
      return TRUE;
    }
    if (g_get_monotonic_time() >= deadline) {
      g_autofree char *err = vms_vm_stderr(vm);
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                  "no \"%s\" on debugcon after %u ms (log: %s; QEMU stderr: %s)", text, timeout_ms,
                  log != NULL ? log : "(none)", err);
      return FALSE;
    }
    g_usleep(10 * 1000);
  }
}

gboolean
vms_vm_wait_ready(VmsVm *vm, guint timeout_ms, GError **error)
{
  return vms_harness_said(vms_vm_wait_debugcon(vm, VMS_GUEST_PREFIX "ready", 0, timeout_ms, NULL,
                                               error), error, "vms_vm_wait_ready");
}

GBytes *
vms_vm_read_phys(VmsVm *vm, guint64 addr, gsize len, GError **error)
{
  static guint seq;
  g_autofree char *path = g_strdup_printf("%s/pmem-%u.bin", vm->dir, ++seq);
  g_autoptr(JsonNode) ret = NULL;
  char *data = NULL;
  gsize got = 0;

  ret = vms_test_qmp_executef(vm->qmp, "pmemsave", error,
                              "{\"val\": %" G_GUINT64_FORMAT ", \"size\": %" G_GSIZE_FORMAT
                              ", \"filename\": \"%s\"}",
                              addr + (vms_vm_is_aarch64(vm) ? VMS_GUEST_RAM_BASE_AARCH64 : 0),
                              len, path);
  if (ret == NULL)
    return NULL;
  gboolean ok = g_file_get_contents(path, &data, &got, error);
  (void)unlink(path);
  if (!ok)
    return NULL;
  if (got != len) {
    g_free(data);
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "pmemsave wrote %" G_GSIZE_FORMAT
                " bytes, wanted %" G_GSIZE_FORMAT, got, len);
    return NULL;
  }
  return g_bytes_new_take(data, got);
}

gboolean
vms_vm_read_state(VmsVm *vm, VmsGuestState *ret_state, GError **error)
{
  gsize len = G_STRUCT_OFFSET(VmsGuestState, scratch_pages) + sizeof(ret_state->scratch_pages);
  g_autoptr(GBytes) b = vms_vm_read_phys(vm, VMS_GUEST_STATE_ADDR, len, error);

  if (b == NULL)
    return FALSE;
  memset(ret_state, 0, sizeof(*ret_state));
  memcpy(ret_state, g_bytes_get_data(b, NULL), len);
  return TRUE;
}

gboolean
vms_vm_read_counter(VmsVm *vm, guint64 *ret_counter, GError **error)
{
  g_autoptr(GBytes) b = vms_vm_read_phys(vm, VMS_GUEST_COUNTER_ADDR, 8, error);

  if (b == NULL)
    return FALSE;
  memcpy(ret_counter, g_bytes_get_data(b, NULL), 8);
  *ret_counter = GUINT64_FROM_LE(*ret_counter);
  return TRUE;
}

gboolean
vms_vm_wait_counter_above(VmsVm *vm, guint64 above, guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
  guint64 counter = 0;

  for (;;) {
    if (!vms_vm_read_counter(vm, &counter, error))
      return vms_harness_said(FALSE, error, "vms_vm_wait_counter_above");
    if (counter > above)
      return TRUE;
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                  "guest counter still %" G_GUINT64_FORMAT " (<= %" G_GUINT64_FORMAT ") after %u ms",
                  counter, above, timeout_ms);
      return vms_harness_said(FALSE, error, "vms_vm_wait_counter_above");
    }
    g_usleep(1000);
  }
}

VmsTestQmp *
vms_vm_control(VmsVm *vm, guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
  g_autoptr(VmsTestQmp) ctl = vms_test_qmp_connect(vm->control_path, timeout_ms, error);

  if (ctl == NULL)
    return vms_harness_said(FALSE, error, "vms_vm_control"), NULL;
  for (;;) {
    g_autoptr(GError) local = NULL;
    g_autoptr(JsonNode) ret = vms_test_qmp_execute(ctl, "query-vmsnap", NULL, &local);
    if (ret != NULL)
      return g_steal_pointer(&ctl);
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "the plugin is not ready after %u ms: %s",
                  timeout_ms, local->message);
      return vms_harness_said(FALSE, error, "vms_vm_control"), NULL;
    }
    g_usleep(10 * 1000);
  }
}

gboolean
vms_vm_wait_running(VmsVm *vm, guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  for (;;) {
    g_autoptr(JsonNode) st = vms_test_qmp_execute(vm->qmp, "query-status", NULL, error);
    if (st == NULL)
      return FALSE;
    if (json_object_get_boolean_member_with_default(json_node_get_object(st), "running", FALSE))
      return TRUE;
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "the VM is not running after %u ms (%s)",
                  timeout_ms, json_object_get_string_member_with_default(json_node_get_object(st),
                                                                         "status", "?"));
      return FALSE;
    }
    g_usleep(2 * 1000);
  }
}

gboolean
vms_vm_serial_send(VmsVm *vm, const char *line, guint timeout_ms, GError **error)
{
  if (vm->serial == NULL) {
    /* Bytes that reach the UART while an incoming migration is still
     * loading are overwritten by the loaded UART state: the first command
     * of a restored VM would arrive truncated. */
    if (vm->qmp != NULL && !vms_vm_wait_running(vm, timeout_ms, error))
      return FALSE;
    vm->serial = vms_test_conn_connect(vm->serial_path, timeout_ms, error);
    if (vm->serial == NULL)
      return FALSE;
  }
  return vms_test_conn_write(vm->serial, line, error);
}

char *
vms_vm_guest_command(VmsVm *vm, const char *command, guint timeout_ms, GError **error)
{
  g_autofree char *line = g_strconcat(command, "\n", NULL);

  if (!vms_vm_serial_send(vm, line, timeout_ms, error))
    return NULL;
  for (;;) {
    char *reply = vms_test_conn_read_line(vm->serial, timeout_ms, error);
    if (reply == NULL)
      return NULL;
    if (g_str_has_prefix(reply, "ok") || g_str_has_prefix(reply, "bad") ||
        g_str_has_prefix(reply, "err"))
      return reply;
    g_free(reply); /* noise, e.g. a half line from before a restore */
  }
}
