/* Disks and clone identity (doc/spec.md sections 8 and 9) with the Linux
 * test guest: its root is ext4 on virtio-blk, and a writer appends a
 * numbered history to it. A copy+resume save freezes the root image while
 * the original goes on writing on a new overlay; clones restored one after
 * another and two at once each write their own overlay; after shutdown every
 * disk passes e2fsck -fn and holds one unbroken history: the snapshot
 * instant's lines, then only its own. Every clone gets its own vmgenid and
 * the guest kernel reseeds its RNG for it (and not for the saved GUID). */
#include "disk-fixture.h"

#include <string.h>
#include <sys/stat.h>

#define RESEED_LINE "crng reseeded due to virtual machine fork"
#define SAVED_GUID "6b0c2c3e-3b1f-4a57-9a53-0f6d0c1e2a11"

static char *
clone_guid(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, "query-vm-generation-id", NULL, &error);

  g_assert_no_error(error);
  return g_strdup(json_object_get_string_member(json_node_get_object(ret), "guid"));
}

/* query-vmsnap's vm-generation-id (doc/spec.md section 9). */
static char *
reported_guid(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autoptr(JsonObject) q = vms_test_query_ready(ctl);
  return g_strdup(json_object_get_string_member(q, "vm-generation-id"));
}

static gboolean
reseeded(VmsVm *vm)
{
  g_autofree char *out = vms_linux_run_ok(vm, "dmesg");
  return strstr(out, RESEED_LINE) != NULL;
}

/* The snapshot holds the frozen root image: a read-only hard link of the
 * image the original ran on, recorded in the manifest. */
static void
assert_frozen(const char *snap, const char *image)
{
  g_autofree char *frozen = g_build_filename(snap, "disk-root.raw", NULL);
  g_autofree char *out = NULL;
  struct stat a, b;

  g_assert_cmpint(stat(frozen, &a), ==, 0);
  g_assert_cmpint(stat(image, &b), ==, 0);
  g_assert_cmpuint(a.st_ino, ==, b.st_ino);
  g_assert_cmpint(a.st_mode & 0777, ==, 0400);
  const char *const info[] = { "info", snap, "--json", NULL };
  g_assert_cmpint(vms_test_run_cli(info, &out, NULL), ==, 0);
  g_assert_nonnull(strstr(out, "\"device\" : \"root\""));
  g_assert_nonnull(strstr(out, "\"frozen_file\" : \"disk-root.raw\""));
  g_assert_nonnull(strstr(out, "\"vm_generation_id\" : \"" SAVED_GUID "\""));
}

static void
test_clones(DiskFixture *f, gconstpointer data)
{
  if (f->guest == NULL)
    return;
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *image = g_build_filename(f->dir, "orig", "root.raw", NULL);
  VmsVm *orig = disk_boot(f, 0, "orig", TRUE);

  /* 1: copy+resume save while the original writes; it goes on writing. */
  disk_start_writer(orig, "orig", 20);
  guint before = disk_history_lines(orig);
  g_autoptr(JsonObject) ret = disk_save(orig, snap, "copy", "resume");
  g_assert_cmpint(json_object_get_int_member(ret, "disks"), ==, 1);
  assert_frozen(snap, image);
  g_autofree char *orig_top = disk_top_image(orig);
  g_assert_cmpstr(orig_top, !=, image);
  disk_tag_and_wait(orig, "orig-after", 10);

  /* 2: one clone, then two at once, each writing its own data. */
  const char *const fresh[] = { NULL };
  VmsVm *a = disk_clone(f, 1, "clone-a", snap, fresh);
  disk_tag_and_wait(a, "a", 10);
  g_assert_true(reseeded(a)); /* 6: a new GUID, and the kernel saw it */
  g_autofree char *guid_a = clone_guid(a);
  g_assert_cmpstr(guid_a, !=, SAVED_GUID);
  g_autofree char *reported_a = reported_guid(a);
  g_assert_cmpstr(reported_a, ==, guid_a);
  g_autofree char *top_a = disk_top_image(a);
  g_autofree char *hist_a = disk_halt_and_check(a, top_a, top_a);
  guint k_a = disk_assert_history(hist_a, "orig", before, "a");

  const char *const saved[] = { "--vm-generation-id", "saved", "--disk-dir", f->dir, NULL };
  VmsVm *b = disk_clone(f, 2, "clone-b", snap, fresh);
  VmsVm *c = disk_clone(f, 3, "clone-c", snap, saved);
  disk_tag_and_wait(b, "b", 10);
  disk_tag_and_wait(c, "c", 10);
  g_autofree char *guid_b = clone_guid(b);
  g_autofree char *guid_c = clone_guid(c);
  g_assert_cmpstr(guid_b, !=, guid_a);
  g_assert_cmpstr(guid_c, ==, SAVED_GUID);
  g_assert_true(reseeded(b));
  g_assert_false(reseeded(c)); /* the saved GUID: no reseed */
  g_autofree char *top_b = disk_top_image(b);
  g_autofree char *top_c = disk_top_image(c);
  g_autofree char *hist_b = disk_halt_and_check(b, top_b, top_b);
  g_autofree char *hist_c = disk_halt_and_check(c, top_c, top_c);
  disk_assert_history(hist_b, "orig", before, "b");
  disk_assert_history(hist_c, "orig", before, "c");

  /* 3: the original's disk too; each clone began with its lines. */
  g_autofree char *hist_o = disk_halt_and_check(orig, orig_top, orig_top);
  guint k_o = disk_assert_history(hist_o, "orig", before, "orig-after");
  /* The clone's "orig" lines are the snapshot instant's plus those it wrote
   * itself before its tag changed; the original wrote on past the instant. */
  g_test_message("orig lines: before save %u, original %u, clone a %u", before, k_o, k_a);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/disks/clones", DiskFixture, NULL, disk_setup, test_clones, disk_teardown);
  return g_test_run();
}
