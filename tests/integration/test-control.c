/* The control socket speaks QMP as QEMU does (doc/spec.md section 11):
 * the greeting names the QEMU the plugin runs in, unknown commands are
 * CommandNotFound, query-commands lists the table, every key is
 * kebab-case, a number prints the same in an event and a reply; malformed
 * input gets the error QEMU's own QMP gives for it (sent to both and
 * compared); Debian's Go QMP library works unchanged; allow-uids= and
 * allow-gid= let other users in, and a refused peer is told why. */
#include "plugin-fixture.h"

#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
setup(Fixture *f, gconstpointer data)
{
  plugin_vm_setup(f, "control");
}

/* A raw QMP line reader on @path: greeting read, capabilities negotiated
 * unless @negotiate is FALSE. */
static VmsTestConn *
raw_qmp(const char *path, gboolean negotiate)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestConn) c = vms_test_conn_connect(path, VMS_TEST_TIMEOUT_MS, &error);
  g_autofree char *greeting = NULL, *caps = NULL;

  g_assert_no_error(error);
  greeting = vms_test_conn_read_line(c, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_true(g_str_has_prefix(greeting, "{\"QMP\""));
  if (negotiate) {
    g_assert_true(vms_test_conn_write(c, "{\"execute\": \"qmp_capabilities\"}\n", &error));
    caps = vms_test_conn_read_line(c, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_no_error(error);
    g_assert_nonnull(strstr(caps, "\"return\""));
  }
  return g_steal_pointer(&c);
}

/* Sends @text and returns the next line that is not an event; the events
 * read meanwhile go to @ret_events (nullable). */
static char *
ask_events(VmsTestConn *c, const char *text, GPtrArray *ret_events)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *line = g_strconcat(text, "\n", NULL);

  g_assert_true(vms_test_conn_write(c, line, &error));
  for (;;) {
    char *reply = vms_test_conn_read_line(c, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_no_error(error);
    if (strstr(reply, "\"event\":") == NULL)
      return reply;
    if (ret_events != NULL)
      g_ptr_array_add(ret_events, reply);
    else
      g_free(reply);
  }
}

static char *
ask_raw(VmsTestConn *c, const char *text)
{
  return ask_events(c, text, NULL);
}

static JsonObject *
parse(const char *text)
{
  g_autoptr(JsonParser) p = json_parser_new();

  g_assert_true(json_parser_load_from_data(p, text, -1, NULL));
  return json_object_ref(json_node_get_object(json_parser_get_root(p)));
}

static void
test_greeting(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) qemu = vms_test_qmp_execute(f->vm->qmp, "query-version", NULL, &error);
  JsonObject *version = json_object_get_object_member(
      json_object_get_object_member(vms_test_qmp_greeting(f->ctl), "QMP"), "version");
  JsonObject *ours = json_object_get_object_member(version, "qemu");
  JsonObject *theirs = json_object_get_object_member(json_node_get_object(qemu), "qemu");
  const char *package = json_object_get_string_member(version, "package");

  g_assert_no_error(error);
  g_test_message("greeting package: %s", package);
  g_assert_cmpint(json_object_get_int_member(ours, "major"), ==,
                  json_object_get_int_member(theirs, "major"));
  g_assert_cmpint(json_object_get_int_member(ours, "minor"), ==,
                  json_object_get_int_member(theirs, "minor"));
  g_assert_cmpint(json_object_get_int_member(ours, "micro"), ==,
                  json_object_get_int_member(theirs, "micro"));
  g_assert_true(g_str_has_prefix(package, "vmsnap 0."));
}

static void
assert_kebab(JsonObject *o)
{
  g_autoptr(GList) members = json_object_get_members(o);

  for (GList *l = members; l != NULL; l = l->next) {
    JsonNode *v = json_object_get_member(o, l->data);
    g_assert_null(strchr(l->data, '_'));
    g_assert_true(g_ascii_islower(*(const char *)l->data));
    if (JSON_NODE_HOLDS_OBJECT(v))
      assert_kebab(json_node_get_object(v));
  }
}

/* The text of "@key": in @line, up to the next ',' or '}'. */
static char *
raw_member(const char *line, const char *key)
{
  g_autofree char *needle = g_strdup_printf("\"%s\":", key);
  const char *at = strstr(line, needle);

  g_assert_nonnull(at);
  at += strlen(needle);
  return g_strndup(at, strcspn(at, ",}"));
}

static void
test_qemu_like(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ready = vms_test_query_ready(f->ctl);
  g_autoptr(VmsTestConn) c = raw_qmp(f->vm->control_path, TRUE);
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *save = g_strdup_printf("{\"execute\": \"snapshot-save\", \"arguments\": "
                                          "{\"dir\": \"%s\", \"memory\": \"copy\", \"then\": "
                                          "\"resume\"}}", snap);
  g_autofree char *info = g_strdup_printf("{\"execute\": \"snapshot-info\", \"arguments\": "
                                          "{\"dir\": \"%s\"}}", snap);
  g_autofree char *unknown = ask_raw(c, "{\"execute\": \"no-such-command\", \"id\": 3}");
  g_autofree char *cmds = ask_raw(c, "{\"execute\": \"query-commands\"}");
  g_autofree char *saved = NULL, *infoline = NULL;
  g_autoptr(GPtrArray) events = g_ptr_array_new_with_free_func(g_free);
  const char *completed;
  g_autofree char *d1 = NULL, *d2 = NULL, *t1 = NULL, *t2 = NULL;
  g_autoptr(JsonObject) info_reply = NULL;

  g_assert_cmpstr(unknown, ==, "{\"error\":{\"class\":\"CommandNotFound\",\"desc\":\"The command "
                               "no-such-command has not been found\"},\"id\":3}");
  for (const char *const *n = (const char *const[]){ "qmp_capabilities", "query-commands",
                                                     "query-vmsnap", "snapshot-save",
                                                     "snapshot-cancel", "snapshot-info", NULL };
       *n != NULL; n++) {
    g_autofree char *item = g_strdup_printf("{\"name\":\"%s\"}", *n);
    g_assert_nonnull(strstr(cmds, item));
  }
  saved = ask_events(c, save, events); /* COMPLETED comes just before the reply */
  g_assert_cmpuint(events->len, >, 0);
  completed = events->pdata[events->len - 1];
  g_assert_nonnull(strstr(completed, "VMSNAP_SNAPSHOT_COMPLETED"));
  /* one number, one text: in the reply and in the event alike */
  d1 = raw_member(saved, "downtime-ms");
  d2 = raw_member(completed, "downtime-ms");
  t1 = raw_member(saved, "total-ms");
  t2 = raw_member(completed, "total-ms");
  g_test_message("downtime-ms %s / %s", d1, d2);
  g_assert_cmpstr(d1, ==, d2);
  g_assert_cmpstr(t1, ==, t2);
  g_assert_cmpuint(strlen(d1), <, 12); /* the shortest form, not 17 digits */
  infoline = ask_raw(c, info);
  info_reply = parse(infoline);
  assert_kebab(json_object_get_object_member(info_reply, "return"));
  g_assert_nonnull(strstr(infoline, "\"memory-capture\":\"COPY\""));
}

/* ---- the same malformed input to QEMU's QMP and to ours ---- */

typedef struct {
  const char *ours;   /* sent to the control socket */
  const char *theirs; /* sent to QEMU (NULL: the same) */
  const char *klass;  /* expected class of both */
  const char *desc;   /* a regex both descs match */
  gboolean id;        /* both echo an id */
} Case;

static const Case unnegotiated_cases[] = {
  { "{\"execute\": \"query-vmsnap\"}", "{\"execute\": \"query-status\"}", "CommandNotFound",
    "^Expecting capabilities negotiation with 'qmp_capabilities'$", FALSE },
};

static const Case cases[] = {
  { "{\"execute\": \"qmp_capabilities\"}", NULL, "CommandNotFound",
    "^Capabilities negotiation is already complete, command ignored$", FALSE },
  { "{\"execute\": \"no-such-command\", \"id\": \"x\"}", NULL, "CommandNotFound",
    "^The command no-such-command has not been found$", TRUE },
  { "[1, 2]", NULL, "GenericError", "^QMP input must be a JSON object$", FALSE },
  { "{\"execute\": 5}", NULL, "GenericError", "^QMP input member 'execute' must be a string$",
    FALSE },
  { "{\"arguments\": {}}", NULL, "GenericError", "^QMP input lacks member 'execute'$", FALSE },
  { "{\"execute\": \"query-vmsnap\", \"bogus\": 1}", "{\"execute\": \"query-status\", "
    "\"bogus\": 1}", "GenericError", "^QMP input member 'bogus' is unexpected$", FALSE },
  { "{\"execute\": \"query-vmsnap\", \"arguments\": 3}", "{\"execute\": \"query-status\", "
    "\"arguments\": 3}", "GenericError", "^QMP input member 'arguments' must be an object$",
    FALSE },
  { "{\"execute\": \"query-vmsnap\", \"arguments\": {\"bogus\": 1}}",
    "{\"execute\": \"query-status\", \"arguments\": {\"bogus\": 1}}", "GenericError",
    "^Parameter 'bogus' is unexpected$", FALSE },
  { "{\"execute\": \"snapshot-info\", \"arguments\": {}, \"id\": 7}",
    "{\"execute\": \"human-monitor-command\", \"arguments\": {}, \"id\": 7}", "GenericError",
    "^Parameter '[a-z-]+' is missing$", TRUE },
  { "{\"execute\": \"snapshot-info\", \"arguments\": {\"dir\": 5}}",
    "{\"execute\": \"human-monitor-command\", \"arguments\": {\"command-line\": 5}}",
    "GenericError", "^Invalid parameter type for '[a-z-]+', expected: string$", FALSE },
  /* Not compared: "\u0000". QEMU 7.2 keeps it inside the string (as the
   * two bytes C0 80) and so answers CommandNotFound; we refuse it as a
   * GenericError before dispatch (doc/protocol.md). */
  { "{\"execute\": #}", NULL, "GenericError", "^JSON parse error, stray '#'$", FALSE },
};

static void
compare(VmsTestConn *ours, VmsTestConn *qemu, const Case *c)
{
  g_autofree char *a = ask_raw(ours, c->ours);
  g_autofree char *b = ask_raw(qemu, c->theirs != NULL ? c->theirs : c->ours);
  g_autoptr(JsonObject) ra = parse(a);
  g_autoptr(JsonObject) rb = parse(b);
  JsonObject *ea = json_object_get_object_member(ra, "error");
  JsonObject *eb = json_object_get_object_member(rb, "error");

  g_test_message("%s\n  ours: %s\n  QEMU: %s", c->ours, a, b);
  g_assert_nonnull(ea);
  g_assert_nonnull(eb);
  g_assert_cmpstr(json_object_get_string_member(ea, "class"), ==, c->klass);
  g_assert_cmpstr(json_object_get_string_member(eb, "class"), ==, c->klass);
  g_assert_true(g_regex_match_simple(c->desc, json_object_get_string_member(ea, "desc"), 0, 0));
  g_assert_true(g_regex_match_simple(c->desc, json_object_get_string_member(eb, "desc"), 0, 0));
  g_assert_cmpint(json_object_has_member(ra, "id"), ==, c->id);
  g_assert_cmpint(json_object_has_member(rb, "id"), ==, c->id);
}

/* A QEMU of its own with a QMP socket for the test (-M none: nothing to
 * boot; the plugin VM's QMP is taken by the plugin and the harness). */
static GSubprocess *
spawn_bare_qemu(const char *sock)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *qmp = g_strdup_printf("unix:%s,server=on,wait=off", sock);
  GSubprocess *p = g_subprocess_new(G_SUBPROCESS_FLAGS_STDERR_SILENCE, &error,
                                    "qemu-system-x86_64", "-M", "none", "-nodefaults",
                                    "-display", "none", "-qmp", qmp, NULL);

  g_assert_no_error(error);
  return p;
}

static void
test_conformance(Fixture *f, gconstpointer data)
{
  g_autofree char *sock = g_build_filename(f->dir, "bare-qmp.sock", NULL);
  g_autoptr(GSubprocess) bare = spawn_bare_qemu(sock);
  g_autoptr(JsonObject) ready = vms_test_query_ready(f->ctl);
  g_autoptr(VmsTestConn) ours = raw_qmp(f->vm->control_path, FALSE);
  g_autoptr(VmsTestConn) qemu = raw_qmp(sock, FALSE);

  for (gsize i = 0; i < G_N_ELEMENTS(unnegotiated_cases); i++)
    compare(ours, qemu, &unnegotiated_cases[i]);
  g_free(ask_raw(ours, "{\"execute\": \"qmp_capabilities\"}"));
  g_free(ask_raw(qemu, "{\"execute\": \"qmp_capabilities\"}"));
  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++)
    compare(ours, qemu, &cases[i]);
  g_subprocess_force_exit(bare);
  g_subprocess_wait(bare, NULL, NULL);
}

/* Debian's golang-github-digitalocean-go-qemu, built by meson from
 * tests/integration/qmp-go (path in VMSNAP_QMP_GO). */
static void
test_go_client(Fixture *f, gconstpointer data)
{
  const char *prog = g_getenv("VMSNAP_QMP_GO");
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ready = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "go-snap", NULL);
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr(GSubprocess) p = NULL;

  if (prog == NULL || !g_file_test(prog, G_FILE_TEST_IS_EXECUTABLE)) {
    vms_test_cannot_run("the Go QMP client was not built (golang-go and "
                        "golang-github-digitalocean-go-qemu-dev, scripts/setup.sh)");
    return;
  }
  ready = vms_test_query_ready(f->ctl);
  p = g_subprocess_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error,
                       prog, f->vm->control_path, snap, NULL);
  g_assert_no_error(error);
  g_assert_true(g_subprocess_communicate_utf8(p, NULL, NULL, &out, &err, &error));
  g_test_message("%s%s", out, err);
  g_assert_true(g_subprocess_get_if_exited(p));
  g_assert_cmpint(g_subprocess_get_exit_status(p), ==, 0);
  g_assert_nonnull(strstr(out, "ok greeting qemu 7."));
  g_assert_nonnull(strstr(out, "ok query-commands "));
  g_assert_nonnull(strstr(out, "ok query-vmsnap vcpus 2 running true"));
  g_assert_nonnull(strstr(out, "ok unknown command refused"));
  g_assert_nonnull(strstr(out, "ok snapshot-save kind FULL"));
  g_assert_nonnull(strstr(out, "ok event VMSNAP_SNAPSHOT_COMPLETED"));
}

/* What a peer of @uid:@gid reads from @path (socat under setpriv). */
static char *
read_as(const char *path, const char *uid, const char *gid)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *target = g_strdup_printf("UNIX-CONNECT:%s", path);
  g_autofree char *reuid = g_strdup_printf("--reuid=%s", uid);
  g_autofree char *regid = g_strdup_printf("--regid=%s", gid);
  g_autoptr(GSubprocess) p = g_subprocess_new(
      G_SUBPROCESS_FLAGS_STDIN_PIPE | G_SUBPROCESS_FLAGS_STDOUT_PIPE |
          G_SUBPROCESS_FLAGS_STDERR_SILENCE,
      &error, "setpriv", reuid, regid, "--clear-groups", "socat", "-T", "2", "STDIO", target,
      NULL);
  char *out = NULL;

  g_assert_no_error(error);
  g_assert_true(g_subprocess_communicate_utf8(p, "", NULL, &out, NULL, &error));
  g_assert_no_error(error);
  return out;
}

static void
test_allow(void)
{
  g_autofree char *setpriv = g_find_program_in_path("setpriv");
  g_autofree char *socat = g_find_program_in_path("socat");
  g_autofree char *dir = NULL;
  g_autoptr(VmsVm) vm = NULL;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = NULL;
  g_autofree char *uid_ok = NULL, *gid_ok = NULL, *refused = NULL, *mon_ok = NULL;
  g_autofree char *mon_refused = NULL, *log = NULL;
  struct stat st;

  if (getuid() != 0 || setpriv == NULL || socat == NULL) {
    vms_test_cannot_run("needs root, setpriv and socat to act as other users");
    return;
  }
  dir = vms_test_make_dir("allow");
  g_assert_cmpint(chmod(dir, 0711), ==, 0);
  vm = vms_vm_new(dir);
  vm->plugin_extra = g_strdup("allow-uids=65534:65532,allow-gid=4242");
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_cmpint(stat(vm->control_path, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 0777, ==, 0666); /* SO_PEERCRED decides */
  g_assert_cmpint(st.st_gid, ==, 4242);
  uid_ok = read_as(vm->control_path, "65534", "65534");
  gid_ok = read_as(vm->control_path, "65533", "4242");
  refused = read_as(vm->control_path, "65533", "65533");
  mon_ok = read_as(vm->monitor_path, "65534", "65534");
  mon_refused = read_as(vm->monitor_path, "65531", "65531");
  g_assert_true(g_str_has_prefix(uid_ok, "{\"QMP\""));
  g_assert_true(g_str_has_prefix(gid_ok, "{\"QMP\""));
  g_assert_true(g_str_has_prefix(refused, "{\"error\": {\"class\": \"GenericError\""));
  g_assert_nonnull(strstr(mon_ok, "(vmsnap) "));
  g_assert_true(g_str_has_prefix(mon_refused, "error: "));
  log = vms_vm_stderr(vm);
  g_assert_nonnull(strstr(log, "refused a peer of uid 65533"));
  g_assert_nonnull(strstr(log, "refused a peer of uid 65531"));
  g_clear_pointer(&vm, vms_vm_free);
  vms_test_rm_rf(dir);
}

int
main(int argc, char **argv)
{
  vms_test_init_with_plugin(&argc, &argv);
  g_test_add("/control/greeting", Fixture, NULL, setup, test_greeting, teardown);
  g_test_add("/control/qemu-like", Fixture, NULL, setup, test_qemu_like, teardown);
  g_test_add("/control/conformance", Fixture, NULL, setup, test_conformance, teardown);
  g_test_add("/control/go-client", Fixture, NULL, setup, test_go_client, teardown);
  g_test_add_func("/control/allow", test_allow);
  return g_test_run();
}
