/* vmsnap benchmark: snapshot-save downtime, vmsnap against QEMU's own save,
 * and the guest's speed with and without the plugin.
 *
 * For each guest RAM size: boot the test guest with every page of its RAM
 * holding non-zero data (the memory file is filled from the host before
 * boot, so neither QEMU's migration nor a sparse copy can skip pages), then,
 * several times each, on the same running guest:
 *   - vmsnap link:  snapshot-save memory=link then=pause, then `cont`;
 *     downtime = the plugin's downtime-ms (stop -> commit);
 *   - vmsnap copy:  snapshot-save memory=copy then=resume;
 *     downtime = the plugin's downtime-ms (stop -> running again);
 *   - QEMU's save:  QMP stop, migrate "exec:cat > FILE" without
 *     x-ignore-shared, wait for completed, cont; downtime = stop -> cont
 *     returned, measured here around the QMP calls;
 *   - cp:           `cp` of the memory file to the same filesystem (the
 *     reference for copy mode).
 * Guest speed: the counter's rate over --speed-secs seconds, with the plugin
 * loaded and without, alternating, at the smallest size.
 *
 * Usage: bench-save [--sizes 256,1024,4096] [--reps 3] [--dir /dev/shm]
 *                   [--speed-secs 3] [--speed-reps 3]
 * Environment as the integration tests (VMSNAP_PLUGIN, VMSNAP_GUEST, ...).
 */
#include "harness.h"
#include "bench-stats.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "util.h"

#define MAX_REPS 16

typedef struct {
  guint mib;
  double link[MAX_REPS], copy[MAX_REPS], native[MAX_REPS], native_fast[MAX_REPS], cp[MAX_REPS];
  guint64 state_bytes, native_bytes;
} SizeResult;

static guint reps = 3;
static guint speed_secs = 3;
static guint speed_reps = 3;

/* Takes the error by address: it is read after the call that fills it
 * (the order in which a call's arguments are evaluated is unspecified). */
static JsonNode *
must(JsonNode *node, GError **error, const char *what)
{
  if (node == NULL)
    g_error("%s: %s", what, *error != NULL ? (*error)->message : "?");
  return node;
}

/* Fills @path (created, @size bytes) with non-zero data, 1 MiB at a time. */
static void
prefill(const char *path, guint64 size)
{
  vms_autofd fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_autofree guint64 *buf = g_malloc(1 << 20);

  g_assert_cmpint(fd, >=, 0);
  for (guint64 off = 0; off < size; off += 1 << 20) {
    for (gsize i = 0; i < (1 << 20) / 8; i++)
      buf[i] = ((off + i * 8) * G_GUINT64_CONSTANT(0x9E3779B97F4A7C15)) | 1;
    g_assert_cmpint(vms_pwrite_full(fd, buf, 1 << 20, off), ==, 0);
  }
}

static double
ms_since(gint64 t0)
{
  return (double)(g_get_monotonic_time() - t0) / 1000.0;
}

static double
plugin_save(VmsTestQmp *ctl, const char *dir, const char *memory, const char *then,
            guint64 *ret_state)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) r = must(vms_test_qmp_executef(ctl, "snapshot-save", &error,
                                                     "{\"dir\": \"%s\", \"memory\": \"%s\", "
                                                     "\"then\": \"%s\"}", dir, memory, then),
                               &error, "snapshot-save");
  JsonObject *o = json_node_get_object(r);

  *ret_state = (guint64)json_object_get_int_member(o, "state-bytes");
  return json_object_get_double_member(o, "downtime-ms");
}

static void
wait_migration(VmsTestQmp *qmp)
{
  for (;;) {
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) r = must(vms_test_qmp_execute(qmp, "query-migrate", NULL, &error), &error,
                                 "query-migrate");
    const char *status = json_object_get_string_member_with_default(json_node_get_object(r),
                                                                    "status", "");
    if (g_str_equal(status, "completed"))
      return;
    if (g_str_equal(status, "failed") || g_str_equal(status, "cancelled"))
      g_error("QEMU's own save failed: %s", status);
    g_usleep(1000);
  }
}

/* QEMU's own way: stop, migrate everything to a file, cont. With
 * @max_bandwidth QEMU's default throttle (128 MiB/s) is lifted: QEMU's best
 * case. */
static double
native_save(VmsVm *vm, const char *file, gint64 max_bandwidth)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) caps = must(vms_test_qmp_executef(vm->qmp, "migrate-set-capabilities", &error,
      "{\"capabilities\": [{\"capability\": \"x-ignore-shared\", \"state\": false}]}"),
      &error, "caps");
  g_autoptr(JsonNode) bw = must(vms_test_qmp_executef(vm->qmp, "migrate-set-parameters", &error,
      "{\"max-bandwidth\": %" G_GINT64_FORMAT "}", max_bandwidth), &error, "max-bandwidth");
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(JsonNode) s = must(vms_test_qmp_execute(vm->qmp, "stop", NULL, &error), &error, "stop");
  g_autoptr(JsonNode) m = must(vms_test_qmp_executef(vm->qmp, "migrate", &error,
                                                     "{\"uri\": \"exec:cat > %s\"}", file),
                               &error, "migrate");
  g_autoptr(JsonNode) c = NULL;

  wait_migration(vm->qmp);
  /* cont is refused while QEMU is still in finish-migrate: retry */
  while ((c = vms_test_qmp_execute(vm->qmp, "cont", NULL, &error)) == NULL) {
    g_clear_error(&error);
    g_usleep(200);
  }
  return ms_since(t0);
}

static double
cp_file(const char *src, const char *dst)
{
  g_autoptr(GError) error = NULL;
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(GSubprocess) p = g_subprocess_new(G_SUBPROCESS_FLAGS_NONE, &error, "cp", src, dst,
                                              NULL);

  if (p == NULL || !g_subprocess_wait_check(p, NULL, &error))
    g_error("cp: %s", error->message);
  return ms_since(t0);
}

static VmsVm *
boot(const char *dir, guint mib, gboolean with_plugin, VmsTestQmp **ret_ctl)
{
  g_autoptr(GError) error = NULL;
  VmsVm *vm = vms_vm_new(dir);

  vm->mem_mib = mib;
  vm->with_plugin = with_plugin;
  prefill(vm->mem_path, (guint64)mib << 20);
  if (!vms_vm_start(vm, &error) || !vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error) ||
      !vms_vm_wait_counter_above(vm, 1000000, VMS_TEST_TIMEOUT_MS, &error))
    g_error("VM: %s", error->message);
  if (ret_ctl != NULL) {
    *ret_ctl = vms_test_qmp_connect(vm->control_path, VMS_TEST_TIMEOUT_MS, &error);
    if (*ret_ctl == NULL)
      g_error("control socket: %s", error->message);
  }
  return vm;
}

static void
bench_size(const char *base, SizeResult *res)
{
  g_autofree char *root = g_strdup_printf("%s/vmsnap-bench-save-%u", base, res->mib);
  g_autofree char *native = g_build_filename(root, "native.mig", NULL);
  g_autofree char *cp_dst = g_build_filename(root, "cp.ram", NULL);
  g_autoptr(VmsTestQmp) ctl = NULL;
  g_autoptr(VmsVm) vm = NULL;
  g_autoptr(GError) error = NULL;
  struct stat st;

  vms_test_rm_rf(root);
  g_assert_cmpint(g_mkdir_with_parents(root, 0700), ==, 0);
  vm = boot(root, res->mib, TRUE, &ctl);
  for (guint r = 0; r < reps; r++) {
    g_autofree char *snap = g_strdup_printf("%s/snap-%u", root, r);
    g_autoptr(JsonNode) cont = NULL;

    res->link[r] = plugin_save(ctl, snap, "link", "pause", &res->state_bytes);
    cont = must(vms_test_qmp_execute(vm->qmp, "cont", NULL, &error), &error, "cont");
    vms_test_rm_rf(snap);
    res->copy[r] = plugin_save(ctl, snap, "copy", "resume", &res->state_bytes);
    vms_test_rm_rf(snap);
    res->native[r] = native_save(vm, native, 128 << 20);
    g_assert_cmpint(stat(native, &st), ==, 0);
    res->native_bytes = (guint64)st.st_size;
    unlink(native);
    res->native_fast[r] = native_save(vm, native, G_GINT64_CONSTANT(1) << 40);
    unlink(native);
    res->cp[r] = cp_file(vm->mem_path, cp_dst);
    unlink(cp_dst);
    g_printerr("  %u MiB rep %u: link %.1f ms, copy %.1f ms, QEMU %.1f ms, QEMU unthrottled "
               "%.1f ms, cp %.1f ms\n", res->mib, r, res->link[r], res->copy[r], res->native[r],
               res->native_fast[r], res->cp[r]);
  }
  g_clear_pointer(&vm, vms_vm_free);
  vms_test_rm_rf(root);
}

/* utime + stime of /proc/PID/task/TID/stat, in clock ticks. */
static guint64
task_ticks(const char *stat_path)
{
  g_autofree char *text = NULL;
  g_auto(GStrv) fields = NULL;
  const char *after_comm;

  if (!g_file_get_contents(stat_path, &text, NULL, NULL) ||
      (after_comm = strrchr(text, ')')) == NULL)
    g_error("cannot read %s", stat_path);
  fields = g_strsplit(after_comm + 2, " ", -1);
  /* fields[0] is stat's field 3 (state): utime and stime are fields 14, 15 */
  return g_ascii_strtoull(fields[11], NULL, 10) + g_ascii_strtoull(fields[12], NULL, 10);
}

/* utime + stime of every thread of QEMU, by thread id, in clock ticks. */
static GHashTable *
thread_ticks(VmsVm *vm)
{
  g_autofree char *dir = g_strdup_printf("/proc/%s/task", g_subprocess_get_identifier(vm->proc));
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  GHashTable *ticks = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  const char *tid;

  if (d == NULL)
    g_error("cannot list %s", dir);
  while ((tid = g_dir_read_name(d)) != NULL) {
    g_autofree char *stat_path = g_strdup_printf("%s/%s/stat", dir, tid);
    g_hash_table_insert(ticks, g_strdup(tid), GSIZE_TO_POINTER(task_ticks(stat_path)));
  }
  return ticks;
}

/* CPU seconds of the busiest thread between two thread_ticks(): the vCPU
 * thread of a one-vCPU guest that never halts. (QEMU names its threads only
 * with -name debug-threads=on.) */
static double
busiest_thread_seconds(GHashTable *before, GHashTable *after)
{
  GHashTableIter it;
  gpointer tid, t1;
  guint64 best = 0;

  g_hash_table_iter_init(&it, after);
  while (g_hash_table_iter_next(&it, &tid, &t1)) {
    guint64 t0 = GPOINTER_TO_SIZE(g_hash_table_lookup(before, tid));
    best = MAX(best, GPOINTER_TO_SIZE(t1) - t0);
  }
  return (double)best / (double)sysconf(_SC_CLK_TCK);
}

/* Counter increments per wall-clock second and per second of vCPU-thread
 * CPU time over speed_secs. The second is what the plugin could cost: it
 * moves much less when other processes take the host's CPUs. */
static void
counter_rate(VmsVm *vm, double *ret_wall, double *ret_cpu)
{
  g_autoptr(GError) error = NULL;
  guint64 c0 = 0, c1 = 0;
  gint64 t0, t1;
  g_autoptr(GHashTable) cpu0 = thread_ticks(vm);
  g_autoptr(GHashTable) cpu1 = NULL;

  if (!vms_vm_read_counter(vm, &c0, &error))
    g_error("counter: %s", error->message);
  t0 = g_get_monotonic_time();
  g_usleep((gulong)speed_secs * G_USEC_PER_SEC);
  if (!vms_vm_read_counter(vm, &c1, &error))
    g_error("counter: %s", error->message);
  t1 = g_get_monotonic_time();
  cpu1 = thread_ticks(vm);
  *ret_wall = (double)(c1 - c0) / ((double)(t1 - t0) / 1e6);
  *ret_cpu = (double)(c1 - c0) / busiest_thread_seconds(cpu0, cpu1);
}

/* Alternates with and without the plugin so drifting host load hits both. */
static void
bench_speed(const char *base, guint mib)
{
  double wall[2][MAX_REPS], cpu[2][MAX_REPS];

  for (guint r = 0; r < speed_reps; r++) {
    for (int p = 0; p < 2; p++) {
      g_autofree char *dir = g_strdup_printf("%s/vmsnap-bench-speed-%d", base, p);
      g_autoptr(VmsVm) vm = NULL;

      vms_test_rm_rf(dir);
      g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
      vm = boot(dir, mib, p == 1, NULL);
      counter_rate(vm, &wall[p][r], &cpu[p][r]);
      g_clear_pointer(&vm, vms_vm_free);
      vms_test_rm_rf(dir);
    }
    g_printerr("  speed rep %u: with plugin %.4g/s (%.4g per CPU-s), without %.4g/s (%.4g per CPU-s)\n",
               r, wall[1][r], cpu[1][r], wall[0][r], cpu[0][r]);
  }
  printf("\nGuest speed, %u MiB guest, counter increments, median of %u samples of %u s "
         "each way:\n\n", mib, speed_reps, speed_secs);
  printf("| per | without plugin | with plugin | with / without |\n| --- | ---: | ---: | ---: |\n");
  printf("| wall-clock second | %.4g | %.4g | %.3f |\n", bench_median(wall[0], speed_reps),
         bench_median(wall[1], speed_reps), bench_median(wall[1], speed_reps) / bench_median(wall[0], speed_reps));
  printf("| CPU second of the vCPU thread | %.4g | %.4g | %.3f |\n", bench_median(cpu[0], speed_reps),
         bench_median(cpu[1], speed_reps), bench_median(cpu[1], speed_reps) / bench_median(cpu[0], speed_reps));
}

/* The medians as Markdown, ready for doc/performance.md. */
static void
print_table(SizeResult *res, guint n)
{
  printf("| guest RAM | link (ms) | copy (ms) | QEMU's save (ms) | QEMU's save, unthrottled (ms) "
         "| cp of the memory file (ms) | QEMU / link | QEMU unthrottled / link | copy / cp "
         "| state.bin | QEMU's file |\n");
  printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (guint i = 0; i < n; i++) {
    double l = bench_median(res[i].link, reps), c = bench_median(res[i].copy, reps);
    double q = bench_median(res[i].native, reps), qf = bench_median(res[i].native_fast, reps);
    double cp = bench_median(res[i].cp, reps);
    printf("| %u MiB | %.1f | %.1f | %.1f | %.1f | %.1f | %.0fx | %.0fx | %.2fx | %" G_GUINT64_FORMAT
           " KiB | %" G_GUINT64_FORMAT " MiB |\n", res[i].mib, l, c, q, qf, cp, q / l, qf / l,
           c / cp, res[i].state_bytes >> 10, res[i].native_bytes >> 20);
  }
  printf("\nEvery run (ms), link / copy / QEMU / QEMU unthrottled / cp:\n\n");
  for (guint i = 0; i < n; i++) {
    printf("- %u MiB:", res[i].mib);
    for (guint r = 0; r < reps; r++)
      printf(" %.1f / %.1f / %.1f / %.1f / %.1f%s", res[i].link[r], res[i].copy[r],
             res[i].native[r], res[i].native_fast[r], res[i].cp[r], r + 1 < reps ? ";" : "\n");
  }
}

int
main(int argc, char **argv)
{
  g_autofree char *sizes_arg = NULL, *dir = NULL;
  gint reps_arg = 3, speed_secs_arg = 3, speed_reps_arg = 3;
  const GOptionEntry entries[] = {
    { "sizes", 0, 0, G_OPTION_ARG_STRING, &sizes_arg, "guest RAM sizes in MiB", "256,1024,4096" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps_arg, "repetitions per size", "N" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where memory and snapshots go", "/dev/shm" },
    { "speed-secs", 0, 0, G_OPTION_ARG_INT, &speed_secs_arg, "seconds per speed sample (0: skip)", "S" },
    { "speed-reps", 0, 0, G_OPTION_ARG_INT, &speed_reps_arg, "speed samples each way", "N" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- snapshot-save downtime benchmark");
  g_autoptr(GError) error = NULL;
  g_auto(GStrv) sizes = NULL;
  g_autofree SizeResult *res = NULL;
  guint n;

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error)) {
    g_printerr("bench-save: %s\n", error->message);
    return 1;
  }
  vms_harness_init(); /* the harness's safety net; exits 77 without QEMU */
  reps = (guint)CLAMP(reps_arg, 1, MAX_REPS);
  speed_secs = (guint)MAX(speed_secs_arg, 0);
  speed_reps = (guint)CLAMP(speed_reps_arg, 1, MAX_REPS);
  sizes = g_strsplit(sizes_arg != NULL ? sizes_arg : "256,1024,4096", ",", -1);
  n = g_strv_length(sizes);
  res = g_new0(SizeResult, n);
  for (guint i = 0; i < n; i++) {
    res[i].mib = (guint)g_ascii_strtoull(sizes[i], NULL, 10);
    bench_size(dir != NULL ? dir : "/dev/shm", &res[i]);
  }
  print_table(res, n);
  if (speed_secs > 0)
    bench_speed(dir != NULL ? dir : "/dev/shm", res[0].mib);
  return 0;
}
