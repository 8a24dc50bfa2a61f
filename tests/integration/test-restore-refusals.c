/* Restore refusals (doc/spec.md section 7): each mismatch between a snapshot
 * and the VM restoring it stops QEMU with the field named in its stderr,
 * and nothing in the snapshot changes; so does an incomplete or damaged
 * snapshot. */
#include "restore-fixture.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "manifest.h"
#include "util.h"

/* QEMU creates a missing memory-backend file before any plugin loads, so
 * the CLI must refuse a snapshot without memory.bin before starting QEMU. */
static void
test_cli_missing_memory(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = copy_base(f, "snap");
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  g_autofree char *rdir = g_build_filename(f->dir, "run", NULL);
  g_autofree char *out = NULL, *err = NULL;

  g_assert_cmpint(unlink(mem), ==, 0);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  g_autofree char *before = digest(snap);
  const char *const args[] = { "restore", snap, "--runtime-dir", rdir, NULL };
  g_assert_cmpint(vms_test_run_cli(args, &out, &err), ==, 1);
  g_assert_nonnull(strstr(err, "memory.bin"));
  g_assert_false(g_file_test(mem, G_FILE_TEST_EXISTS));
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

typedef void (*TamperFunc)(const char *snap);

static void
edit_manifest(const char *snap, void (*edit)(VmsManifest *m))
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename(snap, "manifest.bin", NULL);
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  g_autoptr(VmsManifest) m = vms_manifest_read_fd(fd, NULL, &error);
  g_assert_no_error(error);
  edit(m);
  g_autoptr(GBytes) b = vms_manifest_encode(m);
  g_assert_true(g_file_set_contents(path, g_bytes_get_data(b, NULL), (gssize)g_bytes_get_size(b), &error));
  g_assert_no_error(error);
}

static void set_arch(VmsManifest *m) { vms_manifest_set_string(&m->architecture, "aarch64"); }
static void set_version(VmsManifest *m) { m->version = 2; }
static void set_page_size(VmsManifest *m) { m->page_size = 2u << 20; }
static void tamper_arch(const char *snap) { edit_manifest(snap, set_arch); }
static void tamper_page_size(const char *snap) { edit_manifest(snap, set_page_size); }
static void tamper_version(const char *snap) { edit_manifest(snap, set_version); }

static void
tamper_state_flip(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "state.bin", NULL);
  vms_autofd fd = open(path, O_RDWR | O_CLOEXEC);
  guint8 byte = 0;
  g_assert_cmpint(vms_pread_full(fd, &byte, 1, 1000), ==, 1);
  byte ^= 0x10;
  g_assert_cmpint(vms_pwrite_full(fd, &byte, 1, 1000), ==, 0);
}

static void
tamper_state_truncate(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "state.bin", NULL);
  g_assert_cmpint(truncate(path, 4096), ==, 0);
}

static void
tamper_no_manifest(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "manifest.bin", NULL);
  g_assert_cmpint(unlink(path), ==, 0);
}

/* An interrupted save: staged files, no commit record. */
static void
tamper_incomplete(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "manifest.bin", NULL);
  g_autofree char *tmp = g_build_filename(snap, "manifest.bin.tmp", NULL);
  g_assert_cmpint(rename(path, tmp), ==, 0);
}

typedef struct {
  const char *name;
  TamperFunc tamper;   /* nullable */
  guint smp;           /* 0: as saved */
  guint mem_mib;       /* 0: as saved */
  gboolean share;
  gboolean no_incoming; /* leave out -incoming defer */
  const char *plugin_extra; /* appended to restore=DIR (nullable) */
  const char *extra_device; /* a -device the saved VM did not have (nullable) */
  const char *want;    /* in QEMU's stderr */
} Mismatch;

static const Mismatch mismatches[] = {
  { "vcpus", NULL, 2, 0, FALSE, FALSE, NULL, NULL, "VP count" },
  { "memory-size", NULL, 0, 32, FALSE, FALSE, NULL, NULL, "memory size" },
  /* A larger backend than the file: QEMU itself refuses before the plugin loads. */
  { "memory-size-larger", NULL, 0, 128, FALSE, FALSE, NULL, NULL, "size" },
  { "architecture", tamper_arch, 0, 0, FALSE, FALSE, NULL, NULL, "architecture" },
  /* As if saved on 2 MiB huge pages: checked against the mapping QEMU made. */
  { "page-size", tamper_page_size, 0, 0, FALSE, FALSE, NULL, NULL, "page size" },
  { "version", tamper_version, 0, 0, FALSE, FALSE, NULL, NULL, "version" },
  { "state-bit-flip", tamper_state_flip, 0, 0, FALSE, FALSE, NULL, NULL, "state" },
  { "state-truncated", tamper_state_truncate, 0, 0, FALSE, FALSE, NULL, NULL, "state" },
  { "no-manifest", tamper_no_manifest, 0, 0, FALSE, FALSE, NULL, NULL, "manifest.bin" },
  { "incomplete", tamper_incomplete, 0, 0, FALSE, FALSE, NULL, NULL, "incomplete" },
  { "share-on", NULL, 0, 0, TRUE, FALSE, NULL, NULL, "share=on" },
  { "no-incoming-defer", NULL, 0, 0, FALSE, TRUE, NULL, NULL, "-incoming defer" },
  { "resume-off-without-S", NULL, 0, 0, FALSE, FALSE, "resume=off", NULL, "-S" },
};

static void
test_mismatch(Fixture *f, gconstpointer data)
{
  const Mismatch *mm = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = copy_base(f, "snap");
  int status = 0;

  if (mm->tamper != NULL)
    mm->tamper(snap);
  g_autofree char *before = digest(snap);
  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "clone", snap);
  if (mm->smp != 0)
    vm->smp = mm->smp;
  if (mm->mem_mib != 0)
    vm->mem_mib = mm->mem_mib;
  vm->share = mm->share;
  vm->incoming_defer = !mm->no_incoming;
  if (mm->extra_device != NULL) {
    g_ptr_array_add(vm->extra_args, g_strdup("-device"));
    g_ptr_array_add(vm->extra_args, g_strdup(mm->extra_device));
  }
  if (mm->plugin_extra != NULL) {
    g_autofree char *old = vm->plugin_extra;
    vm->plugin_extra = g_strdup_printf("%s,%s", old, mm->plugin_extra);
  }

  g_autoptr(GPtrArray) argv = vms_vm_build_argv(vm);
  g_assert_true(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  g_autofree char *err = vms_vm_stderr(vm);
  g_test_message("QEMU exit %d, stderr: %s", status, err);
  g_assert_cmpint(status, !=, 0);
  g_assert_nonnull(strstr(err, mm->want));
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

/* Devices are not in the manifest: a VM that lacks one the snapshot has is
 * refused by QEMU's loader of state.bin, and QEMU exits. */
static void
test_device_mismatch(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  guint64 counter = 0, boot_id = 0;
  g_autofree char *snap = make_snapshot_with(f->dir, "link", 1, "virtio-rng-pci", &counter, &boot_id);
  g_autofree char *before = digest(snap);
  int status = 0;

  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "clone", snap);
  g_autoptr(GPtrArray) argv = vms_vm_build_argv(vm);
  g_assert_true(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error));
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  g_autofree char *err = vms_vm_stderr(vm);
  g_test_message("QEMU exit %d, stderr: %s", status, err);
  g_assert_cmpint(status, !=, 0);
  g_assert_nonnull(strstr(err, "virtio-rng"));
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/restore/refusals/cli-missing-memory", Fixture, NULL, setup, test_cli_missing_memory,
             teardown);
  g_test_add("/restore/refusals/device", Fixture, NULL, setup, test_device_mismatch, teardown);
  for (gsize i = 0; i < G_N_ELEMENTS(mismatches); i++) {
    g_autofree char *path = g_strdup_printf("/restore/refusals/%s", mismatches[i].name);
    g_test_add(path, Fixture, &mismatches[i], setup, test_mismatch, teardown);
  }
  int ret = g_test_run();
  base_snapshot_cleanup();
  return ret;
}
