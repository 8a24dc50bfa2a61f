/* Unit tests: the `vmsnap apply-diff` and `vmsnap flatten` commands, run as
 * the built binary (VMSNAP_BIN): output, exit status, error lines. */
#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "helpers.h"
#include "snapdir.h"
#include "util.h"

#define PAGE 4096u

/* A 1 MiB base of one byte value and a sparse diff with two regions. */
static void
make_pair(const char *base, const char *diff)
{
  g_autofree guint8 *buf = g_malloc(1024 * 1024);
  vms_autofd b = open(base, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  vms_autofd d = open(diff, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  memset(buf, 0x11, 1024 * 1024);
  g_assert_cmpint(vms_pwrite_full(b, buf, 1024 * 1024, 0), ==, 0);
  g_assert_cmpint(ftruncate(d, 1024 * 1024), ==, 0);
  memset(buf, 0x22, 3 * PAGE);
  g_assert_cmpint(vms_pwrite_full(d, buf, PAGE, 5 * PAGE), ==, 0);
  g_assert_cmpint(vms_pwrite_full(d, buf, 3 * PAGE, 100 * PAGE), ==, 0);
}

static void
test_apply_diff(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *base = g_build_filename(dir, "base", NULL);
  g_autofree char *diff = g_build_filename(dir, "diff", NULL);
  g_autofree char *missing = g_build_filename(dir, "missing", NULL);
  g_auto(VmsTestRun) json = { 0 }, text = { 0 }, none = { 0 }, engine = { 0 }, usage = { 0 };

  make_pair(base, diff);
  vms_test_run_vmsnap(&json, "apply-diff", base, diff, "--json", NULL);
  if (g_test_failed() || json.out == NULL)
    return;
  g_assert_cmpint(json.status, ==, 0);
  g_assert_nonnull(strstr(json.out, "\"bytes\": 16384"));
  g_assert_nonnull(strstr(json.out, "\"extents\": 2"));
  g_autoptr(GBytes) got = vms_test_read_bytes(base);
  const guint8 *d = g_bytes_get_data(got, NULL);
  g_assert_cmpint(d[5 * PAGE], ==, 0x22);
  g_assert_cmpint(d[6 * PAGE], ==, 0x11);
  g_assert_cmpint(d[103 * PAGE - 1], ==, 0x22);

  vms_test_run_vmsnap(&text, "apply-diff", base, diff, "--engine", "rw", "--fsync", NULL);
  g_assert_cmpint(text.status, ==, 0);
  g_assert_true(g_str_has_prefix(text.out, "copied 16384 bytes in 2 extents (engine rw"));

  vms_test_run_vmsnap(&none, "apply-diff", base, missing, NULL);
  vms_test_expect_cli_error(&none, missing);
  vms_test_run_vmsnap(&engine, "apply-diff", base, diff, "--engine", "dd", NULL);
  vms_test_expect_cli_error(&engine, "unknown engine 'dd'");
  vms_test_run_vmsnap(&usage, "apply-diff", base, NULL);
  vms_test_expect_cli_error(&usage, "missing BASE or DIFF");
  vms_test_rmtree(dir);
}

static void
test_flatten(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *snap = g_build_filename(dir, "full", NULL);
  g_autofree char *mem = g_build_filename(dir, "full", "memory.bin", NULL);
  g_autofree char *out = g_build_filename(dir, "flat", NULL);
  g_autofree char *out_mem = g_build_filename(dir, "flat", "memory.bin", NULL);
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(snap, mem, 64 * PAGE, 32);
  g_auto(VmsTestRun) ok = { 0 }, again = { 0 }, missing = { 0 }, help = { 0 };

  vms_test_run_vmsnap(&ok, "flatten", snap, out, NULL);
  if (g_test_failed() || ok.out == NULL)
    return;
  g_assert_cmpint(ok.status, ==, 0);
  g_assert_nonnull(strstr(ok.out, "(a chain of 1 snapshot)"));
  g_autoptr(GBytes) a = vms_test_read_bytes(mem);
  g_autoptr(GBytes) b = vms_test_read_bytes(out_mem);
  g_assert_true(g_bytes_equal(a, b));

  /* Again into the same place: its flattening is there already, which is
   * success (flattens of one snapshot started together all succeed); the
   * flattening of another snapshot there is refused, never overwritten. */
  vms_test_run_vmsnap(&again, "flatten", snap, out, NULL);
  g_assert_cmpint(again.status, ==, 0);
  g_autoptr(GBytes) c = vms_test_read_bytes(out_mem);
  g_assert_true(g_bytes_equal(b, c));
  g_autofree char *snap2 = g_build_filename(dir, "full2", NULL);
  g_autofree char *mem2 = g_build_filename(dir, "full2", "memory.bin", NULL);
  g_autoptr(VmsManifest) m2 = vms_test_make_full_snapshot(snap2, mem2, 64 * PAGE, 32);
  g_auto(VmsTestRun) other = { 0 };
  vms_test_run_vmsnap(&other, "flatten", snap2, out, NULL);
  vms_test_expect_cli_error(&other, "manifest.bin");
  vms_test_run_vmsnap(&missing, "flatten", out_mem, out, NULL);
  g_assert_cmpint(missing.status, ==, 1);
  vms_test_run_vmsnap(&help, "flatten", "--help", NULL);
  g_assert_cmpint(help.status, ==, 0);
  g_assert_nonnull(strstr(help.out, "DIR OUTDIR"));
  vms_test_rmtree(dir);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/cmd-diff/apply-diff", test_apply_diff);
  g_test_add_func("/cmd-diff/flatten", test_flatten);
  return g_test_run();
}
