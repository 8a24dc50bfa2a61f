/* vmsnap benchmark: fleet costs (issue 15; doc/performance.md "Fleet").
 *
 * All in one run, every comparison side by side:
 *   diff     a diff save (then=resume) of a restored VM of each --sizes MiB
 *            whose guest filled its RAM, at each --dirty percent, restored
 *            with the RAM overlay and with today's private (share=off)
 *            mapping: total time (client side and the reply's total-ms),
 *            downtime, and the peak temporary space beside memory.diff in
 *            the snapshot directory; a CPU hog runs beside the guest;
 *   density  PSS of 1, 4, 16 overlay clones of a --density-mib snapshot
 *            whose guests read all their RAM, 1 and 4 private clones, and
 *            QEMU's own restore (anonymous RAM, -incoming exec:cat);
 *   warm     a clone restored paused (resume=off): time from sending `cont`
 *            on QEMU's QMP to the guest counter moving, read from QEMU's
 *            memory through /proc/PID/mem, at every size;
 *   fleet    16 overlay clones started in parallel against 16 sequential
 *            restores, until every guest counts.
 *
 *   bench-fleet [--sizes 2048,4096] [--dirty 0.1,1,10] [--density-mib 512]
 *               [--clones 1,4,16] [--fleet 16] [--reps N] [--dir DIR] [--no-hog]
 */
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "harness.h"
#include "bench-fleet.h"
#include "bench-stats.h"
#include "util.h"

guint fleet_reps = 3;
gboolean fleet_with_private = TRUE;

void
fleet_check(gboolean ok, GError *error, const char *what)
{
  if (ok && error == NULL)
    return;
  g_printerr("bench-fleet: %s: %s\n", what, error != NULL ? error->message : "failed");
  exit(1);
}

JsonObject *
fleet_save(VmsVm *vm, const char *dir, const char *memory, const char *then)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  fleet_check(ctl != NULL, error, "control socket");
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(
      ctl, "snapshot-save", &error, "{\"dir\": \"%s\", \"memory\": \"%s\", \"then\": \"%s\"}",
      dir, memory, then);
  fleet_check(ret != NULL, error, "snapshot-save");
  return json_object_ref(json_node_get_object(ret));
}

void
fleet_guest_cmd(VmsVm *vm, const char *cmd)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *reply = vms_vm_guest_command(vm, cmd, 600000, &error);

  fleet_check(reply != NULL && g_str_has_prefix(reply, "ok "), error, cmd);
}

void
fleet_qmp(VmsTestQmp *q, const char *command, const char *args)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) r = vms_test_qmp_executef(q, command, &error, args != NULL ? "%s" : NULL, args);
  fleet_check(r != NULL, error, command);
}

/* A link snapshot (then=quit) of a guest of @mib MiB that wrote every page
 * of its scratch region (byte 1). With @native, first QEMU's own full
 * migration stream of the same guest into @native (for the anonymous-RAM
 * restore). *@ret_pages: the scratch pages; *@ret_counter: the counter at
 * the save. */
char *
fleet_make_base(const char *root, guint mib, const char *native, guint *ret_pages,
                guint64 *ret_counter)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *vm_dir = g_strdup_printf("%s/base-vm-%u", root, mib);
  char *snap = g_strdup_printf("%s/base-%u", root, mib);
  int status = -1;
  VmsGuestState st;

  g_mkdir_with_parents(vm_dir, 0700);
  g_autoptr(VmsVm) vm = vms_vm_new(vm_dir);
  vm->mem_mib = mib;
  fleet_check(vms_vm_start(vm, &error), error, "start the base VM");
  fleet_check(vms_vm_wait_ready(vm, 120000, &error), error, "base guest ready");
  fleet_check(vms_vm_read_state(vm, &st, &error), error, "guest state");
  g_autofree char *fill = g_strdup_printf("W 0 %u 1", st.scratch_pages);
  fleet_guest_cmd(vm, fill);
  if (native != NULL) {
    g_autofree char *uri = g_strdup_printf("{\"uri\": \"exec:cat > %s\"}", native);
    fleet_qmp(vm->qmp, "migrate-set-capabilities",
              "{\"capabilities\": [{\"capability\": \"x-ignore-shared\", \"state\": false}]}");
    fleet_qmp(vm->qmp, "migrate", uri);
    for (;;) {
      g_autoptr(JsonNode) q = vms_test_qmp_execute(vm->qmp, "query-migrate", NULL, &error);
      fleet_check(q != NULL, error, "query-migrate");
      const char *s = json_object_get_string_member_with_default(json_node_get_object(q), "status", "");
      if (g_str_equal(s, "completed"))
        break;
      fleet_check(!g_str_equal(s, "failed"), NULL, "QEMU's own migration");
      g_usleep(20000);
    }
    fleet_qmp(vm->qmp, "cont", NULL);
  }
  g_autoptr(JsonObject) r = fleet_save(vm, snap, "link", "quit");
  fleet_check(vms_vm_wait_exit(vm, 120000, &status, &error), error, "base VM exit");
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  vms_autofd fd = open(mem, O_RDONLY | O_CLOEXEC);
  guint64 c = 0;
  fleet_check(fd >= 0 && pread(fd, &c, sizeof(c), VMS_GUEST_COUNTER_ADDR) == sizeof(c), NULL,
              "base counter");
  *ret_pages = st.scratch_pages;
  *ret_counter = GUINT64_FROM_LE(c);
  return snap;
}

VmsVm *
fleet_clone_new(const char *root, const char *name, guint mib, const char *snap, FleetMode mode,
                gboolean paused)
{
  g_autofree char *dir = g_build_filename(root, name, NULL);
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);

  vms_test_rm_rf(dir);
  g_mkdir_with_parents(dir, 0700);
  VmsVm *vm = vms_vm_new(dir);
  vm->mem_mib = mib;
  g_free(vm->mem_path);
  vm->incoming_defer = TRUE;
  if (mode == FLEET_OVERLAY) {
    vm->mem_path = g_build_filename(dir, "guest-ram.placeholder", NULL);
    vm->share = TRUE;
    vm->plugin_extra = g_strdup_printf("restore=%s,overlay=%s%s", snap, mem,
                                       paused ? ",resume=off" : "");
  } else {
    vm->mem_path = g_strdup(mem);
    vm->share = FALSE;
    vm->plugin_extra = g_strdup_printf("restore=%s%s", snap, paused ? ",resume=off" : "");
  }
  if (paused)
    g_ptr_array_add(vm->extra_args, g_strdup("-S"));
  return vm;
}

/* ---- reading a guest counter from QEMU's memory (/proc/PID/mem) ---- */

gboolean
fleet_peek_open(VmsVm *vm, const char *mem_file, guint mib, FleetPeek *p)
{
  const char *pid = g_subprocess_get_identifier(vm->proc);
  g_autofree char *maps_path = g_strdup_printf("/proc/%s/maps", pid);
  g_autofree char *maps = NULL;

  if (pid == NULL || !g_file_get_contents(maps_path, &maps, NULL, NULL))
    return FALSE;
  g_auto(GStrv) lines = g_strsplit(maps, "\n", -1);
  for (guint i = 0; lines[i] != NULL; i++) {
    unsigned long lo = 0, hi = 0;
    if (!g_str_has_suffix(lines[i], mem_file) || sscanf(lines[i], "%lx-%lx", &lo, &hi) != 2 ||
        hi - lo != (unsigned long)mib << 20)
      continue;
    g_autofree char *mem_path = g_strdup_printf("/proc/%s/mem", pid);
    p->fd = open(mem_path, O_RDONLY | O_CLOEXEC);
    p->addr = lo;
    return p->fd >= 0;
  }
  return FALSE;
}

guint64
fleet_peek_counter(const FleetPeek *p)
{
  guint64 c = 0;
  if (pread(p->fd, &c, sizeof(c), (off_t)(p->addr + VMS_GUEST_COUNTER_ADDR)) != sizeof(c))
    return 0;
  return GUINT64_FROM_LE(c);
}

/* ---- the CPU hog ---- */

static pid_t
hog_start(void)
{
  pid_t pid = fork();

  if (pid == 0) {
    prctl(PR_SET_PDEATHSIG, SIGKILL);
    for (volatile guint64 i = 0;; i++)
      ;
  }
  return pid;
}

static void
hog_stop(pid_t pid)
{
  if (pid > 0) {
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
  }
}

static GArray *
parse_list(const char *text, gboolean floating)
{
  g_auto(GStrv) parts = g_strsplit(text, ",", -1);
  GArray *a = g_array_new(FALSE, FALSE, sizeof(double));

  for (guint i = 0; parts[i] != NULL; i++) {
    double v = floating ? g_ascii_strtod(parts[i], NULL) : (double)g_ascii_strtoull(parts[i], NULL, 10);
    g_array_append_val(a, v);
  }
  return a;
}

/* What main parsed, for the phases. */
typedef struct {
  const char *root;
  GArray *sizes, *dirty, *clones;
  guint density_mib, fleet_n;
  gboolean hog, diff_only, warm_only;
} Plan;

/* The bases the warm-clone phase restores, with their sizes and counters. */
typedef struct {
  GPtrArray *bases;
  GArray *sizes;
  GArray *counters;
} Warm;

static void
warm_add(Warm *w, char *base, guint mib, guint64 counter)
{
  g_ptr_array_add(w->bases, base);
  g_array_append_val(w->sizes, mib);
  g_array_append_val(w->counters, counter);
}

/* Density and many clones first: their base is the smallest. */
static void
run_clone_benches(const Plan *p, Warm *w)
{
  g_autofree char *native = g_build_filename(p->root, "native.mig", NULL);
  guint pages = 0;
  guint64 counter = 0;
  char *base = fleet_make_base(p->root, p->density_mib, native, &pages, &counter);

  if (!p->warm_only)
    fleet_bench_density(p->root, base, native, p->density_mib, pages, p->clones);
  if (p->fleet_n > 0 && !p->warm_only)
    fleet_bench_parallel(p->root, base, p->density_mib, counter, p->fleet_n);
  warm_add(w, base, p->density_mib, counter);
  vms_test_rm_rf(native);
}

static void
run_diff_benches(const Plan *p, Warm *w)
{
  pid_t hog = p->hog && !p->warm_only ? hog_start() : 0;

  if (!p->warm_only)
    fleet_diff_header(p->hog);
  for (guint i = 0; i < p->sizes->len; i++) {
    guint mib = (guint)g_array_index(p->sizes, double, i), pages = 0;
    guint64 counter = 0;
    char *base = fleet_make_base(p->root, mib, NULL, &pages, &counter);
    for (guint d = 0; d < p->dirty->len && !p->warm_only; d++)
      fleet_bench_diff(p->root, base, mib, g_array_index(p->dirty, double, d));
    warm_add(w, base, mib, counter);
  }
  hog_stop(hog);
  if (!p->warm_only)
    fleet_diff_footer(p->hog);
}

int
main(int argc, char **argv)
{
  g_autofree char *sizes = g_strdup("2048,4096"), *dirty = g_strdup("0.1,1,10");
  g_autofree char *clones = g_strdup("1,4,16"), *dir = g_strdup("/dev/shm");
  gint reps = 3, density_mib = 512, fleet_n = 16;
  gboolean no_hog = FALSE, no_private = FALSE, diff_only = FALSE, warm_only = FALSE;
  GOptionEntry entries[] = {
    { "sizes", 0, 0, G_OPTION_ARG_STRING, &sizes, "guest RAM sizes (MiB) of the diff bench", "LIST" },
    { "dirty", 0, 0, G_OPTION_ARG_STRING, &dirty, "dirty percentages", "LIST" },
    { "density-mib", 0, 0, G_OPTION_ARG_INT, &density_mib, "snapshot size of density/fleet", "MIB" },
    { "clones", 0, 0, G_OPTION_ARG_STRING, &clones, "clone counts of the density bench", "LIST" },
    { "fleet", 0, 0, G_OPTION_ARG_INT, &fleet_n, "clones started at once (0: skip)", "N" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &reps, "runs per diff point and warm start", "N" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where memory files and snapshots go", "DIR" },
    { "no-hog", 0, 0, G_OPTION_ARG_NONE, &no_hog, "no CPU hog beside the diff bench", NULL },
    { "no-private", 0, 0, G_OPTION_ARG_NONE, &no_private, "diff bench: the overlay only", NULL },
    { "diff-only", 0, 0, G_OPTION_ARG_NONE, &diff_only, "the diff bench only", NULL },
    { "warm-only", 0, 0, G_OPTION_ARG_NONE, &warm_only, "the warm-clone bench only", NULL },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- fleet costs (issue 15)");
  g_autoptr(GError) error = NULL;

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || reps < 1 || reps > FLEET_MAX_REPS) {
    g_printerr("bench-fleet: %s\n", error != NULL ? error->message : "--reps must be 1..9");
    return 1;
  }
  vms_harness_init();
  fleet_reps = (guint)reps;
  fleet_with_private = !no_private;
  g_autofree char *root = g_build_filename(dir, "vmsnap-bench-fleet-XXXXXX", NULL);
  fleet_check(g_mkdtemp(root) != NULL, NULL, root);
  g_autoptr(GArray) size_list = parse_list(sizes, FALSE);
  g_autoptr(GArray) dirty_list = parse_list(dirty, TRUE);
  g_autoptr(GArray) clone_list = parse_list(clones, FALSE);

  Warm warm = { g_ptr_array_new_with_free_func(g_free), g_array_new(FALSE, FALSE, sizeof(guint)),
                g_array_new(FALSE, FALSE, sizeof(guint64)) };
  Plan plan = { root, size_list, dirty_list, clone_list, (guint)density_mib, (guint)fleet_n,
                !no_hog, diff_only, warm_only };
  if (!diff_only)
    run_clone_benches(&plan, &warm);
  run_diff_benches(&plan, &warm);
  if (!diff_only)
    fleet_bench_warm(root, warm.bases, warm.sizes, warm.counters);
  g_ptr_array_unref(warm.bases);
  g_array_unref(warm.sizes);
  g_array_unref(warm.counters);
  vms_test_rm_rf(root);
  return 0;
}
