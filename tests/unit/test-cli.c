/* vmsnap unit tests: the `vmsnap` binary (VMSNAP_BIN) — info, verify, exit
 * codes and the "vmsnap: error:" prefix. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <json-glib/json-glib.h>

#include "helpers.h"
#include "snapdir.h"
#include "util.h"

typedef struct {
  char *tmp;
  char *snap; /* a committed FULL snapshot */
} Fixture;

static void
fixture_setup(Fixture *f, gconstpointer data)
{
  g_autofree char *mem = NULL;
  g_autoptr(VmsManifest) m = NULL;

  f->tmp = vms_test_tmpdir(NULL);
  f->snap = g_build_filename(f->tmp, "snap", NULL);
  mem = g_build_filename(f->tmp, "guest.ram", NULL);
  m = vms_test_make_full_snapshot(f->snap, mem, 1u << 20, 4096);
}

static void
fixture_teardown(Fixture *f, gconstpointer data)
{
  vms_test_rmtree(f->tmp);
  g_free(f->tmp);
  g_free(f->snap);
}

static void
test_info(Fixture *f, gconstpointer data)
{
  g_auto(VmsTestRun) r = { 0 };

  vms_test_run_vmsnap(&r, "info", f->snap, NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_nonnull(strstr(r.out, "x86_64"));
  g_assert_nonnull(strstr(r.out, "FULL"));
  g_assert_nonnull(strstr(r.out, "LINK"));
  g_assert_nonnull(strstr(r.out, "1048576 bytes"));
  g_assert_cmpstr(r.err, ==, "");
}

static void
test_info_json(Fixture *f, gconstpointer data)
{
  g_auto(VmsTestRun) r = { 0 };
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) error = NULL;
  JsonObject *obj;

  vms_test_run_vmsnap(&r, "info", "--json", f->snap, NULL);
  g_assert_cmpint(r.status, ==, 0);
  json_parser_load_from_data(parser, r.out, -1, &error);
  g_assert_no_error(error);
  obj = json_node_get_object(json_parser_get_root(parser));
  g_assert_cmpstr(json_object_get_string_member(obj, "kind"), ==, "FULL");
  g_assert_cmpstr(json_object_get_string_member(obj, "memory_capture"), ==, "LINK");
  g_assert_cmpint(json_object_get_int_member(obj, "memory_size_bytes"), ==, 1 << 20);
  g_assert_cmpint(json_object_get_int_member(obj, "state_size"), ==, 4096);
}

static void
test_verify_ok(Fixture *f, gconstpointer data)
{
  g_auto(VmsTestRun) r = { 0 };

  vms_test_run_vmsnap(&r, "verify", f->snap, NULL);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_nonnull(strstr(r.out, "OK"));
}

static void
test_verify_state_flip(Fixture *f, gconstpointer data)
{
  g_autofree char *state = g_build_filename(f->snap, VMS_STATE_FILE, NULL);
  vms_autofd fd = open(state, O_RDWR | O_CLOEXEC);
  g_auto(VmsTestRun) r = { 0 };
  guint8 b;

  g_assert_cmpint(vms_pread_full(fd, &b, 1, 17), ==, 1);
  b ^= 1;
  g_assert_cmpint(vms_pwrite_full(fd, &b, 1, 17), ==, 0);
  vms_test_run_vmsnap(&r, "verify", f->snap, NULL);
  vms_test_expect_cli_error(&r, "state");
}

static void
test_incomplete(Fixture *f, gconstpointer data)
{
  g_autofree char *manifest = g_build_filename(f->snap, VMS_MANIFEST_FILE, NULL);
  g_auto(VmsTestRun) info = { 0 };
  g_auto(VmsTestRun) verify = { 0 };

  g_assert_cmpint(unlink(manifest), ==, 0);
  vms_test_run_vmsnap(&info, "info", f->snap, NULL);
  vms_test_expect_cli_error(&info, "incomplete");
  vms_test_run_vmsnap(&verify, "verify", f->snap, NULL);
  vms_test_expect_cli_error(&verify, "incomplete");
}

/* verify of a DIFF walks its parent chain (vms_chain_verify): a good chain
 * passes, a missing parent is named. */
static void
test_verify_diff_chain(Fixture *f, gconstpointer data)
{
  g_autofree char *diff = g_build_filename(f->tmp, "diff", NULL);
  g_autofree char *base_manifest = g_build_filename(f->snap, VMS_MANIFEST_FILE, NULL);
  g_autoptr(GBytes) bytes = vms_test_read_bytes(base_manifest);
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  g_autoptr(VmsManifest) m = NULL;
  g_auto(VmsTestRun) ok = { 0 };
  g_auto(VmsTestRun) missing = { 0 };
  guint8 sha[32];
  gsize len = sizeof sha;

  g_checksum_update(sum, g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes));
  g_checksum_get_digest(sum, sha, &len);
  m = vms_test_make_diff_snapshot(diff, "../snap", sha, 1u << 20);
  vms_test_run_vmsnap(&ok, "verify", diff, NULL);
  g_assert_cmpint(ok.status, ==, 0);
  g_assert_nonnull(strstr(ok.out, "parent chain checked"));
  vms_test_rmtree(f->snap);
  vms_test_run_vmsnap(&missing, "verify", diff, NULL);
  vms_test_expect_cli_error(&missing, "parent");
}

static void
test_usage_errors(Fixture *f, gconstpointer data)
{
  g_auto(VmsTestRun) none = { 0 };
  g_auto(VmsTestRun) two = { 0 };
  g_auto(VmsTestRun) bad = { 0 };
  g_auto(VmsTestRun) missing = { 0 };

  vms_test_run_vmsnap(&none, "info", NULL);
  vms_test_expect_cli_error(&none, "missing snapshot directory");
  vms_test_run_vmsnap(&two, "verify", f->snap, f->snap, NULL);
  vms_test_expect_cli_error(&two, "too many arguments");
  vms_test_run_vmsnap(&bad, "info", "--no-such-option", f->snap, NULL);
  vms_test_expect_cli_error(&bad, "no-such-option");
  vms_test_run_vmsnap(&missing, "verify", "/nonexistent/vmsnap/dir", NULL);
  vms_test_expect_cli_error(&missing, "/nonexistent/vmsnap/dir");
}

static void
test_help(Fixture *f, gconstpointer data)
{
  const char *commands[] = { "info", "verify" };

  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++) {
    g_auto(VmsTestRun) r = { 0 };
    vms_test_run_vmsnap(&r, commands[i], "--help", NULL);
    g_assert_cmpint(r.status, ==, 0);
    g_assert_nonnull(strstr(r.out, "Usage:"));
    g_assert_nonnull(strstr(r.out, "DIR"));
  }
}

/* `vmsnap help CMD` is `vmsnap CMD --help`; an unknown one is an error. */
static void
test_help_command(Fixture *f, gconstpointer data)
{
  g_auto(VmsTestRun) a = { 0 };
  g_auto(VmsTestRun) b = { 0 };
  g_auto(VmsTestRun) bad = { 0 };

  vms_test_run_vmsnap(&a, "help", "restore", NULL);
  vms_test_run_vmsnap(&b, "restore", "--help", NULL);
  g_assert_cmpint(a.status, ==, 0);
  g_assert_cmpstr(a.out, ==, b.out);
  g_assert_nonnull(strstr(a.out, "--libvirt"));
  vms_test_run_vmsnap(&bad, "help", "frobnicate", NULL);
  g_assert_cmpint(bad.status, ==, 1);
  g_assert_nonnull(strstr(bad.err, "vmsnap: error: help: unknown command 'frobnicate'"));
}

/* With --json an error is one JSON object (a QMP error) on stderr. */
static void
test_json_error(Fixture *f, gconstpointer data)
{
  g_autofree char *missing = g_build_filename(f->tmp, "missing", NULL);
  const char *const cases[][3] = {
    { "info", "--json", missing },
    { "info", "--json", "--bogus" },
    { "apply-diff", "--json", missing },
  };

  for (gsize i = 0; i < G_N_ELEMENTS(cases); i++) {
    g_auto(VmsTestRun) r = { 0 };
    g_autoptr(JsonParser) parser = json_parser_new();
    g_autoptr(GError) error = NULL;

    vms_test_run_vmsnap(&r, cases[i][0], cases[i][1], cases[i][2], NULL);
    g_assert_cmpint(r.status, ==, 1);
    g_assert_cmpstr(r.out, ==, "");
    g_assert_true(json_parser_load_from_data(parser, r.err, -1, &error));
    g_assert_no_error(error);
    JsonObject *e = json_object_get_object_member(json_node_get_object(json_parser_get_root(parser)),
                                                  "error");
    g_assert_cmpstr(json_object_get_string_member(e, "class"), ==, "GenericError");
    g_assert_nonnull(strstr(json_object_get_string_member(e, "desc"),
                            i == 1 ? "--bogus" : "missing"));
  }
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD("/cli/info", test_info);
  ADD("/cli/info-json", test_info_json);
  ADD("/cli/verify-ok", test_verify_ok);
  ADD("/cli/verify-state-flip", test_verify_state_flip);
  ADD("/cli/incomplete", test_incomplete);
  ADD("/cli/verify-diff-chain", test_verify_diff_chain);
  ADD("/cli/usage-errors", test_usage_errors);
  ADD("/cli/help", test_help);
  ADD("/cli/help-command", test_help_command);
  ADD("/cli/json-error", test_json_error);
#undef ADD
  return g_test_run();
}
