/* vmsnap unit tests: the base/diff fixture shared by test-copy.c and
 * test-sparse.c. Test code: failures abort via g_assert. Functions are
 * static (one copy per test program) and marked unused where a program
 * may not need them. */
#pragma once

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "copy.h"
#include "helpers.h"
#include "util.h"

#define PAGE 4096u
#define MIB (1024u * 1024u)

static G_GNUC_UNUSED const VmsCopyEngine all_engines[] = {
  VMS_ENGINE_URING, VMS_ENGINE_COPY_FILE_RANGE, VMS_ENGINE_READ_WRITE, VMS_ENGINE_AUTO,
};

/* A base, a diff and the expected result of applying one onto the other. */
typedef struct {
  char *dir;
  char *base_path;
  char *diff_path;
  guint64 size;
  guint8 *base;       /* content of the base */
  guint8 *expect;     /* base with the diff's extents applied */
  GArray *list;       /* the diff's extents */
} Fixture;

static G_GNUC_UNUSED void
fixture_free(Fixture *f)
{
  vms_test_rmtree(f->dir);
  g_free(f->dir);
  g_free(f->base_path);
  g_free(f->diff_path);
  g_free(f->base);
  g_free(f->expect);
  g_clear_pointer(&f->list, g_array_unref);
  g_free(f);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Fixture, fixture_free)

static G_GNUC_UNUSED void
write_file(const char *path, const guint8 *data, guint64 size, const GArray *only)
{
  vms_autofd fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
  if (only == NULL) {
    g_assert_cmpint(vms_pwrite_full(fd, data, size, 0), ==, 0);
    return;
  }
  for (guint i = 0; i < only->len; i++) {
    const VmsExtent *e = &g_array_index(only, VmsExtent, i);
    g_assert_cmpint(vms_pwrite_full(fd, data + e->offset, e->length, e->offset), ==, 0);
  }
}

static G_GNUC_UNUSED void
fill_random(GRand *rand, guint8 *buf, guint64 len)
{
  for (guint64 i = 0; i + 4 <= len; i += 4) {
    guint32 v = g_rand_int(rand) | 0x01010101u;   /* no zero bytes: no accidental holes */
    memcpy(buf + i, &v, 4);
  }
}

/* Makes a fixture of @size bytes whose diff carries @list (taken). */
static G_GNUC_UNUSED Fixture *
fixture_new(guint64 size, GArray *list, guint32 seed)
{
  Fixture *f = g_new0(Fixture, 1);
  g_autoptr(GRand) rand = g_rand_new_with_seed(seed);
  g_autofree guint8 *diff = g_malloc0(size);

  f->dir = vms_test_tmpdir(NULL);
  f->base_path = g_build_filename(f->dir, "base", NULL);
  f->diff_path = g_build_filename(f->dir, "diff", NULL);
  f->size = size;
  f->list = list;
  f->base = g_malloc(size);
  fill_random(rand, f->base, size);
  fill_random(rand, diff, size);
  f->expect = g_memdup2(f->base, size);
  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    memcpy(f->expect + e->offset, diff + e->offset, e->length);
  }
  write_file(f->base_path, f->base, size, NULL);
  write_file(f->diff_path, diff, size, list);
  return f;
}

static G_GNUC_UNUSED void
fixture_reset_base(Fixture *f)
{
  write_file(f->base_path, f->base, f->size, NULL);
}

static G_GNUC_UNUSED void
assert_file_equals(const char *path, const guint8 *want, guint64 size)
{
  g_autoptr(GBytes) got = vms_test_read_bytes(path);
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(got, &len);

  g_assert_cmpuint(len, ==, size);
  for (guint64 i = 0; i < size; i += PAGE) {
    gsize n = (gsize)MIN((guint64)PAGE, size - i);
    if (memcmp(data + i, want + i, n) != 0)
      g_error("%s differs in the page at %" G_GUINT64_FORMAT, path, i);
  }
}

static G_GNUC_UNUSED void
assert_extents_equal(const GArray *got, const GArray *want)
{
  g_assert_cmpuint(got->len, ==, want->len);
  for (guint i = 0; i < want->len; i++) {
    g_assert_cmpuint(g_array_index(got, VmsExtent, i).offset, ==, g_array_index(want, VmsExtent, i).offset);
    g_assert_cmpuint(g_array_index(got, VmsExtent, i).length, ==, g_array_index(want, VmsExtent, i).length);
  }
}

static G_GNUC_UNUSED GArray *
regions_list(void)
{
  GArray *list = vms_extents_new();
  vms_extents_append(list, 0, PAGE);                              /* first page */
  vms_extents_append(list, MIB - 2 * PAGE, 4 * PAGE);              /* across 1 MiB */
  vms_extents_append(list, 2 * MIB + 3 * PAGE, 2 * MIB + 5 * PAGE); /* > 1 MiB, unaligned */
  vms_extents_append(list, 7 * MIB + 12 * PAGE, 7 * PAGE);
  vms_extents_append(list, 8 * MIB - PAGE, PAGE);                  /* last page */
  return list;
}

