/* vmsnap benchmark: what disks add to a save's downtime and to a restore,
 * with 0, 1 and 4 disks side by side in one run, against copying the disk
 * images with the VM paused (what Cloud Hypervisor and Firecracker tell
 * users to do for a consistent disk).
 *
 * For each image size and disk count, on a fresh test guest each rep (so the
 * image frozen is the big raw one, not the previous rep's overlay):
 *   - vmsnap:  snapshot-save memory=link then=pause, then `cont`; downtime =
 *     the plugin's downtime-ms (stop -> commit), which includes the disk
 *     freeze (one QMP transaction, one new qcow2 overlay per disk);
 *   - copy:    QMP stop, `cp --sparse=always` of every image, `cont`;
 *     downtime = stop -> cont returned, measured here.
 * Restore: `vmsnap restore` of a then=quit snapshot with those disks (one
 * qemu-img create per disk included), until the guest's counter passes the
 * saved value.
 * Images are raw, SIZE virtual with --written-mib MiB of data (the copy's
 * cost grows with the data; the freeze's does not).
 *
 * Usage: bench-disks [--sizes 64,4096] [--disks 0,1,4] [--reps 5]
 *                    [--written-mib 64] [--dir /dev/shm]
 * Environment as the integration tests (VMSNAP_PLUGIN, VMSNAP_GUEST, VMSNAP_CLI).
 */
#include "harness.h"
#include "bench-stats.h"

#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "util.h"

#define MAX_REPS 16

static guint reps = 5;
static guint written_mib = 64;

typedef struct {
  guint size_mib, disks;
  double ours[MAX_REPS], freeze[MAX_REPS], copy[MAX_REPS], restore[MAX_REPS];
} Point;

/* A raw image of @size_mib MiB with its first written_mib MiB non-zero. */
static void
make_image(const char *path, guint size_mib)
{
  vms_autofd fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_autofree guint8 *buf = g_malloc(1 << 20);

  g_assert_cmpint(fd, >=, 0);
  memset(buf, 0xa5, 1 << 20);
  for (guint i = 0; i < MIN(written_mib, size_mib); i++)
    g_assert_cmpint(vms_pwrite_full(fd, buf, 1 << 20, (guint64)i << 20), ==, 0);
  g_assert_cmpint(ftruncate(fd, (off_t)size_mib << 20), ==, 0);
}

static VmsVm *
boot(const char *root, const char *name, const Point *p)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_build_filename(root, name, NULL);
  VmsVm *vm;

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  vm = vms_vm_new(dir);
  for (guint d = 0; d < p->disks; d++) {
    g_autofree char *img = g_strdup_printf("%s/d%u.raw", dir, d);
    make_image(img, p->size_mib);
    g_ptr_array_add(vm->extra_args, g_strdup("-drive"));
    g_ptr_array_add(vm->extra_args,
                    g_strdup_printf("file=%s,format=raw,if=none,id=d%u", img, d));
    g_ptr_array_add(vm->extra_args, g_strdup("-device"));
    g_ptr_array_add(vm->extra_args, g_strdup_printf("virtio-blk-pci,drive=d%u", d));
  }
  if (!vms_vm_start(vm, &error) || !vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error))
    g_error("boot: %s", error->message);
  return vm;
}

/* The plugin's downtime-ms; *@ret_disks_ms (nullable) its disks-ms. */
static double
save_ms(VmsVm *vm, const char *snap, const char *then, double *ret_disks_ms)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_autoptr(JsonNode) ret = NULL;

  if (ctl != NULL)
    ret = vms_test_qmp_executef(ctl, "snapshot-save", &error,
                                "{\"dir\": \"%s\", \"memory\": \"link\", \"then\": \"%s\"}", snap,
                                then);
  if (ret == NULL)
    g_error("snapshot-save: %s", error->message);
  if (ret_disks_ms != NULL)
    *ret_disks_ms = json_object_get_double_member(json_node_get_object(ret), "disks-ms");
  return json_object_get_double_member(json_node_get_object(ret), "downtime-ms");
}

static void
qmp_or_die(VmsVm *vm, const char *command)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, command, NULL, &error);

  if (ret == NULL)
    g_error("%s: %s", command, error->message);
}

static double
copy_ms(VmsVm *vm, const Point *p)
{
  gint64 t0 = g_get_monotonic_time();

  qmp_or_die(vm, "stop");
  for (guint d = 0; d < p->disks; d++) {
    g_autofree char *cmd = g_strdup_printf("cp --sparse=always %s/d%u.raw %s/d%u.copy", vm->dir,
                                           d, vm->dir, d);
    int status = -1;
    if (!g_spawn_command_line_sync(cmd, NULL, NULL, &status, NULL) || status != 0)
      g_error("%s failed", cmd);
  }
  qmp_or_die(vm, "cont");
  return (double)(g_get_monotonic_time() - t0) / 1000.0;
}

static guint64
saved_counter(const char *snap)
{
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  vms_autofd fd = open(mem, O_RDONLY | O_CLOEXEC);
  guint64 v = 0;

  g_assert_cmpint(vms_pread_full(fd, &v, sizeof(v), VMS_GUEST_COUNTER_ADDR), ==, sizeof(v));
  return GUINT64_FROM_LE(v);
}

static double
restore_ms(const char *root, const char *snap, guint rep)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *rdir = g_strdup_printf("%s/clone-%u", root, rep);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  g_autoptr(VmsVm) vm = vms_vm_new(rdir);
  const char *const argv[] = { vms_test_cli(), "restore", snap, "--runtime-dir", rdir, NULL };
  guint64 saved = saved_counter(snap);
  gint64 t0 = g_get_monotonic_time();

  if (!vms_vm_spawn(vm, argv, &error) || !vms_vm_connect(vm, VMS_TEST_TIMEOUT_MS, &error) ||
      !vms_vm_wait_counter_above(vm, saved, VMS_TEST_TIMEOUT_MS, &error)) {
    g_autofree char *err = vms_vm_stderr(vm);
    g_error("restore: %s (%s)", error->message, err);
  }
  return (double)(g_get_monotonic_time() - t0) / 1000.0;
}

static void
bench_point(const char *base, Point *p)
{
  g_autofree char *root = g_strdup_printf("%s/vmsnap-bench-disks-%u-%u-XXXXXX", base, p->size_mib,
                                          p->disks);
  g_assert_nonnull(g_mkdtemp(root));
  for (guint r = 0; r < reps; r++) {
    g_autofree char *name = g_strdup_printf("vm-%u", r);
    g_autofree char *snap = g_strdup_printf("%s/snap-%u", root, r);
    g_autoptr(VmsVm) vm = boot(root, name, p);
    p->ours[r] = save_ms(vm, snap, "pause", &p->freeze[r]);
    qmp_or_die(vm, "cont");
    vms_vm_kill(vm);
    g_autofree char *name2 = g_strdup_printf("cp-%u", r);
    g_autoptr(VmsVm) vm2 = boot(root, name2, p);
    p->copy[r] = copy_ms(vm2, p);
    g_autofree char *qsnap = g_strdup_printf("%s/quit-%u", root, r);
    (void)save_ms(vm2, qsnap, "quit", NULL);
    int status = 0;
    (void)vms_vm_wait_exit(vm2, VMS_TEST_TIMEOUT_MS, &status, NULL);
    p->restore[r] = restore_ms(root, qsnap, r);
    g_printerr("  %u MiB x %u disks rep %u: vmsnap %.2f ms (disks step %.2f), copy %.2f ms, "
               "restore %.1f ms\n", p->size_mib, p->disks, r, p->ours[r], p->freeze[r], p->copy[r],
               p->restore[r]);
  }
  if (g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(root);
}

static guint *
parse_list(const char *text, guint *ret_n)
{
  g_auto(GStrv) parts = g_strsplit(text, ",", -1);
  guint *v = g_new0(guint, g_strv_length(parts) + 1);

  *ret_n = 0;
  for (guint i = 0; parts[i] != NULL; i++)
    v[(*ret_n)++] = (guint)g_ascii_strtoull(parts[i], NULL, 10);
  return v;
}

static void
report(const Point *pts, guint n)
{
  printf("| image size | disks | vmsnap downtime (median / min ms) | of which the disks step "
         "(median / min ms) | copy downtime (median / min ms) | copy / vmsnap | restore "
         "(median / min ms) |\n");
  printf("| ---: | ---: | ---: | ---: | ---: | ---: | ---: |\n");
  for (guint i = 0; i < n; i++) {
    const Point *p = &pts[i];
    double o = bench_median(p->ours, reps), c = bench_median(p->copy, reps);
    printf("| %u MiB | %u | %.2f / %.2f | %.2f / %.2f | %.2f / %.2f | %.1fx | %.1f / %.1f |\n",
           p->size_mib, p->disks, o, bench_minimum(p->ours, reps), bench_median(p->freeze, reps),
           bench_minimum(p->freeze, reps), c, bench_minimum(p->copy, reps),
           o > 0 ? c / o : 0.0, bench_median(p->restore, reps), bench_minimum(p->restore, reps));
  }
}

int
main(int argc, char **argv)
{
  g_autofree char *sizes = g_strdup("64,4096"), *disks = g_strdup("0,1,4"),
                  *dir = g_strdup("/dev/shm");
  gint r = 5, w = 64;
  GOptionEntry entries[] = {
    { "sizes", 0, 0, G_OPTION_ARG_STRING, &sizes, "image sizes in MiB", "LIST" },
    { "disks", 0, 0, G_OPTION_ARG_STRING, &disks, "disk counts", "LIST" },
    { "reps", 0, 0, G_OPTION_ARG_INT, &r, "runs per point", "N" },
    { "written-mib", 0, 0, G_OPTION_ARG_INT, &w, "MiB of data in each image", "N" },
    { "dir", 0, 0, G_OPTION_ARG_FILENAME, &dir, "where VMs, images and snapshots go", "DIR" },
    { NULL },
  };
  g_autoptr(GOptionContext) ctx = g_option_context_new("- disk freeze benchmark");
  g_autoptr(GError) error = NULL;

  g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, &argc, &argv, &error) || r < 1 || r > MAX_REPS || w < 0) {
    g_printerr("bench-disks: %s\n", error != NULL ? error->message : "bad --reps/--written-mib");
    return 2;
  }
  reps = (guint)r;
  written_mib = (guint)w;
  vms_harness_init();
  guint ns = 0, nd = 0;
  g_autofree guint *sv = parse_list(sizes, &ns), *dv = parse_list(disks, &nd);
  g_autofree Point *pts = g_new0(Point, ns * nd);
  for (guint i = 0; i < ns; i++)
    for (guint j = 0; j < nd; j++) {
      Point *p = &pts[i * nd + j];
      p->size_mib = sv[i];
      p->disks = dv[j];
      bench_point(dir, p);
    }
  report(pts, ns * nd);
  return 0;
}
