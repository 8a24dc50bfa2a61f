/* vmsnap integration tests: the Linux test guest (see harness-linux.h). */
#include "harness-linux.h"

#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static VmsLinuxGuest *linux_guest;

static gboolean
run_builder(const char *arch, const char *dir, GError **error)
{
  const char *builder = g_getenv("VMSNAP_LINUX_GUEST_BUILDER");
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;

  if (builder == NULL) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_NOT_FOUND,
                "VMSNAP_LINUX_GUEST_BUILDER is not set (run the test through meson)");
    return FALSE;
  }
  const char *argv[] = {builder, arch, dir, NULL};
  if (!g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err, &status,
                    error))
    return FALSE;
  if (!g_spawn_check_wait_status(status, NULL)) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s %s %s failed: %s", builder, arch, dir,
                err);
    return FALSE;
  }
  return TRUE;
}

const VmsLinuxGuest *
vms_linux_guest(GError **error)
{
  const char *cache = g_getenv("VMSNAP_LINUX_GUEST_CACHE");
  const char *arch = g_getenv("VMSNAP_LINUX_GUEST_ARCH");
  g_autofree char *dir = NULL;
  g_autofree char *cmdline = NULL;

  if (linux_guest != NULL)
    return linux_guest;
  if (arch == NULL)
    arch = "amd64";
  dir = g_build_filename(cache != NULL ? cache : g_get_tmp_dir(), arch, NULL);
  if (!run_builder(arch, dir, error))
    return NULL;
  g_autofree char *cmdline_path = g_build_filename(dir, "cmdline", NULL);
  if (!g_file_get_contents(cmdline_path, &cmdline, NULL, error))
    return NULL;
  linux_guest = g_new0(VmsLinuxGuest, 1);
  linux_guest->kernel = g_build_filename(dir, "vmlinuz", NULL);
  linux_guest->initrd = g_build_filename(dir, "initrd.img", NULL);
  linux_guest->root = g_build_filename(dir, "root.ext4", NULL);
  linux_guest->cmdline = g_strdup(g_strstrip(cmdline));
  linux_guest->dir = g_steal_pointer(&dir);
  return linux_guest;
}

void
vms_linux_vm_setup(VmsVm *vm, const VmsLinuxGuest *guest)
{
  vm->mem_mib = 256;
  g_free(vm->kernel);
  vm->kernel = g_strdup(guest->kernel);
  g_free(vm->initrd);
  vm->initrd = g_strdup(guest->initrd);
  g_free(vm->append);
  vm->append = g_strdup(guest->cmdline);
  g_ptr_array_add(vm->extra_args, g_strdup("-no-reboot"));
  /* An entropy source: without one the guest's CRNG is not ready under TCG,
   * and a vmgenid change cannot reseed it. */
  g_ptr_array_add(vm->extra_args, g_strdup("-device"));
  g_ptr_array_add(vm->extra_args, g_strdup("virtio-rng-pci"));
}

void
vms_linux_add_disk(VmsVm *vm, const char *id, const char *path, const char *format)
{
  g_ptr_array_add(vm->extra_args, g_strdup("-drive"));
  g_ptr_array_add(vm->extra_args,
                  g_strdup_printf("file=%s,format=%s,if=none,id=%s", path, format, id));
  g_ptr_array_add(vm->extra_args, g_strdup("-device"));
  g_ptr_array_add(vm->extra_args, g_strdup_printf("virtio-blk-pci,drive=%s,id=%s-dev", id, id));
}

gboolean
vms_linux_copy_root(const VmsLinuxGuest *guest, const char *path, GError **error)
{
  g_autoptr(GFile) src = g_file_new_for_path(guest->root);
  g_autoptr(GFile) dst = g_file_new_for_path(path);

  return g_file_copy(src, dst, G_FILE_COPY_OVERWRITE, NULL, NULL, NULL, error);
}

gboolean
vms_linux_wait_boot(VmsVm *vm, guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  g_return_val_if_fail(vm->serial == NULL, FALSE);
  vm->serial = vms_test_conn_connect(vm->serial_path, VMS_TEST_TIMEOUT_MS, error);
  if (vm->serial == NULL)
    return FALSE;
  for (;;) {
    gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
    g_autofree char *line = NULL;
    if (left_ms <= 0) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                  "the Linux guest did not print 'vmsnap-guest: ready' within %u ms", timeout_ms);
      return FALSE;
    }
    line = vms_test_conn_read_line(vm->serial, (guint)left_ms, error);
    if (line == NULL)
      return FALSE;
    if (strstr(line, "vmsnap-guest: ready") != NULL)
      return TRUE;
    if (strstr(line, "vmsnap-guest:") != NULL) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "the Linux guest failed to boot: %s", line);
      return FALSE;
    }
  }
}

/* Reads the agent's answer to request @id: output lines up to
 * "@@vmsnap-done <id> <status>". Lines of other requests are dropped. */
static char *
read_answer(VmsVm *vm, const char *id, int *ret_status, guint timeout_ms, GError **error)
{
  g_autoptr(GString) out = g_string_new(NULL);
  g_autofree char *done = g_strdup_printf("@@vmsnap-done %s ", id);

  for (;;) {
    g_autofree char *line = vms_test_conn_read_line(vm->serial, timeout_ms, error);
    if (line == NULL)
      return NULL;
    if (g_str_has_prefix(line, done)) {
      *ret_status = atoi(line + strlen(done));
      return g_string_free(g_steal_pointer(&out), FALSE);
    }
    if (g_str_has_prefix(line, "@@vmsnap-done ")) {
      g_string_truncate(out, 0); /* an older request's answer */
      continue;
    }
    g_string_append(out, line);
    g_string_append_c(out, '\n');
  }
}

char *
vms_linux_run(VmsVm *vm, const char *command, int *ret_status, guint timeout_ms, GError **error)
{
  static guint serial_no;
  g_autofree char *id = g_strdup_printf("r%u-%u", (guint)getpid(), ++serial_no);
  g_autofree char *line = g_strdup_printf("%s %s\n", id, command);

  if (!vms_vm_serial_send(vm, line, timeout_ms, error))
    return NULL;
  return read_answer(vm, id, ret_status, timeout_ms, error);
}

char *
vms_linux_run_ok(VmsVm *vm, const char *command)
{
  g_autoptr(GError) error = NULL;
  int status = -1;
  char *out = vms_linux_run(vm, command, &status, 60000, &error);

  g_assert_no_error(error);
  if (status != 0)
    g_error("guest command '%s' exited %d: %s", command, status, out);
  return out;
}

gboolean
vms_linux_halt(VmsVm *vm, guint timeout_ms, GError **error)
{
  int status = 0;
  g_autofree char *line = g_strdup_printf("h%u halt-clean\n", (guint)getpid());

  if (vm->serial == NULL) {
    g_autofree char *out = vms_linux_run(vm, "true", &status, timeout_ms, error);
    if (out == NULL)
      return FALSE;
  }
  if (!vms_test_conn_write(vm->serial, line, error))
    return FALSE;
  return vms_vm_wait_exit(vm, timeout_ms, &status, error);
}
