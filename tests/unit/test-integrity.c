/* vmsnap unit tests: the integrity items of issue 10 through the built
 * `vmsnap` — corrupt diffs and bases caught by verify, flatten and restore;
 * missing digests never "verified"; apply-diff refusing a linked base;
 * concurrent flattens and restores of one diff; modes whatever the umask. */
#include <fcntl.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chunks.h"
#include "helpers.h"
#include "snapdir.h"
#include "util.h"

#define MEM_SIZE (4u << 20)

typedef struct {
  char *tmp;
  char *base, *d1, *d2, *d3; /* base <- d1 <- d2 <- d3 */
} Chain;

static void
add_diff(const char *dir, const char *parent_dir, const char *parent_rel)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) p = vms_snapshot_open(parent_dir, &error);
  g_autoptr(VmsManifest) m = NULL;

  g_assert_no_error(error);
  m = vms_test_make_diff_snapshot(dir, parent_rel, p->manifest_sha256, MEM_SIZE);
}

static void
chain_setup(Chain *c, gconstpointer data)
{
  g_autofree char *ram = NULL;
  g_autoptr(VmsManifest) m = NULL;

  c->tmp = vms_test_tmpdir(NULL);
  ram = g_build_filename(c->tmp, "guest.ram", NULL);
  c->base = g_build_filename(c->tmp, "base", NULL);
  c->d1 = g_build_filename(c->tmp, "d1", NULL);
  c->d2 = g_build_filename(c->tmp, "d2", NULL);
  c->d3 = g_build_filename(c->tmp, "d3", NULL);
  m = vms_test_make_full_snapshot(c->base, ram, MEM_SIZE, 256);
  add_diff(c->d1, c->base, "../base");
  add_diff(c->d2, c->d1, "../d1");
  add_diff(c->d3, c->d2, "../d2");
}

static void
chain_teardown(Chain *c, gconstpointer data)
{
  vms_test_rmtree(c->tmp);
  g_free(c->tmp);
  g_free(c->base);
  g_free(c->d1);
  g_free(c->d2);
  g_free(c->d3);
}

static void
flip_byte(const char *dir, const char *name, guint64 offset)
{
  g_autofree char *path = g_build_filename(dir, name, NULL);
  vms_autofd fd = open(path, O_RDWR | O_CLOEXEC);
  guint8 b;

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(vms_pread_full(fd, &b, 1, offset), ==, 1);
  b ^= 0x01;
  g_assert_cmpint(vms_pwrite_full(fd, &b, 1, offset), ==, 0);
}

/* Exit 1 and "vmsnap: error: ...@substring..." on stderr (restore may print
 * notes before the error). */
static void
expect_error(const VmsTestRun *r, const char *substring)
{
  if (r->status != 1 || strstr(r->err, "vmsnap: error: ") == NULL ||
      strstr(r->err, substring) == NULL)
    g_error("expected an error with '%s'; status %d, stderr: %s", substring, r->status, r->err);
}

/* The fixtures' recorded command line has no guest RAM backend: `vmsnap
 * restore` of a snapshot that passes its checks fails at rewriting it. That
 * error proves every check before it passed, without starting QEMU. */
#define CHECKS_PASSED "the command line has no file-backed guest RAM"

static void
expect_restore_checks_pass(const VmsTestRun *r)
{
  expect_error(r, CHECKS_PASSED);
}

/* Issue 10 item 1: a byte flipped in d1's memory.diff is caught by verify,
 * flatten and restore of d3, also when d3's flattening already exists. */
static void
test_corrupt_diff(Chain *c, gconstpointer data)
{
  g_autofree char *out = g_build_filename(c->tmp, "out", NULL);
  g_autofree char *flat = g_build_filename(c->tmp, "d3.flat", NULL);
  g_auto(VmsTestRun) r0 = { 0 }, r1 = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 }, r5 = { 0 };

  vms_test_run_vmsnap(&r0, "verify", c->d3, NULL);
  g_assert_cmpint(r0.status, ==, 0);
  g_assert_nonnull(strstr(r0.out, "memory digests checked"));
  vms_test_run_vmsnap(&r5, "restore", c->d3, NULL); /* flattens into d3.flat */
  expect_restore_checks_pass(&r5);
  g_assert_true(g_file_test(flat, G_FILE_TEST_IS_DIR));

  flip_byte(c->d1, VMS_DIFF_FILE, 4096 + 10);
  vms_test_run_vmsnap(&r1, "verify", c->d3, NULL);
  expect_error(&r1, "d1/memory.diff is corrupt: chunk 0 (diff data bytes 0-8191, "
                                 "starting at file offset 4096)");
  vms_test_run_vmsnap(&r2, "flatten", c->d3, out, NULL);
  expect_error(&r2, "d1/memory.diff is corrupt");
  g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));
  /* d3.flat is current, so restore does not flatten; it still checks the diffs. */
  vms_test_run_vmsnap(&r3, "restore", c->d3, NULL);
  expect_error(&r3, "d1/memory.diff is corrupt");
  vms_test_run_vmsnap(&r4, "restore", "--flatten-to", out, c->d3, NULL);
  expect_error(&r4, "d1/memory.diff is corrupt");
}

/* Issue 10 item 2: a byte flipped in the base's memory.bin fails verify of
 * the base and of its diffs, flatten, and restore --verify. */
static void
test_corrupt_base(Chain *c, gconstpointer data)
{
  g_autofree char *out = g_build_filename(c->tmp, "out", NULL);
  g_auto(VmsTestRun) r1 = { 0 }, r2 = { 0 }, r3 = { 0 }, r4 = { 0 }, r5 = { 0 };

  flip_byte(c->base, VMS_MEMORY_FILE, 3 * VMS_CHUNK_SIZE + 77);
  vms_test_run_vmsnap(&r1, "verify", c->base, NULL);
  expect_error(&r1, "base/memory.bin is corrupt: chunk 3 (bytes 3145728-4194303)");
  vms_test_run_vmsnap(&r2, "verify", c->d2, NULL);
  expect_error(&r2, "base/memory.bin is corrupt: chunk 3");
  vms_test_run_vmsnap(&r3, "flatten", c->d3, out, NULL);
  expect_error(&r3, "base/memory.bin is corrupt");
  vms_test_run_vmsnap(&r4, "restore", "--verify", c->base, NULL);
  expect_error(&r4, "base/memory.bin is corrupt");
  /* Without --verify a full snapshot's memory is not read. */
  vms_test_run_vmsnap(&r5, "restore", c->base, NULL);
  expect_restore_checks_pass(&r5);
}

/* Digests missing: reported as such, never as verified; flatten refuses. */
static void
test_missing_digests(Chain *c, gconstpointer data)
{
  g_autofree char *chunks = g_build_filename(c->base, VMS_CHUNKS_FILE, NULL);
  g_autofree char *out = g_build_filename(c->tmp, "out", NULL);
  g_auto(VmsTestRun) r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

  g_assert_cmpint(unlink(chunks), ==, 0);
  vms_test_run_vmsnap(&r1, "verify", c->base, NULL);
  expect_error(&r1, "NOT VERIFIED");
  g_assert_nonnull(strstr(r1.err, "no memory digests"));
  g_assert_null(strstr(r1.out, "OK"));
  vms_test_run_vmsnap(&r2, "verify", c->d3, NULL);
  expect_error(&r2, "no memory digests");
  vms_test_run_vmsnap(&r3, "flatten", c->d3, out, NULL);
  expect_error(&r3, "no memory digests");
}

/* Issue 10 item 4: apply-diff onto a base with two links is refused, and
 * the other link is untouched. */
static void
test_apply_diff_hard_link(Chain *c, gconstpointer data)
{
  g_autofree char *base_mem = g_build_filename(c->base, VMS_MEMORY_FILE, NULL);
  g_autofree char *diff = g_build_filename(c->d1, VMS_DIFF_FILE, NULL);
  g_autofree char *map = g_build_filename(c->d1, VMS_MAP_FILE, NULL);
  g_autoptr(GBytes) before = vms_test_read_bytes(base_mem);
  g_auto(VmsTestRun) r = { 0 };

  /* base/memory.bin is a link of guest.ram, as a LINK save makes it. */
  vms_test_run_vmsnap(&r, "apply-diff", "--map", map, base_mem, diff, NULL);
  expect_error(&r, "the base has 2 hard links");
  g_autoptr(GBytes) after = vms_test_read_bytes(base_mem);
  g_assert_true(g_bytes_equal(before, after));
}

/* Runs @n copies of `vmsnap ARGV...` at once; each must exit with @status
 * and, when @err_substring is set, say it. */
static void
run_concurrently(guint n, const char *const *argv, int status, const char *err_substring)
{
  const char *bin = g_getenv("VMSNAP_BIN");
  g_autoptr(GPtrArray) args = g_ptr_array_new();
  GPid pids[8];
  int errs[8];

  g_assert_nonnull(bin);
  g_assert_cmpuint(n, <=, G_N_ELEMENTS(pids));
  g_ptr_array_add(args, (gpointer)bin);
  for (guint i = 0; argv[i] != NULL; i++)
    g_ptr_array_add(args, (gpointer)argv[i]);
  g_ptr_array_add(args, NULL);
  for (guint i = 0; i < n; i++) {
    g_autoptr(GError) error = NULL;
    g_assert_true(g_spawn_async_with_pipes(NULL, (char **)args->pdata, NULL,
                                           G_SPAWN_DO_NOT_REAP_CHILD | G_SPAWN_STDOUT_TO_DEV_NULL,
                                           NULL, NULL, &pids[i], NULL, NULL, &errs[i], &error));
    g_assert_no_error(error);
  }
  for (guint i = 0; i < n; i++) {
    g_autoptr(GString) err = g_string_new(NULL);
    char buf[4096];
    gssize got;
    int ws = 0;
    while ((got = read(errs[i], buf, sizeof buf)) > 0)
      g_string_append_len(err, buf, got);
    close(errs[i]);
    g_assert_cmpint(waitpid(pids[i], &ws, 0), ==, pids[i]);
    g_spawn_close_pid(pids[i]);
    if (!WIFEXITED(ws) || WEXITSTATUS(ws) != status || (err_substring != NULL &&
                                                         strstr(err->str, err_substring) == NULL))
      g_error("run %u of %s: status %d, stderr: %s", i, argv[0], ws, err->str);
  }
}

/* Issue 10 item 5: four flattens of one diff into one OUTDIR, and four
 * restores of one diff (which flatten into DIR.flat), all at once: all
 * succeed, and what is left verifies. */
static void
test_concurrent(Chain *c, gconstpointer data)
{
  g_autofree char *out = g_build_filename(c->tmp, "out", NULL);
  g_autofree char *flat = g_build_filename(c->tmp, "d3.flat", NULL);
  const char *flatten[] = { "flatten", c->d3, out, NULL };
  const char *restore[] = { "restore", c->d3, NULL };
  g_auto(VmsTestRun) r1 = { 0 }, r2 = { 0 };
  g_autoptr(GDir) dir = NULL;
  const char *name;

  run_concurrently(4, flatten, 0, NULL);
  run_concurrently(4, restore, 1, CHECKS_PASSED);
  vms_test_run_vmsnap(&r1, "verify", out, NULL);
  g_assert_cmpint(r1.status, ==, 0);
  vms_test_run_vmsnap(&r2, "verify", flat, NULL);
  g_assert_cmpint(r2.status, ==, 0);
  /* No private directory of a flatten is left behind. */
  dir = g_dir_open(c->tmp, 0, NULL);
  while ((name = g_dir_read_name(dir)) != NULL)
    g_assert_false(g_str_has_suffix(name, ".tmp"));
}

/* Issue 10 item 7: what flatten creates is 0700/0600 under umask 0. */
static void
test_modes(Chain *c, gconstpointer data)
{
  g_autofree char *out = g_build_filename(c->tmp, "new", "out", NULL);
  const char *files[] = { VMS_MANIFEST_FILE, VMS_MEMORY_FILE, VMS_STATE_FILE, VMS_CHUNKS_FILE };
  g_auto(VmsTestRun) r = { 0 };
  struct stat st;
  mode_t old = umask(0);

  vms_test_run_vmsnap(&r, "flatten", c->d3, out, NULL);
  umask(old);
  g_assert_cmpint(r.status, ==, 0);
  g_assert_cmpint(stat(out, &st), ==, 0);
  g_assert_cmpint(st.st_mode & 07777, ==, 0700);
  for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
    g_autofree char *p = g_build_filename(out, files[i], NULL);
    g_assert_cmpint(stat(p, &st), ==, 0);
    g_assert_cmpint(st.st_mode & 07777, ==, 0600);
  }
  for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
    g_autofree char *p = g_build_filename(c->d1, files[i], NULL);
    if (stat(p, &st) == 0) /* d1 has no memory.bin */
      g_assert_cmpint(st.st_mode & 07777, ==, 0600);
  }
}

/* Issue 10 items 8 and 9: a new writer removes every staged leftover (the
 * raw state stream too); a snapshot on a read-only filesystem is refused
 * before QEMU with the option that helps. */
static void
test_leftovers(Chain *c, gconstpointer data)
{
  g_autofree char *dir = g_build_filename(c->tmp, "crashed", NULL);
  const char *names[] = { "state.stream.tmp", "memory.bin.tmp", "manifest.bin.tmp",
                          "memory.chunks.tmp", "state.bin.tmp", "memory.diff.tmp",
                          "memory.map.tmp" };
  g_autoptr(GError) error = NULL;

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
    g_autofree char *p = g_build_filename(dir, names[i], NULL);
    g_assert_true(g_file_set_contents(p, "x", 1, NULL));
  }
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(dir, &error);
  g_assert_no_error(error);
  for (gsize i = 0; i < G_N_ELEMENTS(names); i++) {
    g_autofree char *p = g_build_filename(dir, names[i], NULL);
    if (g_file_test(p, G_FILE_TEST_EXISTS))
      g_error("%s survived a new writer", names[i]);
  }
}

static void
test_read_only(Chain *c, gconstpointer data)
{
  g_autofree char *ro = g_build_filename(c->tmp, "ro", NULL);
  g_autofree char *snap = g_build_filename(ro, "base", NULL);
  g_autofree char *d1 = g_build_filename(ro, "d1", NULL);
  g_autofree char *ram = g_build_filename(ro, "guest.ram", NULL);
  g_autofree char *elsewhere = g_build_filename(c->tmp, "flat", NULL);
  g_autoptr(VmsManifest) m = NULL;
  g_auto(VmsTestRun) r1 = { 0 }, r2 = { 0 }, r3 = { 0 };

  g_assert_cmpint(g_mkdir_with_parents(ro, 0700), ==, 0);
  if (mount("vmsnap-test", ro, "tmpfs", 0, "size=16m") < 0) {
    vms_test_cannot_run("cannot mount a tmpfs (needs CAP_SYS_ADMIN)");
    return;
  }
  m = vms_test_make_full_snapshot(snap, ram, MEM_SIZE, 256);
  add_diff(d1, snap, "../base");
  g_assert_cmpint(mount(NULL, ro, NULL, MS_REMOUNT | MS_RDONLY, NULL), ==, 0);
  vms_test_run_vmsnap(&r1, "restore", snap, NULL);
  expect_error(&r1, "is on a read-only filesystem");
  g_assert_nonnull(strstr(r1.err, "copy the snapshot to a writable filesystem"));
  vms_test_run_vmsnap(&r2, "restore", d1, NULL);
  expect_error(&r2, "give --flatten-to DIR2 on a writable filesystem");
  vms_test_run_vmsnap(&r3, "restore", "--flatten-to", elsewhere, d1, NULL);
  expect_restore_checks_pass(&r3);
  g_assert_cmpint(umount2(ro, MNT_DETACH), ==, 0);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Chain, NULL, chain_setup, fn, chain_teardown)
  ADD("/integrity/corrupt-diff", test_corrupt_diff);
  ADD("/integrity/corrupt-base", test_corrupt_base);
  ADD("/integrity/missing-digests", test_missing_digests);
  ADD("/integrity/apply-diff-hard-link", test_apply_diff_hard_link);
  ADD("/integrity/concurrent", test_concurrent);
  ADD("/integrity/modes", test_modes);
  ADD("/integrity/leftovers", test_leftovers);
  ADD("/integrity/read-only", test_read_only);
#undef ADD
  return g_test_run();
}
