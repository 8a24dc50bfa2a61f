/* The plugin inside QEMU: it loads, reports vCPUs and memory through
 * query-vmsnap and the monitor, refuses bad arguments at start, speaks QMP
 * robustly on the control socket, and survives clients that hang up. */
#include "plugin-fixture.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
setup(Fixture *f, gconstpointer data)
{
  plugin_vm_setup(f, "plugin");
}

static void
test_query(Fixture *f, gconstpointer data)
{
  g_autoptr(JsonObject) o = vms_test_query_ready(f->ctl);
  JsonObject *mem = json_object_get_object_member(o, "memory");
  struct stat st;

  JsonObject *greeting = vms_test_qmp_greeting(f->ctl);
  JsonObject *version = json_object_get_object_member(
      json_object_get_object_member(greeting, "QMP"), "version");

  /* QEMU's greeting shape, which QMP client libraries parse */
  g_assert_true(json_object_has_member(json_object_get_object_member(version, "qemu"), "major"));
  g_assert_true(g_str_has_prefix(json_object_get_string_member(version, "package"), "vmsnap "));
  g_assert_cmpint(json_object_get_int_member(o, "vcpus"), ==, 2);
  /* TCG here; the qmpvcpus setup (tests/meson.build) must reach the QMP path */
  g_assert_cmpstr(json_object_get_string_member(o, "accelerator"), ==, "tcg");
  g_assert_cmpint(json_object_get_boolean_member(o, "vcpu-events"), ==,
                  g_strcmp0(g_getenv("VMSNAP_TEST_PLUGIN_ARGS"), "vcpu-events=off") != 0);
  g_assert_true(json_object_get_boolean_member(o, "running"));
  g_assert_true(json_object_get_null_member(o, "restored-from"));
  g_assert_nonnull(json_object_get_string_member(o, "version"));
  g_assert_cmpstr(json_object_get_string_member(mem, "path"), ==, f->vm->mem_path);
  g_assert_cmpint(json_object_get_int_member(mem, "size"), ==, (gint64)MEM_MIB << 20);
  g_assert_cmpint(json_object_get_int_member(mem, "page-size"), ==, 4096);
  g_assert_true(json_object_get_boolean_member(mem, "shared"));
  /* both sockets are private to this user */
  g_assert_cmpint(stat(f->vm->control_path, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 0777, ==, 0600);
  g_assert_cmpint(stat(f->vm->monitor_path, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 0777, ==, 0600);
}

static void
test_monitor(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ready = vms_test_query_ready(f->ctl);
  g_autoptr(VmsTestMonitor) mon = vms_test_monitor_connect(f->vm->monitor_path,
                                                           VMS_TEST_TIMEOUT_MS, &error);
  g_autofree char *help = NULL, *status = NULL, *bad = NULL, *save = NULL, *info = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-monitor", NULL);
  g_autofree char *line = g_strdup_printf("save %s memory=copy then=resume", snap);
  g_autofree char *info_line = g_strdup_printf("info snapshot %s", snap);
  g_autofree char *manifest = g_build_filename(snap, "manifest.bin", NULL);

  g_assert_no_error(error);
  help = vms_test_monitor_command(mon, "help", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_nonnull(strstr(help, "info status"));
  g_assert_nonnull(strstr(help, "save DIR"));
  status = vms_test_monitor_command(mon, "info status", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_nonnull(strstr(status, "2 vCPUs"));
  g_assert_nonnull(strstr(status, f->vm->mem_path));
  g_assert_nonnull(strstr(status, "shared"));
  bad = vms_test_monitor_command(mon, "save", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_true(g_str_has_prefix(bad, "error: "));
  g_clear_pointer(&bad, g_free);
  /* the same argument check as the control socket */
  bad = vms_test_monitor_command(mon, "save /x memory=bogus", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_nonnull(strstr(bad, "Parameter 'memory'"));
  save = vms_test_monitor_command(mon, line, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_nonnull(strstr(save, "snapshot saved in"));
  g_assert_true(g_file_test(manifest, G_FILE_TEST_IS_REGULAR));
  info = vms_test_monitor_command(mon, info_line, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  /* for people: kebab-case words, dates and sizes, no raw JSON */
  g_assert_true(g_regex_match_simple("^architecture +x86_64$", info, G_REGEX_MULTILINE, 0));
  g_assert_true(g_regex_match_simple("^memory capture +COPY$", info, G_REGEX_MULTILINE, 0));
  g_assert_true(g_regex_match_simple("^created at +20[0-9-]+ [0-9:]+ UTC$", info,
                                     G_REGEX_MULTILINE, 0));
  g_assert_null(strstr(info, "{"));
}

/* Each reply is an error and the connection still answers afterwards. */
static void
test_control_robust(Fixture *f, gconstpointer data)
{
  static const char *const bad[] = {
    "{\"execute\": \"query-vmsnap\"",      /* completed by the next line's brace */
    "}",                                   /* ... so this closes it: parse error */
    "not json at all",
    "[1, 2, 3]",
    "{\"execute\": \"no-such-command\"}",
    "{\"execute\": \"snapshot-save\", \"arguments\": {\"dir\": 42}}",
    "{\"execute\": \"snapshot-save\", \"arguments\": {\"dir\": \"/x\", \"memory\": \"fast\"}}",
    "{\"execute\": \"snapshot-save\", \"arguments\": {\"dir\": \"/x\", \"extra\": \"1\"}}",
    "{\"execute\": \"snapshot-save\"}",
    "{\"execute\": \"snapshot-info\", \"arguments\": \"dir\"}",
  };
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = NULL;

  for (gsize i = 1; i < G_N_ELEMENTS(bad); i++) {
    g_autoptr(JsonObject) reply = NULL;
    if (i == 1) {
      g_assert_true(vms_test_qmp_send_raw(f->ctl, "{\"execute\": ", &error));
      g_assert_true(vms_test_qmp_send_raw(f->ctl, "}", &error));
    } else {
      g_assert_true(vms_test_qmp_send_raw(f->ctl, bad[i], &error));
    }
    g_assert_no_error(error);
    reply = vms_test_qmp_read_reply(f->ctl, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_no_error(error);
    g_test_message("%s -> %s", bad[i],
                   json_object_get_string_member(json_object_get_object_member(reply, "error"),
                                                 "desc"));
    g_assert_true(json_object_has_member(reply, "error"));
  }
  ret = vms_test_qmp_execute(f->ctl, "query-vmsnap", NULL, &error);
  g_assert_no_error(error);
  g_assert_nonnull(ret);
}

/* A client that sends a save and hangs up before the reply: the save still
 * completes, the VM is fine, other clients are served. */
static void
test_client_gone(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ready = vms_test_query_ready(f->ctl);
  g_autofree char *snap = g_build_filename(f->dir, "snap-gone", NULL);
  g_autofree char *manifest = g_build_filename(snap, "manifest.bin", NULL);
  g_autofree char *cmd = g_strdup_printf("{\"execute\": \"snapshot-save\", \"arguments\": "
                                         "{\"dir\": \"%s\", \"memory\": \"copy\", "
                                         "\"then\": \"resume\"}}", snap);
  g_autoptr(VmsTestQmp) gone = vms_test_qmp_connect(f->vm->control_path, VMS_TEST_TIMEOUT_MS,
                                                    &error);
  g_autoptr(JsonObject) done = NULL;
  guint64 c1 = 0;

  g_assert_no_error(error);
  g_assert_true(vms_test_qmp_send_raw(gone, cmd, &error));
  g_clear_pointer(&gone, vms_test_qmp_free);
  done = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_COMPLETED", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_true(g_file_test(manifest, G_FILE_TEST_IS_REGULAR));
  g_assert_true(vms_vm_read_counter(f->vm, &c1, &error));
  g_assert_true(vms_vm_wait_counter_above(f->vm, c1 + 1000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
}

/* A client that sits idle longer than the server's send timeout (10 s) keeps
 * its connection, on both sockets. */
static void
test_idle_client(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestMonitor) mon = vms_test_monitor_connect(f->vm->monitor_path,
                                                           VMS_TEST_TIMEOUT_MS, &error);
  g_autoptr(JsonNode) ret = NULL;
  g_autofree char *status = NULL;

  g_assert_no_error(error);
  g_usleep(11 * G_USEC_PER_SEC);
  ret = vms_test_qmp_execute(f->ctl, "query-vmsnap", NULL, &error);
  g_assert_no_error(error);
  status = vms_test_monitor_command(mon, "info status", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_nonnull(strstr(status, "vCPUs"));
}

/* `echo ... | socat - UNIX-CONNECT:...`: the client shuts down its sending
 * side right after its commands. It still gets every answer, in order (the
 * monitor runs lines one at a time, like a shell), then EOF. */
static void
test_half_close(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ready = vms_test_query_ready(f->ctl);
  g_autofree char *snap_m = g_build_filename(f->dir, "snap-hm", NULL);
  g_autofree char *snap_c = g_build_filename(f->dir, "snap-hc", NULL);
  g_autofree char *lines = g_strdup_printf("save %s memory=copy then=resume\ninfo status", snap_m);
  g_autofree char *qmp = g_strdup_printf(
      "{\"execute\": \"qmp_capabilities\"}\n"
      "{\"execute\": \"snapshot-save\", \"arguments\": {\"dir\": \"%s\", \"memory\": \"copy\", "
      "\"then\": \"resume\"}, \"id\": \"s\"}\n", snap_c);
  g_autoptr(VmsTestConn) mon = vms_test_conn_connect(f->vm->monitor_path, VMS_TEST_TIMEOUT_MS,
                                                     &error);
  g_autoptr(VmsTestConn) ctl = vms_test_conn_connect(f->vm->control_path, VMS_TEST_TIMEOUT_MS,
                                                     &error);
  g_autofree char *saved = NULL, *status = NULL, *greeting = NULL, *caps = NULL, *reply = NULL;
  g_autofree char *end = NULL;

  g_assert_no_error(error);
  g_assert_true(vms_test_conn_write(mon, lines, &error));
  g_assert_true(g_socket_shutdown(vms_test_conn_socket(mon), FALSE, TRUE, &error));
  g_free(vms_test_conn_read_until(mon, VMS_TEST_MONITOR_PROMPT, VMS_TEST_TIMEOUT_MS, &error));
  saved = vms_test_conn_read_until(mon, VMS_TEST_MONITOR_PROMPT, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_nonnull(strstr(saved, "snapshot saved in"));
  status = vms_test_conn_read_until(mon, VMS_TEST_MONITOR_PROMPT, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_nonnull(strstr(status, "vCPUs"));
  end = vms_test_conn_read_line(mon, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_null(end); /* then the console closes */
  g_clear_error(&error);

  greeting = vms_test_conn_read_line(ctl, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_true(vms_test_conn_write(ctl, qmp, &error));
  g_assert_true(g_socket_shutdown(vms_test_conn_socket(ctl), FALSE, TRUE, &error));
  caps = vms_test_conn_read_line(ctl, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_nonnull(strstr(caps, "\"return\""));
  do {
    g_free(reply);
    reply = vms_test_conn_read_line(ctl, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_no_error(error);
  } while (strstr(reply, "\"event\"") != NULL);
  g_assert_nonnull(strstr(reply, "\"memory-capture\""));
  g_assert_nonnull(strstr(reply, "\"id\":\"s\""));
}

/* Anonymous guest RAM cannot be left out of state.bin: a save is refused
 * with the QEMU options to use, and the VM keeps running. */
static void
test_anonymous_memory(void)
{
  g_autofree char *dir = vms_test_make_dir("anon");
  g_autoptr(VmsVm) vm = vms_vm_new(dir);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonNode) status = NULL;
  g_autofree char *snap = g_build_filename(dir, "snap", NULL);

  vm->mem_anonymous = TRUE;
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  ctl = vms_test_qmp_connect(vm->control_path, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  ret = vms_test_qmp_executef(ctl, "snapshot-save", &error, "{\"dir\": \"%s\"}", snap);
  g_assert_null(ret);
  g_test_message("%s", error->message);
  g_assert_nonnull(strstr(error->message, "memory-backend-file"));
  g_assert_nonnull(strstr(error->message, "share=on"));
  g_assert_false(g_file_test(snap, G_FILE_TEST_EXISTS));
  g_clear_error(&error);
  status = vms_test_qmp_execute(vm->qmp, "query-status", NULL, &error);
  g_assert_no_error(error);
  g_assert_true(json_object_get_boolean_member(json_node_get_object(status), "running"));
  g_clear_pointer(&vm, vms_vm_free);
  vms_test_rm_rf(dir);
}

/* What a peer of another uid reads from @path (socat as nobody). */
static char *
read_as_nobody(const char *path)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *target = g_strdup_printf("UNIX-CONNECT:%s", path);
  g_autoptr(GSubprocess) p = g_subprocess_new(
      G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE |
          G_SUBPROCESS_FLAGS_STDERR_SILENCE,
      &error, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "socat", "-T", "3",
      "STDIO", target, NULL);
  char *out = NULL;

  g_assert_no_error(error);
  g_assert_true(g_subprocess_communicate_utf8(p, "", NULL, &out, NULL, &error));
  g_assert_no_error(error);
  return out;
}

/* Both sockets are 0600; even opened up to everyone (chmod 0666), a peer of
 * another uid is dropped on accept (SO_PEERCRED): it reads one line saying
 * why (a QMP error object / a text line), no greeting, and QEMU's stderr
 * names its uid. */
static void
test_other_uid(Fixture *f, gconstpointer data)
{
  g_autofree char *setpriv = g_find_program_in_path("setpriv");
  g_autofree char *socat = g_find_program_in_path("socat");
  g_autofree char *ctl = NULL, *mon = NULL, *err = NULL;

  if (getuid() != 0 || setpriv == NULL || socat == NULL) {
    vms_test_cannot_run("needs root, setpriv and socat to act as another user");
    return;
  }
  g_assert_cmpint(chmod(f->dir, 0711), ==, 0);
  g_assert_cmpint(chmod(f->vm->control_path, 0666), ==, 0);
  g_assert_cmpint(chmod(f->vm->monitor_path, 0666), ==, 0);
  ctl = read_as_nobody(f->vm->control_path);
  mon = read_as_nobody(f->vm->monitor_path);
  g_assert_true(g_str_has_prefix(ctl, "{\"error\": {\"class\": \"GenericError\""));
  g_assert_nonnull(strstr(ctl, "allow-uids"));
  g_assert_null(strstr(ctl, "\"QMP\""));
  g_assert_cmpstr(strchr(ctl, '\n'), ==, ctl + strlen(ctl) - 1); /* one line */
  g_assert_true(g_str_has_prefix(mon, "error: "));
  g_assert_null(strstr(mon, "(vmsnap)"));
  err = vms_vm_stderr(f->vm);
  g_assert_nonnull(strstr(err, "refused a peer of uid 65534"));
}

/* ---- bad arguments stop QEMU at start, naming the argument ---- */

static void
check_bad_args(const char *plugin_args, const char *expect)
{
  g_autofree char *dir = vms_test_make_dir("badarg");
  g_autoptr(VmsVm) vm = vms_vm_new(dir);
  g_autoptr(GPtrArray) argv = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *err = NULL;
  int status = 0;

  vm->with_plugin = FALSE;
  argv = vms_vm_build_argv(vm);
  g_ptr_array_remove_index(argv, argv->len - 1); /* the NULL terminator */
  g_ptr_array_add(argv, g_strdup("-plugin"));
  g_ptr_array_add(argv, g_strdup_printf("%s%s", vms_test_plugin(), plugin_args));
  g_ptr_array_add(argv, NULL);
  g_assert_true(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  err = vms_vm_stderr(vm);
  g_test_message("%s -> status %d: %s", plugin_args, status, err);
  g_assert_cmpint(status, !=, 0);
  g_assert_nonnull(strstr(err, expect));
  vms_test_rm_rf(dir);
}

static void
test_bad_args(void)
{
  check_bad_args(",control=/tmp/x", "qmp=");
  check_bad_args(",qmp=/tmp/q.sock,bogus=1", "bogus=");
  check_bad_args(",qmp=/tmp/q.sock,resume=maybe,restore=/nonexistent", "resume=maybe");
  check_bad_args(",qmp=/tmp/q.sock,mem=", "mem=");
  check_bad_args(",qmp=/tmp/q.sock,vcpu-events=maybe", "vcpu-events=maybe");
  check_bad_args(",qmp=/tmp/q.sock,vcpu-events=on,vcpu-events=off", "vcpu-events= given twice");
  check_bad_args(",qmp=/tmp/q.sock,justaword", "justaword");
  check_bad_args(",qmp=/tmp/q.sock,control=/nonexistent-dir/c.sock", "control=");
}

int
main(int argc, char **argv)
{
  vms_test_init_with_plugin(&argc, &argv);
  g_test_add("/plugin/query", Fixture, NULL, setup, test_query, teardown);
  g_test_add("/plugin/monitor", Fixture, NULL, setup, test_monitor, teardown);
  g_test_add("/plugin/control-robust", Fixture, NULL, setup, test_control_robust, teardown);
  g_test_add("/plugin/client-gone", Fixture, NULL, setup, test_client_gone, teardown);
  g_test_add("/plugin/other-uid", Fixture, NULL, setup, test_other_uid, teardown);
  g_test_add("/plugin/half-close", Fixture, NULL, setup, test_half_close, teardown);
  g_test_add("/plugin/idle-client", Fixture, NULL, setup, test_idle_client, teardown);
  g_test_add_func("/plugin/anonymous-memory", test_anonymous_memory);
  g_test_add_func("/plugin/bad-args", test_bad_args);
  return g_test_run();
}
