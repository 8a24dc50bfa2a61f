/* Restore (doc/spec.md section 7, `vmsnap restore` in section 6): a restored
 * guest continues where it was saved, clones do not disturb each other or
 * the snapshot, `vmsnap restore` rebuilds a working command line. The
 * refusals are in test-restore-refusals.c. */
#include "restore-fixture.h"

#include <string.h>

static void
test_link_continues(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *snap = base_snapshot();
  g_autofree char *before = digest(snap);
  guint64 c1 = 0, c2 = 0;

  f->vms[0] = restored_vm(f->dir, "clone", snap);
  g_assert_true(vms_vm_start(f->vms[0], &error));
  g_assert_no_error(error);
  assert_continues(f->vms[0], base_counter(), base_boot_id());
  g_autofree char *after_restore = digest(snap);
  g_assert_cmpstr(after_restore, ==, before);

  /* It keeps running, and what it writes stays in the clone. */
  g_autofree char *w = vms_vm_guest_command(f->vms[0], "W 0 256 7", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(w, ==, "ok W 0 256 7");
  g_autofree char *z = vms_vm_guest_command(f->vms[0], "Z 100 4", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(z, ==, "ok Z 100 4");
  g_assert_true(vms_vm_read_counter(f->vms[0], &c1, &error));
  g_assert_true(vms_vm_wait_counter_above(f->vms[0], c1 + 50000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_read_counter(f->vms[0], &c2, &error));
  g_assert_cmpuint(c2, >, c1);
  g_autofree char *after_run = digest(snap);
  g_assert_cmpstr(after_run, ==, before);

  /* query-vmsnap names where it came from. */
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(f->vms[0], VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autoptr(JsonNode) q = vms_test_qmp_execute(ctl, "query-vmsnap", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(q), "restored-from"), ==, snap);

  /* The restore turned its migration capabilities off again: a later real
   * migration must not skip shared guest RAM. */
  g_autoptr(JsonNode) caps = vms_test_qmp_execute(f->vms[0]->qmp, "query-migrate-capabilities",
                                                  NULL, &error);
  g_assert_no_error(error);
  for (guint i = 0; i < json_array_get_length(json_node_get_array(caps)); i++) {
    JsonObject *c = json_array_get_object_element(json_node_get_array(caps), i);
    const char *name = json_object_get_string_member(c, "capability");
    if (g_str_equal(name, "x-ignore-shared") || g_str_equal(name, "events"))
      g_assert_false(json_object_get_boolean_member(c, "state"));
  }

  vms_vm_kill(f->vms[0]);
  g_autofree char *after_exit = digest(snap);
  g_assert_cmpstr(after_exit, ==, before);
}

static void
test_three_clones(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *snap = base_snapshot();
  g_autofree char *before = digest(snap);

  for (guint i = 0; i < 3; i++) {
    g_autofree char *name = g_strdup_printf("clone%u", i);
    f->vms[i] = restored_vm(f->dir, name, snap);
    g_assert_true(vms_vm_start(f->vms[i], &error));
    g_assert_no_error(error);
  }
  for (guint i = 0; i < 3; i++) {
    assert_continues(f->vms[i], base_counter(), base_boot_id());
    g_autofree char *cmd = g_strdup_printf("W 0 64 %u", 10 + i);
    g_autofree char *r = vms_vm_guest_command(f->vms[i], cmd, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_true(g_str_has_prefix(r, "ok W"));
  }
  /* Each clone sees only its own writes. */
  for (guint i = 0; i < 3; i++) {
    g_autofree char *cmd = g_strdup_printf("C 0 64 %u", 10 + i);
    g_autofree char *r = vms_vm_guest_command(f->vms[i], cmd, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_true(g_str_has_prefix(r, "ok C"));
  }
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

static void
test_copy_restore(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  guint64 counter = 0, boot_id = 0;
  g_autofree char *snap = make_snapshot(f->dir, "copy", &counter, &boot_id);
  g_autofree char *before = digest(snap);

  f->vms[0] = restored_vm(f->dir, "clone", snap);
  g_assert_true(vms_vm_start(f->vms[0], &error));
  g_assert_no_error(error);
  assert_continues(f->vms[0], counter, boot_id);
  vms_vm_kill(f->vms[0]);
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

/* A two-vCPU VM: the restore checks the VP count against -smp and loads
 * both vCPUs' state. */
static void
test_two_vcpus(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  guint64 counter = 0, boot_id = 0;
  g_autofree char *snap = make_snapshot_with(f->dir, "link", 2, NULL, &counter, &boot_id);

  f->vms[0] = restored_vm(f->dir, "clone", snap);
  f->vms[0]->smp = 2;
  g_assert_true(vms_vm_start(f->vms[0], &error));
  g_assert_no_error(error);
  assert_continues(f->vms[0], counter, boot_id);
  g_autoptr(JsonNode) cpus = vms_test_qmp_execute(f->vms[0]->qmp, "query-cpus-fast", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(json_array_get_length(json_node_get_array(cpus)), ==, 2);
}

/* resume=off (with -S): state loaded, guest held until someone continues it. */
static void
test_resume_off(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *snap = base_snapshot();
  guint64 c = 0;

  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "clone", snap);
  g_free(vm->plugin_extra);
  vm->plugin_extra = g_strdup_printf("restore=%s,resume=off", snap);
  g_ptr_array_add(vm->extra_args, g_strdup("-S"));
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);

  /* Loaded: the counter is the saved one and stays there. */
  gint64 deadline = g_get_monotonic_time() + VMS_TEST_TIMEOUT_MS * 1000;
  while (c != base_counter() && g_get_monotonic_time() < deadline) {
    g_assert_true(vms_vm_read_counter(vm, &c, &error));
    g_usleep(10 * 1000);
  }
  g_assert_cmpuint(c, ==, base_counter());
  g_usleep(300 * 1000);
  g_assert_true(vms_vm_read_counter(vm, &c, &error));
  g_assert_cmpuint(c, ==, base_counter());
  g_autoptr(JsonNode) st = vms_test_qmp_execute(vm->qmp, "query-status", NULL, &error);
  g_assert_no_error(error);
  g_assert_false(json_object_get_boolean_member(json_node_get_object(st), "running"));

  g_autoptr(JsonNode) cont = vms_test_qmp_execute(vm->qmp, "cont", NULL, &error);
  g_assert_no_error(error);
  assert_continues(vm, base_counter(), base_boot_id());
}

/* ---- vmsnap restore ---- */

static void
test_cli_dry_run(Fixture *f, gconstpointer data)
{
  const char *snap = base_snapshot();
  g_autofree char *before = digest(snap);
  g_autofree char *rdir = g_build_filename(f->dir, "run", NULL);
  g_autofree char *out = NULL, *err = NULL;

  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  /* The private mapping; the RAM overlay's command line is test-overlay.c's. */
  const char *const args[] = { "restore", snap, "--dry-run", "--ram", "private", "--runtime-dir", rdir, "--", "-name", "dry", NULL };
  g_assert_cmpint(vms_test_run_cli(args, &out, &err), ==, 0);
  g_test_message("dry run: %s", out);
  g_autofree char *mem = g_strdup_printf("mem-path=%s/memory.bin,share=off", snap);
  g_autofree char *restore = g_strdup_printf("restore=%s", snap);
  g_autofree char *qmp = g_strdup_printf("qmp=%s/plugin-qmp.sock", rdir);
  g_autofree char *test_qmp = g_strdup_printf("unix:%s/test-qmp.sock", rdir);
  const char *const want[] = { mem, restore, qmp, test_qmp, " -S ", " -incoming defer ", " -name dry\n" };
  for (gsize i = 0; i < G_N_ELEMENTS(want); i++) {
    if (strstr(out, want[i]) == NULL)
      g_error("dry run lacks \"%s\": %s", want[i], out);
  }
  g_assert_null(strstr(out, "/src/"));   /* no path of the original VM's left */
  g_assert_null(strstr(out, "share=on"));
  g_autoptr(GDir) d = g_dir_open(rdir, 0, NULL);
  g_assert_null(g_dir_read_name(d)); /* a dry run starts nothing */
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);

  /* An incomplete directory and a missing DIR are refused the CLI way. */
  g_autofree char *out2 = NULL, *err2 = NULL, *out3 = NULL, *err3 = NULL;
  const char *const incomplete[] = { "restore", rdir, "--dry-run", NULL };
  g_assert_cmpint(vms_test_run_cli(incomplete, &out2, &err2), ==, 1);
  g_assert_true(g_str_has_prefix(err2, "vmsnap: error: "));
  g_assert_nonnull(strstr(err2, "incomplete"));
  const char *const missing[] = { "restore", NULL };
  g_assert_cmpint(vms_test_run_cli(missing, &out3, &err3), ==, 1);
  g_assert_nonnull(strstr(err3, "missing DIR"));
}

/* The fork workflow: the original keeps running after a copy save, and
 * `vmsnap restore` starts a clone of it beside it. */
static void
test_cli_clone(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *src_dir = g_build_filename(f->dir, "src", NULL);
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *rdir = g_build_filename(f->dir, "clone", NULL);
  guint64 c_src = 0;

  g_assert_cmpint(g_mkdir_with_parents(src_dir, 0700), ==, 0);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  VmsVm *src = f->vms[0] = vms_vm_new(src_dir);
  g_assert_true(vms_vm_start(src, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_ready(src, VMS_TEST_TIMEOUT_MS, &error));
  g_autofree char *w = vms_vm_guest_command(src, "W 100 8 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(w, ==, "ok W 100 8 90");
  g_autoptr(JsonObject) ret = save(src, snap, "copy", "resume");
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  guint64 counter = file_u64(mem, VMS_GUEST_COUNTER_ADDR);
  guint64 boot_id = file_u64(mem, VMS_GUEST_STATE_ADDR + G_STRUCT_OFFSET(VmsGuestState, boot_id));
  g_autofree char *before = digest(snap);

  VmsVm *clone = f->vms[1] = vms_vm_new(rdir);
  const char *const argv[] = { vms_test_cli(), "restore", snap, "--runtime-dir", rdir, NULL };
  g_assert_true(vms_vm_spawn(clone, argv, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_connect(clone, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  assert_continues(clone, counter, boot_id);

  /* Both run, each on its own. */
  g_assert_true(vms_vm_read_counter(src, &c_src, &error));
  g_assert_true(vms_vm_wait_counter_above(src, c_src + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *a = vms_vm_guest_command(clone, "W 0 4 1", VMS_TEST_TIMEOUT_MS, &error);
  g_autofree char *b = vms_vm_guest_command(src, "W 0 4 2", VMS_TEST_TIMEOUT_MS, &error);
  g_autofree char *ca = vms_vm_guest_command(clone, "C 0 4 1", VMS_TEST_TIMEOUT_MS, &error);
  g_autofree char *cb = vms_vm_guest_command(src, "C 0 4 2", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(ca, ==, "ok C 0 4 1");
  g_assert_cmpstr(cb, ==, "ok C 0 4 2");
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

/* Restores the base into f->vms[0], has the guest write pages 200..215
 * and zero 100..101, and saves a diff with then=quit into @diff. */
static void
make_diff(Fixture *f, const char *diff)
{
  g_autoptr(GError) error = NULL;
  int status = -1;

  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "first", base_snapshot());
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  assert_continues(vm, base_counter(), base_boot_id());
  g_autofree char *w = vms_vm_guest_command(vm, "W 200 16 33", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(w, ==, "ok W 200 16 33");
  g_autofree char *z = vms_vm_guest_command(vm, "Z 100 2", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(z, ==, "ok Z 100 2");
  g_autoptr(JsonObject) ret = save(vm, diff, "diff", "quit");
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_cmpint(status, ==, 0);
}

/* A diff snapshot is flattened (into DIR.flat) and restored; a second
 * restore of the same diff reuses the flattening. */
static void
test_cli_diff(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *snap = base_snapshot();
  g_autofree char *base_before = digest(snap);
  g_autofree char *diff = g_build_filename(f->dir, "diff", NULL);
  g_autofree char *flat = g_build_filename(f->dir, "diff.flat", NULL);
  g_autofree char *rdir = g_build_filename(f->dir, "clone", NULL);

  make_diff(f, diff);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  VmsVm *clone = f->vms[1] = vms_vm_new(rdir);
  const char *const argv[] = { vms_test_cli(), "restore", diff, "--runtime-dir", rdir, NULL };
  g_assert_true(vms_vm_spawn(clone, argv, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_connect(clone, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *flat_mem = g_build_filename(flat, "memory.bin", NULL);
  guint64 counter = file_u64(flat_mem, VMS_GUEST_COUNTER_ADDR);
  g_assert_cmpuint(counter, >, base_counter());
  g_assert_true(vms_vm_wait_counter_above(clone, counter, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *c1 = vms_vm_guest_command(clone, "C 200 16 33", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c1, ==, "ok C 200 16 33");
  g_autofree char *c2 = vms_vm_guest_command(clone, "C 100 2 0", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c2, ==, "ok C 100 2 0");
  g_autofree char *c3 = vms_vm_guest_command(clone, "C 102 6 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c3, ==, "ok C 102 6 90");

  g_autofree char *out = NULL, *err = NULL;
  const char *const dry[] = { "restore", diff, "--dry-run", "--ram", "private", "--runtime-dir", rdir, NULL };
  g_assert_cmpint(vms_test_run_cli(dry, &out, &err), ==, 0);
  g_assert_nonnull(strstr(err, "using its flattening"));
  /* A diff is restored as itself (so the clone's next diff names it as
   * parent) from its flattening's memory (doc/diff.md). */
  g_autofree char *restore_arg = g_strdup_printf("restore=%s ", diff);
  g_autofree char *mem_arg = g_strdup_printf("mem-path=%s/memory.bin,share=off", flat);
  g_assert_nonnull(strstr(out, restore_arg));
  g_assert_nonnull(strstr(out, mem_arg));
  g_autoptr(VmsTestQmp) cctl = vms_vm_control(clone, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autoptr(JsonNode) q = vms_test_qmp_execute(cctl, "query-vmsnap", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(q), "restored-from"), ==, diff);
  g_autofree char *base_after = digest(snap);
  g_assert_cmpstr(base_after, ==, base_before);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/restore/link-continues", Fixture, NULL, setup, test_link_continues, teardown);
  g_test_add("/restore/three-clones", Fixture, NULL, setup, test_three_clones, teardown);
  g_test_add("/restore/copy", Fixture, NULL, setup, test_copy_restore, teardown);
  g_test_add("/restore/resume-off", Fixture, NULL, setup, test_resume_off, teardown);
  g_test_add("/restore/two-vcpus", Fixture, NULL, setup, test_two_vcpus, teardown);
  g_test_add("/restore/cli/dry-run", Fixture, NULL, setup, test_cli_dry_run, teardown);
  g_test_add("/restore/cli/clone", Fixture, NULL, setup, test_cli_clone, teardown);
  g_test_add("/restore/cli/diff", Fixture, NULL, setup, test_cli_diff, teardown);
  int ret = g_test_run();
  base_snapshot_cleanup();
  return ret;
}
