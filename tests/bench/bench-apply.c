/* vmsnap benchmark: apply_diff with each of our engines side by side with
 * the forkd and Firecracker reference loops (bench-refs.c), in one run.
 *
 * For each filesystem directory given (--dir LABEL=PATH) it writes a base of
 * --size-mib MiB and, per shape, a sparse diff and its page map; then, with
 * the page cache hot and cold (fsync + POSIX_FADV_DONTNEED of base, diff and
 * map before each run; tmpfs cannot be dropped, so only hot runs there), it
 * applies the diff with every method, --reps times, interleaved in a new
 * random order each time, and prints
 * the median as Markdown tables and a summary of the targets of issue 3.
 * A memcpy bound is measured at the start of the same run.
 *
 * Disk use: base + diffs, about 1.7x --size-mib per directory (the 50%
 * shape dominates); everything is removed at the end.
 */
#include <errno.h>
#include <fcntl.h>
#include <linux/magic.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <time.h>
#include <unistd.h>

#include "bench.h"
#include "bench-stats.h"
#include "copy.h"
#include "extents.h"
#include "util.h"

#define PAGE 4096u
#define MIB (1024ull * 1024ull)

typedef enum {
  M_AUTO, M_AUTO_1T, M_AUTO_MAP, M_URING, M_CFR, M_RW, M_FORKD, M_FIRECRACKER, N_METHODS
} Method;

static const char *const method_names[N_METHODS] = {
  "vmsnap auto (default)", "vmsnap auto, 1 thread", "vmsnap auto + page map", "vmsnap uring", "vmsnap copy_file_range",
  "vmsnap rw", "forkd loop", "firecracker loop",
};

typedef struct {
  const char *name;
  GArray *list;
} Shape;

static double memcpy_gbps;
static int opt_reps = 3;
static int opt_size_mib = 1024;
static gboolean opt_no_cold, opt_no_hot;
static char *opt_shapes;
static char **opt_dirs;
static GString *summary;

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

static void
measure_memcpy(void)
{
  gsize len = 256 * MIB;
  g_autofree guint8 *a = g_malloc(len), *b = g_malloc(len);
  double best = 1e9;

  memset(a, 1, len);
  memset(b, 2, len);
  for (int i = 0; i < 5; i++) {
    double t = now_s();
    memcpy(b, a, len);
    t = now_s() - t;
    best = MIN(best, t);
  }
  g_assert_cmpint(b[len - 1], ==, 1);
  memcpy_gbps = (double)len / best / 1e9;
  printf("memcpy bound: %.2f GB/s (256 MiB, best of 5)\n\n", memcpy_gbps);
}

/* Random distinct pages; @run_pages pages per extent, @count extents, or
 * with @count 0 every page with probability 1/2. */
static GArray *
shape_list(guint64 size, guint run_pages, guint count, guint32 seed)
{
  g_autoptr(GRand) rand = g_rand_new_with_seed(seed);
  guint64 slots = size / ((guint64)run_pages * PAGE);
  g_autofree guint8 *taken = g_malloc0(slots);
  GArray *list = vms_extents_new();

  if (count == 0) {
    for (guint64 p = 0; p < size / PAGE; p++)
      if (g_rand_boolean(rand))
        vms_extents_append(list, p * PAGE, PAGE);
    return list;
  }
  for (guint placed = 0; placed < count;) {
    guint64 s = (guint64)g_rand_double_range(rand, 0, (double)slots);
    if (s < slots && !taken[s]) {
      taken[s] = 1;
      placed++;
    }
  }
  for (guint64 s = 0; s < slots; s++)
    if (taken[s])
      vms_extents_append(list, s * run_pages * PAGE, (guint64)run_pages * PAGE);
  return list;
}

static void
write_or_die(int fd, const guint8 *buf, gsize len, guint64 off)
{
  if (vms_pwrite_full(fd, buf, len, off) < 0)
    g_error("bench: write failed: %s", g_strerror(errno));
}

static void
make_base(const char *path, guint64 size)
{
  vms_autofd fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  g_autofree guint8 *buf = g_malloc(MIB);

  g_assert_cmpint(fd, >=, 0);
  for (guint64 off = 0; off < size; off += MIB) {
    memset(buf, (int)(off / MIB) | 1, MIB);
    write_or_die(fd, buf, MIB, off);
  }
}

static void
make_diff(const char *diff_path, const char *map_path, guint64 size, const GArray *list)
{
  vms_autofd fd = open(diff_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  vms_autofd map_fd = open(map_path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  g_autofree guint8 *buf = g_malloc(2 * MIB);
  g_autoptr(GError) error = NULL;

  memset(buf, 0xd1, 2 * MIB);
  g_assert_cmpint(ftruncate(fd, (off_t)size), ==, 0);
  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    for (guint64 p = 0; p < e->length; p += 2 * MIB)
      write_or_die(fd, buf, (gsize)MIN(2 * MIB, e->length - p), e->offset + p);
  }
  if (!vms_pagemap_file_write(map_fd, list, PAGE, size, NULL, &error))
    g_error("bench: %s", error->message);
}

static void
drop_cache(const char *path)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(fsync(fd), ==, 0);
  g_assert_cmpint(posix_fadvise(fd, 0, 0, POSIX_FADV_DONTNEED), ==, 0);
}

static void
warm_cache(const char *path)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  g_autoptr(GArray) list = NULL;
  g_autofree guint8 *buf = g_malloc(MIB);
  struct stat st;

  g_assert_cmpint(fstat(fd, &st), ==, 0);
  g_assert_true(vms_extents_from_seek_data(fd, (guint64)st.st_size, &list, NULL));
  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    for (guint64 p = 0; p < e->length; p += MIB)
      (void)!vms_pread_full(fd, buf, (gsize)MIN(MIB, e->length - p), e->offset + p);
  }
}

static void
no_progress(guint64 done, guint64 total, gpointer user_data)
{
}

static BenchResult
run_method(Method m, const char *base, const char *diff, const char *map)
{
  static const VmsCopyEngine engines[] = {
    [M_AUTO] = VMS_ENGINE_AUTO, [M_AUTO_1T] = VMS_ENGINE_AUTO, [M_AUTO_MAP] = VMS_ENGINE_AUTO, [M_URING] = VMS_ENGINE_URING,
    [M_CFR] = VMS_ENGINE_COPY_FILE_RANGE, [M_RW] = VMS_ENGINE_READ_WRITE,
  };
  BenchResult r = { 0 };
  g_autoptr(GError) error = NULL;
  gboolean ok;
  double t = now_s();

  if (m == M_FORKD) {
    ok = bench_ref_forkd(base, diff, &r);
  } else if (m == M_FIRECRACKER) {
    ok = bench_ref_firecracker(base, diff, &r);
  } else {
    /* A progress function keeps AUTO on one thread (see copy.c). */
    VmsCopyOptions opts = { .engine = engines[m], .progress = m == M_AUTO_1T ? no_progress : NULL };
    VmsCopyStats stats = { 0 };
    ok = vms_apply_diff(base, diff, m == M_AUTO_MAP ? map : NULL, &opts, &stats, &error);
    r.bytes = stats.bytes;
    r.extents = stats.extents;
    r.engine = vms_copy_engine_name(stats.engine);
  }
  r.seconds = now_s() - t;
  if (!ok)
    g_error("bench: %s failed: %s", method_names[m], error != NULL ? error->message : g_strerror(errno));
  return r;
}

static void
print_table(const char *fs, const char *cache, const Shape *shape, const BenchResult *res)
{
  double t_def = res[M_AUTO].seconds;
  double t_mem = (double)res[M_AUTO].bytes / (memcpy_gbps * 1e9);

  printf("#### %s, %s cache, %s (%" G_GUINT64_FORMAT " extents, %.0f MiB)\n\n", fs, cache,
         shape->name, res[M_FORKD].extents, (double)res[M_AUTO].bytes / MIB);
  printf("| method | engine used | ms | data GB/s | µs/extent | default is N× faster |\n"
         "|---|---|---:|---:|---:|---:|\n");
  for (int m = 0; m < N_METHODS; m++) {
    const BenchResult *r = &res[m];
    printf("| %s | %s | %.1f | %.2f | %.2f | %.2f |\n", method_names[m],
           r->engine != NULL ? r->engine : "", r->seconds * 1e3,
           (double)r->bytes / r->seconds / 1e9, r->seconds * 1e6 / (double)MAX(r->extents, 1),
           r->seconds / t_def);
  }
  printf("| memcpy bound | | %.1f | %.2f | | %.2f |\n\n", t_mem * 1e3, memcpy_gbps, t_mem / t_def);

  double best_ref = MIN(res[M_FORKD].seconds, res[M_FIRECRACKER].seconds);
  g_string_append_printf(summary, "| %s | %s | %s | %.2f | %.2f | %.2f | %.2f | %.2f |\n", fs, cache,
                         shape->name, res[M_FORKD].seconds / t_def,
                         res[M_FIRECRACKER].seconds / t_def, best_ref / t_def, t_def / t_mem,
                         t_def / res[M_AUTO_MAP].seconds);
}

/* Runs every method --reps times (interleaved) and prints the medians. */
static void
bench_case(const char *fs, gboolean cold, const Shape *shape, const char *base,
           const char *diff, const char *map)
{
  BenchResult res[N_METHODS];
  g_autofree double *times = g_new(double, (gsize)N_METHODS * opt_reps);

  g_autoptr(GRand) rand = g_rand_new_with_seed(42);
  int order[N_METHODS];

  for (int m = 0; m < N_METHODS; m++)
    order[m] = m;
  for (int rep = 0; rep < opt_reps; rep++) {
    /* A new order each rep, so no method always follows the same one. */
    for (int i = N_METHODS - 1; i > 0; i--) {
      int j = g_rand_int_range(rand, 0, i + 1), t = order[i];
      order[i] = order[j];
      order[j] = t;
    }
    for (int k = 0; k < N_METHODS; k++) {
      int m = order[k];
      if (cold) {
        drop_cache(base);
        drop_cache(diff);
        drop_cache(map);
      } else {
        warm_cache(diff);
      }
      res[m] = run_method((Method)m, base, diff, map);
      times[m * opt_reps + rep] = res[m].seconds;
    }
  }
  for (int m = 0; m < N_METHODS; m++) {
    qsort(times + m * opt_reps, (size_t)opt_reps, sizeof(double), bench_cmp_double);
    res[m].seconds = times[m * opt_reps + opt_reps / 2];
  }
  print_table(fs, cold ? "cold" : "hot", shape, res);
}

static void
bench_dir(const char *label, const char *dir, Shape *shapes, guint n_shapes, guint64 size)
{
  g_autofree char *base = g_build_filename(dir, "bench-base", NULL);
  g_autofree char *diff = g_build_filename(dir, "bench-diff", NULL);
  g_autofree char *map = g_build_filename(dir, "bench-map", NULL);
  struct statfs sfs;

  g_assert_cmpint(g_mkdir_with_parents(dir, 0755), ==, 0);
  g_assert_cmpint(statfs(dir, &sfs), ==, 0);
  gboolean tmpfs = sfs.f_type == TMPFS_MAGIC;
  make_base(base, size);
  for (guint s = 0; s < n_shapes; s++) {
    if (opt_shapes != NULL && strchr(opt_shapes, (int)('0' + s)) == NULL)
      continue;
    make_diff(diff, map, size, shapes[s].list);
    if (!opt_no_hot)
      bench_case(label, FALSE, &shapes[s], base, diff, map);
    if (!opt_no_cold && !tmpfs)
      bench_case(label, TRUE, &shapes[s], base, diff, map);
  }
  if (tmpfs && !opt_no_cold)
    printf("(%s is tmpfs: its pages cannot be dropped, so it has no cold runs)\n\n", label);
  unlink(base);
  unlink(diff);
  unlink(map);
  rmdir(dir);   /* only if empty: a directory given by the user may hold more */
}

int
main(int argc, char **argv)
{
  const GOptionEntry entries[] = {
    { "dir", 0, 0, G_OPTION_ARG_STRING_ARRAY, &opt_dirs, "LABEL=DIR to benchmark in (repeatable)", "L=D" },
    { "size-mib", 0, 0, G_OPTION_ARG_INT, &opt_size_mib, "base size in MiB (default 1024)", "N" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &opt_reps, "runs per method; the median is shown (default 3)", "N" },
    { "no-cold", 0, 0, G_OPTION_ARG_NONE, &opt_no_cold, "skip the cold-cache runs", NULL },
    { "no-hot", 0, 0, G_OPTION_ARG_NONE, &opt_no_hot, "skip the hot-cache runs", NULL },
    { "shapes", 0, 0, G_OPTION_ARG_STRING, &opt_shapes, "shapes to run, e.g. 013 (default all: 0123)", "DIGITS" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- apply-diff benchmark");
  g_autoptr(GError) error = NULL;

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || opt_dirs == NULL || opt_reps < 1 ||
      opt_size_mib < 64) {
    fprintf(stderr, "bench-apply: %s\n", error != NULL ? error->message : "need --dir L=D, --reps >= 1, --size-mib >= 64");
    return 1;
  }
  guint64 size = (guint64)opt_size_mib * MIB;
  double scale = (double)opt_size_mib / 1024.0;
  Shape shapes[] = {
    { "16384 x 4 KiB scattered", shape_list(size, 1, (guint)(16384 * scale), 1) },
    { "1024 x 64 KiB", shape_list(size, 16, (guint)(1024 * scale), 2) },
    { "32 x 2 MiB", shape_list(size, 512, (guint)MAX(32 * scale, 1), 3) },
    { "50% of pages dirty", shape_list(size, 1, 0, 4) },
  };
  summary = g_string_new("| fs | cache | shape | vs forkd | vs firecracker | vs best ref | default / memcpy time | map speed-up |\n"
                         "|---|---|---|---:|---:|---:|---:|---:|\n");
  printf("### apply-diff benchmark: base %d MiB, median of %d runs\n\n", opt_size_mib, opt_reps);
  measure_memcpy();
  for (char **d = opt_dirs; *d != NULL; d++) {
    g_auto(GStrv) kv = g_strsplit(*d, "=", 2);
    if (kv[1] == NULL)
      g_error("bench: --dir wants LABEL=DIR, got %s", *d);
    bench_dir(kv[0], kv[1], shapes, G_N_ELEMENTS(shapes), size);
  }
  printf("### Summary (ratios of times; > 1 means the default engine is faster)\n\n%s\n", summary->str);
  for (guint s = 0; s < G_N_ELEMENTS(shapes); s++)
    g_array_unref(shapes[s].list);
  g_string_free(summary, TRUE);
  return 0;
}
