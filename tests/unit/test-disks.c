/* Disks at the format and command-line level (doc/spec.md sections 8, 9):
 * relaunch-disks.c's rewrite of -drive/-blockdev/-device vmgenid, and
 * disk-record.c's identities (a changed image is refused by disk name). */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "common.h"
#include "disk-record.h"
#include "error.h"
#include "qcow2.h"
#include "relaunch.h"

static const char *const disk_argv[] = {
  "qemu-system-x86_64",
  "-object", "memory-backend-file,id=ram0,size=256M,mem-path=/dev/shm/vm0.ram,share=on",
  "-machine", "pc,memory-backend=ram0",
  "-plugin", "/usr/lib/vmsnap/libvmsnap.so,qmp=/run/vm0/qmp.sock",
  "-drive", "file=/img/root.raw,format=raw,if=none,id=root,cache=none",
  "-device", "virtio-blk-pci,drive=root",
  "-blockdev", "driver=file,filename=/img/data.qcow2,node-name=data-file",
  "-blockdev", "driver=qcow2,file=data-file,node-name=data",
  "-blockdev", "driver=raw,file.driver=file,file.filename=/img/inline.raw,node-name=inl",
  "-device", "vmgenid,guid=11111111-2222-3333-4444-555555555555",
  NULL,
};

static char **
rewrite(const char *const *argv, const VmsRelaunchDisk *disks, gsize n, const char *genid,
        GError **error)
{
  VmsRelaunchOptions opts = {
    .snapshot_dir = "/snaps/s1", .runtime_dir = "/run/clone",
    .disks = disks, .n_disks = n, .vmgenid = genid,
  };
  return vms_relaunch_argv(argv, &opts, error);
}

static gboolean
has(char **argv, const char *word)
{
  for (guint i = 0; argv[i] != NULL; i++)
    if (g_str_equal(argv[i], word))
      return TRUE;
  return FALSE;
}

static void
test_rewrite(void)
{
  g_autoptr(GError) error = NULL;
  const VmsRelaunchDisk disks[] = {
    { "root", "#block123", "/run/clone/disk-root.qcow2" },
    { "data", "data", "/run/clone/disk-data.qcow2" },
    { "inl", "inl", "/run/clone/disk-inl.qcow2" },
  };
  g_auto(GStrv) out = rewrite(disk_argv, disks, G_N_ELEMENTS(disks),
                              "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", &error);

  g_assert_no_error(error);
  g_assert_true(has(out, "file=/run/clone/disk-root.qcow2,format=qcow2,if=none,id=root,cache=none"));
  g_assert_true(has(out, "driver=file,filename=/run/clone/disk-data.qcow2,node-name=data-file"));
  g_assert_true(has(out, "driver=qcow2,file=data-file,node-name=data"));
  g_assert_true(has(out, "driver=qcow2,file.driver=file,file.filename=/run/clone/disk-inl.qcow2,"
                         "node-name=inl"));
  g_assert_true(has(out, "vmgenid,guid=aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"));
  g_assert_false(has(out, "file=/img/root.raw,format=raw,if=none,id=root,cache=none"));
}

/* -blockdev in JSON, as libvirt writes it (a protocol node and a format
 * node naming it), and with the protocol node inline. */
static void
test_rewrite_json(void)
{
  g_autoptr(GError) error = NULL;
  const char *const json_argv[] = {
    "qemu-system-x86_64",
    "-object", "memory-backend-file,id=ram0,size=256M,mem-path=/dev/shm/vm0.ram,share=on",
    "-plugin", "/usr/lib/vmsnap/libvmsnap.so",
    "-blockdev", "{\"driver\":\"file\",\"filename\":\"/img/lv.raw\","
                 "\"node-name\":\"libvirt-1-storage\",\"auto-read-only\":true}",
    "-blockdev", "{\"node-name\":\"libvirt-1-format\",\"read-only\":false,"
                 "\"driver\":\"raw\",\"file\":\"libvirt-1-storage\"}",
    "-blockdev", "{\"driver\":\"raw\",\"node-name\":\"jin\","
                 "\"file\":{\"driver\":\"file\",\"filename\":\"/img/jin.raw\"}}",
    NULL,
  };
  const VmsRelaunchDisk disks[] = {
    { "libvirt-1-format", "libvirt-1-format", "/run/clone/disk-lv.qcow2" },
    { "jin", "jin", "/run/clone/disk-jin.qcow2" },
  };
  g_auto(GStrv) out = rewrite(json_argv, disks, G_N_ELEMENTS(disks), NULL, &error);

  g_assert_no_error(error);
  g_assert_true(has(out, "{\"driver\":\"file\",\"filename\":\"/run/clone/disk-lv.qcow2\","
                         "\"node-name\":\"libvirt-1-storage\",\"auto-read-only\":true}"));
  g_assert_true(has(out, "{\"node-name\":\"libvirt-1-format\",\"read-only\":false,"
                         "\"driver\":\"qcow2\",\"file\":\"libvirt-1-storage\"}"));
  g_assert_true(has(out, "{\"driver\":\"qcow2\",\"node-name\":\"jin\","
                         "\"file\":{\"driver\":\"file\",\"filename\":\"/run/clone/disk-jin.qcow2\"}}"));
}

static void
test_refusals(void)
{
  g_autoptr(GError) e1 = NULL, e2 = NULL, e3 = NULL;
  const VmsRelaunchDisk missing[] = { { "hotplugged", "x", "/run/clone/disk-x.qcow2" } };
  const char *const json_argv[] = {
    "qemu-system-x86_64",
    "-object", "memory-backend-file,id=ram0,size=256M,mem-path=/dev/shm/vm0.ram,share=on",
    "-plugin", "/usr/lib/vmsnap/libvmsnap.so",
    "-blockdev", "{\"driver\":\"raw\",\"node-name\":\"jdisk\",\"file\":\"f\"}",
    NULL,
  }; /* its file node "f" is not on the line */
  const VmsRelaunchDisk json_disk[] = { { "jdisk", "jdisk", "/run/clone/disk-j.qcow2" } };

  g_assert_null(rewrite(disk_argv, missing, 1, NULL, &e1));
  g_assert_error(e1, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
  g_assert_nonnull(strstr(e1->message, "disk hotplugged"));
  g_assert_null(rewrite(json_argv, json_disk, 1, NULL, &e2));
  g_assert_nonnull(strstr(e2->message, "disk jdisk"));
  g_assert_nonnull(strstr(e2->message, "no file node"));
  g_assert_null(rewrite(json_argv, NULL, 0, "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", &e3));
  g_assert_nonnull(strstr(e3->message, "vmgenid"));
}

static void
test_identity(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_dir_make_tmp("vmsnap-disks-XXXXXX", &error);
  g_autofree char *img = g_build_filename(dir, "root.raw", NULL);
  g_autoptr(VmsManifest) m = vms_manifest_new();
  VmsDiskRecord *d = vms_disk_record_new();

  g_assert_true(g_file_set_contents(img, "frozen", -1, &error));
  vms_manifest_set_string(&d->device, "root");
  vms_manifest_set_string(&d->format, "raw");
  vms_manifest_set_string(&d->frozen_file, "root.raw");
  vms_disk_record_set_identity(d, vms_disk_identity_new(img, "raw", &error));
  g_assert_no_error(error);
  vms_manifest_add_disk(m, d);
  g_assert_cmpuint(vms_manifest_frozen_disk_count(m), ==, 1);
  g_assert_true(vms_snapshot_verify_disks(dir, m, &error));
  g_assert_no_error(error);

  /* Written (size and mtime change): refused, naming the disk. */
  FILE *f = fopen(img, "a");
  fputs("+", f);
  fclose(f);
  g_assert_false(vms_snapshot_verify_disks(dir, m, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_MISMATCH);
  g_assert_nonnull(strstr(error->message, "disk root"));
  g_clear_error(&error);

  /* Replaced by another file: refused too. */
  g_autofree char *other = g_build_filename(dir, "other", NULL);
  g_assert_true(g_file_set_contents(other, "frozen", -1, &error));
  g_assert_cmpint(rename(other, img), ==, 0);
  g_assert_false(vms_snapshot_verify_disks(dir, m, &error));
  g_assert_nonnull(strstr(error->message, "replaced"));
  g_clear_error(&error);

  /* A flattening refers to the same image by absolute path. */
  vms_disks_refer_to(m, dir);
  g_assert_true(g_path_is_absolute(m->disks[0]->frozen_file));
  g_autofree char *name = vms_disk_file_name("ide0/cd 1", "qcow2");
  g_assert_cmpstr(name, ==, "disk-ide0_cd_1.qcow2");
  (void)unlink(img);
  (void)rmdir(dir);
}

static char *
spawn_out(const char *cmd)
{
  g_autoptr(GError) error = NULL;
  char *out = NULL;
  int status = -1;

  g_assert_true(g_spawn_command_line_sync(cmd, &out, NULL, &status, &error));
  g_assert_no_error(error);
  if (status != 0)
    g_error("%s exited %d: %s", cmd, status, out);
  return out;
}

/* The overlay we write is one qemu-img accepts: check clean, the backing
 * chain and size right, and data written through it lands in it only. */
static void
test_qcow2_overlay(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *qemu_img = g_find_program_in_path("qemu-img");
  g_autofree char *dir = g_dir_make_tmp("vmsnap-qcow2-XXXXXX", &error);
  g_autofree char *base = g_build_filename(dir, "base.raw", NULL);
  g_autofree char *ov = g_build_filename(dir, "ov.qcow2", NULL);

  if (qemu_img == NULL) {
    vms_test_cannot_run("qemu-img not found (qemu-utils)");
    return;
  }
  g_assert_true(g_file_set_contents(base, "base-data", -1, &error));
  g_assert_cmpint(truncate(base, 3u << 20), ==, 0);
  g_assert_true(vms_qcow2_create_overlay(ov, base, "raw", 3u << 20, &error));
  g_assert_no_error(error);
  g_autofree char *chk = g_strdup_printf("qemu-img check %s", ov);
  g_free(spawn_out(chk));
  g_autofree char *info_cmd = g_strdup_printf("qemu-img info --output=json %s", ov);
  g_autofree char *info = spawn_out(info_cmd);
  g_autofree char *want_backing = g_strdup_printf("\"backing-filename\": \"%s\"", base);
  g_assert_nonnull(strstr(info, want_backing));
  g_assert_nonnull(strstr(info, "\"backing-filename-format\": \"raw\""));
  g_assert_nonnull(strstr(info, "\"virtual-size\": 3145728"));
  g_autofree char *io = g_strdup_printf("qemu-io -f qcow2 -c 'write -P 0x5a 65536 4096' %s", ov);
  g_free(spawn_out(io));
  g_free(spawn_out(chk));
  g_autofree char *rd = g_strdup_printf("qemu-io -f qcow2 -c 'read -P 0x5a 65536 4096' -c "
                                        "'read -v 0 9' %s", ov);
  g_autofree char *read_out = spawn_out(rd);
  g_assert_nonnull(strstr(read_out, "62 61 73 65 2d 64 61 74 61")); /* "base-data" */
  g_autofree char *base_now = NULL;
  g_assert_true(g_file_get_contents(base, &base_now, NULL, &error));
  g_assert_cmpstr(base_now, ==, "base-data"); /* the backing file was not written */

  /* An existing file is refused. */
  g_assert_false(vms_qcow2_create_overlay(ov, base, "raw", 3u << 20, &error));
  g_assert_nonnull(strstr(error->message, ov));
  (void)unlink(ov);
  (void)unlink(base);
  (void)rmdir(dir);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/disks/relaunch-rewrite", test_rewrite);
  g_test_add_func("/disks/relaunch-rewrite-json", test_rewrite_json);
  g_test_add_func("/disks/relaunch-refusals", test_refusals);
  g_test_add_func("/disks/identity", test_identity);
  g_test_add_func("/disks/qcow2-overlay", test_qcow2_overlay);
  return g_test_run();
}
