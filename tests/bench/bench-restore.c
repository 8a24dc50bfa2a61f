/* vmsnap benchmark: restore latency, vmsnap against QEMU's own restore.
 *
 * For each guest RAM size: boot the test guest with every page of its RAM
 * holding non-zero data (the memory file is filled from the host before
 * boot, so QEMU's migration cannot skip pages as zero), then, from the
 * same paused guest state, take
 *   - a vmsnap link snapshot (snapshot-save memory=link then=pause), and
 *   - QEMU's own save: migrate "exec:cat > FILE" without x-ignore-shared.
 * Then time, several times each, from spawning QEMU to the guest running
 * its next instructions (its counter, read through QMP, past the value it
 * had at the save):
 *   - vmsnap: QEMU with the snapshot's memory.bin mapped share=off,
 *     -incoming defer and the plugin's restore=DIR;
 *   - QEMU: anonymous RAM and -incoming "exec:cat FILE".
 * And QEMU's bare start-up (spawn to QMP answering), the floor of both.
 *
 * Usage: bench-restore [--sizes 256,1024,4096] [--reps 3] [--dir /dev/shm]
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
  double ours[MAX_REPS];
  double native[MAX_REPS];
  double startup[MAX_REPS];
  guint64 state_bytes;
  guint64 native_bytes;
} SizeResult;

static guint reps = 3;

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

/* Executes @command with @args (JSON text or NULL); aborts on failure. */
static JsonNode *
exec_or_die(VmsTestQmp *q, const char *command, const char *args)
{
  g_autoptr(GError) error = NULL;
  JsonNode *ret = args != NULL ? vms_test_qmp_executef(q, command, &error, "%s", args)
                               : vms_test_qmp_execute(q, command, NULL, &error);
  if (ret == NULL)
    g_error("%s: %s", command, error->message);
  return ret;
}

static void
wait_migration(VmsTestQmp *qmp)
{
  for (;;) {
    g_autoptr(JsonNode) r = exec_or_die(qmp, "query-migrate", NULL);
    const char *status = json_object_get_string_member_with_default(json_node_get_object(r), "status", "");
    if (g_str_equal(status, "completed"))
      return;
    if (g_str_equal(status, "failed") || g_str_equal(status, "cancelled"))
      g_error("QEMU's own save failed: %s", status);
    g_usleep(10 * 1000);
  }
}

/* Boots a guest of @mib MiB and saves it both ways: QEMU's own save first
 * (QEMU refuses a second migration from the post-migration pause, so the
 * guest runs on in between), then vmsnap's. Returns the counter at each save. */
static void
prepare(const char *root, guint mib, const char *snap, const char *native, SizeResult *res,
        guint64 *ret_native_counter, guint64 *ret_counter)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *src = g_build_filename(root, "src", NULL);
  g_autoptr(VmsVm) vm = NULL;
  int status = 0;
  struct stat st;

  g_assert_cmpint(g_mkdir_with_parents(src, 0700), ==, 0);
  vm = vms_vm_new(src);
  vm->mem_mib = mib;
  prefill(vm->mem_path, (guint64)mib << 20);
  if (!vms_vm_start(vm, &error) || !vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error) ||
      !vms_vm_wait_counter_above(vm, 1000000, VMS_TEST_TIMEOUT_MS, &error))
    g_error("source VM: %s", error->message);

  /* QEMU's own save, with all of RAM in the stream. Live (no stop first), so
   * the stream records a running guest and the restore starts it by itself,
   * as ours does with resume=on. */
  g_autoptr(JsonNode) c = exec_or_die(vm->qmp, "migrate-set-capabilities",
      "{\"capabilities\": [{\"capability\": \"x-ignore-shared\", \"state\": false}]}");
  g_autofree char *mig_args = g_strdup_printf("{\"uri\": \"exec:cat > %s\"}", native);
  g_autoptr(JsonNode) m = exec_or_die(vm->qmp, "migrate", mig_args);
  wait_migration(vm->qmp);
  if (!vms_vm_read_counter(vm, ret_native_counter, &error))
    g_error("counter: %s", error->message);
  g_assert_cmpint(stat(native, &st), ==, 0);
  res->native_bytes = (guint64)st.st_size;
  g_autoptr(JsonNode) cont = exec_or_die(vm->qmp, "cont", NULL);
  if (!vms_vm_wait_counter_above(vm, *ret_native_counter + 1000000, VMS_TEST_TIMEOUT_MS, &error))
    g_error("source VM after cont: %s", error->message);

  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  if (ctl == NULL)
    g_error("control socket: %s", error->message);
  g_autofree char *save_args = g_strdup_printf(
      "{\"dir\": \"%s\", \"memory\": \"link\", \"then\": \"pause\"}", snap);
  g_autoptr(JsonNode) saved = exec_or_die(ctl, "snapshot-save", save_args);
  res->state_bytes = (guint64)json_object_get_int_member(json_node_get_object(saved), "state-bytes");
  if (!vms_vm_read_counter(vm, ret_counter, &error))
    g_error("counter: %s", error->message);
  g_autoptr(JsonNode) q = exec_or_die(vm->qmp, "quit", NULL);
  if (!vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error))
    g_error("source VM quit: %s", error->message);
}

/* Spawns @vm's QEMU and returns ms until its guest counter passes @saved
 * (@saved 0: until QMP answers). */
static double
time_to_run(VmsVm *vm, guint64 saved)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) argv = vms_vm_build_argv(vm);
  gint64 t0 = g_get_monotonic_time();

  if (!vms_vm_spawn(vm, (const char *const *)argv->pdata, &error) ||
      !vms_vm_connect(vm, VMS_TEST_TIMEOUT_MS * 4, &error) ||
      (saved != 0 && !vms_vm_wait_counter_above(vm, saved, VMS_TEST_TIMEOUT_MS * 4, &error))) {
    g_autofree char *err = vms_vm_stderr(vm);
    g_error("restore: %s (QEMU stderr: %s)", error->message, err);
  }
  double ms = (double)(g_get_monotonic_time() - t0) / 1000.0;
  vms_vm_kill(vm);
  return ms;
}

static VmsVm *
run_vm(const char *root, const char *name, guint rep, guint mib)
{
  g_autofree char *dir = g_strdup_printf("%s/%s-%u", root, name, rep);
  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  VmsVm *vm = vms_vm_new(dir);
  vm->mem_mib = mib;
  return vm;
}

static void
bench_size(const char *base, SizeResult *res)
{
  /* Unique: two benchmark runs at once must not remove each other's files. */
  g_autofree char *root = g_strdup_printf("%s/vmsnap-bench-restore-%u-XXXXXX", base, res->mib);
  g_assert_nonnull(g_mkdtemp(root));
  g_autofree char *snap = g_build_filename(root, "snap", NULL);
  g_autofree char *native = g_build_filename(root, "native.mig", NULL);
  guint64 saved = 0, native_saved = 0;
  prepare(root, res->mib, snap, native, res, &native_saved, &saved);
  for (guint r = 0; r < reps; r++) {
    g_autoptr(VmsVm) ours = run_vm(root, "ours", r, res->mib);
    g_free(ours->mem_path);
    ours->mem_path = g_build_filename(snap, "memory.bin", NULL);
    ours->share = FALSE;
    ours->incoming_defer = TRUE;
    ours->plugin_extra = g_strdup_printf("restore=%s", snap);
    res->ours[r] = time_to_run(ours, saved);

    g_autoptr(VmsVm) theirs = run_vm(root, "native", r, res->mib);
    theirs->with_plugin = FALSE;
    theirs->mem_anonymous = TRUE;
    g_ptr_array_add(theirs->extra_args, g_strdup("-incoming"));
    g_ptr_array_add(theirs->extra_args, g_strdup_printf("exec:cat %s", native));
    res->native[r] = time_to_run(theirs, native_saved);

    g_autoptr(VmsVm) bare = run_vm(root, "bare", r, res->mib);
    bare->with_plugin = FALSE;
    bare->mem_anonymous = TRUE;
    res->startup[r] = time_to_run(bare, 0);
    g_printerr("  %u MiB rep %u: vmsnap %.1f ms, QEMU %.1f ms, bare start %.1f ms\n", res->mib, r,
               res->ours[r], res->native[r], res->startup[r]);
  }
  vms_test_rm_rf(root);
}

/* Medians, and minimums (the cost without interference from other load). */
static void
report(const SizeResult *res, guint n)
{
  printf("| guest RAM | vmsnap restore (ms) median / min | QEMU -incoming exec:cat (ms) median / min "
         "| speed-up (medians) | bare QEMU start (ms) median | state.bin | QEMU's file |\n");
  printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (guint i = 0; i < n; i++) {
    double o = bench_median(res[i].ours, reps), q = bench_median(res[i].native, reps);
    printf("| %u MiB | %.1f / %.1f | %.1f / %.1f | %.1fx | %.1f | %.0f KiB | %.0f MiB |\n", res[i].mib,
           o, bench_minimum(res[i].ours, reps), q, bench_minimum(res[i].native, reps), q / o,
           bench_median(res[i].startup, reps), res[i].state_bytes / 1024.0, res[i].native_bytes / 1048576.0);
  }
  if (n >= 2)
    printf("\nvmsnap restore, largest / smallest size: %.2fx by medians, %.2fx by minimums (%u runs)\n",
           bench_median(res[n - 1].ours, reps) / bench_median(res[0].ours, reps),
           bench_minimum(res[n - 1].ours, reps) / bench_minimum(res[0].ours, reps), reps);
}

int
main(int argc, char **argv)
{
  g_autofree char *sizes = g_strdup("256,1024,4096");
  g_autofree char *dir = g_strdup("/dev/shm");
  gint reps_opt = 3;
  GOptionEntry entries[] = {
    { "sizes", 0, 0, G_OPTION_ARG_STRING, &sizes, "guest RAM sizes in MiB", "A,B,C" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps_opt, "runs per size and method (median reported)", "N" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where memory files and snapshots go", "DIR" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- restore latency, vmsnap vs QEMU");
  g_autoptr(GError) error = NULL;

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || reps_opt < 1 || reps_opt > MAX_REPS) {
    g_printerr("bench-restore: %s\n", error != NULL ? error->message : "--reps must be 1..16");
    return 1;
  }
  vms_harness_init(); /* the harness's safety net; exits 77 without QEMU */
  reps = (guint)reps_opt;
  g_auto(GStrv) list = g_strsplit(sizes, ",", -1);
  g_autofree SizeResult *res = g_new0(SizeResult, g_strv_length(list));
  guint n = 0;
  for (; list[n] != NULL; n++) {
    res[n].mib = (guint)g_ascii_strtoull(list[n], NULL, 10);
    bench_size(dir, &res[n]);
  }
  report(res, n);
  return 0;
}
