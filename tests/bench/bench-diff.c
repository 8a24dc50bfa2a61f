/* vmsnap benchmark: diff-save downtime against the number of dirty pages
 * (doc/performance.md "Diff snapshots").
 *
 * For each point MIB:PAGES: a VM of MIB MiB is restored (share=off) from a
 * link snapshot of a test guest that filled all its RAM, the guest writes PAGES
 * scratch pages (serial W command), then snapshot-save memory=diff
 * then=resume and, from the same VM right after, memory=copy then=quit.
 * Both downtimes (VM stop -> VM running again, or -> commit for quit) come
 * from the plugin's reply. Prints Markdown.
 *
 *   bench-diff [--points 1024:262,1024:2621,...] [--reps N] [--dir DIR] [--show-qemu-log]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "harness.h"
#include "bench-stats.h"

#define MAX_REPS 9
#define WRITE_TIMEOUT_MS 300000u

typedef struct {
  guint mib;
  guint pages;
  double diff_ms[MAX_REPS], copy_ms[MAX_REPS];
  double diff_bytes, state_bytes, copy_bytes;
} Point;

static guint reps = 1;
static gboolean show_log; /* --show-qemu-log: QEMU's stderr after each point */

static void
check(gboolean ok, GError *error, const char *what)
{
  if (ok && error == NULL)
    return;
  g_printerr("bench-diff: %s: %s\n", what, error != NULL ? error->message : "failed");
  exit(1);
}

static JsonObject *
save(VmsVm *vm, const char *dir, const char *memory, const char *then)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  check(ctl != NULL, error, "control socket");
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(
      ctl, "snapshot-save", &error, "{\"dir\": \"%s\", \"memory\": \"%s\", \"then\": \"%s\"}",
      dir, memory, then);
  check(ret != NULL, error, "snapshot-save");
  return json_object_ref(json_node_get_object(ret));
}

static void
guest_cmd(VmsVm *vm, const char *cmd, guint timeout_ms)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *reply = vms_vm_guest_command(vm, cmd, timeout_ms, &error);

  check(reply != NULL && g_str_has_prefix(reply, "ok "), error, cmd);
}

/* A link snapshot (then=quit) of a guest of @mib MiB that has written
 * every page of its scratch region (byte 1), so its memory is as full as a
 * real guest's and copy mode has the whole RAM to copy. */
static char *
make_base(const char *root, guint mib)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *vm_dir = g_strdup_printf("%s/base-vm-%u", root, mib);
  char *snap = g_strdup_printf("%s/base-%u", root, mib);
  int status = -1;

  g_mkdir_with_parents(vm_dir, 0700);
  g_autoptr(VmsVm) vm = vms_vm_new(vm_dir);
  vm->mem_mib = mib;
  check(vms_vm_start(vm, &error), error, "start the base VM");
  check(vms_vm_wait_ready(vm, 120000, &error), error, "base guest ready");
  VmsGuestState st;
  check(vms_vm_read_state(vm, &st, &error), error, "guest state");
  g_autofree char *fill = g_strdup_printf("W 0 %u 1", st.scratch_pages);
  guest_cmd(vm, fill, WRITE_TIMEOUT_MS);
  g_autoptr(JsonObject) r = save(vm, snap, "link", "quit");
  check(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error), error, "base VM exit");
  return snap;
}

static VmsVm *
restore(const char *root, guint mib, const char *snap)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_strdup_printf("%s/vm", root);
  guint64 c = 0;

  vms_test_rm_rf(dir);
  g_mkdir_with_parents(dir, 0700);
  VmsVm *vm = vms_vm_new(dir);
  vm->mem_mib = mib;
  g_free(vm->mem_path);
  vm->mem_path = g_strdup_printf("%s/memory.bin", snap);
  vm->share = FALSE;
  vm->incoming_defer = TRUE;
  vm->plugin_extra = g_strdup_printf("restore=%s", snap);
  check(vms_vm_start(vm, &error), error, "start the restored VM");
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, 60000, &error);
  check(ctl != NULL, error, "restored VM's plugin");
  check(vms_vm_read_counter(vm, &c, &error), error, "counter");
  check(vms_vm_wait_counter_above(vm, c + 100000, VMS_TEST_TIMEOUT_MS, &error), error, "guest runs");
  return vm;
}

static void
run_point(const char *root, const char *base, Point *p, guint rep)
{
  g_autofree char *diff = g_strdup_printf("%s/diff", root);
  g_autofree char *copy = g_strdup_printf("%s/copy", root);
  g_autofree char *cmd = g_strdup_printf("W 0 %u 90", p->pages);
  g_autoptr(GError) error = NULL;
  int status = -1;

  VmsVm *vm = restore(root, p->mib, base);
  if (p->pages > 0)
    guest_cmd(vm, cmd, WRITE_TIMEOUT_MS);
  g_autoptr(JsonObject) d = save(vm, diff, "diff", "resume");
  g_autoptr(JsonObject) c = save(vm, copy, "copy", "quit");
  check(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error), error, "VM exit");
  if (show_log) {
    g_autofree char *log = vms_vm_stderr(vm);
    g_printerr("%s", log);
  }
  vms_vm_free(vm);
  p->diff_ms[rep] = json_object_get_double_member(d, "downtime-ms");
  p->copy_ms[rep] = json_object_get_double_member(c, "downtime-ms");
  p->diff_bytes = (double)json_object_get_int_member(d, "memory-bytes-written");
  p->state_bytes = (double)json_object_get_int_member(d, "state-bytes");
  p->copy_bytes = (double)json_object_get_int_member(c, "memory-bytes-written");
  vms_test_rm_rf(diff);
  vms_test_rm_rf(copy);
}

static void
report(Point *pts, guint n)
{
  printf("| guest RAM | dirty pages | dirty %% of RAM | memory.diff data | state.bin | "
         "diff downtime | copy downtime | copy data | diff / copy |\n");
  printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (guint i = 0; i < n; i++) {
    Point *p = &pts[i];
    double d = bench_median(p->diff_ms, reps), c = bench_median(p->copy_ms, reps);
    printf("| %u MiB | %u | %.2f%% | %.1f MiB | %.1f MiB | %.1f ms | %.1f ms | %.1f MiB | %.2f |\n",
           p->mib, p->pages, 100.0 * p->pages / (p->mib * 256.0), p->diff_bytes / 1048576.0,
           p->state_bytes / 1048576.0, d, c, p->copy_bytes / 1048576.0, d / c);
  }
  printf("\nMedians of %u run(s) per point; downtime as the plugin reports it (VM stop -> "
         "running again for diff then=resume; stop -> commit for copy then=quit).\n", reps);
}

int
main(int argc, char **argv)
{
  g_autofree char *points = g_strdup("1024:262,1024:2621,1024:26214,1024:131072,256:2621");
  g_autofree char *dir = g_strdup("/dev/shm");
  gint reps_opt = 1;
  GOptionEntry entries[] = {
    { "points", 0, 0, G_OPTION_ARG_STRING, &points, "guest RAM MiB : dirty pages, comma-separated",
      "MIB:PAGES,..." },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps_opt, "runs per point (median reported)", "N" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where memory files and snapshots go", "DIR" },
    { "show-qemu-log", 0, 0, G_OPTION_ARG_NONE, &show_log,
      "print QEMU's stderr after each run (with G_MESSAGES_DEBUG=vmsnap: the save's step times)",
      NULL },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- diff-save downtime against dirty pages");
  g_autoptr(GError) error = NULL;

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || reps_opt < 1 || reps_opt > MAX_REPS) {
    g_printerr("bench-diff: %s\n", error != NULL ? error->message : "--reps must be 1..9");
    return 1;
  }
  vms_harness_init(); /* the harness's safety net; exits 77 without QEMU */
  reps = (guint)reps_opt;
  g_autofree char *tmpl = g_build_filename(dir, "vmsnap-bench-diff-XXXXXX", NULL);
  check(g_mkdtemp(tmpl) != NULL, NULL, tmpl);
  g_auto(GStrv) list = g_strsplit(points, ",", -1);
  g_autofree Point *pts = g_new0(Point, g_strv_length(list));
  g_autoptr(GHashTable) bases = g_hash_table_new_full(g_direct_hash, g_direct_equal, NULL, g_free);
  guint n = 0;
  for (; list[n] != NULL; n++) {
    Point *p = &pts[n];
    if (sscanf(list[n], "%u:%u", &p->mib, &p->pages) != 2 || p->mib < 16) {
      g_printerr("bench-diff: bad point '%s' (want MIB:PAGES)\n", list[n]);
      return 1;
    }
    const char *base = g_hash_table_lookup(bases, GUINT_TO_POINTER(p->mib));
    if (base == NULL) {
      base = make_base(tmpl, p->mib);
      g_hash_table_insert(bases, GUINT_TO_POINTER(p->mib), (gpointer)base);
    }
    for (guint r = 0; r < reps; r++)
      run_point(tmpl, base, p, r);
    g_printerr("bench-diff: %u MiB, %u pages: diff %.1f ms, copy %.1f ms\n", p->mib, p->pages,
               bench_median(p->diff_ms, reps), bench_median(p->copy_ms, reps));
  }
  report(pts, n);
  vms_test_rm_rf(tmpl);
  return 0;
}
