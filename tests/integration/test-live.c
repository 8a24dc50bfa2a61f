/* The live migration of a VM whose guest RAM is a private (share=off)
 * mapping (save.c, save-qemu.c): when it does not converge in time the
 * plugin stops the VM itself, and the snapshot is as consistent as when
 * QEMU stops it. VMSNAP_TEST_CONVERGE_MS=0 forces that path; the debug log
 * shows it was taken. */
#include "diff-fixture.h"

/* restore -> write pages -> diff save (then=resume) whose migration is cut
 * short -> the guest runs on -> the diff restores with the counter and
 * pages of the moment the VM stopped. */
static void
test_not_converged(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *diff = g_build_filename(f->dir, "d1", NULL);

  VmsVm *vm = restore_full(f, 0, "vm", base);

  guest_cmd(vm, "W 300 10 77");
  g_autoptr(JsonObject) r = save(vm, diff, "diff", "resume");
  g_autoptr(VmsSnapshot) s = assert_diff_manifest(diff, base, r);
  g_autofree char *log = vms_vm_stderr(vm);
  g_assert_nonnull(strstr(log, "did not converge"));
  g_test_message("downtime %.1f ms with the VM stopped by the plugin",
                 json_object_get_double_member(r, "downtime-ms"));

  /* The guest runs on and its later writes are not in the snapshot. */
  guint64 c = guest_counter(vm);
  g_assert_true(vms_vm_wait_counter_above(vm, c + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guest_cmd(vm, "W 300 10 99");
  assert_cli_ok("verify", diff);
  vms_vm_kill(vm);

  g_autofree char *flat_mem = g_build_filename(f->dir, "d1.flat", "memory.bin", NULL);
  VmsVm *clone = restore_diff(f, 1, "clone", diff);
  guint64 saved = file_u64(flat_mem, VMS_GUEST_COUNTER_ADDR);
  g_assert_cmpuint(saved, <, c);
  g_assert_true(vms_vm_wait_counter_above(clone, saved + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guest_cmd(clone, "C 300 10 77");
}

int
main(int argc, char **argv)
{
  /* Set before any thread exists; QEMU inherits them. Only the private
   * mapping's live migration reads the first; the second makes the plugin
   * log that it stopped the VM. */
  g_setenv("VMSNAP_TEST_CONVERGE_MS", "0", TRUE);
  g_setenv("G_MESSAGES_DEBUG", "vmsnap", TRUE);
  vms_test_init(&argc, &argv);
  g_test_add("/live/not-converged", Fixture, NULL, setup, test_not_converged, teardown);
  int ret = g_test_run();
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
  return ret;
}
