/* Disks (doc/spec.md section 8): what is refused, and what a failure leaves.
 * - A disk step that fails (an overlay path QEMU cannot create) leaves the
 *   VM running on its own images, no disk half-switched, no overlay file
 *   and no snapshot behind; the error names "disk".
 * - Read-only disks are recorded, not frozen; then=pause switches the VM
 *   onto overlays so a later `cont` cannot write the frozen images.
 * - A frozen image that changed is refused by name: by `vmsnap verify`, by
 *   `vmsnap restore` before QEMU starts, and by the plugin when QEMU is
 *   started by hand.
 * - A diskless VM's snapshot is as before: no disk records, no disk files. */
#include "disk-fixture.h"

#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

static void
test_failure_and_refusals(DiskFixture *f, gconstpointer data)
{
  if (f->guest == NULL)
    return;
  g_autoptr(GError) error = NULL;
  g_autofree char *vmdir = g_build_filename(f->dir, "orig", NULL);
  g_autofree char *root = g_build_filename(vmdir, "root.raw", NULL);
  g_autofree char *data_img = g_build_filename(vmdir, "data.raw", NULL);
  g_autofree char *ro_img = g_build_filename(vmdir, "ro.raw", NULL);
  g_autofree char *bad = g_build_filename(f->dir, "bad", NULL);
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *root_ov_bad = g_build_filename(vmdir, "root-bad.qcow2", NULL);
  g_autofree char *data_ov_bad = g_build_filename(vmdir, "data-bad.qcow2", NULL);
  VmsVm *vm = disk_prepare(f, 0, "orig", FALSE);
  disk_add_blank(vm, "data", data_img, 16, FALSE);
  disk_add_blank(vm, "ro", ro_img, 4, TRUE);
  disk_start(vm);
  disk_start_writer(vm, "orig", 10);

  /* The second disk's overlay cannot be created: nothing switches. */
  g_assert_cmpint(symlink("/nonexistent-vmsnap-dir/overlay.qcow2", data_ov_bad), ==, 0);
  g_autofree char *msg = disk_save_fails(vm, bad, "copy", "resume");
  g_assert_nonnull(strstr(msg, "disk"));
  g_assert_true(vms_vm_wait_running(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_autofree char *top_root = disk_top_image_of(vm, "root");
  g_autofree char *top_data = disk_top_image_of(vm, "data");
  g_assert_cmpstr(top_root, ==, root);
  g_assert_cmpstr(top_data, ==, data_img);
  g_assert_false(g_file_test(root_ov_bad, G_FILE_TEST_EXISTS));
  g_autofree char *bad_manifest = g_build_filename(bad, "manifest.bin", NULL);
  g_autofree char *bad_link = g_build_filename(bad, "disk-root.raw", NULL);
  g_assert_false(g_file_test(bad_manifest, G_FILE_TEST_EXISTS));
  g_assert_false(g_file_test(bad_link, G_FILE_TEST_EXISTS));
  guint n = disk_history_lines(vm);
  g_free(vms_linux_run_ok(vm, "sleep 0.3"));
  g_assert_cmpuint(disk_history_lines(vm), >, n);
  (void)unlink(data_ov_bad);

  /* then=pause: two disks frozen, the read-only one recorded; after `cont`
   * the VM writes its overlays. */
  g_autoptr(JsonObject) ret = disk_save(vm, snap, "copy", "pause");
  g_assert_cmpint(json_object_get_int_member(ret, "disks"), ==, 2);
  g_autofree char *out = NULL;
  const char *const info[] = { "info", snap, "--json", NULL };
  g_assert_cmpint(vms_test_run_cli(info, &out, NULL), ==, 0);
  g_assert_nonnull(strstr(out, "\"read_only\" : true"));
  g_autofree char *ro_link = g_build_filename(snap, "disk-ro.raw", NULL);
  g_assert_false(g_file_test(ro_link, G_FILE_TEST_EXISTS));
  g_autoptr(JsonNode) cont = vms_test_qmp_execute(vm->qmp, "cont", NULL, &error);
  g_assert_no_error(error);
  g_free(top_root);
  top_root = disk_top_image_of(vm, "root");
  g_assert_cmpstr(top_root, !=, root);
  g_free(vms_linux_run_ok(vm, "sleep 0.2; sync"));
  const char *const verify[] = { "verify", snap, NULL };
  g_assert_cmpint(vms_test_run_cli(verify, NULL, NULL), ==, 0);

  /* The dry run's command line, for starting QEMU by hand later. */
  g_autofree char *rdir = g_build_filename(f->dir, "by-hand", NULL);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  g_autofree char *dry = NULL;
  const char *const dry_args[] = { "restore", snap, "--dry-run", "--runtime-dir", rdir, NULL };
  g_assert_cmpint(vms_test_run_cli(dry_args, &dry, NULL), ==, 0);
  /* A dry run creates no overlay: make them as a user would. */
  static const char *const devices[] = { "root", "data" };
  for (guint i = 0; i < G_N_ELEMENTS(devices); i++) {
    g_autofree char *base = g_strdup_printf("%s/disk-%s.raw", snap, devices[i]);
    g_autofree char *ov = g_strdup_printf("%s/disk-%s.qcow2", rdir, devices[i]);
    g_autofree char *cmd = g_strdup_printf("qemu-img create -q -f qcow2 -b %s -F raw %s", base, ov);
    int st = -1;
    g_assert_true(g_spawn_command_line_sync(cmd, NULL, NULL, &st, &error));
    g_assert_cmpint(st, ==, 0);
  }

  /* QEMU started by hand on the frozen image itself (writable): refused
   * before the state loads. */
  g_auto(GStrv) direct = NULL;
  g_assert_true(g_shell_parse_argv(g_strstrip(dry), NULL, &direct, &error));
  g_autofree char *ov_root = g_strdup_printf("file=%s/disk-root.qcow2,format=qcow2,", rdir);
  g_autofree char *frozen_root = g_strdup_printf("file=%s/disk-root.raw,format=raw,", snap);
  for (guint i = 0; direct[i] != NULL; i++)
    if (g_str_has_prefix(direct[i], ov_root)) {
      g_autofree char *rest = g_strdup(direct[i] + strlen(ov_root));
      g_free(direct[i]);
      direct[i] = g_strconcat(frozen_root, rest, NULL);
    }
  VmsVm *writer = f->vms[2] = vms_vm_new(rdir);
  g_assert_true(vms_vm_spawn(writer, (const char *const *)direct, &error));
  int wstatus = 0;
  g_assert_true(vms_vm_wait_exit(writer, 60000, &wstatus, &error));
  g_assert_cmpint(wstatus, !=, 0);
  g_autofree char *writer_err = vms_vm_stderr(writer);
  g_assert_nonnull(strstr(writer_err, "disk root: QEMU has the snapshot's frozen image"));
  g_assert_cmpint(vms_test_run_cli(verify, NULL, NULL), ==, 0); /* and it was not written */
  (void)unlink(writer->stderr_path);

  /* The frozen root image changes: refused by name everywhere. */
  g_autofree char *frozen = g_build_filename(snap, "disk-root.raw", NULL);
  g_assert_cmpint(chmod(frozen, 0600), ==, 0);
  FILE *w = fopen(frozen, "r+");
  g_assert_nonnull(w);
  fputs("x", w);
  fclose(w);
  g_autofree char *err = NULL;
  g_assert_cmpint(vms_test_run_cli(verify, NULL, &err), !=, 0);
  g_assert_nonnull(strstr(err, "disk root"));
  g_autofree char *rdir2 = g_build_filename(f->dir, "refused", NULL);
  g_assert_cmpint(g_mkdir_with_parents(rdir2, 0700), ==, 0);
  const char *const restore[] = { "restore", snap, "--runtime-dir", rdir2, NULL };
  g_autofree char *err2 = NULL;
  g_assert_cmpint(vms_test_run_cli(restore, NULL, &err2), !=, 0);
  g_assert_nonnull(strstr(err2, "disk root"));

  /* QEMU started by hand with that command line: the plugin refuses. */
  g_auto(GStrv) argv = NULL;
  g_assert_true(g_shell_parse_argv(g_strstrip(dry), NULL, &argv, &error));
  VmsVm *hand = f->vms[1] = vms_vm_new(rdir);
  g_assert_true(vms_vm_spawn(hand, (const char *const *)argv, &error));
  int status = 0;
  g_assert_true(vms_vm_wait_exit(hand, 60000, &status, &error));
  g_assert_cmpint(status, !=, 0);
  g_autofree char *hand_err = vms_vm_stderr(hand);
  g_assert_nonnull(strstr(hand_err, "disk root"));
}

/* A diskless VM (the freestanding guest): no disk records, no disk files. */
static void
test_diskless(DiskFixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *vmdir = g_build_filename(f->dir, "plain", NULL);
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);

  g_assert_cmpint(g_mkdir_with_parents(vmdir, 0700), ==, 0);
  VmsVm *vm = f->vms[0] = vms_vm_new(vmdir);
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_autoptr(JsonObject) ret = disk_save(vm, snap, "copy", "resume");
  g_assert_cmpint(json_object_get_int_member(ret, "disks"), ==, 0);
  g_autofree char *out = NULL;
  const char *const info[] = { "info", snap, "--json", NULL };
  g_assert_cmpint(vms_test_run_cli(info, &out, NULL), ==, 0);
  g_autoptr(JsonParser) p = json_parser_new();
  g_assert_true(json_parser_load_from_data(p, out, -1, &error));
  JsonObject *m = json_node_get_object(json_parser_get_root(p));
  g_assert_cmpuint(json_array_get_length(json_object_get_array_member(m, "disks")), ==, 0);
  g_assert_cmpstr(json_object_get_string_member(m, "vm_generation_id"), ==, "");
  g_autoptr(GDir) d = g_dir_open(snap, 0, &error);
  for (const char *name; (name = g_dir_read_name(d)) != NULL;)
    g_assert_false(g_str_has_prefix(name, "disk-"));
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/disks/failure-and-refusals", DiskFixture, NULL, disk_setup,
             test_failure_and_refusals, disk_teardown);
  g_test_add("/disks/diskless", DiskFixture, NULL, disk_setup, test_diskless, disk_teardown);
  return g_test_run();
}
