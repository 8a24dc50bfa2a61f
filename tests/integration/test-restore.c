/* Restore (SPEC.md section 7, `vmsnap restore` in section 6): a restored
 * guest continues where it was saved, clones do not disturb each other or
 * the snapshot, and every mismatch stops QEMU with the field named and
 * nothing written. */
#include "harness.h"

#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "manifest.h"
#include "snapdir.h"
#include "util.h"

typedef struct {
  char *dir;      /* per-test scratch */
  VmsVm *vms[4];  /* reaped by teardown */
} Fixture;

/* One link snapshot (then=quit) shared by the tests that only read it. */
static char *base_root;
static char *base_snap;
static guint64 base_counter;
static guint64 base_boot_id;

static void
setup(Fixture *f, gconstpointer data)
{
  f->dir = vms_test_make_dir("restore");
}

static void
teardown(Fixture *f, gconstpointer data)
{
  for (gsize i = 0; i < G_N_ELEMENTS(f->vms); i++)
    g_clear_pointer(&f->vms[i], vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

/* The 8 bytes at @addr of a memory file (guest-physical == file offset below 3 GiB). */
static guint64
file_u64(const char *path, guint64 addr)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  guint64 v = 0;

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(vms_pread_full(fd, &v, sizeof(v), addr), ==, sizeof(v));
  return GUINT64_FROM_LE(v);
}

static JsonObject *
save(VmsVm *vm, const char *snap, const char *memory, const char *then)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(
      ctl, "snapshot-save", &error, "{\"dir\": \"%s\", \"memory\": \"%s\", \"then\": \"%s\"}",
      snap, memory, then);
  g_assert_no_error(error);
  return json_object_ref(json_node_get_object(ret));
}

/* Boots a source VM in @root, lets it count, saves @memory with then=quit
 * into @root/snap. Returns the snapshot dir; the counter at the save in
 * *@ret_counter (read from the snapshot's memory). */
static char *
make_snapshot_with(const char *root, const char *memory, const char *extra_device,
                   guint64 *ret_counter, guint64 *ret_boot_id)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *src_dir = g_build_filename(root, "src", NULL);
  char *snap = g_build_filename(root, "snap", NULL);
  g_autoptr(VmsVm) vm = NULL;
  int status = -1;

  g_assert_cmpint(g_mkdir_with_parents(src_dir, 0700), ==, 0);
  vm = vms_vm_new(src_dir);
  if (extra_device != NULL) {
    g_ptr_array_add(vm->extra_args, g_strdup("-device"));
    g_ptr_array_add(vm->extra_args, g_strdup(extra_device));
  }
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_counter_above(vm, 20000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *w = vms_vm_guest_command(vm, "W 100 8 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(w, ==, "ok W 100 8 90");
  VmsGuestState st;
  g_assert_true(vms_vm_read_state(vm, &st, &error));
  g_autoptr(JsonObject) ret = save(vm, snap, memory, "quit");
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  g_assert_cmpint(status, ==, 0);

  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  *ret_counter = file_u64(mem, VMS_GUEST_COUNTER_ADDR);
  *ret_boot_id = file_u64(mem, VMS_GUEST_STATE_ADDR + G_STRUCT_OFFSET(VmsGuestState, boot_id));
  g_assert_cmpuint(*ret_counter, >, 20000000);
  g_assert_cmpuint(*ret_boot_id, ==, st.boot_id);
  return snap;
}

static char *
make_snapshot(const char *root, const char *memory, guint64 *ret_counter, guint64 *ret_boot_id)
{
  return make_snapshot_with(root, memory, NULL, ret_counter, ret_boot_id);
}

static const char *
base_snapshot(void)
{
  if (base_snap == NULL) {
    base_root = vms_test_make_dir("restore-base");
    base_snap = make_snapshot(base_root, "link", &base_counter, &base_boot_id);
  }
  return base_snap;
}

/* A VM configured to restore @snap, its files in a new dir under @root. */
static VmsVm *
restored_vm(const char *root, const char *name, const char *snap)
{
  g_autofree char *dir = g_build_filename(root, name, NULL);
  VmsVm *vm;

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  vm = vms_vm_new(dir);
  g_free(vm->mem_path);
  vm->mem_path = g_build_filename(snap, "memory.bin", NULL);
  vm->share = FALSE;
  vm->incoming_defer = TRUE;
  vm->plugin_extra = g_strdup_printf("restore=%s", snap);
  return vm;
}

/* The restored guest runs on from @counter with boot id @boot_id: it did
 * not boot again, its pattern and the pages written before the save are
 * intact, and it obeys commands. */
static void
assert_continues(VmsVm *vm, guint64 counter, guint64 boot_id)
{
  g_autoptr(GError) error = NULL;
  VmsGuestState st;

  g_assert_true(vms_vm_wait_counter_above(vm, counter + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_read_state(vm, &st, &error));
  g_assert_no_error(error);
  g_assert_cmphex(st.magic, ==, VMS_GUEST_MAGIC);
  g_assert_cmphex(st.boot_id, ==, boot_id);
  g_autofree char *log = vms_test_read_file(vm->debugcon_path);
  g_assert_null(log != NULL ? strstr(log, VMS_GUEST_PREFIX "boot") : NULL);
  g_autofree char *k = vms_vm_guest_command(vm, "K", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(k, ==, "ok K");
  g_autofree char *c = vms_vm_guest_command(vm, "C 100 8 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c, ==, "ok C 100 8 90");
}

static char *
digest(const char *snap)
{
  g_autoptr(GError) error = NULL;
  char *d = vms_test_dir_digest(snap, &error);
  g_assert_no_error(error);
  return d;
}

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
  assert_continues(f->vms[0], base_counter, base_boot_id);
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
    assert_continues(f->vms[i], base_counter, base_boot_id);
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
  while (c != base_counter && g_get_monotonic_time() < deadline) {
    g_assert_true(vms_vm_read_counter(vm, &c, &error));
    g_usleep(10 * 1000);
  }
  g_assert_cmpuint(c, ==, base_counter);
  g_usleep(300 * 1000);
  g_assert_true(vms_vm_read_counter(vm, &c, &error));
  g_assert_cmpuint(c, ==, base_counter);
  g_autoptr(JsonNode) st = vms_test_qmp_execute(vm->qmp, "query-status", NULL, &error);
  g_assert_no_error(error);
  g_assert_false(json_object_get_boolean_member(json_node_get_object(st), "running"));

  g_autoptr(JsonNode) cont = vms_test_qmp_execute(vm->qmp, "cont", NULL, &error);
  g_assert_no_error(error);
  assert_continues(vm, base_counter, base_boot_id);
}

/* ---- vmsnap restore ---- */

static int
run_cli(const char *const *args, char **ret_out, char **ret_err)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  int status = -1;

  g_ptr_array_add(argv, (gpointer)vms_test_cli());
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add(argv, (gpointer)args[i]);
  g_ptr_array_add(argv, NULL);
  g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, ret_out,
                             ret_err, &status, &error));
  g_assert_no_error(error);
  return g_spawn_check_wait_status(status, NULL) ? 0 : WEXITSTATUS(status);
}

static void
test_cli_dry_run(Fixture *f, gconstpointer data)
{
  const char *snap = base_snapshot();
  g_autofree char *before = digest(snap);
  g_autofree char *rdir = g_build_filename(f->dir, "run", NULL);
  g_autofree char *out = NULL, *err = NULL;

  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  const char *const args[] = { "restore", snap, "--dry-run", "--runtime-dir", rdir, "--", "-name", "dry", NULL };
  g_assert_cmpint(run_cli(args, &out, &err), ==, 0);
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
  g_assert_cmpint(run_cli(incomplete, &out2, &err2), ==, 1);
  g_assert_true(g_str_has_prefix(err2, "vmsnap: error: "));
  g_assert_nonnull(strstr(err2, "incomplete"));
  const char *const missing[] = { "restore", NULL };
  g_assert_cmpint(run_cli(missing, &out3, &err3), ==, 1);
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
  int status = -1;

  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "first", snap);
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  assert_continues(vm, base_counter, base_boot_id);
  g_autofree char *w = vms_vm_guest_command(vm, "W 200 16 33", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(w, ==, "ok W 200 16 33");
  g_autofree char *z = vms_vm_guest_command(vm, "Z 100 2", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(z, ==, "ok Z 100 2");

  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(ctl, "snapshot-save", &error,
      "{\"dir\": \"%s\", \"memory\": \"diff\", \"then\": \"quit\"}", diff);
  if (ret == NULL && strstr(error->message, "not available in this build") != NULL) {
    g_test_skip(error->message);
    return;
  }
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_cmpint(status, ==, 0);

  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  VmsVm *clone = f->vms[1] = vms_vm_new(rdir);
  const char *const argv[] = { vms_test_cli(), "restore", diff, "--runtime-dir", rdir, NULL };
  g_assert_true(vms_vm_spawn(clone, argv, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_connect(clone, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *flat_mem = g_build_filename(flat, "memory.bin", NULL);
  guint64 counter = file_u64(flat_mem, VMS_GUEST_COUNTER_ADDR);
  g_assert_cmpuint(counter, >, base_counter);
  g_assert_true(vms_vm_wait_counter_above(clone, counter, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autofree char *c1 = vms_vm_guest_command(clone, "C 200 16 33", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c1, ==, "ok C 200 16 33");
  g_autofree char *c2 = vms_vm_guest_command(clone, "C 100 2 0", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c2, ==, "ok C 100 2 0");
  g_autofree char *c3 = vms_vm_guest_command(clone, "C 102 6 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c3, ==, "ok C 102 6 90");

  g_autofree char *out = NULL, *err = NULL;
  const char *const dry[] = { "restore", diff, "--dry-run", "--runtime-dir", rdir, NULL };
  g_assert_cmpint(run_cli(dry, &out, &err), ==, 0);
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

/* QEMU creates a missing memory-backend file before any plugin loads, so
 * the CLI must refuse a snapshot without memory.bin before starting QEMU. */
static char *copy_base(Fixture *f, const char *name);

static void
test_cli_missing_memory(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = copy_base(f, "snap");
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  g_autofree char *rdir = g_build_filename(f->dir, "run", NULL);
  g_autofree char *out = NULL, *err = NULL;

  g_assert_cmpint(unlink(mem), ==, 0);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  g_autofree char *before = digest(snap);
  const char *const args[] = { "restore", snap, "--runtime-dir", rdir, NULL };
  g_assert_cmpint(run_cli(args, &out, &err), ==, 1);
  g_assert_nonnull(strstr(err, "memory.bin"));
  g_assert_false(g_file_test(mem, G_FILE_TEST_EXISTS));
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

/* ---- mismatches ---- */

static void
copy_file(const char *from, const char *to)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GFile) a = g_file_new_for_path(from);
  g_autoptr(GFile) b = g_file_new_for_path(to);
  g_assert_true(g_file_copy(a, b, G_FILE_COPY_NONE, NULL, NULL, NULL, &error));
  g_assert_no_error(error);
}

/* A byte-for-byte copy of the base snapshot in @f->dir/NAME. */
static char *
copy_base(Fixture *f, const char *name)
{
  const char *snap = base_snapshot();
  char *dst = g_build_filename(f->dir, name, NULL);
  static const char *const files[] = { "manifest.bin", "state.bin", "memory.bin" };

  g_assert_cmpint(g_mkdir_with_parents(dst, 0755), ==, 0);
  for (gsize i = 0; i < G_N_ELEMENTS(files); i++) {
    g_autofree char *a = g_build_filename(snap, files[i], NULL);
    g_autofree char *b = g_build_filename(dst, files[i], NULL);
    copy_file(a, b);
  }
  return dst;
}

typedef void (*TamperFunc)(const char *snap);

static void
edit_manifest(const char *snap, void (*edit)(VmsManifest *m))
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename(snap, "manifest.bin", NULL);
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  g_autoptr(VmsManifest) m = vms_manifest_read_fd(fd, NULL, &error);
  g_assert_no_error(error);
  edit(m);
  g_autoptr(GBytes) b = vms_manifest_encode(m);
  g_assert_true(g_file_set_contents(path, g_bytes_get_data(b, NULL), (gssize)g_bytes_get_size(b), &error));
  g_assert_no_error(error);
}

static void set_arch(VmsManifest *m) { vms_manifest_set_string(&m->architecture, "aarch64"); }
static void set_version(VmsManifest *m) { m->version = 2; }
static void set_page_size(VmsManifest *m) { m->page_size = 2u << 20; }
static void tamper_arch(const char *snap) { edit_manifest(snap, set_arch); }
static void tamper_page_size(const char *snap) { edit_manifest(snap, set_page_size); }
static void tamper_version(const char *snap) { edit_manifest(snap, set_version); }

static void
tamper_state_flip(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "state.bin", NULL);
  vms_autofd fd = open(path, O_RDWR | O_CLOEXEC);
  guint8 byte = 0;
  g_assert_cmpint(vms_pread_full(fd, &byte, 1, 1000), ==, 1);
  byte ^= 0x10;
  g_assert_cmpint(vms_pwrite_full(fd, &byte, 1, 1000), ==, 0);
}

static void
tamper_state_truncate(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "state.bin", NULL);
  g_assert_cmpint(truncate(path, 4096), ==, 0);
}

static void
tamper_no_manifest(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "manifest.bin", NULL);
  g_assert_cmpint(unlink(path), ==, 0);
}

/* An interrupted save: staged files, no commit record. */
static void
tamper_incomplete(const char *snap)
{
  g_autofree char *path = g_build_filename(snap, "manifest.bin", NULL);
  g_autofree char *tmp = g_build_filename(snap, "manifest.bin.tmp", NULL);
  g_assert_cmpint(rename(path, tmp), ==, 0);
}

typedef struct {
  const char *name;
  TamperFunc tamper;   /* nullable */
  guint smp;           /* 0: as saved */
  guint mem_mib;       /* 0: as saved */
  gboolean share;
  gboolean no_incoming; /* leave out -incoming defer */
  const char *plugin_extra; /* appended to restore=DIR (nullable) */
  const char *extra_device; /* a -device the saved VM did not have (nullable) */
  const char *want;    /* in QEMU's stderr */
} Mismatch;

static const Mismatch mismatches[] = {
  { "vcpus", NULL, 2, 0, FALSE, FALSE, NULL, NULL, "VP count" },
  { "memory-size", NULL, 0, 32, FALSE, FALSE, NULL, NULL, "memory size" },
  /* A larger backend than the file: QEMU itself refuses before the plugin loads. */
  { "memory-size-larger", NULL, 0, 128, FALSE, FALSE, NULL, NULL, "size" },
  { "architecture", tamper_arch, 0, 0, FALSE, FALSE, NULL, NULL, "architecture" },
  /* As if saved on 2 MiB huge pages: checked against the mapping QEMU made. */
  { "page-size", tamper_page_size, 0, 0, FALSE, FALSE, NULL, NULL, "page size" },
  { "version", tamper_version, 0, 0, FALSE, FALSE, NULL, NULL, "version" },
  { "state-bit-flip", tamper_state_flip, 0, 0, FALSE, FALSE, NULL, NULL, "state" },
  { "state-truncated", tamper_state_truncate, 0, 0, FALSE, FALSE, NULL, NULL, "state" },
  { "no-manifest", tamper_no_manifest, 0, 0, FALSE, FALSE, NULL, NULL, "manifest.bin" },
  { "incomplete", tamper_incomplete, 0, 0, FALSE, FALSE, NULL, NULL, "incomplete" },
  { "share-on", NULL, 0, 0, TRUE, FALSE, NULL, NULL, "share=on" },
  { "no-incoming-defer", NULL, 0, 0, FALSE, TRUE, NULL, NULL, "-incoming defer" },
  { "resume-off-without-S", NULL, 0, 0, FALSE, FALSE, "resume=off", NULL, "-S" },
};

static void
test_mismatch(Fixture *f, gconstpointer data)
{
  const Mismatch *mm = data;
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = copy_base(f, "snap");
  int status = 0;

  if (mm->tamper != NULL)
    mm->tamper(snap);
  g_autofree char *before = digest(snap);
  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "clone", snap);
  if (mm->smp != 0)
    vm->smp = mm->smp;
  if (mm->mem_mib != 0)
    vm->mem_mib = mm->mem_mib;
  vm->share = mm->share;
  vm->incoming_defer = !mm->no_incoming;
  if (mm->extra_device != NULL) {
    g_ptr_array_add(vm->extra_args, g_strdup("-device"));
    g_ptr_array_add(vm->extra_args, g_strdup(mm->extra_device));
  }
  if (mm->plugin_extra != NULL) {
    g_autofree char *old = vm->plugin_extra;
    vm->plugin_extra = g_strdup_printf("%s,%s", old, mm->plugin_extra);
  }

  g_autoptr(GPtrArray) argv = vms_vm_build_argv(vm);
  g_assert_true(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  g_autofree char *err = vms_vm_stderr(vm);
  g_test_message("QEMU exit %d, stderr: %s", status, err);
  g_assert_cmpint(status, !=, 0);
  g_assert_nonnull(strstr(err, mm->want));
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

/* Devices are not in the manifest: a VM that lacks one the snapshot has is
 * refused by QEMU's loader of state.bin, and QEMU exits. */
static void
test_device_mismatch(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  guint64 counter = 0, boot_id = 0;
  g_autofree char *snap = make_snapshot_with(f->dir, "link", "virtio-rng-pci", &counter, &boot_id);
  g_autofree char *before = digest(snap);
  int status = 0;

  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "clone", snap);
  g_autoptr(GPtrArray) argv = vms_vm_build_argv(vm);
  g_assert_true(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error));
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  g_autofree char *err = vms_vm_stderr(vm);
  g_test_message("QEMU exit %d, stderr: %s", status, err);
  g_assert_cmpint(status, !=, 0);
  g_assert_nonnull(strstr(err, "virtio-rng"));
  g_autofree char *after = digest(snap);
  g_assert_cmpstr(after, ==, before);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/restore/link-continues", Fixture, NULL, setup, test_link_continues, teardown);
  g_test_add("/restore/three-clones", Fixture, NULL, setup, test_three_clones, teardown);
  g_test_add("/restore/copy", Fixture, NULL, setup, test_copy_restore, teardown);
  g_test_add("/restore/resume-off", Fixture, NULL, setup, test_resume_off, teardown);
  g_test_add("/restore/mismatch/device", Fixture, NULL, setup, test_device_mismatch, teardown);
  g_test_add("/restore/cli/dry-run", Fixture, NULL, setup, test_cli_dry_run, teardown);
  g_test_add("/restore/cli/clone", Fixture, NULL, setup, test_cli_clone, teardown);
  g_test_add("/restore/cli/diff", Fixture, NULL, setup, test_cli_diff, teardown);
  g_test_add("/restore/cli/missing-memory", Fixture, NULL, setup, test_cli_missing_memory, teardown);
  for (gsize i = 0; i < G_N_ELEMENTS(mismatches); i++) {
    g_autofree char *path = g_strdup_printf("/restore/mismatch/%s", mismatches[i].name);
    g_test_add(path, Fixture, &mismatches[i], setup, test_mismatch, teardown);
  }
  int ret = g_test_run();
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
  return ret;
}
