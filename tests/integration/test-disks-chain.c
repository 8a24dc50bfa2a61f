/* Disks in diff chains (doc/spec.md section 8, doc/diff.md): a diff saved
 * from a clone freezes the clone's overlay as its disk layer over the
 * parent's frozen image; restoring the diff, and its flattening, gives a
 * new clone that starts from the diff's instant (the parent's history, then
 * the first clone's) and writes only its own overlay. */
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

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/disks/diff-chain", DiskFixture, NULL, disk_setup, test_chain, disk_teardown);
  return g_test_run();
}
