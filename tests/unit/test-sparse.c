/* Unit tests: write_diff (sparse diff + page map + SHA-256), applying a
 * diff through its map (a zeroed page, a diff made sparser by cp), and
 * sparse copies from files and from memory. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "copy.h"
#include "error.h"
#include "helpers.h"
#include "util.h"

#include "copy-fixture.h"

/* A base full of non-zero bytes; a diff written by vms_write_diff from
 * memory whose page 5 was zeroed by the guest. */
static void
test_zero_page_through_map(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *base_path = g_build_filename(dir, "base", NULL);
  g_autofree char *diff_path = g_build_filename(dir, "memory.diff", NULL);
  g_autofree char *map_path = g_build_filename(dir, "memory.map", NULL);
  g_autofree char *sparse_path = g_build_filename(dir, "sparse.diff", NULL);
  g_autoptr(GRand) rand = g_rand_new_with_seed(5);
  g_autoptr(GError) error = NULL;
  const guint64 size = 64 * PAGE;
  g_autofree guint8 *base = g_malloc(size);
  g_autofree guint8 *mem = g_malloc(size);
  g_autoptr(GArray) list = vms_extents_new();

  fill_random(rand, base, size);
  memcpy(mem, base, size);
  memset(mem + 5 * PAGE, 0, PAGE);              /* the guest zeroed page 5 */
  fill_random(rand, mem + 9 * PAGE, 2 * PAGE);  /* and rewrote pages 9-10 */
  vms_extents_append(list, 5 * PAGE, PAGE);
  vms_extents_append(list, 9 * PAGE, 2 * PAGE);
  {
    vms_autofd diff_fd = open(diff_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    vms_autofd map_fd = open(map_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    VmsCopySource src = { .fd = -1, .mem = mem, .size = size };
    g_assert_true(vms_write_diff(&src, list, diff_fd, map_fd, PAGE, NULL, NULL, NULL, NULL, &error));
    g_assert_no_error(error);
  }

  for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
    VmsCopyOptions opts = { .engine = all_engines[i] };
    VmsCopyStats stats = { 0 };
    write_file(base_path, base, size, NULL);
    g_assert_true(vms_apply_diff(base_path, diff_path, map_path, &opts, &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(stats.bytes, ==, 3 * PAGE);
    assert_file_equals(base_path, mem, size);
  }

  /* cp --sparse=always turns the zero page into a hole ... */
  g_autofree char *cp_argv = g_strdup_printf("cp --sparse=always '%s' '%s'", diff_path, sparse_path);
  int status = 0;
  g_assert_true(g_spawn_command_line_sync(cp_argv, NULL, NULL, &status, &error));
  g_assert_true(g_spawn_check_wait_status(status, NULL));
  {
    vms_autofd fd = open(sparse_path, O_RDONLY | O_CLOEXEC);
    g_autoptr(GArray) data = NULL;
    g_assert_true(vms_extents_from_seek_data(fd, size, &data, &error));
    g_assert_cmpuint(vms_extents_total(data), ==, 2 * PAGE);
  }
  /* ... so without the map the zeroed page stays stale, */
  write_file(base_path, base, size, NULL);
  g_assert_true(vms_apply_diff(base_path, sparse_path, NULL, NULL, NULL, &error));
  g_autoptr(GBytes) stale = vms_test_read_bytes(base_path);
  g_assert_cmpmem((const guint8 *)g_bytes_get_data(stale, NULL) + 5 * PAGE, PAGE, base + 5 * PAGE, PAGE);
  /* ... and through the map it applies exactly. */
  write_file(base_path, base, size, NULL);
  g_assert_true(vms_apply_diff(base_path, sparse_path, map_path, NULL, NULL, &error));
  g_assert_no_error(error);
  assert_file_equals(base_path, mem, size);
  vms_test_rmtree(dir);
}

static void
test_write_diff(void)
{
  g_autoptr(Fixture) f = fixture_new(8 * MIB, regions_list(), 9);
  g_autofree char *diff2 = g_build_filename(f->dir, "diff2", NULL);
  g_autofree char *map = g_build_filename(f->dir, "map", NULL);
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  guint8 want[32], got[32], map_sha[32], map_sha2[32];
  gsize n = 32;

  for (guint i = 0; i < f->list->len; i++) {
    const VmsExtent *e = &g_array_index(f->list, VmsExtent, i);
    g_checksum_update(sum, f->expect + e->offset, (gssize)e->length);
  }
  g_checksum_get_digest(sum, want, &n);

  for (int from_mem = 0; from_mem < 2; from_mem++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(GArray) data = NULL, back = NULL;
    vms_autofd src_fd = open(f->base_path, O_RDWR | O_CLOEXEC);
    vms_autofd diff_fd = open(diff2, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    vms_autofd map_fd = open(map, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    VmsCopySource src = { .fd = from_mem ? -1 : src_fd, .mem = from_mem ? f->expect : NULL,
                          .size = f->size };
    VmsCopyStats stats = { 0 };

    g_assert_cmpint(vms_pwrite_full(src_fd, f->expect, f->size, 0), ==, 0);
    g_assert_true(vms_write_diff(&src, f->list, diff_fd, map_fd, PAGE, NULL, got, map_sha,
                                 &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpmem(got, 32, want, 32);
    g_assert_cmpuint(stats.bytes, ==, vms_extents_total(f->list));
    g_assert_true(vms_extents_from_seek_data(diff_fd, f->size, &data, &error));
    assert_extents_equal(data, f->list);
    g_assert_true(vms_pagemap_file_read(map_fd, f->size, &back, NULL, map_sha2, &error));
    assert_extents_equal(back, f->list);
    g_assert_cmpmem(map_sha, 32, map_sha2, 32);
    g_assert_true(vms_hash_extents(diff_fd, f->list, got, &error));
    g_assert_cmpmem(got, 32, want, 32);
  }
  /* An unaligned list cannot make a page map. */
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) bad = vms_extents_new();
  vms_extents_append(bad, 100, PAGE);
  vms_autofd diff_fd = open(diff2, O_RDWR | O_CLOEXEC);
  vms_autofd map_fd = open(map, O_RDWR | O_CLOEXEC);
  VmsCopySource src = { .fd = -1, .mem = f->expect, .size = f->size };
  g_assert_false(vms_write_diff(&src, bad, diff_fd, map_fd, PAGE, NULL, NULL, NULL, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
}

static void
test_sparse_copy_file(void)
{
  g_autoptr(Fixture) f = fixture_new(8 * MIB, regions_list(), 10);
  g_autofree char *out = g_build_filename(f->dir, "copy", NULL);
  g_autoptr(GArray) data = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree guint8 *diff = g_malloc0(f->size);
  vms_autofd src_fd = open(f->diff_path, O_RDONLY | O_CLOEXEC);
  vms_autofd dst_fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  VmsCopySource src = { .fd = src_fd, .mem = NULL, .size = f->size };
  gboolean reflinked = TRUE;
  VmsCopyStats stats = { 0 };

  g_assert_true(vms_sparse_copy(&src, dst_fd, NULL, &reflinked, &stats, &error));
  g_assert_no_error(error);
  g_assert_cmpint(vms_pread_full(src_fd, diff, f->size, 0), ==, (gssize)f->size);
  assert_file_equals(out, diff, f->size);
  if (!reflinked) {
    /* Holes stay holes: the copy's data extents are the source's. */
    g_assert_true(vms_extents_from_seek_data(dst_fd, f->size, &data, &error));
    assert_extents_equal(data, f->list);
    g_assert_cmpuint(stats.bytes, ==, vms_extents_total(f->list));
  }
}

static void
test_sparse_copy_mem(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *out = g_build_filename(dir, "copy", NULL);
  const guint64 size = 4 * MIB + 3 * PAGE;
  g_autofree guint8 *mem = g_malloc0(size);
  g_autoptr(GArray) want = vms_extents_new();

  mem[0] = 1;                                      /* page 0: one byte */
  memset(mem + 2 * PAGE, 7, 300 * PAGE);           /* runs longer than 1 MiB */
  mem[700 * PAGE + PAGE - 1] = 9;                   /* last byte of page 700 */
  mem[size - 1] = 4;                               /* last page */
  vms_extents_append(want, 0, PAGE);
  vms_extents_append(want, 2 * PAGE, 300 * PAGE);
  vms_extents_append(want, 700 * PAGE, PAGE);
  vms_extents_append(want, size - PAGE, PAGE);

  for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(GArray) data = NULL;
    VmsCopyOptions opts = { .engine = all_engines[i] };
    VmsCopySource src = { .fd = -1, .mem = mem, .size = size };
    VmsCopyStats stats = { 0 };
    vms_autofd dst_fd = open(out, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

    g_assert_true(vms_sparse_copy(&src, dst_fd, &opts, NULL, &stats, &error));
    g_assert_no_error(error);
    assert_file_equals(out, mem, size);
    g_assert_cmpuint(stats.bytes, ==, vms_extents_total(want));
    g_assert_cmpuint(stats.extents, ==, want->len);
    g_assert_true(vms_extents_from_seek_data(dst_fd, size, &data, &error));
    assert_extents_equal(data, want);
  }
  vms_test_rmtree(dir);
}

/* The diff-snapshot path of the plugin, end to end: a file mapped
 * MAP_PRIVATE (the restored guest memory), some pages written (one to
 * zeros), the written pages found from /proc/self/pagemap, a diff written
 * from the mapping, and the diff applied onto a copy of the file through
 * its map gives exactly what the mapping holds. */
static void
test_pagemap_diff_roundtrip(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *mem_path = g_build_filename(dir, "memory.bin", NULL);
  g_autofree char *base_path = g_build_filename(dir, "base", NULL);
  g_autofree char *diff_path = g_build_filename(dir, "memory.diff", NULL);
  g_autofree char *map_path = g_build_filename(dir, "memory.map", NULL);
  g_autoptr(GRand) rand = g_rand_new_with_seed(21);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) list = NULL;
  const guint64 size = 512 * PAGE;
  g_autofree guint8 *content = g_malloc(size);
  VmsCopyStats stats = { 0 };

  fill_random(rand, content, size);
  write_file(mem_path, content, size, NULL);
  write_file(base_path, content, size, NULL);
  vms_autofd mem_fd = open(mem_path, O_RDONLY | O_CLOEXEC);
  guint8 *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE, mem_fd, 0);
  g_assert_true(mem != MAP_FAILED);
  for (guint i = 0; i < 40; i++) {
    guint64 page = (guint64)g_rand_int_range(rand, 0, 512);
    if (i == 0)
      memset(mem + page * PAGE, 0, PAGE);         /* the guest zeroed a page */
    else
      mem[page * PAGE + (guint64)g_rand_int_range(rand, 0, PAGE)] ^= 0x5a;
  }
  g_assert_true(vms_extents_from_pagemap(mem, size, PAGE, &list, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(list->len, >, 0);
  {
    vms_autofd diff_fd = open(diff_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    vms_autofd map_fd = open(map_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    VmsCopySource src = { .fd = -1, .mem = mem, .size = size };
    g_assert_true(vms_write_diff(&src, list, diff_fd, map_fd, PAGE, NULL, NULL, NULL, &stats,
                                 &error));
    g_assert_no_error(error);
  }
  g_assert_true(vms_apply_diff(base_path, diff_path, map_path, NULL, &stats, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(stats.bytes, ==, vms_extents_total(list));
  assert_file_equals(base_path, mem, size);
  /* The memory file itself was never written (the mapping is private). */
  assert_file_equals(mem_path, content, size);
  munmap(mem, size);
  vms_test_rmtree(dir);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/sparse/zero-page-through-map", test_zero_page_through_map);
  g_test_add_func("/sparse/write-diff", test_write_diff);
  g_test_add_func("/sparse/pagemap-diff-roundtrip", test_pagemap_diff_roundtrip);
  g_test_add_func("/sparse/sparse-copy/file", test_sparse_copy_file);
  g_test_add_func("/sparse/sparse-copy/mem", test_sparse_copy_mem);
  return g_test_run();
}
