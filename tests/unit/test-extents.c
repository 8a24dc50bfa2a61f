/* Unit tests: extent lists (append/merge), SEEK_DATA walks, the
 * /proc/self/pagemap reader and the memory.map file format. */
#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "error.h"
#include "extents.h"
#include "helpers.h"
#include "util.h"

#define PAGE 4096u

static void
assert_extents(const GArray *list, const VmsExtent *want, guint n)
{
  g_assert_cmpuint(list->len, ==, n);
  for (guint i = 0; i < n; i++) {
    g_assert_cmpuint(g_array_index(list, VmsExtent, i).offset, ==, want[i].offset);
    g_assert_cmpuint(g_array_index(list, VmsExtent, i).length, ==, want[i].length);
  }
}

static void
test_append_merge(void)
{
  g_autoptr(GArray) list = vms_extents_new();

  vms_extents_append(list, 0, PAGE);
  vms_extents_append(list, PAGE, PAGE);       /* touches: merged */
  vms_extents_append(list, 3 * PAGE, 0);      /* empty: ignored */
  vms_extents_append(list, 5 * PAGE, 2 * PAGE);
  const VmsExtent want[] = { { 0, 2 * PAGE }, { 5 * PAGE, 2 * PAGE } };
  assert_extents(list, want, 2);
  g_assert_cmpuint(vms_extents_total(list), ==, 4 * PAGE);
}

static int
make_file(const char *dir, const char *name, guint64 size)
{
  g_autofree char *path = g_build_filename(dir, name, NULL);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
  return fd;
}

static void
write_at(int fd, guint64 off, gsize len, guint8 byte)
{
  g_autofree guint8 *buf = g_malloc(len);
  memset(buf, byte, len);
  g_assert_cmpint(vms_pwrite_full(fd, buf, len, off), ==, 0);
}

static void
test_seek_data(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) list = NULL;
  vms_autofd fd = make_file(dir, "sparse", 16 * 1024 * 1024);

  write_at(fd, 0, PAGE, 1);
  write_at(fd, 1024 * 1024 - PAGE, 3 * PAGE, 2);   /* across the 1 MiB mark */
  write_at(fd, 16 * 1024 * 1024 - PAGE, PAGE, 3);  /* the last page */
  g_assert_true(vms_extents_from_seek_data(fd, 16 * 1024 * 1024, &list, &error));
  g_assert_no_error(error);
  const VmsExtent want[] = { { 0, PAGE }, { 1024 * 1024 - PAGE, 3 * PAGE },
                             { 16 * 1024 * 1024 - PAGE, PAGE } };
  assert_extents(list, want, 3);

  /* A size limit cuts the walk. */
  g_clear_pointer(&list, g_array_unref);
  g_assert_true(vms_extents_from_seek_data(fd, 1024 * 1024, &list, &error));
  const VmsExtent cut[] = { { 0, PAGE }, { 1024 * 1024 - PAGE, PAGE } };
  assert_extents(list, cut, 2);

  /* All holes: no extents. */
  vms_autofd empty = make_file(dir, "holes", 8 * 1024 * 1024);
  g_clear_pointer(&list, g_array_unref);
  g_assert_true(vms_extents_from_seek_data(empty, 8 * 1024 * 1024, &list, &error));
  g_assert_cmpuint(list->len, ==, 0);
  vms_test_rmtree(dir);
}

/* Maps @n pages of a file MAP_PRIVATE at an address aligned to @align. */
static guint8 *
map_private_aligned(int fd, gsize n, gsize align)
{
  gsize len = n * PAGE;
  guint8 *area = mmap(NULL, len + align, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  g_assert_true(area != MAP_FAILED);
  guint8 *aligned = (guint8 *)(((guintptr)area + align - 1) & ~(guintptr)(align - 1));
  guint8 *p = mmap(aligned, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
  g_assert_true(p == aligned);
  return p;
}

static void
test_pagemap(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) list = NULL;
  const gsize n = 64;
  vms_autofd fd = make_file(dir, "mem", n * PAGE);

  write_at(fd, 0, n * PAGE, 0x5a);
  guint8 *p = map_private_aligned(fd, n, 16384);
  volatile guint8 sink = 0;
  for (gsize i = 0; i < n; i += 2)
    sink ^= p[i * PAGE];                  /* read-only faults stay file pages */
  (void)sink;
  p[3 * PAGE] = 1;
  memset(p + 10 * PAGE, 2, 3 * PAGE);
  p[63 * PAGE + PAGE - 1] = 3;

  /* Both readers: PAGEMAP_SCAN (Linux 6.7+; where it is missing the
   * first round takes the entry reader too) and the pagemap entries. */
  const VmsExtent want[] = { { 3 * PAGE, PAGE }, { 10 * PAGE, 3 * PAGE }, { 63 * PAGE, PAGE } };
  const VmsExtent sub[] = { { 2 * PAGE, 3 * PAGE } };
  for (int entries = 0; entries < 2; entries++) {
    if (entries)
      g_setenv("VMSNAP_TEST_NO_PAGEMAP_SCAN", "1", TRUE);
    g_clear_pointer(&list, g_array_unref);
    g_assert_true(vms_extents_from_pagemap(p, n * PAGE, PAGE, &list, &error));
    g_assert_no_error(error);
    assert_extents(list, want, 3);
    /* A sub-range reports offsets relative to its start. */
    g_clear_pointer(&list, g_array_unref);
    g_assert_true(vms_extents_from_pagemap(p + 8 * PAGE, 8 * PAGE, PAGE, &list, &error));
    assert_extents(list, sub, 1);
  }
  g_unsetenv("VMSNAP_TEST_NO_PAGEMAP_SCAN");

  /* Coarser pages (as with huge pages): any written base page marks its page. */
  g_clear_pointer(&list, g_array_unref);
  g_assert_true(vms_extents_from_pagemap(p, n * PAGE, 16384, &list, &error));
  const VmsExtent coarse[] = { { 0, 16384 }, { 2 * 16384, 2 * 16384 }, { 15 * 16384, 16384 } };
  assert_extents(list, coarse, 3);

  /* Unaligned arguments are refused. */
  g_clear_pointer(&list, g_array_unref);
  g_assert_false(vms_extents_from_pagemap(p + 1, PAGE, PAGE, &list, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
  g_assert_null(list);
  munmap(p, n * PAGE);
  vms_test_rmtree(dir);
}

static GArray *
sample_list(void)
{
  GArray *list = vms_extents_new();
  vms_extents_append(list, 0, PAGE);
  vms_extents_append(list, 5 * PAGE, 3 * PAGE);
  vms_extents_append(list, 100 * PAGE, PAGE);
  return list;
}

static void
test_map_file_roundtrip(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) list = sample_list(), back = NULL;
  guint8 sha_w[32], sha_r[32], sha_file[32];
  guint32 page_size = 0;
  vms_autofd fd = make_file(dir, "memory.map", 12345);  /* truncated by the writer */

  g_assert_true(vms_pagemap_file_write(fd, list, PAGE, 128 * PAGE, sha_w, &error));
  g_assert_no_error(error);
  g_assert_cmpint(lseek(fd, 0, SEEK_END), ==, 32 + 3 * 16);
  g_assert_true(vms_pagemap_file_read(fd, 128 * PAGE, &back, &page_size, sha_r, &error));
  g_assert_no_error(error);
  assert_extents(back, (const VmsExtent *)(void *)list->data, list->len);
  g_assert_cmpuint(page_size, ==, PAGE);
  g_assert_cmpmem(sha_w, 32, sha_r, 32);

  guint8 raw[80];
  g_assert_cmpint(vms_pread_full(fd, raw, sizeof raw, 0), ==, sizeof raw);
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  gsize len = 32;
  g_checksum_update(sum, raw, sizeof raw);
  g_checksum_get_digest(sum, sha_file, &len);
  g_assert_cmpmem(sha_w, 32, sha_file, 32);
  g_assert_cmpmem(raw, 8, "VMSNMAP1", 8);

  /* Another memory size is a mismatch. */
  g_clear_pointer(&back, g_array_unref);
  g_assert_false(vms_pagemap_file_read(fd, 64 * PAGE, &back, NULL, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_MISMATCH);
  vms_test_rmtree(dir);
}

/* Overwrites @len bytes at @off of a valid map file and expects CORRUPT. */
static void
expect_corrupt(const char *dir, gsize off, const void *bytes, gsize len, off_t truncate_to)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) list = sample_list(), back = NULL;
  vms_autofd fd = make_file(dir, "bad.map", 0);

  g_assert_true(vms_pagemap_file_write(fd, list, PAGE, 128 * PAGE, NULL, &error));
  if (bytes != NULL)
    g_assert_cmpint(vms_pwrite_full(fd, bytes, len, off), ==, 0);
  if (truncate_to >= 0)
    g_assert_cmpint(ftruncate(fd, truncate_to), ==, 0);
  g_assert_false(vms_pagemap_file_read(fd, 0, &back, NULL, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_null(back);
}

static void
test_map_file_corrupt(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  guint64 v;

  expect_corrupt(dir, 0, "VMSNMAP2", 8, -1);                      /* magic */
  expect_corrupt(dir, 0, NULL, 0, 20);                            /* short header */
  expect_corrupt(dir, 0, NULL, 0, 32 + 2 * 16);                   /* count > entries */
  v = GUINT64_TO_LE(G_MAXUINT64 / 8);
  expect_corrupt(dir, 24, &v, 8, -1);                             /* huge count */
  v = GUINT64_TO_LE(5 * PAGE + 1);
  expect_corrupt(dir, 32 + 16, &v, 8, -1);                        /* unaligned offset */
  v = GUINT64_TO_LE(0);
  expect_corrupt(dir, 32 + 2 * 16, &v, 8, -1);                    /* unsorted */
  v = GUINT64_TO_LE(200 * PAGE);
  expect_corrupt(dir, 32 + 2 * 16, &v, 8, -1);                    /* outside memory */
  v = GUINT64_TO_LE(G_MAXUINT64 - PAGE + 1);
  expect_corrupt(dir, 32 + 2 * 16 + 8, &v, 8, -1);                /* length overflow */
  guint32 ps = GUINT32_TO_LE(3000);
  expect_corrupt(dir, 8, &ps, 4, -1);                             /* page size */
  guint32 flags = GUINT32_TO_LE(1);
  expect_corrupt(dir, 12, &flags, 4, -1);                         /* flags */
  vms_test_rmtree(dir);
}

static void
test_map_file_write_refuses_bad_list(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) list = vms_extents_new();
  vms_autofd fd = make_file(dir, "m", 0);

  vms_extents_append(list, PAGE, 100);
  g_assert_false(vms_pagemap_file_write(fd, list, PAGE, 16 * PAGE, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
  vms_test_rmtree(dir);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/extents/append-merge", test_append_merge);
  g_test_add_func("/extents/seek-data", test_seek_data);
  g_test_add_func("/extents/pagemap", test_pagemap);
  g_test_add_func("/extents/map-file/roundtrip", test_map_file_roundtrip);
  g_test_add_func("/extents/map-file/corrupt", test_map_file_corrupt);
  g_test_add_func("/extents/map-file/write-refuses-bad-list", test_map_file_write_refuses_bad_list);
  return g_test_run();
}
