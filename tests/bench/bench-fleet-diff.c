/* vmsnap benchmark: fleet costs — the diff save (bench-fleet.c). */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

#include "bench-fleet.h"
#include "bench-stats.h"

/* Samples the allocated bytes of every file but memory.diff in a directory
 * while a save writes it: the temporary space beside the diff. */
typedef struct {
  const char *dir;
  gint stop;
  guint64 peak;
} Sampler;

static gpointer
sampler_thread(gpointer data)
{
  Sampler *s = data;

  while (!g_atomic_int_get(&s->stop)) {
    DIR *d = opendir(s->dir);
    guint64 sum = 0;
    struct dirent *e;
    while (d != NULL && (e = readdir(d)) != NULL) {
      struct stat st;
      if (e->d_name[0] == '.' || strncmp(e->d_name, "memory.diff", 11) == 0 ||
          fstatat(dirfd(d), e->d_name, &st, 0) < 0)
        continue;
      sum += (guint64)st.st_blocks * 512;
    }
    if (d != NULL)
      closedir(d);
    s->peak = MAX(s->peak, sum);
    g_usleep(1000);
  }
  return NULL;
}

typedef struct {
  double wall_ms[FLEET_MAX_REPS], total_ms[FLEET_MAX_REPS], down_ms[FLEET_MAX_REPS];
  double temp[FLEET_MAX_REPS];
  double diff_bytes;
} ModeResult;

static void
run_one(const char *root, const char *base, guint mib, guint pages, FleetMode mode,
        ModeResult *res, guint rep)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(root, "diff", NULL);
  g_autofree char *cmd = g_strdup_printf("W 0 %u 90", pages);
  guint64 c = 0;
  int status = -1;

  vms_test_rm_rf(snap);
  g_autoptr(VmsVm) vm = fleet_clone_new(root, "diff-vm", mib, base, mode, FALSE);
  fleet_check(vms_vm_start(vm, &error), error, "start the restored VM");
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, 120000, &error);
  fleet_check(ctl != NULL, error, "restored VM's plugin");
  fleet_check(vms_vm_read_counter(vm, &c, &error), error, "counter");
  fleet_check(vms_vm_wait_counter_above(vm, c + 100000, 60000, &error), error, "guest runs");
  if (pages > 0)
    fleet_guest_cmd(vm, cmd);
  Sampler s = { .dir = snap };
  GThread *t = g_thread_new("sampler", sampler_thread, &s);
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(JsonObject) r = fleet_save(vm, snap, "diff", "resume");
  res->wall_ms[rep] = (double)(g_get_monotonic_time() - t0) / 1000.0;
  g_atomic_int_set(&s.stop, 1);
  g_thread_join(t);
  res->total_ms[rep] = json_object_get_double_member(r, "total-ms");
  res->down_ms[rep] = json_object_get_double_member(r, "downtime-ms");
  res->temp[rep] = (double)s.peak;
  res->diff_bytes = (double)json_object_get_int_member(r, "memory-bytes-written");
  g_autoptr(JsonNode) q = vms_test_qmp_execute(vm->qmp, "quit", NULL, NULL);
  (void)vms_vm_wait_exit(vm, 60000, &status, NULL);
  g_autofree char *log = vms_vm_stderr(vm);
  const char *steps = strstr(log, "step times");
  if (g_getenv("VMSNAP_BENCH_FLEET_LOG") != NULL)
    g_printerr("%s", log);
  if (steps != NULL) /* with G_MESSAGES_DEBUG=vmsnap */
    g_printerr("bench-fleet: %s %u MiB %u pages: %.*s\n", mode == FLEET_OVERLAY ? "overlay" : "private",
               mib, pages, (int)strcspn(steps, "\n"), steps);
  vms_test_rm_rf(snap);
}

void
fleet_diff_header(gboolean hog)
{
  printf("### Diff save of a restored VM: the RAM overlay against today's private mapping%s\n\n",
         hog ? " (a CPU hog beside the guest)" : "");
  printf("| guest RAM | dirty | memory.diff | path | total (client) | total-ms | downtime | "
         "temp beside diff | overlay / private total |\n");
  printf("| ---: | ---: | ---: | --- | ---: | ---: | ---: | ---: | ---: |\n");
  fflush(stdout);
}

static void
print_row(guint mib, double pct, const char *name, ModeResult *m, double ratio)
{
  char r[32] = "";

  if (ratio > 0)
    g_snprintf(r, sizeof(r), "%.3f", ratio);
  printf("| %u MiB | %.1f%% | %.1f MiB | %s | %.0f ms | %.0f ms | %.1f ms | %.2f MiB | %s |\n", mib,
         pct, m->diff_bytes / 1048576.0, name, bench_median(m->wall_ms, fleet_reps),
         bench_median(m->total_ms, fleet_reps), bench_median(m->down_ms, fleet_reps),
         bench_median(m->temp, fleet_reps) / 1048576.0,
         r);
}

void
fleet_bench_diff(const char *root, const char *base, guint mib, double pct)
{
  guint pages = (guint)(pct / 100.0 * mib * 256.0);
  ModeResult ov = { 0 }, pr = { 0 };

  for (guint r = 0; r < fleet_reps; r++) {
    run_one(root, base, mib, pages, FLEET_OVERLAY, &ov, r);
    if (fleet_with_private)
      run_one(root, base, mib, pages, FLEET_PRIVATE, &pr, r);
  }
  double ratio = fleet_with_private ? bench_median(ov.wall_ms, fleet_reps) /
                                      bench_median(pr.wall_ms, fleet_reps) : 0;
  print_row(mib, pct, "overlay", &ov, ratio);
  if (fleet_with_private)
    print_row(mib, pct, "private (today)", &pr, 0);
  fflush(stdout);
  g_printerr("bench-fleet: diff %u MiB %.1f%%: overlay %.0f ms, private %.0f ms\n", mib, pct,
             bench_median(ov.wall_ms, fleet_reps), bench_median(pr.wall_ms, fleet_reps));
}

void
fleet_diff_footer(gboolean hog)
{
  printf("\nMedians of %u run(s). total (client): from sending snapshot-save memory=diff "
         "then=resume to its reply; total-ms and downtime as the plugin reports them; temp: the "
         "peak allocated bytes of every file but memory.diff in the snapshot directory during "
         "the save (QEMU's raw stream, state.bin, memory.map), sampled every ~1 ms. The base "
         "guest wrote all of its low RAM (at most 3 GiB: a 4 GiB guest has 1 GiB above 4 GiB "
         "it never touches).%s\n\n", fleet_reps,
         hog ? " One CPU-bound process spun beside the guest for the whole table." : "");
  fflush(stdout);
}
