/* vmsnap benchmark: vms_sparse_copy() from a mapped memory range (the
 * plugin's memory=copy of a VM restored with share=off) against io_uring
 * from the same mapping and a plain write of everything.
 *
 *   bench-memcopy [--size-mib N] [--percent P] [--dir DIR]
 *
 * Fills an anonymous mapping with P% random non-zero pages, then copies it
 * to DIR/bench-memcopy three ways, each once after a warm-up pass over the
 * mapping (the first pass over fresh memory in a process is several times
 * slower, whichever engine runs it). Removes the file.
 */
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>
#include <unistd.h>

#include "copy.h"
#include "util.h"

#define PAGE 4096u

static double
now_s(void)
{
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* One copy of @mem into a fresh @path; returns seconds, fills @ret_stats. */
static double
copy_once(const char *path, const guint8 *mem, guint64 size, int how, VmsCopyStats *ret_stats)
{
  vms_autofd fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  g_autoptr(GError) error = NULL;
  VmsCopySource src = { .fd = -1, .mem = mem, .size = size };
  VmsCopyOptions opts = { .engine = how == 1 ? VMS_ENGINE_URING : VMS_ENGINE_AUTO };
  double t = now_s();

  g_assert_cmpint(fd, >=, 0);
  if (how < 2) {
    if (!vms_sparse_copy(&src, fd, &opts, NULL, ret_stats, &error))
      g_error("bench-memcopy: %s", error->message);
  } else {
    g_assert_cmpint(vms_pwrite_full(fd, mem, size, 0), ==, 0);
    *ret_stats = (VmsCopyStats){ .bytes = size, .extents = 1 };
  }
  t = now_s() - t;
  unlink(path);
  return t;
}

int
main(int argc, char **argv)
{
  int size_mib = 1024, percent = 25;
  g_autofree char *dir = NULL;
  const GOptionEntry entries[] = {
    { "size-mib", 0, 0, G_OPTION_ARG_INT, &size_mib, "memory size in MiB (default 1024)", "N" },
    { "percent", 0, 0, G_OPTION_ARG_INT, &percent, "percent of pages non-zero (default 25)", "P" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where to write (default /dev/shm)", "DIR" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- sparse copy from memory");
  g_autoptr(GError) error = NULL;
  static const char *const names[] = { "vms_sparse_copy (AUTO)", "vms_sparse_copy (uring)",
                                       "write all" };

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || size_mib < 1) {
    fprintf(stderr, "bench-memcopy: %s\n", error != NULL ? error->message : "bad --size-mib");
    return 1;
  }
  guint64 size = (guint64)size_mib * 1024 * 1024;
  g_autofree char *path = g_build_filename(dir != NULL ? dir : "/dev/shm", "bench-memcopy", NULL);
  guint8 *mem = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  g_autoptr(GRand) rand = g_rand_new_with_seed(1);
  VmsCopyStats stats;

  g_assert_true(mem != MAP_FAILED);
  for (guint64 p = 0; p < size / PAGE; p++)
    memset(mem + p * PAGE, g_rand_int_range(rand, 0, 100) < percent ? (int)(p | 1) : 0, PAGE);
  copy_once(path, mem, size, 0, &stats);   /* warm-up, not shown */
  printf("| %d MiB, %d%% of pages non-zero | ms | bytes written | runs |\n|---|---:|---:|---:|\n",
         size_mib, percent);
  for (int how = 0; how < 3; how++) {
    double t = copy_once(path, mem, size, how, &stats);
    printf("| %s | %.1f | %" G_GUINT64_FORMAT " | %" G_GUINT64_FORMAT " |\n", names[how], t * 1e3,
           stats.bytes, stats.extents);
  }
  munmap(mem, size);
  return 0;
}
