/* vmsnap benchmark: fleet costs — density, many clones at once, warm
 * clones (bench-fleet.c). */
#include <fcntl.h>
#include <stdio.h>
#include <sys/prctl.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include "bench-fleet.h"
#include "bench-stats.h"

#define MAX_CLONES 64

/* Pss of a process in bytes, from /proc/PID/smaps_rollup. */
static double
pss_of(VmsVm *vm)
{
  g_autofree char *path = g_strdup_printf("/proc/%s/smaps_rollup", g_subprocess_get_identifier(vm->proc));
  g_autofree char *text = NULL;

  fleet_check(g_file_get_contents(path, &text, NULL, NULL), NULL, path);
  const char *line = strstr(text, "\nPss:");
  fleet_check(line != NULL, NULL, "Pss line");
  return g_ascii_strtod(line + strlen("\nPss:"), NULL) * 1024.0;
}

/* Starts @vm, waits for its guest to run, has it read all of its scratch
 * RAM, and stops it (so measuring the others costs no CPU). */
static void
start_and_read(VmsVm *vm, guint pages, gboolean plugin)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *read_all = g_strdup_printf("C 0 %u 1", pages);

  fleet_check(vms_vm_start(vm, &error), error, "start a clone");
  if (plugin) {
    g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, 120000, &error);
    fleet_check(ctl != NULL, error, "clone's plugin");
  }
  fleet_check(vms_vm_wait_counter_above(vm, 0, 120000, &error), error, "clone runs");
  fleet_guest_cmd(vm, read_all);
  fleet_qmp(vm->qmp, "stop", NULL);
}

static double
density_run(const char *root, const char *base, const char *native, guint mib, guint pages,
            guint n, FleetMode mode, gboolean qemu_own)
{
  VmsVm *vms[MAX_CLONES] = { 0 };
  double sum = 0;

  for (guint i = 0; i < n; i++) {
    g_autofree char *name = g_strdup_printf("density-%u", i);
    if (qemu_own) {
      g_autofree char *dir = g_build_filename(root, name, NULL);
      vms_test_rm_rf(dir);
      g_mkdir_with_parents(dir, 0700);
      vms[i] = vms_vm_new(dir);
      vms[i]->mem_mib = mib;
      vms[i]->with_plugin = FALSE;
      vms[i]->mem_anonymous = TRUE;
      g_ptr_array_add(vms[i]->extra_args, g_strdup("-incoming"));
      g_ptr_array_add(vms[i]->extra_args, g_strdup_printf("exec:cat %s", native));
    } else {
      vms[i] = fleet_clone_new(root, name, mib, base, mode, FALSE);
    }
    start_and_read(vms[i], pages, !qemu_own);
  }
  for (guint i = 0; i < n; i++)
    sum += pss_of(vms[i]);
  for (guint i = 0; i < n; i++)
    vms_vm_free(vms[i]);
  return sum;
}

void
fleet_bench_density(const char *root, const char *base, const char *native, guint mib,
                    guint pages, GArray *counts)
{
  double one = density_run(root, base, native, mib, pages, 1, FLEET_OVERLAY, FALSE);

  printf("### Density: PSS of clones of one %u MiB snapshot whose guests read all their RAM\n\n", mib);
  printf("| clones | how | PSS, all clones | per clone | / one overlay clone |\n");
  printf("| ---: | --- | ---: | ---: | ---: |\n");
  for (guint i = 0; i < counts->len; i++) {
    guint n = (guint)g_array_index(counts, double, i);
    if (n < 1 || n > MAX_CLONES)
      continue;
    double v = n == 1 ? one : density_run(root, base, native, mib, pages, n, FLEET_OVERLAY, FALSE);
    printf("| %u | overlay | %.0f MiB | %.0f MiB | %.2f |\n", n, v / 1048576.0, v / n / 1048576.0, v / one);
    if (n <= 4) {
      double p = density_run(root, base, native, mib, pages, n, FLEET_PRIVATE, FALSE);
      printf("| %u | private (today) | %.0f MiB | %.0f MiB | %.2f |\n", n, p / 1048576.0,
             p / n / 1048576.0, p / one);
      double q = density_run(root, base, native, mib, pages, n, FLEET_PRIVATE, TRUE);
      printf("| %u | QEMU's own restore (anonymous RAM) | %.0f MiB | %.0f MiB | %.2f |\n", n,
             q / 1048576.0, q / n / 1048576.0, q / one);
    }
    fflush(stdout);
  }
  printf("\nPSS from /proc/PID/smaps_rollup of every QEMU, each guest having read all %u of its "
         "scratch pages (C command), then stopped.\n\n", pages);
  fflush(stdout);
}

/* ms from @t0 until every clone's guest counts past @counter. */
static double
wait_all_running(VmsVm **vms, guint n, const char *mem_file, guint mib, guint64 counter, gint64 t0)
{
  FleetPeek peeks[MAX_CLONES];
  gboolean open_[MAX_CLONES] = { 0 }, done[MAX_CLONES] = { 0 };
  guint left = n;

  while (left > 0) {
    for (guint i = 0; i < n; i++) {
      if (done[i])
        continue;
      if (!open_[i])
        open_[i] = fleet_peek_open(vms[i], mem_file, mib, &peeks[i]);
      if (open_[i] && fleet_peek_counter(&peeks[i]) > counter) {
        done[i] = TRUE;
        left--;
        close(peeks[i].fd);
      }
    }
    fleet_check(g_get_monotonic_time() - t0 < 600 * G_USEC_PER_SEC, NULL, "clones start");
    g_usleep(200);
  }
  return (double)(g_get_monotonic_time() - t0) / 1000.0;
}

static void
spawn(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) argv = vms_vm_build_argv(vm);

  fleet_check(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error), error, "spawn a clone");
}

void
fleet_bench_parallel(const char *root, const char *base, guint mib, guint64 counter, guint n)
{
  VmsVm *vms[MAX_CLONES] = { 0 };
  g_autofree char *mem = g_build_filename(base, "memory.bin", NULL);
  double seq = 0, par = 0, first = 0;

  n = MIN(n, MAX_CLONES);
  gint64 t0 = g_get_monotonic_time();
  for (guint i = 0; i < n; i++) {
    g_autofree char *name = g_strdup_printf("seq-%u", i);
    vms[i] = fleet_clone_new(root, name, mib, base, FLEET_OVERLAY, FALSE);
    gint64 t1 = g_get_monotonic_time();
    spawn(vms[i]);
    double one = wait_all_running(&vms[i], 1, mem, mib, counter, t1);
    first = i == 0 ? one : first;
  }
  seq = (double)(g_get_monotonic_time() - t0) / 1000.0;
  for (guint i = 0; i < n; i++)
    g_clear_pointer(&vms[i], vms_vm_free);

  t0 = g_get_monotonic_time();
  for (guint i = 0; i < n; i++) {
    g_autofree char *name = g_strdup_printf("par-%u", i);
    vms[i] = fleet_clone_new(root, name, mib, base, FLEET_OVERLAY, FALSE);
    spawn(vms[i]);
  }
  par = wait_all_running(vms, n, mem, mib, counter, t0);
  for (guint i = 0; i < n; i++)
    g_clear_pointer(&vms[i], vms_vm_free);

  printf("### %u clones of one %u MiB snapshot: started at once against one after another\n\n", n, mib);
  printf("| how | all %u running | per clone | parallel / sequential |\n| --- | ---: | ---: | ---: |\n", n);
  printf("| sequential restores (each until its guest counts) | %.0f ms | %.1f ms | |\n", seq, seq / n);
  printf("| all spawned at once | %.0f ms | %.1f ms | %.2f |\n", par, par / n, par / seq);
  printf("\nFrom the first spawn until every guest counter, read from QEMU's memory through "
         "/proc/PID/mem, has moved past the snapshot's; the first sequential restore alone took "
         "%.1f ms. RAM overlay restores; the clones keep running (16 TCG guests on this "
         "machine's 2 cores) until the end of the phase.\n\n", first);
  fflush(stdout);
}

/* Polls the guest counter every WARM_POLL_NS until it moves from @c0 (or
 * 30 s pass): a sleeping poll, so the bench does not take a CPU of this
 * 2-CPU machine away from QEMU's threads while they start the guest (a
 * spinning reader did: the measurement then was mostly the scheduler).
 * The resolution is the poll interval plus the wake-up, a few tens of us. */
#define WARM_POLL_NS 20000

static void
wait_counter_moves(const FleetPeek *p, guint64 c0, gint64 t0)
{
  const struct timespec interval = { 0, WARM_POLL_NS };

  prctl(PR_SET_TIMERSLACK, 1UL); /* wake on time, not up to 50 us late */
  while (fleet_peek_counter(p) == c0 && g_get_monotonic_time() - t0 < 30 * G_USEC_PER_SEC)
    clock_nanosleep(CLOCK_MONOTONIC, 0, &interval, NULL);
}

/* One warm start: ms from sending `cont` to the counter moving. */
static double
warm_once(const char *root, const char *base, guint mib)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *mem = g_build_filename(base, "memory.bin", NULL);
  g_autoptr(VmsVm) vm = fleet_clone_new(root, "warm", mib, base, FLEET_OVERLAY, TRUE);
  FleetPeek p;

  fleet_check(vms_vm_start(vm, &error), error, "start a paused clone");
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, 120000, &error);
  fleet_check(ctl != NULL, error, "paused clone's plugin");
  fleet_check(fleet_peek_open(vm, mem, mib, &p), NULL, "the clone's memory");
  guint64 c0 = fleet_peek_counter(&p);
  g_usleep(100000);
  fleet_check(fleet_peek_counter(&p) == c0, NULL, "a paused clone does not run");
  gint64 t0 = g_get_monotonic_time();
  fleet_check(vms_test_qmp_send_raw(vm->qmp, "{\"execute\": \"cont\"}", &error), error, "cont");
  wait_counter_moves(&p, c0, t0);
  double ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
  g_autoptr(JsonObject) reply = vms_test_qmp_read_reply(vm->qmp, VMS_TEST_TIMEOUT_MS, &error);
  fleet_check(reply != NULL, error, "cont reply");
  if (fleet_peek_counter(&p) == c0) {
    g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), reply);
    g_autofree char *text = json_to_string(node, FALSE);
    g_autofree char *log = vms_vm_stderr(vm);
    g_printerr("bench-fleet: the guest did not start within 30 s of cont (reply %s); QEMU: %s\n",
               text, log);
    exit(1);
  }
  close(p.fd);
  return ms;
}

/* One cold restore: ms from the spawn until the guest counts past @counter. */
static double
cold_once(const char *root, const char *base, guint mib, FleetMode mode, guint64 counter)
{
  g_autofree char *mem = g_build_filename(base, "memory.bin", NULL);
  g_autoptr(VmsVm) vm = fleet_clone_new(root, "cold", mib, base, mode, FALSE);
  gint64 t0 = g_get_monotonic_time();

  spawn(vm);
  double ms = wait_all_running(&vm, 1, mem, mib, counter, t0);
  if (g_getenv("VMSNAP_BENCH_FLEET_LOG") != NULL) {
    g_autofree char *log = vms_vm_stderr(vm);
    g_printerr("bench-fleet: cold %s %u MiB %.1f ms; QEMU: %s\n",
               mode == FLEET_OVERLAY ? "overlay" : "private", mib, ms, log);
  }
  return ms;
}

void
fleet_bench_warm(const char *root, GPtrArray *bases, GArray *sizes, GArray *counters)
{
  printf("### Warm clones: `cont` to the guest's next instruction; cold restores beside\n\n");
  printf("| guest RAM | warm: cont to running, median | min | max | cold restore, overlay "
         "(median / min) | cold restore, private (median / min) |\n"
         "| ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (guint i = 0; i < bases->len; i++) {
    double v[FLEET_MAX_REPS], co[FLEET_MAX_REPS], cp[FLEET_MAX_REPS], max = 0;
    guint mib = g_array_index(sizes, guint, i);
    guint64 counter = g_array_index(counters, guint64, i);
    for (guint r = 0; r < fleet_reps; r++) {
      v[r] = warm_once(root, bases->pdata[i], mib);
      /* Alternate which cold restore goes first: neither always follows
       * the teardown of the one before. */
      if (r % 2 == 0) {
        co[r] = cold_once(root, bases->pdata[i], mib, FLEET_OVERLAY, counter);
        cp[r] = cold_once(root, bases->pdata[i], mib, FLEET_PRIVATE, counter);
      } else {
        cp[r] = cold_once(root, bases->pdata[i], mib, FLEET_PRIVATE, counter);
        co[r] = cold_once(root, bases->pdata[i], mib, FLEET_OVERLAY, counter);
      }
      max = MAX(max, v[r]);
    }
    printf("| %u MiB | %.2f ms | %.2f ms | %.2f ms | %.1f / %.1f ms | %.1f / %.1f ms |\n", mib,
           bench_median(v, fleet_reps), bench_minimum(v, fleet_reps), max,
           bench_median(co, fleet_reps), bench_minimum(co, fleet_reps),
           bench_median(cp, fleet_reps), bench_minimum(cp, fleet_reps));
    fflush(stdout);
  }
  printf("\n%u run(s) per size. Warm: a clone restored with resume=off (RAM overlay, state "
         "loaded, paused); from writing `cont` to QEMU's QMP socket until the guest counter, "
         "polled every %d us (sleeping between reads) in QEMU's memory through /proc/PID/mem, "
         "moves. Cold: from spawning QEMU (harness command line, restore=, resume on) until the "
         "counter moves past the snapshot's, with the overlay and with share=off, the two "
         "taking turns at going first.\n\n", fleet_reps, WARM_POLL_NS / 1000);
  fflush(stdout);
}
