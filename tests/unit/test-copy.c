/* Unit tests: the copy engines, apply_diff (SPEC.md section 6), write_diff,
 * hashing and sparse copies. Files live in g_get_tmp_dir() (a disk
 * filesystem with SEEK_DATA here). */
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy.h"
#include "error.h"
#include "helpers.h"
#include "util.h"

#define PAGE 4096u
#define MIB (1024u * 1024u)

static const VmsCopyEngine all_engines[] = {
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

static void
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

static void
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

static void
fill_random(GRand *rand, guint8 *buf, guint64 len)
{
  for (guint64 i = 0; i + 4 <= len; i += 4) {
    guint32 v = g_rand_int(rand) | 0x01010101u;   /* no zero bytes: no accidental holes */
    memcpy(buf + i, &v, 4);
  }
}

/* Makes a fixture of @size bytes whose diff carries @list (taken). */
static Fixture *
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

static void
fixture_reset_base(Fixture *f)
{
  write_file(f->base_path, f->base, f->size, NULL);
}

static void
assert_file_equals(const char *path, const guint8 *want, guint64 size)
{
  g_autoptr(GBytes) got = vms_test_read_file(path);
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(got, &len);

  g_assert_cmpuint(len, ==, size);
  for (guint64 i = 0; i < size; i += PAGE) {
    gsize n = (gsize)MIN((guint64)PAGE, size - i);
    if (memcmp(data + i, want + i, n) != 0)
      g_error("%s differs in the page at %" G_GUINT64_FORMAT, path, i);
  }
}

static void
assert_extents_equal(const GArray *got, const GArray *want)
{
  g_assert_cmpuint(got->len, ==, want->len);
  for (guint i = 0; i < want->len; i++) {
    g_assert_cmpuint(g_array_index(got, VmsExtent, i).offset, ==, g_array_index(want, VmsExtent, i).offset);
    g_assert_cmpuint(g_array_index(got, VmsExtent, i).length, ==, g_array_index(want, VmsExtent, i).length);
  }
}

static GArray *
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

static void
test_apply_regions(void)
{
  g_autoptr(Fixture) f = fixture_new(8 * MIB, regions_list(), 1);

  for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
    g_autoptr(GError) error = NULL;
    VmsCopyOptions opts = { .engine = all_engines[i] };
    VmsCopyStats stats = { 0 };

    fixture_reset_base(f);
    g_assert_true(vms_apply_diff(f->base_path, f->diff_path, NULL, &opts, &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(stats.bytes, ==, vms_extents_total(f->list));
    g_assert_cmpuint(stats.extents, ==, f->list->len);
    assert_file_equals(f->base_path, f->expect, f->size);
    /* Spot checks: a changed byte inside each region, the base's bytes in holes. */
    g_autoptr(GBytes) got = vms_test_read_file(f->base_path);
    const guint8 *d = g_bytes_get_data(got, NULL);
    g_assert_cmpint(d[MIB + PAGE], ==, f->expect[MIB + PAGE]);
    g_assert_cmpint(d[MIB + PAGE], !=, f->base[MIB + PAGE]);
    g_assert_cmpint(d[MIB + 2 * PAGE], ==, f->base[MIB + 2 * PAGE]);
    g_assert_cmpint(d[2 * MIB + 3 * PAGE - 1], ==, f->base[2 * MIB + 3 * PAGE - 1]);
    g_assert_cmpint(d[4 * MIB + 8 * PAGE - 1], !=, f->base[4 * MIB + 8 * PAGE - 1]);
    g_assert_cmpint(d[8 * MIB - 1], !=, f->base[8 * MIB - 1]);
  }
}

static void
test_apply_all_holes_and_all_data(void)
{
  g_autoptr(GArray) all = vms_extents_new();
  vms_extents_append(all, 0, 4 * MIB + PAGE);
  g_autoptr(Fixture) holes = fixture_new(4 * MIB + PAGE, vms_extents_new(), 2);
  g_autoptr(Fixture) data = fixture_new(4 * MIB + PAGE, g_steal_pointer(&all), 3);

  for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
    g_autoptr(GError) error = NULL;
    VmsCopyOptions opts = { .engine = all_engines[i] };
    VmsCopyStats stats = { 0 };

    g_assert_true(vms_apply_diff(holes->base_path, holes->diff_path, NULL, &opts, &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(stats.bytes, ==, 0);
    g_assert_cmpuint(stats.extents, ==, 0);
    assert_file_equals(holes->base_path, holes->base, holes->size);

    fixture_reset_base(data);
    g_assert_true(vms_apply_diff(data->base_path, data->diff_path, NULL, &opts, &stats, &error));
    g_assert_cmpuint(stats.bytes, ==, data->size);
    g_assert_cmpuint(stats.extents, ==, 1);
    assert_file_equals(data->base_path, data->expect, data->size);
  }
}

static GArray *
regions_list_small(void)
{
  GArray *list = vms_extents_new();
  vms_extents_append(list, PAGE, 2 * PAGE);
  vms_extents_append(list, MIB + 5 * PAGE, PAGE);
  return list;
}

static void
test_apply_refusals(void)
{
  g_autoptr(Fixture) f = fixture_new(2 * MIB, regions_list_small(), 4);
  g_autoptr(GError) error = NULL;
  g_autofree char *missing = g_build_filename(f->dir, "missing", NULL);
  g_autofree char *shorter = g_build_filename(f->dir, "shorter", NULL);

  g_assert_false(vms_apply_diff(missing, f->diff_path, NULL, NULL, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_IO);
  g_assert_nonnull(strstr(error->message, missing));
  g_assert_false(g_file_test(missing, G_FILE_TEST_EXISTS));   /* never created */
  g_clear_error(&error);
  g_assert_false(vms_apply_diff(f->base_path, missing, NULL, NULL, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_IO);
  g_clear_error(&error);

  write_file(shorter, f->base, MIB, NULL);
  g_assert_false(vms_apply_diff(shorter, f->diff_path, NULL, NULL, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_MISMATCH);
  g_assert_nonnull(strstr(error->message, "1048576"));
  g_assert_nonnull(strstr(error->message, "2097152"));
  assert_file_equals(shorter, f->base, MIB);

  /* A read-only base is refused: base is opened read-write. */
  g_clear_error(&error);
  g_assert_cmpint(chmod(f->base_path, 0444), ==, 0);
  if (geteuid() != 0) {
    g_assert_false(vms_apply_diff(f->base_path, f->diff_path, NULL, NULL, NULL, &error));
    g_assert_nonnull(strstr(error->message, "read-write"));
  }
}

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
  g_autoptr(GBytes) stale = vms_test_read_file(base_path);
  g_assert_cmpmem((const guint8 *)g_bytes_get_data(stale, NULL) + 5 * PAGE, PAGE, base + 5 * PAGE, PAGE);
  /* ... and through the map it applies exactly. */
  write_file(base_path, base, size, NULL);
  g_assert_true(vms_apply_diff(base_path, sparse_path, map_path, NULL, NULL, &error));
  g_assert_no_error(error);
  assert_file_equals(base_path, mem, size);
  vms_test_rmtree(dir);
}

static void
test_uring_setup_failure(void)
{
  if (g_test_subprocess()) {
    g_autoptr(Fixture) f = fixture_new(8 * MIB, regions_list(), 6);
    g_autoptr(GError) error = NULL;
    VmsCopyOptions opts = { .engine = VMS_ENGINE_URING };
    VmsCopyStats stats = { 0 };

    g_assert_cmpstr(g_getenv("VMSNAP_TEST_URING_FAIL"), ==, "1");
    g_assert_true(vms_apply_diff(f->base_path, f->diff_path, NULL, &opts, &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpint(stats.engine, !=, VMS_ENGINE_URING);
    g_assert_cmpuint(stats.bytes, ==, vms_extents_total(f->list));
    assert_file_equals(f->base_path, f->expect, f->size);
    return;
  }
  g_setenv("VMSNAP_TEST_URING_FAIL", "1", TRUE);
  g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_unsetenv("VMSNAP_TEST_URING_FAIL");
  g_test_trap_assert_passed();
}

/* Random extents over @size bytes: runs of 1 page to 3 MiB, gaps likewise. */
static GArray *
random_list(GRand *rand, guint64 size)
{
  GArray *list = vms_extents_new();
  guint64 pos = (guint64)g_rand_int_range(rand, 0, 4) * PAGE;

  while (pos < size) {
    guint64 len = g_rand_boolean(rand) ? (guint64)g_rand_int_range(rand, 1, 9) * PAGE
                                        : (guint64)g_rand_int_range(rand, 1, 3 * MIB / PAGE) * PAGE;
    /* Sometimes an odd byte length, as a diff without a page map may have. */
    if (g_rand_int_range(rand, 0, 8) == 0)
      len -= (guint64)g_rand_int_range(rand, 1, 100);
    len = MIN(len, size - pos);
    vms_extents_append(list, pos, len);
    pos += len + (guint64)g_rand_int_range(rand, 1, 64) * PAGE;
  }
  return list;
}

static void
test_property_engines_identical(void)
{
  guint seeds = g_test_slow() ? 64 : 16;

  for (guint seed = 1; seed <= seeds; seed++) {
    g_autoptr(GRand) rand = g_rand_new_with_seed(seed);
    guint64 size = (guint64)g_rand_int_range(rand, 1, 12 * MIB / PAGE) * PAGE;
    g_autoptr(Fixture) f = fixture_new(size, random_list(rand, size), seed);
    vms_autofd diff_fd = open(f->diff_path, O_RDONLY | O_CLOEXEC);
    g_autofree guint8 *diff_mem = g_malloc(size);
    g_assert_cmpint(vms_pread_full(diff_fd, diff_mem, size, 0), ==, (gssize)size);

    for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
      g_autoptr(GError) error = NULL;
      VmsCopyOptions opts = { .engine = all_engines[i] };
      VmsCopyStats stats = { 0 };

      /* From the file, with the exact list (SEEK_DATA may round to blocks). */
      fixture_reset_base(f);
      vms_autofd base_fd = open(f->base_path, O_RDWR | O_CLOEXEC);
      g_assert_true(vms_apply_diff_fd(base_fd, diff_fd, f->list, &opts, &stats, &error));
      g_assert_no_error(error);
      g_assert_cmpuint(stats.bytes, ==, vms_extents_total(f->list));
      assert_file_equals(f->base_path, f->expect, size);

      /* From memory. */
      fixture_reset_base(f);
      VmsCopySource src = { .fd = -1, .mem = diff_mem, .size = size };
      g_assert_true(vms_copy_extents(&src, base_fd, f->list, &opts, &stats, &error));
      g_assert_no_error(error);
      assert_file_equals(f->base_path, f->expect, size);
    }
  }
}

static void
test_short_write(void)
{
  if (g_test_subprocess()) {
    g_autoptr(GArray) list = vms_extents_new();
    vms_extents_append(list, 0, 4 * MIB);
    g_autoptr(Fixture) f = fixture_new(4 * MIB, g_steal_pointer(&list), 7);
    struct rlimit lim = { .rlim_cur = 3 * MIB + 12345, .rlim_max = RLIM_INFINITY };

    signal(SIGXFSZ, SIG_IGN);
    g_assert_cmpint(setrlimit(RLIMIT_FSIZE, &lim), ==, 0);
    for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
      g_autoptr(GError) error = NULL;
      VmsCopyOptions opts = { .engine = all_engines[i] };
      /* A write crossing the limit comes back short; the remainder fails with EFBIG. */
      g_assert_false(vms_apply_diff(f->base_path, f->diff_path, NULL, &opts, NULL, &error));
      g_assert_error(error, VMS_ERROR, VMS_ERROR_IO);
      g_assert_nonnull(strstr(error->message, g_strerror(EFBIG)));
      g_autoptr(GBytes) got = vms_test_read_file(f->base_path);
      g_assert_cmpmem(g_bytes_get_data(got, NULL), 3 * MIB + 12345, f->expect, 3 * MIB + 12345);
    }
    return;
  }
  g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_test_trap_assert_passed();
}

/* Every io_uring request capped at an odd 1000 bytes: each chunk completes
 * short many times and must be finished through the re-queue path. */
static void
test_uring_short_transfers(void)
{
  if (g_test_subprocess()) {
    g_autoptr(Fixture) f = fixture_new(8 * MIB, regions_list(), 12);
    vms_autofd diff_fd = open(f->diff_path, O_RDONLY | O_CLOEXEC);
    vms_autofd base_fd = open(f->base_path, O_RDWR | O_CLOEXEC);
    g_autofree guint8 *mem = g_malloc(f->size);
    g_autoptr(GError) error = NULL;
    VmsCopyOptions opts = { .engine = VMS_ENGINE_URING };
    VmsCopyStats stats = { 0 };

    g_assert_true(vms_apply_diff_fd(base_fd, diff_fd, f->list, &opts, &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpint(stats.engine, ==, VMS_ENGINE_URING);
    assert_file_equals(f->base_path, f->expect, f->size);

    fixture_reset_base(f);
    g_assert_cmpint(vms_pread_full(diff_fd, mem, f->size, 0), ==, (gssize)f->size);
    VmsCopySource src = { .fd = -1, .mem = mem, .size = f->size };
    g_assert_true(vms_copy_extents(&src, base_fd, f->list, &opts, &stats, &error));
    g_assert_no_error(error);
    assert_file_equals(f->base_path, f->expect, f->size);
    return;
  }
  g_setenv("VMSNAP_TEST_URING_MAX_IO", "1000", TRUE);
  g_test_trap_subprocess(NULL, 0, G_TEST_SUBPROCESS_INHERIT_STDERR);
  g_unsetenv("VMSNAP_TEST_URING_MAX_IO");
  g_test_trap_assert_passed();
}

/* AUTO with cached data big enough to run on several threads: many
 * extents, and one extent long enough to be cut between the threads. */
static void
test_auto_parallel(void)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed(13);
  g_autoptr(GArray) one = vms_extents_new();
  GArray *scattered = vms_extents_new();
  vms_extents_append(one, PAGE, 20 * MIB - 3 * PAGE);
  for (guint64 pos = 0; pos < 24 * MIB - 64 * PAGE; pos += (guint64)g_rand_int_range(rand, 2, 64) * PAGE)
    vms_extents_append(scattered, pos, (guint64)g_rand_int_range(rand, 1, 2 * PAGE));
  g_autoptr(Fixture) many = fixture_new(24 * MIB, scattered, 13);
  g_autoptr(Fixture) big = fixture_new(20 * MIB, g_steal_pointer(&one), 14);
  Fixture *fs[] = { many, big };

  g_assert_cmpuint(many->list->len, >=, 64);
  for (guint i = 0; i < G_N_ELEMENTS(fs); i++) {
    g_autoptr(GError) error = NULL;
    VmsCopyStats stats = { 0 };
    vms_autofd diff_fd = open(fs[i]->diff_path, O_RDONLY | O_CLOEXEC);
    vms_autofd base_fd = open(fs[i]->base_path, O_RDWR | O_CLOEXEC);

    g_assert_true(vms_apply_diff_fd(base_fd, diff_fd, fs[i]->list, NULL, &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(stats.bytes, ==, vms_extents_total(fs[i]->list));
    g_assert_cmpuint(stats.extents, ==, fs[i]->list->len);
    assert_file_equals(fs[i]->base_path, fs[i]->expect, fs[i]->size);
  }
}

/* AUTO without a map on a cached diff of 64 MiB or more walks and copies on
 * several threads, each over a range of the file (2 CPUs: a boundary at
 * 40 MiB for 80 MiB). An extent across the boundary is counted once; one
 * that starts exactly on it is counted too. */
static void
test_auto_walk_parallel(void)
{
  const guint64 size = 80 * MIB, mid = 40 * MIB;
  GArray *across = vms_extents_new(), *on = vms_extents_new();
  g_autoptr(GRand) rand = g_rand_new_with_seed(15);

  for (guint64 pos = 0; pos < size - 64 * PAGE;) {
    guint64 len = (guint64)g_rand_int_range(rand, 1, 40) * PAGE;
    if (pos < mid && pos + len + 64 * PAGE > mid) {
      vms_extents_append(across, mid - 2 * PAGE, 4 * PAGE);   /* across the boundary */
      vms_extents_append(on, mid, 3 * PAGE);                  /* starts on it */
      pos = mid + 8 * PAGE;
      continue;
    }
    vms_extents_append(across, pos, len);
    vms_extents_append(on, pos, len);
    pos += len + (guint64)g_rand_int_range(rand, 1, 64) * PAGE;
  }
  g_autoptr(Fixture) a = fixture_new(size, across, 15);
  g_autoptr(Fixture) b = fixture_new(size, on, 16);
  Fixture *fs[] = { a, b };
  for (guint i = 0; i < G_N_ELEMENTS(fs); i++) {
    g_autoptr(GError) error = NULL;
    VmsCopyStats stats = { 0 };
    VmsCopyOptions opts = { .fsync = TRUE };

    g_assert_true(vms_apply_diff(fs[i]->base_path, fs[i]->diff_path, NULL, &opts, &stats, &error));
    g_assert_no_error(error);
    g_assert_cmpuint(stats.bytes, ==, vms_extents_total(fs[i]->list));
    g_assert_cmpuint(stats.extents, ==, fs[i]->list->len);
    assert_file_equals(fs[i]->base_path, fs[i]->expect, size);
  }
}

static void
test_source_shorter_than_extent(void)
{
  g_autoptr(Fixture) f = fixture_new(2 * MIB, regions_list_small(), 8);
  vms_autofd diff_fd = open(f->diff_path, O_RDONLY | O_CLOEXEC);
  vms_autofd base_fd = open(f->base_path, O_RDWR | O_CLOEXEC);
  g_autoptr(GArray) list = vms_extents_new();

  vms_extents_append(list, MIB, 2 * MIB);
  for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
    g_autoptr(GError) error = NULL;
    VmsCopyOptions opts = { .engine = all_engines[i] };
    /* The caller claims a bigger source than the file holds. */
    VmsCopySource src = { .fd = diff_fd, .mem = NULL, .size = 3 * MIB };
    g_assert_false(vms_copy_extents(&src, base_fd, list, &opts, NULL, &error));
    g_assert_error(error, VMS_ERROR, VMS_ERROR_IO);
    g_assert_nonnull(strstr(error->message, "2097152"));
  }
  /* An extent outside the source is refused before any I/O. */
  g_autoptr(GError) error = NULL;
  VmsCopySource src = { .fd = diff_fd, .mem = NULL, .size = 2 * MIB };
  g_assert_false(vms_copy_extents(&src, base_fd, list, NULL, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
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

static void
progress_cb(guint64 done, guint64 total, gpointer user_data)
{
  guint64 *last = user_data;
  g_assert_cmpuint(done, >=, last[0]);
  g_assert_cmpuint(done, <=, total);
  last[0] = done;
  last[1]++;
}

static void
test_engine_names_and_progress(void)
{
  for (guint i = 0; i < G_N_ELEMENTS(all_engines); i++) {
    VmsCopyEngine e = 99;
    g_assert_true(vms_copy_engine_from_string(vms_copy_engine_name(all_engines[i]), &e));
    g_assert_cmpint(e, ==, all_engines[i]);
  }
  VmsCopyEngine e = 99;
  g_assert_false(vms_copy_engine_from_string("splice", &e));
  g_assert_cmpint(e, ==, 99);

  g_autoptr(Fixture) f = fixture_new(8 * MIB, regions_list(), 11);
  guint64 seen[2] = { 0, 0 };
  VmsCopyOptions opts = { .progress = progress_cb, .progress_data = seen, .fsync = TRUE };
  g_autoptr(GError) error = NULL;
  g_assert_true(vms_apply_diff(f->base_path, f->diff_path, NULL, &opts, NULL, &error));
  g_assert_cmpuint(seen[0], ==, vms_extents_total(f->list));
  g_assert_cmpuint(seen[1], >=, 1);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/copy/apply/regions", test_apply_regions);
  g_test_add_func("/copy/apply/all-holes-all-data", test_apply_all_holes_and_all_data);
  g_test_add_func("/copy/apply/refusals", test_apply_refusals);
  g_test_add_func("/copy/apply/zero-page-through-map", test_zero_page_through_map);
  g_test_add_func("/copy/apply/source-shorter-than-extent", test_source_shorter_than_extent);
  g_test_add_func("/copy/uring-setup-failure", test_uring_setup_failure);
  g_test_add_func("/copy/short-write", test_short_write);
  g_test_add_func("/copy/uring-short-transfers", test_uring_short_transfers);
  g_test_add_func("/copy/property-engines-identical", test_property_engines_identical);
  g_test_add_func("/copy/auto-parallel", test_auto_parallel);
  g_test_add_func("/copy/auto-walk-parallel", test_auto_walk_parallel);
  g_test_add_func("/copy/write-diff", test_write_diff);
  g_test_add_func("/copy/sparse-copy/file", test_sparse_copy_file);
  g_test_add_func("/copy/sparse-copy/mem", test_sparse_copy_mem);
  g_test_add_func("/copy/engine-names-and-progress", test_engine_names_and_progress);
  return g_test_run();
}
