/* Unit tests: the copy engines and apply_diff (doc/spec.md section 6): the
 * contract, fallbacks, short transfers, threads, and every engine giving the
 * same bytes. Files live in g_get_tmp_dir() (a disk filesystem with
 * SEEK_DATA here). write_diff and sparse copies are in test-sparse.c. */
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

#include "copy-fixture.h"

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
    g_autoptr(GBytes) got = vms_test_read_bytes(f->base_path);
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
      g_autoptr(GBytes) got = vms_test_read_bytes(f->base_path);
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
  g_test_add_func("/copy/apply/source-shorter-than-extent", test_source_shorter_than_extent);
  g_test_add_func("/copy/uring-setup-failure", test_uring_setup_failure);
  g_test_add_func("/copy/short-write", test_short_write);
  g_test_add_func("/copy/uring-short-transfers", test_uring_short_transfers);
  g_test_add_func("/copy/property-engines-identical", test_property_engines_identical);
  g_test_add_func("/copy/auto-parallel", test_auto_parallel);
  g_test_add_func("/copy/auto-walk-parallel", test_auto_walk_parallel);
  g_test_add_func("/copy/engine-names-and-progress", test_engine_names_and_progress);
  return g_test_run();
}
