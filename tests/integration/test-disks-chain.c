/* Disks in diff chains (doc/spec.md section 8, doc/diff.md): a diff saved
 * from a clone freezes the clone's overlay as its disk layer over the
 * parent's frozen image; restoring the diff, and its flattening, gives a
 * new clone that starts from the diff's instant (the parent's history, then
 * the first clone's) and writes only its own overlay.
 *
 * A VM that runs on through many saves gains one overlay per save; QEMU's
 * block-stream collapses that chain into its top overlay without touching
 * a frozen image, so every snapshot stays valid (doc/disks.md). */
#include "disk-fixture.h"

#include <string.h>
#include <sys/stat.h>

static void
test_chain(DiskFixture *f, gconstpointer data)
{
  if (f->guest == NULL)
    return;
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *diff = g_build_filename(f->dir, "diff", NULL);
  g_autofree char *flat = g_build_filename(f->dir, "flat", NULL);
  int status = 0;

  VmsVm *orig = disk_boot(f, 0, "orig", FALSE);
  disk_start_writer(orig, "orig", 10);
  g_autoptr(JsonObject) r0 = disk_save(orig, snap, "copy", "quit");
  g_assert_true(vms_vm_wait_exit(orig, 60000, &status, &error));

  /* The first clone writes, then saves a diff and quits. */
  g_autofree char *ddir = g_build_filename(f->dir, "disks-a", NULL);
  g_assert_cmpint(g_mkdir_with_parents(ddir, 0700), ==, 0);
  const char *const in_ddir[] = { "--disk-dir", ddir, NULL };
  VmsVm *a = disk_clone(f, 1, "clone-a", snap, in_ddir);
  disk_tag_and_wait(a, "a", 10);
  g_autofree char *top_a = disk_top_image(a);
  g_assert_true(g_str_has_prefix(top_a, ddir));
  g_autoptr(JsonObject) r1 = disk_save(a, diff, "diff", "quit");
  g_assert_cmpstr(json_object_get_string_member(r1, "kind"), ==, "DIFF");
  g_assert_cmpint(json_object_get_int_member(r1, "disks"), ==, 1);
  g_assert_true(vms_vm_wait_exit(a, 60000, &status, &error));
  g_autofree char *layer = g_build_filename(diff, "disk-root.qcow2", NULL);
  struct stat st_layer, st_top;
  g_assert_cmpint(stat(layer, &st_layer), ==, 0);
  g_assert_cmpint(stat(top_a, &st_top), ==, 0);
  g_assert_cmpuint(st_layer.st_ino, ==, st_top.st_ino); /* the clone's overlay, frozen */
  const char *const verify[] = { "verify", diff, NULL };
  g_assert_cmpint(vms_test_run_cli(verify, NULL, NULL), ==, 0);

  /* The diff restores: the parent's lines, the first clone's, then its own. */
  VmsVm *b = disk_clone(f, 2, "clone-b", diff, NULL);
  disk_tag_and_wait(b, "b", 10);
  g_autofree char *top_b = disk_top_image(b);
  g_autofree char *hist_b = disk_halt_and_check(b, top_b, top_b);
  const char *const runs_b[] = { "orig", "a", "b", NULL };
  disk_assert_history_runs(hist_b, runs_b, 10);

  /* Its flattening refers to the same disk layers and restores the same. */
  const char *const flatten[] = { "flatten", diff, flat, NULL };
  g_autofree char *out = NULL;
  g_assert_cmpint(vms_test_run_cli(flatten, NULL, NULL), ==, 0);
  const char *const verify_flat[] = { "verify", flat, NULL };
  g_assert_cmpint(vms_test_run_cli(verify_flat, NULL, NULL), ==, 0);
  const char *const info[] = { "info", flat, "--json", NULL };
  g_assert_cmpint(vms_test_run_cli(info, &out, NULL), ==, 0);
  g_autofree char *want = g_strdup_printf("\"frozen_file\" : \"%s\"", layer);
  g_assert_nonnull(strstr(out, want));
  VmsVm *c = disk_clone(f, 3, "clone-c", flat, NULL);
  disk_tag_and_wait(c, "c", 10);
  g_autofree char *top_c = disk_top_image(c);
  g_autofree char *hist_c = disk_halt_and_check(c, top_c, top_c);
  const char *const runs_c[] = { "orig", "a", "c", NULL };
  disk_assert_history_runs(hist_c, runs_c, 10);
}

/* The depth of drive "root"'s backing chain, from query-block. */
static gint64
root_chain_depth(VmsVm *vm)
{
  g_autoptr(JsonObject) inserted = disk_inserted(vm, "root");

  return json_object_get_int_member(inserted, "backing_file_depth");
}

static void
assert_verifies(const char *snap)
{
  const char *const verify[] = { "verify", snap, NULL };
  g_assert_cmpint(vms_test_run_cli(verify, NULL, NULL), ==, 0);
}

static void
test_stream(DiskFixture *f, gconstpointer data)
{
  if (f->guest == NULL)
    return;
  g_autoptr(GError) error = NULL;
  g_autofree char *s1 = g_build_filename(f->dir, "s1", NULL);
  g_autofree char *s2 = g_build_filename(f->dir, "s2", NULL);
  g_autofree char *s3 = g_build_filename(f->dir, "s3", NULL);
  g_autofree char *frozen1 = g_build_filename(s1, "disk-root.raw", NULL);
  struct stat before, after;
  int status = 0;

  VmsVm *vm = disk_boot(f, 0, "long", FALSE);
  disk_start_writer(vm, "one", 10);
  g_autoptr(JsonObject) r1 = disk_save(vm, s1, "copy", "resume");
  disk_tag_and_wait(vm, "two", 10);
  g_autoptr(JsonObject) r2 = disk_save(vm, s2, "copy", "resume");
  disk_tag_and_wait(vm, "three", 10);
  g_assert_cmpint(root_chain_depth(vm), ==, 2); /* raw <- overlay of s1 <- overlay of s2 */
  g_assert_cmpint(stat(frozen1, &before), ==, 0);

  /* Collapse the running VM's chain into its top overlay while it writes. */
  g_autoptr(JsonNode) job = vms_test_qmp_executef(vm->qmp, "block-stream", &error,
                                                  "{\"job-id\": \"collapse\", \"device\": \"root\"}");
  g_assert_no_error(error);
  g_autoptr(JsonObject) done = vms_test_qmp_wait_event(vm->qmp, "BLOCK_JOB_COMPLETED", 120000, &error);
  g_assert_no_error(error);
  JsonObject *ev = json_object_get_object_member(done, "data");
  g_assert_cmpstr(json_object_get_string_member(ev, "device"), ==, "collapse");
  g_assert_false(json_object_has_member(ev, "error"));
  g_assert_cmpint(root_chain_depth(vm), ==, 0);
  g_assert_cmpint(stat(frozen1, &after), ==, 0);
  g_assert_cmpint(before.st_mtim.tv_sec, ==, after.st_mtim.tv_sec);
  g_assert_cmpint(before.st_mtim.tv_nsec, ==, after.st_mtim.tv_nsec);
  assert_verifies(s1);
  assert_verifies(s2);

  /* The VM saves again on its collapsed chain, and both ends restore. */
  disk_tag_and_wait(vm, "four", 10);
  g_autoptr(JsonObject) r3 = disk_save(vm, s3, "copy", "quit");
  g_assert_true(vms_vm_wait_exit(vm, 60000, &status, &error));
  assert_verifies(s3);
  VmsVm *c3 = disk_clone(f, 1, "clone-s3", s3, NULL);
  disk_tag_and_wait(c3, "c3", 5);
  g_autofree char *top3 = disk_top_image(c3);
  g_autofree char *hist3 = disk_halt_and_check(c3, top3, top3);
  const char *const runs3[] = { "one", "two", "three", "four", "c3", NULL };
  disk_assert_history_runs(hist3, runs3, 10);
  VmsVm *c1 = disk_clone(f, 2, "clone-s1", s1, NULL);
  disk_tag_and_wait(c1, "c1", 5);
  g_autofree char *top1 = disk_top_image(c1);
  g_autofree char *hist1 = disk_halt_and_check(c1, top1, top1);
  const char *const runs1[] = { "one", "c1", NULL };
  disk_assert_history_runs(hist1, runs1, 10);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/disks/diff-chain", DiskFixture, NULL, disk_setup, test_chain, disk_teardown);
  g_test_add("/disks/stream-long-running", DiskFixture, NULL, disk_setup, test_stream,
             disk_teardown);
  return g_test_run();
}
