/* vmsnap integration tests: test set-up, per-test directories and QEMU
 * processes (see harness.h). Every QEMU started here dies with the test
 * program: PR_SET_PDEATHSIG, an atexit() kill, and vms_vm_free(). */
#include "harness.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <gio/gunixoutputstream.h>

static GPtrArray *live_procs; /* GSubprocess*, not owned: the safety net */
static GPtrArray *temp_dirs;  /* char*, removed at exit */

static const char *
env_or(const char *name, const char *fallback)
{
  const char *v = g_getenv(name);
  return v != NULL && v[0] != '\0' ? v : fallback;
}

const char *
vms_test_qemu(void)
{
  return env_or("VMSNAP_QEMU", "qemu-system-x86_64");
}

const char *
vms_test_plugin(void)
{
  return env_or("VMSNAP_PLUGIN", "libvmsnap.so");
}

const char *
vms_test_guest(void)
{
  return env_or("VMSNAP_GUEST", "guest.elf");
}

const char *
vms_test_cli(void)
{
  return env_or("VMSNAP_CLI", "vmsnap");
}

gboolean
vms_test_have_plugin(void)
{
  return g_file_test(vms_test_plugin(), G_FILE_TEST_IS_REGULAR);
}

static void
safety_net(void)
{
  for (guint i = 0; live_procs != NULL && i < live_procs->len; i++)
    g_subprocess_force_exit(live_procs->pdata[i]);
  if (g_getenv("VMSNAP_TEST_KEEP") == NULL) {
    for (guint i = 0; temp_dirs != NULL && i < temp_dirs->len; i++)
      vms_test_rm_rf(temp_dirs->pdata[i]);
  }
}

void
vms_test_init(int *argc, char ***argv)
{
  g_test_init(argc, argv, NULL);
  vms_harness_init();
}

void
vms_harness_init(void)
{
  g_autofree char *qemu = g_find_program_in_path(vms_test_qemu());
  if (qemu == NULL) {
    g_printerr("SKIP: %s not found\n", vms_test_qemu());
    exit(77);
  }
  live_procs = g_ptr_array_new();
  temp_dirs = g_ptr_array_new_with_free_func(g_free);
  atexit(safety_net);
}

char *
vms_test_make_dir(const char *name)
{
  g_autofree char *tmpl = g_strdup_printf("%s/vmsnap-%s-XXXXXX",
                                          env_or("VMSNAP_TEST_TMPDIR", "/dev/shm"), name);
  char *dir = g_mkdtemp(tmpl);

  g_assert_nonnull(dir);
  if (temp_dirs != NULL)
    g_ptr_array_add(temp_dirs, g_strdup(dir));
  return g_steal_pointer(&tmpl);
}

void
vms_test_rm_rf(const char *path)
{
  g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);

  if (dir != NULL && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
    const char *name;
    while ((name = g_dir_read_name(dir)) != NULL) {
      g_autofree char *child = g_build_filename(path, name, NULL);
      vms_test_rm_rf(child);
    }
    (void)rmdir(path);
  } else {
    (void)unlink(path);
  }
}

char *
vms_test_read_file(const char *path)
{
  char *text = NULL;
  return g_file_get_contents(path, &text, NULL, NULL) ? text : NULL;
}

char *
vms_test_file_sha256(const char *path, GError **error)
{
  g_autoptr(GMappedFile) f = g_mapped_file_new(path, FALSE, error);

  if (f == NULL)
    return NULL;
  return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)g_mapped_file_get_contents(f),
                                     g_mapped_file_get_length(f));
}

static gint
compare_strings(gconstpointer a, gconstpointer b)
{
  return g_strcmp0(*(const char *const *)a, *(const char *const *)b);
}

char *
vms_test_dir_digest(const char *dir, GError **error)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, error);
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
  const char *name;

  if (d == NULL)
    return NULL;
  while ((name = g_dir_read_name(d)) != NULL) {
    g_autofree char *path = g_build_filename(dir, name, NULL);
    if (!g_file_test(path, G_FILE_TEST_IS_REGULAR) || g_file_test(path, G_FILE_TEST_IS_SYMLINK))
      continue;
    g_autofree char *sum = vms_test_file_sha256(path, error);
    if (sum == NULL)
      return NULL;
    g_ptr_array_add(lines, g_strdup_printf("%s %s\n", name, sum));
  }
  g_ptr_array_sort(lines, compare_strings);
  g_ptr_array_add(lines, NULL);
  return g_strjoinv("", (char **)lines->pdata);
}

/* ---- VMs ---- */

VmsVm *
vms_vm_new(const char *dir)
{
  VmsVm *vm = g_new0(VmsVm, 1);

  vm->mem_mib = 64;
  vm->smp = 1;
  vm->share = TRUE;
  vm->with_plugin = TRUE;
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
  if (live_procs != NULL)
    g_ptr_array_remove_fast(live_procs, vm->proc);
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
  add(argv, "-machine");
  add(argv, "pc,memory-backend=ram0");
  add(argv, "-kernel");
  add(argv, "%s", vms_test_guest());
  add(argv, "-chardev");
  add(argv, "file,id=dbg,path=%s", vm->debugcon_path);
  add(argv, "-device");
  add(argv, "isa-debugcon,iobase=0xe9,chardev=dbg");
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
    add(argv, "-plugin");
    add(argv, "%s,qmp=%s,control=%s,monitor=%s%s%s", vms_test_plugin(), vm->qmp_path,
        vm->control_path, vm->monitor_path, vm->plugin_extra != NULL ? "," : "",
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
  if (g_getenv("VMSNAP_TEST_VERBOSE") != NULL) {
    g_autofree char *cmd = g_strjoinv(" ", (char **)argv);
    g_test_message("spawn: %s", cmd);
  }
  vm->proc = g_subprocess_launcher_spawnv(launcher, argv, error);
  if (vm->proc == NULL)
    return FALSE;
  if (live_procs != NULL)
    g_ptr_array_add(live_procs, vm->proc);
  return TRUE;
}

char *
vms_vm_stderr(VmsVm *vm)
{
  char *text = vms_test_read_file(vm->stderr_path);
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
      return FALSE;
    }
    if (g_get_monotonic_time() >= deadline) {
      g_propagate_error(error, g_steal_pointer(&local));
      return FALSE;
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
      return FALSE;
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

/* ---- the guest ---- */

gsize
vms_vm_debugcon_size(VmsVm *vm)
{
  g_autofree char *text = vms_test_read_file(vm->debugcon_path);
  return text != NULL ? strlen(text) : 0;
}

gboolean
vms_vm_wait_debugcon(VmsVm *vm, const char *text, gsize from, guint timeout_ms, gsize *ret_end,
                     GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  for (;;) {
    g_autofree char *log = vms_test_read_file(vm->debugcon_path);
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
  return vms_vm_wait_debugcon(vm, VMS_GUEST_PREFIX "ready", 0, timeout_ms, NULL, error);
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
                              ", \"filename\": \"%s\"}", addr, len, path);
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
      return FALSE;
    if (counter > above)
      return TRUE;
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT,
                  "guest counter still %" G_GUINT64_FORMAT " (<= %" G_GUINT64_FORMAT ") after %u ms",
                  counter, above, timeout_ms);
      return FALSE;
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
    return NULL;
  for (;;) {
    g_autoptr(GError) local = NULL;
    g_autoptr(JsonNode) ret = vms_test_qmp_execute(ctl, "query-vmsnap", NULL, &local);
    if (ret != NULL)
      return g_steal_pointer(&ctl);
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "the plugin is not ready after %u ms: %s",
                  timeout_ms, local->message);
      return NULL;
    }
    g_usleep(10 * 1000);
  }
}

/* Polls query-status until the VM runs. */
static gboolean
wait_running(VmsVm *vm, guint timeout_ms, GError **error)
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

char *
vms_vm_guest_command(VmsVm *vm, const char *command, guint timeout_ms, GError **error)
{
  g_autofree char *line = g_strconcat(command, "\n", NULL);

  if (vm->serial == NULL) {
    /* Bytes that reach the UART while an incoming migration is still
     * loading are overwritten by the loaded UART state: the first command
     * of a restored VM would arrive truncated. */
    if (vm->qmp != NULL && !wait_running(vm, timeout_ms, error))
      return NULL;
    vm->serial = vms_test_conn_connect(vm->serial_path, timeout_ms, error);
    if (vm->serial == NULL)
      return NULL;
  }
  if (!vms_test_conn_write(vm->serial, line, error))
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

void
vms_test_cannot_run(const char *why)
{
  const char *ci = g_getenv("CI");

  if (ci != NULL && g_ascii_strcasecmp(ci, "true") == 0)
    g_test_fail_printf("cannot run under CI, where nothing may be skipped: %s", why);
  else
    g_test_skip(why);
}

JsonObject *
vms_test_query_ready(VmsTestQmp *ctl)
{
  for (int i = 0; i < 500; i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = vms_test_qmp_execute(ctl, "query-vmsnap", NULL, &error);
    JsonObject *o;

    g_assert_no_error(error);
    o = json_node_get_object(ret);
    if (!json_object_get_null_member(o, "memory"))
      return json_object_ref(o);
    g_usleep(10 * 1000);
  }
  g_error("the plugin never found the guest memory");
}
