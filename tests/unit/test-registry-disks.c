/* Unit tests: the pieces that carry disks through a registry — the disk
 * table (plugin/registry/disk-table.c), pointing a pulled qcow2 at its
 * backing file (pull-qcow2.c, checked with qemu-img), and disks.local, the
 * host-local identities a pulled snapshot's readers use
 * (plugin/core/format/disk-local.c). The transfers are tested against a
 * real registry and guest in tests/integration/test-registry-disks.c. */
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-local.h"
#include "disk-table.h"
#include "error.h"
#include "helpers.h"
#include "pull-private.h"
#include "qcow2.h"
#include "util.h"

#define D1 "sha256:1111111111111111111111111111111111111111111111111111111111111111"
#define D2 "sha256:2222222222222222222222222222222222222222222222222222222222222222"

static void
test_table(void)
{
  g_autoptr(VmsRegDiskTable) t = vms_reg_disk_table_new(1u << 20);
  VmsRegDiskEntry *e = vms_reg_disk_table_add(t, "root");

  vms_reg_disk_entry_add_file(e, "qcow2", 393216, D1, D2);
  e->parent_file = 0;
  e = vms_reg_disk_table_add(t, "data");
  vms_reg_disk_entry_add_file(e, "qcow2", 1, D2, D1);
  vms_reg_disk_entry_add_file(e, "raw", 64u << 20, D1, D1);
  g_autoptr(GBytes) j1 = vms_reg_disk_table_to_json(t);
  g_autoptr(GBytes) j2 = vms_reg_disk_table_to_json(t);
  g_assert_true(g_bytes_equal(j1, j2)); /* deterministic: the same blob */

  g_autoptr(GError) error = NULL;
  g_autoptr(VmsRegDiskTable) back = vms_reg_disk_table_from_json(j1, "r", &error);
  g_assert_no_error(error);
  g_assert_cmpuint(back->chunk_size, ==, 1u << 20);
  g_assert_cmpuint(back->disks->len, ==, 2);
  const VmsRegDiskEntry *b0 = &g_array_index(back->disks, VmsRegDiskEntry, 0);
  const VmsRegDiskEntry *b1 = &g_array_index(back->disks, VmsRegDiskEntry, 1);
  g_assert_cmpstr(b0->device, ==, "root");
  g_assert_cmpint(b0->parent_file, ==, 0);
  g_assert_cmpint(b1->parent_file, ==, -1);
  g_assert_cmpuint(b1->files->len, ==, 2);
  g_assert_cmpstr(g_array_index(b1->files, VmsRegDiskFile, 1).format, ==, "raw");
  g_assert_cmpuint(g_array_index(b1->files, VmsRegDiskFile, 1).size, ==, 64u << 20);
  g_assert_cmpstr(g_array_index(b1->files, VmsRegDiskFile, 0).digests, ==, D2);
  g_assert_cmpuint(vms_reg_disk_chunk_count(0, 1u << 20), ==, 0);
  g_assert_cmpuint(vms_reg_disk_chunk_count((1u << 20) + 1, 1u << 20), ==, 2);

  const char *bad[] = {
    "[]",
    "{\"chunk_size\": 1000, \"disks\": []}",
    "{\"chunk_size\": 1048576}",
    "{\"chunk_size\": 1048576, \"disks\": [{\"files\": []}]}",
    "{\"chunk_size\": 1048576, \"disks\": [{\"device\": \"r\", \"files\": [{\"format\": \"../x\", "
    "\"size\": 1, \"digests\": \"" D1 "\", \"index\": \"" D1 "\"}]}]}",
    "{\"chunk_size\": 1048576, \"disks\": [{\"device\": \"r\", \"files\": [{\"format\": \"raw\", "
    "\"size\": 1, \"digests\": \"sha256:12\", \"index\": \"" D1 "\"}]}]}",
    "{\"chunk_size\": 1048576, \"disks\": [{\"device\": \"r\", \"files\": [], \"parent_file\": -2}]}",
  };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autoptr(GError) e2 = NULL;
    g_autoptr(GBytes) bj = g_bytes_new_static(bad[i], strlen(bad[i]));
    g_autoptr(VmsRegDiskTable) r = vms_reg_disk_table_from_json(bj, "host/repo:tag", &e2);
    g_assert_null(r);
    g_assert_error(e2, VMS_ERROR, VMS_ERROR_CORRUPT);
    g_assert_nonnull(strstr(e2->message, "host/repo:tag: its disk table"));
  }
}

static char *
qemu_img_info(const char *path)
{
  g_autoptr(GError) error = NULL;
  const char *argv[] = { "qemu-img", "info", "-U", "--output=json", path, NULL };
  char *out = NULL;
  int status = 0;

  g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH | G_SPAWN_STDERR_TO_DEV_NULL,
                             NULL, NULL, &out, NULL, &status, &error));
  g_assert_no_error(error);
  g_assert_true(g_spawn_check_wait_status(status, NULL));
  return out;
}

static void
test_qcow2_rebase(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *img = g_build_filename(dir, "disk-root.qcow2", NULL);
  g_autofree char *raw = g_build_filename(dir, "plain.raw", NULL);
  g_autofree char *longer = g_strnfill(900, 'x');
  g_autofree char *target = g_strdup_printf("/pulled/%s/disk-root.1.raw", longer);

  g_assert_true(vms_qcow2_create_overlay(img, "/source/host/base.raw", "raw", 64u << 20, &error));
  vms_autofd fd = open(img, O_RDWR | O_CLOEXEC);
  g_assert_cmpint(fd, >=, 0);
  g_assert_true(vms_reg_qcow2_rebase(fd, "/pulled/snap/disk-root.1.raw", "raw", "img", &error));
  g_assert_no_error(error);
  g_autofree char *i1 = qemu_img_info(img);
  g_assert_nonnull(strstr(i1, "\"backing-filename\": \"/pulled/snap/disk-root.1.raw\""));
  g_assert_nonnull(strstr(i1, "\"backing-filename-format\": \"raw\""));
  /* A name near the limit still fits the first cluster; the format changes too. */
  g_assert_true(vms_reg_qcow2_rebase(fd, target, "qcow2", "img", &error));
  g_autofree char *i2 = qemu_img_info(img);
  g_assert_nonnull(strstr(i2, target));
  g_assert_nonnull(strstr(i2, "\"backing-filename-format\": \"qcow2\""));
  g_assert_null(strstr(i2, "/pulled/snap/"));
  /* Not a qcow2: refused, naming it. */
  vms_test_write_pattern(raw, 4096, 3);
  vms_autofd rfd = open(raw, O_RDWR | O_CLOEXEC);
  g_assert_false(vms_reg_qcow2_rebase(rfd, "/x", "raw", "disk root image plain.raw", &error));
  g_assert_nonnull(strstr(error->message, "disk root image plain.raw: cannot set its backing file"));
  vms_test_rmtree(dir);
}

static VmsManifest *
manifest_with_disk(const char *device)
{
  VmsManifest *m = vms_test_manifest_full(1u << 20);
  VmsDiskRecord *d = vms_disk_record_new();
  VmsDiskIdentity *id = g_new0(VmsDiskIdentity, 1);

  vmsnap__v1__disk_file_identity__init(id);
  vms_manifest_set_string(&id->path, "/source/vm/root.qcow2");
  vms_manifest_set_string(&id->format, "qcow2");
  id->inode = 42;
  vms_manifest_set_string(&d->device, device);
  vms_manifest_set_string(&d->format, "qcow2");
  vms_manifest_set_string(&d->frozen_file, "/source/elsewhere/root.qcow2");
  d->external = TRUE;
  vms_disk_record_set_identity(d, id);
  vms_manifest_add_disk(m, d);
  return m;
}

/* disks.local in @dirfd: disk @device, frozen image disk-root.qcow2 with
 * @image's identity, one backing file @image; @content (nullable) as given. */
static void
write_local(int dirfd, const char *dir, const guint8 sha[32], const char *device,
            const char *image, GPtrArray *content)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsDisksLocal) l = vms_disks_local_new(sha);
  g_autoptr(GPtrArray) backing = g_ptr_array_new_with_free_func((GDestroyNotify)vms_disk_identity_free);
  VmsDiskIdentity *top = vms_disk_identity_new(image, "qcow2", &error);

  g_assert_no_error(error);
  g_ptr_array_add(backing, vms_disk_identity_new(image, "raw", &error));
  vms_disks_local_add(l, device, "disk-root.qcow2", top, backing, content);
  g_assert_true(vms_disks_local_write_at(dirfd, dir, l, &error));
  g_assert_no_error(error);
}

static void
test_disks_local(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *image = g_build_filename(dir, "disk-root.qcow2", NULL);
  guint8 sha[32] = { 7 }, other[32] = { 8 };
  vms_autofd dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  g_autoptr(VmsManifest) m = manifest_with_disk("root");

  /* No disks.local: the manifest's records stay. */
  g_assert_true(vms_disks_local_apply(dirfd, dir, m, sha, &error));
  g_assert_cmpstr(m->disks[0]->frozen_file, ==, "/source/elsewhere/root.qcow2");
  vms_test_write_pattern(image, 8192, 1);
  write_local(dirfd, dir, sha, "root", image, NULL);
  g_assert_true(vms_disks_local_apply(dirfd, dir, m, sha, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(m->disks[0]->frozen_file, ==, "disk-root.qcow2");
  g_assert_false(m->disks[0]->external);
  g_assert_cmpuint(m->disks[0]->n_backing, ==, 1);
  g_assert_cmpstr(m->disks[0]->backing[0]->format, ==, "raw");
  g_assert_true(vms_snapshot_verify_disks(dir, m, &error)); /* this host's identities hold */

  /* Bound to another manifest.bin, or naming another disk: refused by name. */
  g_autoptr(VmsManifest) m2 = manifest_with_disk("root");
  g_assert_false(vms_disks_local_apply(dirfd, dir, m2, other, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "disks.local: belongs to another manifest.bin"));
  g_clear_error(&error);
  g_autoptr(VmsManifest) m3 = manifest_with_disk("data");
  g_assert_false(vms_disks_local_apply(dirfd, dir, m3, sha, &error));
  g_assert_nonnull(strstr(error->message, "does not match the manifest's"));
  g_clear_error(&error);
  /* A pulled image changed afterwards fails verify like one saved here. */
  vms_test_write_pattern(image, 4096, 2);
  g_assert_false(vms_snapshot_verify_disks(dir, m, &error));
  g_assert_nonnull(strstr(error->message, "disk root: "));
  vms_test_rmtree(dir);
}

/* A file pulled into a sibling directory is linked only while its every
 * chunk matches: a sibling's disks.local is a hint, not trusted. */
static void
test_reuse(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *top = vms_test_tmpdir(NULL);
  g_autofree char *a = g_build_filename(top, "a", NULL);
  g_autofree char *b = g_build_filename(top, "b", NULL);
  g_autofree char *image = g_build_filename(a, "disk-root.1.raw", NULL);
  g_autofree char *staged = g_build_filename(b, "disk-root.2.raw", NULL);
  guint8 sha[32] = { 1 };
  struct stat sa, sb;

  g_assert_cmpint(g_mkdir_with_parents(a, 0700), ==, 0);
  g_assert_cmpint(g_mkdir_with_parents(b, 0700), ==, 0);
  vms_test_write_pattern(image, (3u << 20) + 4096, 9);
  vms_autofd afd = open(a, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  vms_autofd bfd = open(b, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  vms_autofd ifd = open(image, O_RDONLY | O_CLOEXEC);
  g_autoptr(VmsChunkSource) src = vms_chunk_source_new(ifd, NULL, (3u << 20) + 4096, &error);
  g_autoptr(VmsChunkIndex) cidx = NULL;
  g_assert_true(vms_chunks_compute(src, 1u << 20, &cidx, &error));

  g_autoptr(GPtrArray) content = g_ptr_array_new();
  g_ptr_array_add(content, (gpointer)"");
  g_ptr_array_add(content, (gpointer)D1); /* the backing file: @image */
  write_local(afd, a, sha, "root", image, content);

  g_assert_false(vms_reg_pull_reuse(b, D2, (3u << 20) + 4096, cidx, bfd, "disk-root.2.raw"));
  g_assert_true(vms_reg_pull_reuse(b, D1, (3u << 20) + 4096, cidx, bfd, "disk-root.2.raw"));
  g_assert_cmpint(stat(image, &sa), ==, 0);
  g_assert_cmpint(stat(staged, &sb), ==, 0);
  g_assert_cmpuint(sa.st_ino, ==, sb.st_ino);
  /* Changed since (same size): checked chunk by chunk, so not linked; what
   * was staged stays. */
  g_assert_cmpint(unlink(staged), ==, 0);
  vms_test_write_pattern(staged, 100, 1);
  vms_test_write_pattern(image, (3u << 20) + 4096, 10);
  g_assert_false(vms_reg_pull_reuse(b, D1, (3u << 20) + 4096, cidx, bfd, "disk-root.2.raw"));
  g_assert_cmpint(stat(staged, &sb), ==, 0);
  g_assert_cmpuint(sb.st_size, ==, 100);
  vms_test_rmtree(top);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/registry-disks/table", test_table);
  g_test_add_func("/registry-disks/qcow2-rebase", test_qcow2_rebase);
  g_test_add_func("/registry-disks/disks-local", test_disks_local);
  g_test_add_func("/registry-disks/reuse", test_reuse);
  return g_test_run();
}
