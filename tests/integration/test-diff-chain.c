/* Diff chains (doc/spec.md section 2): base -> d1 -> d2 -> d3, each diff of a
 * VM restored from the previous one, flattens to exactly the guest's RAM at
 * d3 and verifies as a whole; a parent that changed after a diff was saved
 * is refused by verify, flatten, restore and the next diff save. */
#include "diff-fixture.h"

/* base -> d1 -> d2 -> d3, each restored from the previous one's flattening
 * (d1 and d2 by `vmsnap restore`, so d3's VM runs a command line rewritten
 * twice):
 * d3 flattens to exactly the guest RAM of the VM paused by d3's save, as
 * QEMU itself reads it (pmemsave), and `vmsnap verify` walks the whole
 * chain. QEMU 7.2 refuses to migrate a VM that a migration paused
 * ("postmigrate"), so a second snapshot-save of the same instant — a copy
 * after the diff — cannot be taken; pmemsave is the independent copy. It
 * reads the physical address space, where 0xa0000-0xfffff shows VGA and
 * ROM instead of RAM: that window is left out of the comparison. */
static void
test_chain(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *d1 = g_build_filename(f->dir, "d1", NULL);
  g_autofree char *d2 = g_build_filename(f->dir, "d2", NULL);
  g_autofree char *d3 = g_build_filename(f->dir, "d3", NULL);

  VmsVm *vm = restore_full(f, 0, "vm0", base);
  guest_cmd(vm, "W 0 10 1");
  g_autoptr(JsonObject) r1 = save(vm, d1, "diff", "quit");
  vm = restore_cli(f, 1, "vm1", d1);
  guest_cmd(vm, "C 0 10 1");
  guest_cmd(vm, "W 10 10 2");
  g_autoptr(JsonObject) r2 = save(vm, d2, "diff", "quit");
  vm = restore_cli(f, 2, "vm2", d2);
  guest_cmd(vm, "C 10 10 2");
  guest_cmd(vm, "W 20 10 3");
  guest_cmd(vm, "Z 0 5");
  g_autoptr(JsonObject) r3 = save(vm, d3, "diff", "pause");
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autoptr(JsonNode) q = vms_test_qmp_execute(ctl, "query-vmsnap", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(q), "restored-from"), ==, d2);
  g_autoptr(GBytes) ram = vms_vm_read_phys(vm, 0, (gsize)MEM_MIB << 20, &error);
  g_assert_no_error(error);
  vms_vm_kill(vm);

  g_autoptr(VmsSnapshot) s1 = assert_diff_manifest(d1, base, r1);
  g_autoptr(VmsSnapshot) s2 = assert_diff_manifest(d2, d1, r2);
  g_autoptr(VmsSnapshot) s3 = assert_diff_manifest(d3, d2, r3);
  /* Each diff holds only what its own VM wrote: restoring d1 and d2 did
   * not write the guest RAM into the clones' mappings (state.bin carries
   * none of it: state-strip.c), so the chain does not grow. */
  g_autoptr(GArray) l2 = read_map(d2, NULL);
  g_autoptr(GArray) l3 = read_map(d3, NULL);
  g_test_message("chain: d1 %" G_GUINT64_FORMAT " B, d2 %" G_GUINT64_FORMAT " B, d3 %"
                 G_GUINT64_FORMAT " B of page data; state.bin %" G_GINT64_FORMAT " B",
                 s1->manifest->diff_data_bytes, s2->manifest->diff_data_bytes,
                 s3->manifest->diff_data_bytes, json_object_get_int_member(r3, "state-bytes"));
  g_assert_cmpuint(vms_extents_total(l2) / PAGE, <=, 10 + GUEST_OWN_PAGES + SLACK_PAGES);
  g_assert_cmpuint(vms_extents_total(l3) / PAGE, <=, 15 + GUEST_OWN_PAGES + SLACK_PAGES);
  for (guint i = 0; i < 10; i++) {
    g_assert_true(map_has_page(l2, scratch(10 + i)));
    g_assert_true(map_has_page(l3, scratch(20 + i)));
  }
  for (guint i = 0; i < 5; i++)
    g_assert_true(map_has_page(l3, scratch(i)));
  g_autoptr(GPtrArray) chain = NULL;
  g_assert_true(vms_chain_resolve(d3, &chain, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(chain->len, ==, 4);
  assert_cli_ok("verify", d3);

  g_autofree char *flat3 = g_build_filename(f->dir, "d3.flat", NULL);
  g_autofree char *flat3_mem = g_build_filename(flat3, "memory.bin", NULL);
  flatten(d3, flat3);
  g_autofree char *flat_bytes = NULL;
  gsize flat_len = 0;
  g_assert_true(g_file_get_contents(flat3_mem, &flat_bytes, &flat_len, &error));
  g_assert_no_error(error);
  gsize ram_len = 0;
  const guint8 *ram_bytes = g_bytes_get_data(ram, &ram_len);
  g_assert_cmpuint(flat_len, ==, (gsize)MEM_MIB << 20);
  g_assert_cmpuint(ram_len, ==, flat_len);
  g_assert_cmpint(memcmp(flat_bytes, ram_bytes, 0xa0000), ==, 0);
  g_assert_cmpint(memcmp(flat_bytes + 0x100000, ram_bytes + 0x100000, flat_len - 0x100000), ==, 0);
  assert_page_filled(flat3_mem, scratch(0), 0);
  assert_page_filled(flat3_mem, scratch(5), 1);
  assert_page_filled(flat3_mem, scratch(19), 2);
  assert_page_filled(flat3_mem, scratch(29), 3);

  /* A damaged member in the middle of the chain fails verify of the newest. */
  g_autofree char *map1 = g_build_filename(d1, VMS_MAP_FILE, NULL);
  vms_autofd fd = open(map1, O_RDWR | O_CLOEXEC);
  guint8 byte = 0;
  g_assert_cmpint(vms_pread_full(fd, &byte, 1, 40), ==, 1);
  byte ^= 0x10;
  g_assert_cmpint(vms_pwrite_full(fd, &byte, 1, 40), ==, 0);
  g_autofree char *err = NULL;
  const char *const args[] = { "verify", d3, NULL };
  g_assert_cmpint(run_cli(args, &err), ==, 1);
  g_test_message("verify with a damaged d1: %s", err);
  g_assert_nonnull(strstr(err, d1));
}

/* A private copy of the shared base, so a test may change it. */
static char *
copy_base(Fixture *f)
{
  g_autoptr(GError) error = NULL;
  char *dst = g_build_filename(f->dir, "base", NULL);
  const char *argv[] = { "cp", "-a", base_snapshot(), dst, NULL };
  int status = -1;

  g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, NULL,
                             NULL, &status, &error));
  g_assert_no_error(error);
  g_assert_cmpint(status, ==, 0);
  return dst;
}

/* Re-encodes @snap's manifest with another hypervisor_version: still a
 * valid snapshot, but no longer the one a diff recorded. */
static void
change_manifest(const char *snap)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename(snap, VMS_MANIFEST_FILE, NULL);
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  g_autoptr(VmsManifest) m = vms_manifest_read_fd(fd, NULL, &error);

  g_assert_no_error(error);
  vms_manifest_set_string(&m->hypervisor_version, "QEMU 7.2.99 (changed)");
  g_autoptr(GBytes) bytes = vms_manifest_encode(m);
  gsize len = 0;
  const char *p = g_bytes_get_data(bytes, &len);
  g_assert_true(g_file_set_contents(path, p, (gssize)len, &error));
  g_assert_no_error(error);
}

static void
assert_cli_refuses_parent(const char *cmd, const char *dir, const char *extra)
{
  g_autofree char *err = NULL;
  const char *const args[] = { cmd, dir, extra, NULL };

  g_assert_cmpint(run_cli(args, &err), ==, 1);
  g_test_message("vmsnap %s: %s", cmd, err);
  g_assert_nonnull(strstr(err, "parent"));
}

/* The parent changes after a diff was saved: flatten, verify and restore
 * of the diff refuse naming "parent", and so does the next diff save of
 * the VM restored from it (which keeps running, with no manifest). */
static void
test_changed_parent(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *base = copy_base(f);
  g_autofree char *d1 = g_build_filename(f->dir, "d1", NULL);
  g_autofree char *d2 = g_build_filename(f->dir, "d2", NULL);
  g_autofree char *out = g_build_filename(f->dir, "out", NULL);
  g_autofree char *rdir = g_build_filename(f->dir, "run", NULL);
  VmsVm *vm = restore_full(f, 0, "vm", base);

  guest_cmd(vm, "W 0 3 7");
  g_autoptr(JsonObject) r1 = save(vm, d1, "diff", "resume");
  assert_cli_ok("verify", d1);
  change_manifest(base);

  assert_cli_refuses_parent("verify", d1, NULL);
  assert_cli_refuses_parent("flatten", d1, out);
  g_autofree char *out_manifest = g_build_filename(out, VMS_MANIFEST_FILE, NULL);
  g_assert_false(g_file_test(out_manifest, G_FILE_TEST_EXISTS));
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  g_autofree char *rdir_opt = g_strdup_printf("--runtime-dir=%s", rdir);
  assert_cli_refuses_parent("restore", d1, rdir_opt);

  g_autoptr(JsonObject) r2 = try_save(vm, d2, "diff", "resume", &error);
  g_assert_null(r2);
  g_test_message("second diff after the parent changed: %s", error->message);
  g_assert_nonnull(strstr(error->message, "parent"));
  g_autofree char *m2 = g_build_filename(d2, VMS_MANIFEST_FILE, NULL);
  g_assert_false(g_file_test(m2, G_FILE_TEST_EXISTS));
  g_autoptr(GError) e2 = NULL;
  guint64 c = guest_counter(vm);
  g_assert_true(vms_vm_wait_counter_above(vm, c + 1000000, VMS_TEST_TIMEOUT_MS, &e2));
  g_assert_no_error(e2);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/diff/chain", Fixture, NULL, setup, test_chain, teardown);
  g_test_add("/diff/changed-parent", Fixture, NULL, setup, test_changed_parent, teardown);
  int ret = g_test_run();
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
  return ret;
}
