/* vmsnap unit tests: snapshot directories — the commit protocol, safe opens,
 * memory links, cleanup on failure, verification. */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "extents.h"
#include "helpers.h"
#include "snapdir.h"
#include "util.h"

#define MEM_SIZE (1u << 20)
#define STATE_LEN 10000u

typedef struct {
  char *tmp;  /* a fresh temp dir on the build's filesystem */
  char *snap; /* tmp/snap, not created */
  char *mem;  /* tmp/guest.ram, not created */
} Fixture;

static void
fixture_setup(Fixture *f, gconstpointer data)
{
  f->tmp = vms_test_tmpdir(NULL);
  f->snap = g_build_filename(f->tmp, "snap", NULL);
  f->mem = g_build_filename(f->tmp, "guest.ram", NULL);
}

static void
fixture_teardown(Fixture *f, gconstpointer data)
{
  vms_test_rmtree(f->tmp);
  g_free(f->tmp);
  g_free(f->snap);
  g_free(f->mem);
}

static char *
snap_file(const Fixture *f, const char *name)
{
  return g_build_filename(f->snap, name, NULL);
}

static ino_t
inode_of(const char *path)
{
  struct stat st;

  g_assert_cmpint(lstat(path, &st), ==, 0);
  return st.st_ino;
}

static void
expect_error(GError *error, gint code, const char *substring)
{
  g_assert_nonnull(error);
  g_test_message("%s", error->message);
  g_assert_error(error, VMS_ERROR, code);
  g_assert_nonnull(strstr(error->message, substring));
}

static void
test_round_trip(Fixture *f, gconstpointer data)
{
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, STATE_LEN);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(f->snap, &error);
  g_autofree char *manifest = snap_file(f, VMS_MANIFEST_FILE);
  g_autofree char *memory = snap_file(f, VMS_MEMORY_FILE);
  g_autoptr(GBytes) bytes = vms_test_read_bytes(manifest);
  g_autofree char *want_sha = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, bytes);
  char hex[65];

  g_assert_no_error(error);
  g_assert_cmpstr(s->manifest->id, ==, m->id);
  g_assert_cmpuint(s->manifest->state_size, ==, STATE_LEN);
  g_assert_cmpmem(s->manifest->state_sha256.data, 32, m->state_sha256.data, 32);
  vms_sha256_hex(s->manifest_sha256, hex);
  g_assert_cmpstr(hex, ==, want_sha);
  g_assert_cmpuint(inode_of(memory), ==, inode_of(f->mem));
  g_assert_cmpstr(vms_snapshot_memory_file(s), ==, VMS_MEMORY_FILE);
  g_assert_null(vms_snapshot_parent_path(s));
  g_assert_true(vms_snapshot_verify(s, &error));
  g_assert_no_error(error);
  /* No staged leftovers after a commit. */
  g_assert_true(g_file_test(manifest, G_FILE_TEST_IS_REGULAR));
  {
    g_autofree char *tmp = snap_file(f, VMS_STATE_FILE ".tmp");
    g_assert_false(g_file_test(tmp, G_FILE_TEST_EXISTS));
  }
}

static void
test_nested_dirs(Fixture *f, gconstpointer data)
{
  g_autofree char *deep = g_build_filename(f->tmp, "a", "b", "c", NULL);
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(deep, f->mem, MEM_SIZE, 100);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(deep, &error);

  g_assert_no_error(error);
  g_assert_true(g_file_test(deep, G_FILE_TEST_IS_DIR));
}

static void
test_memory_already_in_place(Fixture *f, gconstpointer data)
{
  g_autofree char *memory = snap_file(f, VMS_MEMORY_FILE);
  g_autoptr(GBytes) before = NULL;
  g_autoptr(GBytes) after = NULL;
  g_autoptr(VmsManifest) m = NULL;
  struct stat st;
  ino_t ino;

  g_assert_cmpint(g_mkdir_with_parents(f->snap, 0755), ==, 0);
  vms_test_write_pattern(memory, MEM_SIZE, 3);
  ino = inode_of(memory);
  before = vms_test_read_bytes(memory);
  m = vms_test_make_full_snapshot(f->snap, memory, MEM_SIZE, 100);
  after = vms_test_read_bytes(memory);
  g_assert_cmpuint(inode_of(memory), ==, ino);
  g_assert_cmpint(stat(memory, &st), ==, 0);
  g_assert_cmpuint(st.st_nlink, ==, 1);
  g_assert_true(g_bytes_equal(before, after));
}

static void
test_missing_manifest(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *state = snap_file(f, VMS_STATE_FILE);

  g_assert_cmpint(g_mkdir_with_parents(f->snap, 0755), ==, 0);
  vms_test_write_pattern(state, 100, 1);
  g_assert_null(vms_snapshot_open(f->snap, &error));
  expect_error(error, VMS_ERROR_INCOMPLETE, "incomplete snapshot (no manifest.bin)");
}

/* A writer freed before its commit leaves no manifest, removes what it made,
 * and the directory never reads as a snapshot. */
static void
test_uncommitted_is_incomplete(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(f->snap, &error);
  g_autofree char *memory = snap_file(f, VMS_MEMORY_FILE);
  g_autofree char *state = snap_file(f, VMS_STATE_FILE);
  vms_autofd fd = -1;

  g_assert_no_error(error);
  vms_test_write_pattern(f->mem, MEM_SIZE, 9);
  fd = vms_snap_writer_stage(w, VMS_STATE_FILE, &error);
  g_assert_no_error(error);
  g_assert_cmpint(vms_pwrite_full(fd, "state", 5, 0), ==, 0);
  g_assert_true(vms_snap_writer_finish(w, VMS_STATE_FILE, NULL, NULL, &error));
  g_assert_true(vms_snap_writer_link_memory(w, f->mem, &error));
  g_assert_no_error(error);
  g_assert_null(vms_snapshot_open(f->snap, &error));
  expect_error(error, VMS_ERROR_INCOMPLETE, "incomplete");
  g_clear_error(&error);
  g_clear_pointer(&w, vms_snap_writer_free);
  g_assert_false(g_file_test(state, G_FILE_TEST_EXISTS));
  g_assert_false(g_file_test(memory, G_FILE_TEST_EXISTS));
  g_assert_false(g_file_test(f->snap, G_FILE_TEST_EXISTS)); /* made by the writer: gone */
  g_assert_true(g_file_test(f->mem, G_FILE_TEST_IS_REGULAR));
}

static void
test_failure_keeps_existing_memory(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *memory = snap_file(f, VMS_MEMORY_FILE);
  g_autoptr(GBytes) before = NULL;
  g_autoptr(GBytes) after = NULL;
  g_autoptr(VmsSnapWriter) w = NULL;
  g_autoptr(VmsManifest) incomplete = vms_manifest_new();
  vms_autofd fd = -1;

  g_assert_cmpint(g_mkdir_with_parents(f->snap, 0755), ==, 0);
  vms_test_write_pattern(memory, MEM_SIZE, 4);
  before = vms_test_read_bytes(memory);
  w = vms_snap_writer_new(f->snap, &error);
  g_assert_no_error(error);
  fd = vms_snap_writer_stage(w, VMS_STATE_FILE, &error);
  g_assert_no_error(error);
  g_assert_true(vms_snap_writer_link_memory(w, memory, &error));
  /* A manifest that lacks what a snapshot needs is never committed. */
  g_assert_false(vms_snap_writer_commit(w, incomplete, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "incomplete");
  g_clear_pointer(&w, vms_snap_writer_free);
  after = vms_test_read_bytes(memory);
  g_assert_true(g_bytes_equal(before, after));
  {
    g_autofree char *manifest = snap_file(f, VMS_MANIFEST_FILE);
    g_autofree char *staged = snap_file(f, VMS_STATE_FILE ".tmp");
    g_assert_false(g_file_test(manifest, G_FILE_TEST_EXISTS));
    g_assert_false(g_file_test(staged, G_FILE_TEST_EXISTS));
  }
}

static void
test_existing_manifest_refused(Fixture *f, gconstpointer data)
{
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, 100);
  g_autoptr(GError) error = NULL;

  g_assert_null(vms_snap_writer_new(f->snap, &error));
  expect_error(error, VMS_ERROR_EXISTS, "refused");
}

static void
test_link_across_filesystems(Fixture *f, gconstpointer data)
{
  g_autofree char *shm = vms_test_tmpdir("/dev/shm");
  g_autofree char *shm_mem = g_build_filename(shm, "guest.ram", NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapWriter) w = NULL;
  struct stat a, b;

  g_assert_cmpint(stat(shm, &a), ==, 0);
  g_assert_cmpint(stat(f->tmp, &b), ==, 0);
  if (a.st_dev == b.st_dev) {
    vms_test_rmtree(shm);
    vms_test_cannot_run("/dev/shm and the temp directory are on the same filesystem");
    return;
  }
  vms_test_write_pattern(shm_mem, 8192, 1);
  w = vms_snap_writer_new(f->snap, &error);
  g_assert_no_error(error);
  g_assert_false(vms_snap_writer_link_memory(w, shm_mem, &error));
  expect_error(error, VMS_ERROR_NOT_SUPPORTED,
               "place the memory backing file inside the snapshot directory");
  g_assert_nonnull(strstr(error->message, shm_mem));
  vms_test_rmtree(shm);
}

static void
test_different_memory_replaced(Fixture *f, gconstpointer data)
{
  g_autofree char *memory = snap_file(f, VMS_MEMORY_FILE);
  g_autoptr(VmsManifest) m = NULL;
  g_autoptr(GBytes) want = NULL;
  g_autoptr(GBytes) got = NULL;

  g_assert_cmpint(g_mkdir_with_parents(f->snap, 0755), ==, 0);
  vms_test_write_pattern(memory, MEM_SIZE, 1);
  vms_test_write_pattern(f->mem, MEM_SIZE, 2);
  m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, 100);
  g_assert_cmpuint(inode_of(memory), ==, inode_of(f->mem));
  want = vms_test_read_bytes(f->mem);
  got = vms_test_read_bytes(memory);
  g_assert_true(g_bytes_equal(want, got));
}

/* Replaces @name in the snapshot with a symlink to a copy of itself. */
static void
swap_for_symlink(const Fixture *f, const char *name)
{
  g_autofree char *path = snap_file(f, name);
  g_autofree char *copy = g_build_filename(f->tmp, name, NULL);

  g_assert_cmpint(rename(path, copy), ==, 0);
  g_assert_cmpint(symlink(copy, path), ==, 0);
}

static void
test_symlink_refused(Fixture *f, gconstpointer data)
{
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, 100);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(f->snap, &error);

  g_assert_no_error(error);
  swap_for_symlink(f, VMS_STATE_FILE);
  g_assert_false(vms_snapshot_verify_state(s, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "symbolic link");
  g_assert_nonnull(strstr(error->message, "state"));
  g_clear_error(&error);
  swap_for_symlink(f, VMS_MANIFEST_FILE);
  g_assert_null(vms_snapshot_open(f->snap, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "symbolic link");
}

static void
test_fifo_refused(Fixture *f, gconstpointer data)
{
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, 100);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(f->snap, &error);
  g_autofree char *state = snap_file(f, VMS_STATE_FILE);
  g_autofree char *manifest = snap_file(f, VMS_MANIFEST_FILE);

  g_assert_no_error(error);
  /* Without O_NONBLOCK these opens would wait forever for a writer. */
  alarm(20);
  g_assert_cmpint(unlink(state), ==, 0);
  g_assert_cmpint(mkfifo(state, 0644), ==, 0);
  g_assert_false(vms_snapshot_verify_state(s, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "FIFO");
  g_clear_error(&error);
  g_assert_cmpint(unlink(manifest), ==, 0);
  g_assert_cmpint(mkfifo(manifest, 0644), ==, 0);
  g_assert_null(vms_snapshot_open(f->snap, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "FIFO");
  alarm(0);
}

static void
flip_bit(const char *path, guint64 offset)
{
  vms_autofd fd = open(path, O_RDWR | O_CLOEXEC);
  guint8 b;

  g_assert_cmpint(vms_pread_full(fd, &b, 1, offset), ==, 1);
  b ^= 0x10;
  g_assert_cmpint(vms_pwrite_full(fd, &b, 1, offset), ==, 0);
}

static void
test_state_corruption_caught(Fixture *f, gconstpointer data)
{
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, STATE_LEN);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(f->snap, &error);
  g_autofree char *state = snap_file(f, VMS_STATE_FILE);

  g_assert_no_error(error);
  flip_bit(state, STATE_LEN / 2);
  g_assert_false(vms_snapshot_verify(s, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "state");
  g_assert_nonnull(strstr(error->message, "SHA-256"));
  g_clear_error(&error);
  g_assert_cmpint(truncate(state, STATE_LEN - 1), ==, 0);
  g_assert_false(vms_snapshot_verify_state(s, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "state_size");
}

static void
test_memory_size_caught(Fixture *f, gconstpointer data)
{
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, 100);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(f->snap, &error);

  g_assert_cmpint(truncate(f->mem, MEM_SIZE / 2), ==, 0);
  g_assert_false(vms_snapshot_verify(s, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "memory size");
}

static void
test_invalidate(Fixture *f, gconstpointer data)
{
  g_autoptr(VmsManifest) m = vms_test_make_full_snapshot(f->snap, f->mem, MEM_SIZE, 100);
  g_autoptr(GError) error = NULL;

  g_assert_true(vms_snapshot_invalidate(f->snap, &error));
  g_assert_no_error(error);
  g_assert_null(vms_snapshot_open(f->snap, &error));
  expect_error(error, VMS_ERROR_INCOMPLETE, "invalidated");
}

static void
test_diff_verify(Fixture *f, gconstpointer data)
{
  guint8 parent_sha[32] = { 1 };
  g_autoptr(VmsManifest) m = vms_test_make_diff_snapshot(f->snap, "../base", parent_sha, MEM_SIZE);
  guint64 data_offset = VMS_TEST_DIFF_DATA_OFFSET;
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(f->snap, &error);
  g_autofree char *parent = NULL;
  g_autofree char *want_parent = g_build_filename(f->tmp, "base", NULL);
  g_autofree char *diff = snap_file(f, VMS_DIFF_FILE);
  g_autofree char *map = snap_file(f, VMS_MAP_FILE);

  g_assert_no_error(error);
  g_assert_cmpstr(vms_snapshot_memory_file(s), ==, VMS_DIFF_FILE);
  parent = vms_snapshot_parent_path(s);
  g_assert_cmpstr(parent, ==, want_parent);
  g_assert_true(vms_snapshot_verify(s, &error));
  g_assert_no_error(error);
  flip_bit(diff, data_offset + 100);
  g_assert_false(vms_snapshot_verify(s, &error));
  expect_error(error, VMS_ERROR_CORRUPT, "diff data");
  g_clear_error(&error);
  flip_bit(diff, data_offset + 100);
  flip_bit(map, 40);
  g_assert_false(vms_snapshot_verify(s, &error));
  g_assert_nonnull(error);
  g_assert_nonnull(strstr(error->message, VMS_MAP_FILE));
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define ADD(path, fn) g_test_add(path, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD("/snapdir/round-trip", test_round_trip);
  ADD("/snapdir/nested-dirs", test_nested_dirs);
  ADD("/snapdir/memory-already-in-place", test_memory_already_in_place);
  ADD("/snapdir/missing-manifest", test_missing_manifest);
  ADD("/snapdir/uncommitted-is-incomplete", test_uncommitted_is_incomplete);
  ADD("/snapdir/failure-keeps-existing-memory", test_failure_keeps_existing_memory);
  ADD("/snapdir/existing-manifest-refused", test_existing_manifest_refused);
  ADD("/snapdir/link-across-filesystems", test_link_across_filesystems);
  ADD("/snapdir/different-memory-replaced", test_different_memory_replaced);
  ADD("/snapdir/symlink-refused", test_symlink_refused);
  ADD("/snapdir/fifo-refused", test_fifo_refused);
  ADD("/snapdir/state-corruption-caught", test_state_corruption_caught);
  ADD("/snapdir/memory-size-caught", test_memory_size_caught);
  ADD("/snapdir/invalidate", test_invalidate);
  ADD("/snapdir/diff-verify", test_diff_verify);
#undef ADD
  return g_test_run();
}
