/* aarch64 as a first-class target (doc/spec.md section 13): the test guest
 * built for aarch64 (tests/guest, guest-aarch64.elf) under
 * `qemu-system-aarch64 -M virt -cpu cortex-a57`, with meson setting
 * VMSNAP_TEST_ARCH=aarch64, VMSNAP_QEMU and VMSNAP_GUEST: a link save, a
 * copy-on-write restore by the plugin, a diff whose state.bin is as small
 * as the base's (the strip does not depend on the target), verify,
 * flatten, a restore of the diff, and `vmsnap restore` (--dry-run and
 * real, over the RAM overlay) from the recorded virt command line. */
#include "diff-fixture.h"
#include "overlay.h"

static void
assert_aarch64_manifest(const char *snap)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(snap, &error);

  g_assert_no_error(error);
  g_assert_cmpstr(s->manifest->architecture, ==, "aarch64");
  g_assert_true(g_str_has_prefix(s->manifest->machine_type, "virt"));
  g_assert_cmpuint(s->manifest->memory_size_bytes, ==, (guint64)MEM_MIB << 20);
}

/* base (link) -> restore (share=off) -> the guest writes 5 pages -> diff:
 * exactly those pages plus the guest's own, state.bin without guest RAM ->
 * verify -> flatten and restore the diff: the guest goes on with them. */
static void
test_save_restore_diff(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *diff = g_build_filename(f->dir, "d1", NULL);

  assert_aarch64_manifest(base);
  assert_cli_ok("verify", base);
  VmsVm *vm = restore_full(f, 0, "vm", base);
  g_assert_cmpuint(guest_counter(vm), >, base_counter);
  guest_cmd(vm, "C 100 8 90"); /* written before the base was saved */
  guest_cmd(vm, "K");
  guest_cmd(vm, "W 300 5 77");
  g_autoptr(JsonObject) r = save(vm, diff, "diff", "quit");
  g_autoptr(VmsSnapshot) s = assert_diff_manifest(diff, base, r);
  g_autoptr(VmsSnapshot) b = vms_snapshot_open(base, &error);
  g_assert_no_error(error);
  g_autoptr(GArray) list = read_map(diff, NULL);
  gint64 state_bytes = json_object_get_int_member(r, "state-bytes");
  g_test_message("aarch64 diff: %" G_GUINT64_FORMAT " pages, state.bin %" G_GINT64_FORMAT
                 " bytes (base %" G_GUINT64_FORMAT "), downtime %.1f ms",
                 vms_extents_total(list) / PAGE, state_bytes, b->manifest->state_size,
                 json_object_get_double_member(r, "downtime-ms"));
  for (guint i = 0; i < 5; i++)
    g_assert_true(map_has_page(list, scratch(300 + i)));
  g_assert_cmpuint(vms_extents_total(list) / PAGE, <=, 5 + GUEST_OWN_PAGES + SLACK_PAGES);
  /* as on x86: the guest RAM (its 4 MiB pattern alone) is not in state.bin */
  g_assert_cmpuint((guint64)state_bytes, <=, b->manifest->state_size + 64 * 1024);
  assert_aarch64_manifest(diff);
  assert_cli_ok("verify", diff);

  VmsVm *clone = restore_diff(f, 1, "clone", diff);
  g_autofree char *flat_mem = g_build_filename(diff, "..", "d1.flat", "memory.bin", NULL);
  g_assert_cmpuint(guest_counter(clone), >, file_u64(flat_mem, VMS_GUEST_COUNTER_ADDR));
  g_assert_cmpuint(file_u64(flat_mem, VMS_GUEST_COUNTER_ADDR), >, base_counter);
  guest_cmd(clone, "C 300 5 77");
  guest_cmd(clone, "C 100 8 90");
  guest_cmd(clone, "K");
  g_autofree char *flat = g_strconcat(diff, ".flat", NULL);
  assert_cli_ok("verify", flat);
}

/* `vmsnap restore` rebuilds the virt command line from the manifest. */
static void
test_cli_restore(Fixture *f, gconstpointer data)
{
  const char *base = base_snapshot();
  g_autofree char *rdir = g_build_filename(f->dir, "dry", NULL);
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr(GError) error = NULL;
  int status = -1;

  g_autoptr(VmsSnapshot) b = vms_snapshot_open(base, &error);
  g_assert_no_error(error);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  const char *const dry[] = { vms_test_cli(), "restore", base, "--dry-run", "--runtime-dir",
                              rdir, NULL };
  g_assert_true(g_spawn_sync(NULL, (char **)dry, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out, &err,
                             &status, &error));
  g_assert_no_error(error);
  g_test_message("dry run: %s", out);
  g_assert_true(g_spawn_check_wait_status(status, NULL));
  g_assert_true(g_str_has_prefix(out, vms_test_qemu()));
  g_assert_nonnull(strstr(out, " virt,memory-backend=ram0 "));
  g_assert_nonnull(strstr(out, " cortex-a57 "));
  /* the RAM overlay (doc/diff.md): state.bin read with the block name and
   * page size the aarch64 manifest recorded */
  g_assert_nonnull(strstr(out, VMS_OVERLAY_PLACEHOLDER ",share=on"));
  g_assert_null(strstr(err, "mapped private"));
  g_assert_cmpuint(b->manifest->target_page_size, ==, 4096);
  g_assert_cmpstr(b->manifest->ram_block, ==, "ram0");
  g_assert_nonnull(strstr(out, "-incoming defer"));
  g_autofree char *restore_arg = g_strdup_printf("restore=%s", base);
  g_assert_nonnull(strstr(out, restore_arg));

  VmsVm *vm = restore_cli(f, 0, "cli", base);
  guest_cmd(vm, "C 100 8 90");
  guest_cmd(vm, "K");
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  if (!g_str_equal(vms_test_arch(), "aarch64"))
    g_error("test-aarch64 needs VMSNAP_TEST_ARCH=aarch64 (tests/integration/meson.build sets it)");
  if (!g_file_test(vms_test_guest(), G_FILE_TEST_IS_REGULAR))
    vms_test_cannot_run("the aarch64 test guest was not built (install gcc-aarch64-linux-gnu: "
                        "scripts/setup.sh)");
  g_test_add("/aarch64/save-restore-diff", Fixture, NULL, setup, test_save_restore_diff,
             teardown);
  g_test_add("/aarch64/cli-restore", Fixture, NULL, setup, test_cli_restore, teardown);
  int ret = g_test_run();
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
  return ret;
}
