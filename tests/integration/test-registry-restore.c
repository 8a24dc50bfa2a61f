/* A real guest's snapshots through a real registry (doc/spec.md section
 * 12): the pulled full snapshot restores and the guest continues; a diff
 * of it, pushed and pulled beside its parent, fetches only itself and
 * restores too. */
#include "registry-fixture.h"
#include "restore-fixture.h"

#include <string.h>

#include "snapdir.h"

static char *
cli_ok(VmsTestRegistry *reg, const char *const *args)
{
  char *out = NULL;
  g_autofree char *err = NULL;
  int st = vms_test_registry_cliv(reg, args, &out, &err);

  if (st != 0)
    g_error("vmsnap %s failed (%d): %s", args[0], st, err);
  return out;
}

static void
test_pulled_restores(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *rdir = g_build_filename(f->dir, "registry", NULL);
  g_autofree char *pulled = g_build_filename(f->dir, "pulled", NULL);
  g_autofree char *diff = g_build_filename(f->dir, "diff", NULL);
  g_autofree char *diff2 = g_build_filename(f->dir, "diff2", NULL);
  g_autofree char *crun = g_build_filename(f->dir, "crun", NULL);
  int status = -1;

  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  g_autoptr(VmsTestRegistry) reg = vms_test_registry_start(rdir, NULL, NULL, NULL);
  g_autofree char *ref = vms_test_registry_ref(reg, "guest/base:v1");
  g_autofree char *dref = vms_test_registry_ref(reg, "guest/base:diff");

  /* Full: push, pull elsewhere, restore the pulled copy. */
  const char *const push[] = { "push", "--insecure", base_snapshot(), ref, NULL };
  g_autofree char *o1 = cli_ok(reg, push);
  const char *const pull[] = { "pull", "--insecure", ref, pulled, NULL };
  g_autofree char *o2 = cli_ok(reg, pull);
  const char *const verify[] = { "verify", pulled, NULL };
  g_autofree char *o3 = cli_ok(reg, verify);
  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "first", pulled);
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  assert_continues(vm, base_counter(), base_boot_id());

  /* A diff of the pulled snapshot's clone, pushed, then pulled beside it. */
  g_autofree char *w = vms_vm_guest_command(vm, "W 200 16 33", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(w, ==, "ok W 200 16 33");
  g_autoptr(JsonObject) ret = save(vm, diff, "diff", "quit");
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  const char *const dpush[] = { "push", "--insecure", diff, dref, NULL };
  g_autofree char *o4 = cli_ok(reg, dpush);
  g_assert_cmpuint(vms_test_number_before(o4, " snapshot(s)"), ==, 1);
  const char *const dpull[] = { "pull", "--insecure", dref, diff2, NULL };
  g_autofree char *o5 = cli_ok(reg, dpull);
  g_assert_cmpuint(vms_test_number_before(o5, " snapshot(s)"), ==, 1);
  g_autoptr(VmsSnapshot) ds = vms_snapshot_open(diff, &error);
  g_assert_no_error(error);
  /* Only the diff moved: its data, state.bin and metadata. */
  g_assert_cmpuint(vms_test_number_before(o5, " bytes received"), <,
                   ds->manifest->diff_data_bytes + ds->manifest->state_size + 256 * 1024);

  g_assert_cmpint(g_mkdir_with_parents(crun, 0700), ==, 0);
  VmsVm *clone = f->vms[1] = vms_vm_new(crun);
  const char *const argv[] = { vms_test_cli(), "restore", diff2, "--runtime-dir", crun, NULL };
  g_assert_true(vms_vm_spawn(clone, argv, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_connect(clone, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guint64 c = 0;
  g_assert_true(vms_vm_read_counter(clone, &c, &error));
  g_assert_cmpuint(c, >, base_counter());
  g_assert_true(vms_vm_wait_counter_above(clone, c + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *c1 = vms_vm_guest_command(clone, "C 200 16 33", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c1, ==, "ok C 200 16 33");
  g_autofree char *c2 = vms_vm_guest_command(clone, "C 100 8 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c2, ==, "ok C 100 8 90");
}

int
main(int argc, char **argv)
{
  int r;

  vms_test_init(&argc, &argv);
  g_test_add("/registry/pulled-restores", Fixture, NULL, setup, test_pulled_restores, teardown);
  r = g_test_run();
  base_snapshot_cleanup();
  return r;
}
