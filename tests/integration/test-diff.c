/* Diff snapshots (doc/spec.md sections 2 and 4, memory=diff): a VM restored
 * with a private mapping saves only the pages written since the restore,
 * found from /proc/self/pagemap; the page map is exactly those pages plus
 * the guest's own state and stack pages; flattening and restoring gives
 * the guest back with its counter and every page it wrote or zeroed; two
 * diffs of one running VM both name the restored snapshot; a VM without a
 * private restored mapping is refused and keeps running. Chains and
 * changed parents: test-diff-chain.c. */
#include "diff-fixture.h"

/* restore -> the guest writes 37 pages and zeroes 2 that held data in the
 * base -> diff: the map is those 39 pages plus the guest's own, each page's
 * data is right (zeros for the zeroed ones) -> flatten -> restore: the
 * guest continues from the saved counter with every page as it left it. */
static void
test_pages(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *diff = g_build_filename(f->dir, "d1", NULL);
  g_autofree char *diff_mem = g_build_filename(diff, VMS_DIFF_FILE, NULL);
  VmsVm *vm = restore_full(f, 0, "vm", base);

  g_assert_true(vms_vm_wait_counter_above(vm, base_counter + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guest_cmd(vm, "W 300 37 90");
  guest_cmd(vm, "Z 100 2");
  g_autoptr(JsonObject) r = save(vm, diff, "diff", "pause");
  guint64 counter = guest_counter(vm);
  g_autoptr(VmsSnapshot) s = assert_diff_manifest(diff, base, r);
  g_autoptr(GArray) list = read_map(diff, NULL);
  guint64 pages = vms_extents_total(list) / PAGE;
  g_test_message("diff of 37 written + 2 zeroed pages: %" G_GUINT64_FORMAT " pages in %u extents, "
                 "downtime %.1f ms, state.bin %" G_GINT64_FORMAT " bytes", pages, list->len,
                 json_object_get_double_member(r, "downtime-ms"),
                 json_object_get_int_member(r, "state-bytes"));
  for (guint i = 0; i < 37; i++) {
    g_assert_true(map_has_page(list, scratch(300 + i)));
    assert_page_filled(diff_mem, scratch(300 + i), 90);
  }
  for (guint i = 100; i < 102; i++) {
    g_assert_true(map_has_page(list, scratch(i)));
    assert_page_filled(diff_mem, scratch(i), 0);
  }
  g_assert_false(map_has_page(list, scratch(102)));
  g_assert_true(map_has_page(list, VMS_GUEST_STATE_ADDR));
  g_assert_cmpuint(pages, <=, 37 + 2 + GUEST_OWN_PAGES + SLACK_PAGES);
  assert_cli_ok("verify", diff);
  vms_vm_kill(vm);

  VmsVm *clone = restore_diff(f, 1, "clone", diff);
  g_autofree char *flat_mem = g_build_filename(f->dir, "d1.flat", "memory.bin", NULL);
  g_assert_cmpuint(file_u64(flat_mem, VMS_GUEST_COUNTER_ADDR), ==, counter);
  g_assert_true(vms_vm_wait_counter_above(clone, counter + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *log = vms_test_read_text(clone->debugcon_path);
  g_assert_null(log != NULL ? strstr(log, VMS_GUEST_PREFIX "boot") : NULL);
  guest_cmd(clone, "C 300 37 90");
  guest_cmd(clone, "C 100 2 0");
  guest_cmd(clone, "C 102 6 90");
  guest_cmd(clone, "K");
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(clone, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autoptr(JsonNode) q = vms_test_qmp_execute(ctl, "query-vmsnap", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(q), "restored-from"), ==, diff);
}

/* An idle guest dirties only its state and stack pages: its diff is tiny. */
static void
test_idle(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *diff = g_build_filename(f->dir, "idle", NULL);
  g_autofree char *diff_mem = g_build_filename(diff, VMS_DIFF_FILE, NULL);
  VmsVm *vm = restore_full(f, 0, "vm", base);

  /* Let it run a while: about 2^26 loop iterations. */
  g_assert_true(vms_vm_wait_counter_above(vm, base_counter + (1u << 26), VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autoptr(JsonObject) r = save(vm, diff, "diff", "quit");
  g_autoptr(VmsSnapshot) s = assert_diff_manifest(diff, base, r);
  g_autoptr(GArray) list = read_map(diff, NULL);
  GStatBuf st;
  g_assert_cmpint(g_stat(diff_mem, &st), ==, 0);
  g_test_message("idle guest (%u MiB): diff %" G_GUINT64_FORMAT " bytes of data in %u extents "
                 "(%" G_GUINT64_FORMAT " bytes allocated on disk), state.bin %" G_GINT64_FORMAT
                 " bytes, downtime %.1f ms", MEM_MIB, vms_extents_total(list), list->len,
                 (guint64)st.st_blocks * 512, json_object_get_int_member(r, "state-bytes"),
                 json_object_get_double_member(r, "downtime-ms"));
  g_assert_true(map_has_page(list, VMS_GUEST_STATE_ADDR));
  g_assert_cmpuint(vms_extents_total(list), <=, (GUEST_OWN_PAGES + SLACK_PAGES) * PAGE);
  g_assert_cmpuint((guint64)st.st_blocks * 512, <=, (GUEST_OWN_PAGES + SLACK_PAGES) * PAGE);
  /* state.bin without guest RAM (state-strip.h): as small as the base's,
   * saved from share=on RAM that x-ignore-shared leaves out */
  g_autoptr(VmsSnapshot) b = vms_snapshot_open(base, &error);
  g_assert_no_error(error);
  g_assert_cmpuint((guint64)json_object_get_int_member(r, "state-bytes"), <=,
                   b->manifest->state_size + 64 * 1024);
}

/* After a diff with then=resume the guest runs on; a second diff of the
 * same VM still names the restored snapshot as parent and holds every page
 * written since the restore, so it alone restores the newest state. */
static void
test_resume_twice(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *d1 = g_build_filename(f->dir, "d1", NULL);
  g_autofree char *d2 = g_build_filename(f->dir, "d2", NULL);
  VmsVm *vm = restore_full(f, 0, "vm", base);

  guest_cmd(vm, "W 400 5 1");
  g_autoptr(JsonObject) r1 = save(vm, d1, "diff", "resume");
  guint64 c1 = guest_counter(vm);
  g_assert_true(vms_vm_wait_counter_above(vm, c1 + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guest_cmd(vm, "W 410 5 2");
  g_autoptr(JsonObject) r2 = save(vm, d2, "diff", "resume");
  g_test_message("then=resume downtime: %.1f ms, %.1f ms (total %.1f ms, %.1f ms)",
                 json_object_get_double_member(r1, "downtime-ms"),
                 json_object_get_double_member(r2, "downtime-ms"),
                 json_object_get_double_member(r1, "total-ms"),
                 json_object_get_double_member(r2, "total-ms"));
  g_autoptr(VmsSnapshot) s1 = assert_diff_manifest(d1, base, r1);
  g_autoptr(VmsSnapshot) s2 = assert_diff_manifest(d2, base, r2);
  g_autoptr(GArray) l1 = read_map(d1, NULL);
  g_autoptr(GArray) l2 = read_map(d2, NULL);
  for (guint i = 0; i < l1->len; i++) {
    const VmsExtent *e = &g_array_index(l1, VmsExtent, i);
    for (guint64 a = e->offset; a < e->offset + e->length; a += PAGE)
      g_assert_true(map_has_page(l2, a));
  }
  for (guint i = 0; i < 5; i++)
    g_assert_true(map_has_page(l2, scratch(410 + i)));
  g_assert_cmpuint(vms_extents_total(l2) / PAGE, <=, 10 + GUEST_OWN_PAGES + SLACK_PAGES);
  assert_cli_ok("verify", d2);

  /* The guest keeps running after both. */
  guint64 c2 = guest_counter(vm);
  g_assert_true(vms_vm_wait_counter_above(vm, c2 + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *flat = g_build_filename(f->dir, "d2.flat", NULL);
  g_autofree char *flat_mem = g_build_filename(flat, "memory.bin", NULL);
  flatten(d2, flat);
  assert_page_filled(flat_mem, scratch(400), 1);
  assert_page_filled(flat_mem, scratch(414), 2);
}

/* memory=diff on a VM that boots normally (share=on, or share=off without
 * a restore) is refused with the reason; the VM keeps running and the
 * directory gets no manifest. */
static void
test_refused(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  gboolean share = GPOINTER_TO_INT(data);
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *manifest = g_build_filename(snap, VMS_MANIFEST_FILE, NULL);
  VmsVm *vm = f->vms[0] = vms_vm_new(f->dir);

  vm->mem_mib = MEM_MIB;
  vm->share = share;
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autoptr(JsonObject) r = try_save(vm, snap, "diff", "pause", &error);
  g_assert_null(r);
  g_test_message("refused: %s", error->message);
  g_assert_nonnull(strstr(error->message, share ? "share=on" : "not restored"));
  g_assert_false(g_file_test(manifest, G_FILE_TEST_EXISTS));
  g_autoptr(GError) e2 = NULL;
  g_autoptr(JsonNode) st = vms_test_qmp_execute(vm->qmp, "query-status", NULL, &e2);
  g_assert_no_error(e2);
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(st), "status"), ==, "running");
  guint64 c = guest_counter(vm);
  g_assert_true(vms_vm_wait_counter_above(vm, c + 1000000, VMS_TEST_TIMEOUT_MS, &e2));
  g_assert_no_error(e2);
}

/* The monitor console's `save DIR memory=diff` takes the same path. */
static void
test_monitor(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *diff = g_build_filename(f->dir, "mon", NULL);
  VmsVm *vm = restore_full(f, 0, "vm", base);

  guest_cmd(vm, "W 50 3 5");
  g_autoptr(VmsTestMonitor) mon = vms_test_monitor_connect(vm->monitor_path, VMS_TEST_TIMEOUT_MS,
                                                           &error);
  g_assert_no_error(error);
  g_autofree char *line = g_strdup_printf("save %s memory=diff then=resume", diff);
  g_autofree char *out = vms_test_monitor_command(mon, line, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_test_message("monitor: %s", out);
  g_autofree char *want = g_strdup_printf("snapshot saved in %s: DIFF, memory DIFF", diff);
  g_assert_nonnull(strstr(out, want));
  g_autoptr(GArray) list = read_map(diff, NULL);
  for (guint i = 0; i < 3; i++)
    g_assert_true(map_has_page(list, scratch(50 + i)));
  assert_cli_ok("verify", diff);
  guint64 c = guest_counter(vm);
  g_assert_true(vms_vm_wait_counter_above(vm, c + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/diff/pages", Fixture, NULL, setup, test_pages, teardown);
  g_test_add("/diff/idle", Fixture, NULL, setup, test_idle, teardown);
  g_test_add("/diff/resume-twice", Fixture, NULL, setup, test_resume_twice, teardown);
  g_test_add("/diff/monitor", Fixture, NULL, setup, test_monitor, teardown);
  g_test_add("/diff/refused/share-on", Fixture, GINT_TO_POINTER(TRUE), setup, test_refused, teardown);
  g_test_add("/diff/refused/not-restored", Fixture, GINT_TO_POINTER(FALSE), setup, test_refused,
             teardown);
  int ret = g_test_run();
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
  return ret;
}
