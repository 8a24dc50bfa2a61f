/* vmsnap integration tests: QEMU processes — command lines, spawning,
 * connecting, reaping (see harness.h). Every QEMU started here dies with the
 * test program: PR_SET_PDEATHSIG, an atexit() kill, and vms_vm_free(). */
#include "harness.h"
#include "harness-private.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gio/gunixoutputstream.h>

/* ---- VMs ---- */

VmsVm *
vms_vm_new(const char *dir)
{
  VmsVm *vm = g_new0(VmsVm, 1);

  vm->mem_mib = 64;
  vm->smp = 1;
  vm->share = TRUE;
  vm->with_plugin = TRUE;
  vm->arch = vms_test_arch();
  vm->extra_args = g_ptr_array_new_with_free_func(g_free);
  vm->dir = g_strdup(dir);
  vm->mem_path = g_build_filename(dir, "guest.ram", NULL);
  vm->qmp_path = g_build_filename(dir, "plugin-qmp.sock", NULL);
  vm->control_path = g_build_filename(dir, "control.sock", NULL);
  vm->monitor_path = g_build_filename(dir, "monitor.sock", NULL);
  vm->test_qmp_path = g_build_filename(dir, "test-qmp.sock", NULL);
  vm->serial_path = g_build_filename(dir, "serial.sock", NULL);
  vm->debugcon_path = g_build_filename(dir, "debugcon.log", NULL);
  vm->stderr_path = g_build_filename(dir, "qemu.stderr", NULL);
  return vm;
}

void
vms_vm_kill(VmsVm *vm)
{
  g_clear_pointer(&vm->serial, vms_test_conn_free);
  g_clear_pointer(&vm->qmp, vms_test_qmp_free);
  if (vm->proc == NULL)
    return;
  g_subprocess_force_exit(vm->proc);
  (void)g_subprocess_wait(vm->proc, NULL, NULL);
  if (vms_harness_live_procs != NULL)
    g_ptr_array_remove_fast(vms_harness_live_procs, vm->proc);
  g_clear_object(&vm->proc);
}

void
vms_vm_free(VmsVm *vm)
{
  if (vm == NULL)
    return;
  vms_vm_kill(vm);
  g_clear_pointer(&vm->argv, g_ptr_array_unref);
  g_ptr_array_unref(vm->extra_args);
  g_free(vm->plugin_extra);
  g_free(vm->kernel);
  g_free(vm->initrd);
  g_free(vm->append);
  g_free(vm->dir);
  g_free(vm->mem_path);
  g_free(vm->qmp_path);
  g_free(vm->control_path);
  g_free(vm->monitor_path);
  g_free(vm->test_qmp_path);
  g_free(vm->serial_path);
  g_free(vm->debugcon_path);
  g_free(vm->stderr_path);
  g_free(vm);
}

static void
add(GPtrArray *argv, const char *format, ...) G_GNUC_PRINTF(2, 3);

static void
add(GPtrArray *argv, const char *format, ...)
{
  va_list ap;
  va_start(ap, format);
  g_ptr_array_add(argv, g_strdup_vprintf(format, ap));
  va_end(ap);
}

/* The machine, the guest and its debug console (tests/guest/guest-abi.h). */
static void
add_target(GPtrArray *argv, VmsVm *vm)
{
  gboolean arm = vms_vm_is_aarch64(vm);

  add(argv, "-machine");
  add(argv, "%s,memory-backend=ram0", arm ? "virt" : "pc");
  if (arm) {
    add(argv, "-cpu");
    add(argv, "cortex-a57");
  }
  add(argv, "-kernel");
  add(argv, "%s", vm->kernel != NULL ? vm->kernel : vms_test_guest());
  if (vm->initrd != NULL) {
    add(argv, "-initrd");
    add(argv, "%s", vm->initrd);
  }
  if (vm->append != NULL) {
    add(argv, "-append");
    add(argv, "%s", vm->append);
  }
  add(argv, "-chardev");
  add(argv, "file,id=dbg,path=%s", vm->debugcon_path);
  if (arm) {
    add(argv, "-semihosting-config");
    add(argv, "enable=on,target=native,chardev=dbg");
  } else {
    add(argv, "-device");
    add(argv, "isa-debugcon,iobase=0xe9,chardev=dbg");
  }
}

gboolean
vms_vm_is_aarch64(const VmsVm *vm)
{
  return g_str_equal(vm->arch, "aarch64");
}

GPtrArray *
vms_vm_build_argv(VmsVm *vm)
{
  GPtrArray *argv = g_ptr_array_new_with_free_func(g_free);

  add(argv, "%s", vms_test_qemu());
  add(argv, "-accel");
  add(argv, "tcg");
  add(argv, "-nodefaults");
  add(argv, "-no-user-config");
  add(argv, "-display");
  add(argv, "none");
  add(argv, "-m");
  add(argv, "%uM", vm->mem_mib);
  add(argv, "-smp");
  add(argv, "%u", vm->smp);
  add(argv, "-object");
  if (vm->mem_anonymous)
    add(argv, "memory-backend-ram,id=ram0,size=%uM", vm->mem_mib);
  else
    add(argv, "memory-backend-file,id=ram0,size=%uM,mem-path=%s,share=%s", vm->mem_mib,
        vm->mem_path, vm->share ? "on" : "off");
  add_target(argv, vm);
  add(argv, "-chardev");
  add(argv, "socket,id=ser0,path=%s,server=on,wait=off", vm->serial_path);
  add(argv, "-serial");
  add(argv, "chardev:ser0");
  add(argv, "-qmp");
  add(argv, "unix:%s,server=on,wait=off", vm->test_qmp_path);
  if (vm->with_plugin) {
    add(argv, "-chardev");
    add(argv, "socket,id=vmsnap-qmp,path=%s,server=on,wait=off", vm->qmp_path);
    add(argv, "-mon");
    add(argv, "chardev=vmsnap-qmp,mode=control");
    /* VMSNAP_TEST_PLUGIN_ARGS: for a whole run (meson test --setup qmpvcpus). */
    const char *run_extra = g_getenv("VMSNAP_TEST_PLUGIN_ARGS");
    add(argv, "-plugin");
    add(argv, "%s,qmp=%s,control=%s,monitor=%s%s%s%s%s", vms_test_plugin(), vm->qmp_path,
        vm->control_path, vm->monitor_path, run_extra != NULL ? "," : "",
        run_extra != NULL ? run_extra : "", vm->plugin_extra != NULL ? "," : "",
        vm->plugin_extra != NULL ? vm->plugin_extra : "");
  }
  if (vm->incoming_defer) {
    add(argv, "-incoming");
    add(argv, "defer");
  }
  for (guint i = 0; i < vm->extra_args->len; i++)
    add(argv, "%s", (const char *)vm->extra_args->pdata[i]);
  g_ptr_array_add(argv, NULL);
  return argv;
}

static void
child_setup(gpointer user_data)
{
  (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
  /* The parent may already be gone between fork and prctl. */
  if (getppid() == 1)
    _exit(127);
}

gboolean
vms_vm_spawn(VmsVm *vm, const char *const *argv, GError **error)
{
  g_autoptr(GSubprocessLauncher) launcher = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
  int fd = open(vm->stderr_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);

  g_return_val_if_fail(vm->proc == NULL, FALSE);
  if (fd < 0) {
    g_set_error(error, G_IO_ERROR, g_io_error_from_errno(errno), "open %s: %s", vm->stderr_path,
                g_strerror(errno));
    return FALSE;
  }
  g_subprocess_launcher_take_stdout_fd(launcher, fcntl(fd, F_DUPFD_CLOEXEC, 0));
  g_subprocess_launcher_take_stderr_fd(launcher, fd);
  g_subprocess_launcher_set_child_setup(launcher, child_setup, NULL, NULL);
  vms_harness_sanitizer_env(launcher);
  if (g_getenv("VMSNAP_TEST_VERBOSE") != NULL) {
    g_autofree char *cmd = g_strjoinv(" ", (char **)argv);
    g_test_message("spawn: %s", cmd);
  }
  g_autofree const char **run = g_memdup2(argv, (g_strv_length((char **)argv) + 1) * sizeof(char *));
  run[0] = vms_harness_sanitizer_program(argv[0]);
  vm->proc = g_subprocess_launcher_spawnv(launcher, run, error);
  if (vm->proc == NULL)
    return vms_harness_said(FALSE, error, "vms_vm_spawn");
  if (vms_harness_live_procs != NULL)
    g_ptr_array_add(vms_harness_live_procs, vm->proc);
  return TRUE;
}

char *
vms_vm_stderr(VmsVm *vm)
{
  char *text = vms_test_read_text(vm->stderr_path);
  return text != NULL ? text : g_strdup("");
}

gboolean
vms_vm_connect(VmsVm *vm, guint timeout_ms, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  /* Retry in short slices so a QEMU that dies at start fails fast. */
  while (vm->qmp == NULL) {
    g_autoptr(GError) local = NULL;
    vm->qmp = vms_test_qmp_connect(vm->test_qmp_path, 200, &local);
    if (vm->qmp != NULL)
      break;
    if (vm->proc != NULL && g_subprocess_get_identifier(vm->proc) == NULL) {
      g_autofree char *err = vms_vm_stderr(vm);
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "QEMU exited at start: %s", err);
      return vms_harness_said(FALSE, error, "vms_vm_connect");
    }
    if (g_get_monotonic_time() >= deadline) {
      g_propagate_error(error, g_steal_pointer(&local));
      return vms_harness_said(FALSE, error, "vms_vm_connect");
    }
  }
  return TRUE;
}

gboolean
vms_vm_start(VmsVm *vm, GError **error)
{
  g_clear_pointer(&vm->argv, g_ptr_array_unref);
  vm->argv = vms_vm_build_argv(vm);
  if (!vms_vm_spawn(vm, (const char *const *)vm->argv->pdata, error))
    return FALSE;
  return vms_vm_connect(vm, VMS_TEST_TIMEOUT_MS, error);
}

static void
wait_done(GObject *source, GAsyncResult *result, gpointer user_data)
{
  gboolean *done = user_data;
  (void)g_subprocess_wait_finish(G_SUBPROCESS(source), result, NULL);
  *done = TRUE;
}

gboolean
vms_vm_wait_exit(VmsVm *vm, guint timeout_ms, int *ret_status, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
  gboolean done = FALSE;

  g_return_val_if_fail(vm->proc != NULL, FALSE);
  g_subprocess_wait_async(vm->proc, NULL, wait_done, &done);
  while (!done) {
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "QEMU still runs after %u ms", timeout_ms);
      /* The pending wait holds &done: finish it by killing. */
      g_subprocess_force_exit(vm->proc);
      while (!done)
        g_main_context_iteration(NULL, TRUE);
      return vms_harness_said(FALSE, error, "vms_vm_wait_exit");
    }
    g_main_context_iteration(NULL, FALSE);
    g_usleep(5 * 1000);
  }
  if (g_subprocess_get_if_signaled(vm->proc))
    *ret_status = 128 + g_subprocess_get_term_sig(vm->proc);
  else
    *ret_status = g_subprocess_get_exit_status(vm->proc);
  return TRUE;
}

int
vms_test_run_cli(const char *const *args, char **ret_out, char **ret_err)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  int status = -1;

  g_ptr_array_add(argv, (gpointer)vms_test_cli());
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add(argv, (gpointer)args[i]);
  g_ptr_array_add(argv, NULL);
  g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                             ret_out, ret_err, &status, &error));
  g_assert_no_error(error);
  return g_spawn_check_wait_status(status, NULL) ? 0 : WEXITSTATUS(status);
}
