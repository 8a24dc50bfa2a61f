/* Diff snapshots (SPEC.md sections 2 and 4, memory=diff): a VM restored
 * with a private mapping saves only the pages written since the restore,
 * found from /proc/self/pagemap; the page map is exactly those pages plus
 * the guest's own state and stack pages; flattening and restoring gives
 * the guest back with its counter and every page it wrote or zeroed; a
 * chain base -> d1 -> d2 -> d3 flattens to exactly the memory a copy
 * snapshot of the same instant holds; a changed parent is refused; a VM
 * without a private restored mapping is refused and keeps running. */
#include "harness.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "chain.h"
#include "extents.h"
#include "manifest.h"
#include "snapdir.h"
#include "util.h"

#define MEM_MIB 64u
#define PAGE VMS_GUEST_PAGE_SIZE
/* Pages the guest writes besides those a test asks for: its state page
 * (counter, command line buffer) and its stack page (tests/guest/guest-abi.h).
 * The test guest has no DMA device and polls COM1, so nothing else writes
 * its RAM after a restore; the slack allows two more pages (measured: none). */
#define GUEST_OWN_PAGES 2u
#define SLACK_PAGES 2u

typedef struct {
  char *dir;
  VmsVm *vms[4];
} Fixture;

/* One base snapshot (link, then=quit) shared by every test: read only. */
static char *base_root;
static char *base_snap;
static guint64 base_counter;

static void
setup(Fixture *f, gconstpointer data)
{
  f->dir = vms_test_make_dir("diff");
}

static void
teardown(Fixture *f, gconstpointer data)
{
  for (gsize i = 0; i < G_N_ELEMENTS(f->vms); i++)
    g_clear_pointer(&f->vms[i], vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

static guint64
file_u64(const char *path, guint64 addr)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  guint64 v = 0;

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(vms_pread_full(fd, &v, sizeof(v), addr), ==, sizeof(v));
  return GUINT64_FROM_LE(v);
}

static void
guest_cmd(VmsVm *vm, const char *cmd)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *reply = vms_vm_guest_command(vm, cmd, VMS_TEST_TIMEOUT_MS, &error);
  g_autofree char *want = g_strdup_printf("ok %s", cmd);

  g_assert_no_error(error);
  g_assert_cmpstr(reply, ==, want);
}

static JsonObject *
try_save(VmsVm *vm, const char *dir, const char *memory, const char *then, GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &local);
  g_assert_no_error(local);
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(
      ctl, "snapshot-save", error, "{\"dir\": \"%s\", \"memory\": \"%s\", \"then\": \"%s\"}",
      dir, memory, then);
  return ret != NULL ? json_object_ref(json_node_get_object(ret)) : NULL;
}

static JsonObject *
save(VmsVm *vm, const char *dir, const char *memory, const char *then)
{
  g_autoptr(GError) error = NULL;
  JsonObject *ret = try_save(vm, dir, memory, then, &error);

  g_assert_no_error(error);
  if (g_str_equal(then, "quit")) {
    int status = -1;
    g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
    g_assert_no_error(error);
    g_assert_cmpint(status, ==, 0);
  }
  return ret;
}

static int
run_cli(const char *const *args, char **ret_err)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  g_autofree char *out = NULL;
  int status = -1;

  g_ptr_array_add(argv, (gpointer)vms_test_cli());
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add(argv, (gpointer)args[i]);
  g_ptr_array_add(argv, NULL);
  g_assert_true(g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &out,
                             ret_err, &status, &error));
  g_assert_no_error(error);
  return g_spawn_check_wait_status(status, NULL) ? 0 : WEXITSTATUS(status);
}

static void
flatten(const char *dir, const char *out)
{
  g_autofree char *err = NULL;
  const char *const args[] = { "flatten", dir, out, NULL };

  g_assert_cmpint(run_cli(args, &err), ==, 0);
}

static const char *
base_snapshot(void)
{
  g_autoptr(GError) error = NULL;

  if (base_snap != NULL)
    return base_snap;
  base_root = vms_test_make_dir("diff-base");
  base_snap = g_build_filename(base_root, "base", NULL);
  g_autoptr(VmsVm) vm = vms_vm_new(base_root);
  vm->mem_mib = MEM_MIB;
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guest_cmd(vm, "W 100 8 90");
  g_autoptr(JsonObject) ret = save(vm, base_snap, "link", "quit");
  g_autofree char *mem = g_build_filename(base_snap, "memory.bin", NULL);
  base_counter = file_u64(mem, VMS_GUEST_COUNTER_ADDR);
  return base_snap;
}

/* A VM in @f->dir/@name restoring @snap from the memory file @mem (the
 * snapshot's memory.bin, or a diff's flattening), started and ready. */
static VmsVm *
restore(Fixture *f, guint slot, const char *name, const char *snap, const char *mem)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);
  VmsVm *vm;

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  vm = f->vms[slot] = vms_vm_new(dir);
  vm->mem_mib = MEM_MIB;
  g_free(vm->mem_path);
  vm->mem_path = g_strdup(mem);
  vm->share = FALSE;
  vm->incoming_defer = TRUE;
  vm->plugin_extra = g_strdup_printf("restore=%s", snap);
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  /* Commands sent before the restored guest runs could meet a UART whose
   * state is still being loaded: wait until it counts. */
  g_assert_true(vms_vm_wait_counter_above(vm, 0, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guint64 c = 0;
  g_assert_true(vms_vm_read_counter(vm, &c, &error));
  g_assert_true(vms_vm_wait_counter_above(vm, c + 100000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  return vm;
}

static VmsVm *
restore_full(Fixture *f, guint slot, const char *name, const char *snap)
{
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  return restore(f, slot, name, snap, mem);
}

/* Flattens the diff @snap into @snap.flat and restores the diff itself from it. */
static VmsVm *
restore_diff(Fixture *f, guint slot, const char *name, const char *snap)
{
  g_autofree char *flat = g_strconcat(snap, ".flat", NULL);
  g_autofree char *mem = g_build_filename(flat, "memory.bin", NULL);

  flatten(snap, flat);
  return restore(f, slot, name, snap, mem);
}

static GArray *
read_map(const char *snap, guint8 ret_sha[32])
{
  g_autoptr(GError) error = NULL;
  g_autofree char *path = g_build_filename(snap, VMS_MAP_FILE, NULL);
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  GArray *list = NULL;

  g_assert_cmpint(fd, >=, 0);
  g_assert_true(vms_pagemap_file_read(fd, (guint64)MEM_MIB << 20, &list, NULL, ret_sha, &error));
  g_assert_no_error(error);
  return list;
}

static gboolean
map_has_page(const GArray *list, guint64 addr)
{
  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    if (addr >= e->offset && addr < e->offset + e->length)
      return TRUE;
  }
  return FALSE;
}

static guint64
scratch(guint page)
{
  return VMS_GUEST_SCRATCH_ADDR + (guint64)page * PAGE;
}

static guint64
guest_counter(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  guint64 c = 0;

  g_assert_true(vms_vm_read_counter(vm, &c, &error));
  g_assert_no_error(error);
  return c;
}

static char *
sha_hex_of(const char *path)
{
  g_autoptr(GError) error = NULL;
  char *hex = vms_test_file_sha256(path, &error);
  g_assert_no_error(error);
  return hex;
}

static void
assert_sha(const ProtobufCBinaryData *field, const char *path)
{
  g_autofree char *want = sha_hex_of(path);
  char hex[65];

  g_assert_cmpuint(field->len, ==, 32);
  vms_sha256_hex(field->data, hex);
  g_assert_cmpstr(hex, ==, want);
}

/* The manifest of a fresh diff: its fields agree with its files and name
 * @parent as it is now. */
static VmsSnapshot *
assert_diff_manifest(const char *snap, const char *parent, JsonObject *reply)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(snap, &error);
  guint8 map_sha[32];

  g_assert_no_error(error);
  const VmsManifest *m = s->manifest;
  g_assert_cmpint(m->kind, ==, VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF);
  g_assert_cmpint(m->memory_capture, ==, VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF);
  g_assert_cmpstr(vms_snapshot_memory_file(s), ==, VMS_DIFF_FILE);
  g_assert_false(g_path_is_absolute(m->parent));
  g_autofree char *resolved = vms_snapshot_parent_path(s);
  g_autofree char *want_parent = g_canonicalize_filename(parent, NULL);
  g_assert_cmpstr(resolved, ==, want_parent);
  g_autofree char *parent_manifest = g_build_filename(parent, VMS_MANIFEST_FILE, NULL);
  assert_sha(&m->parent_manifest_sha256, parent_manifest);
  g_autofree char *map_path = g_build_filename(snap, VMS_MAP_FILE, NULL);
  assert_sha(&m->page_map_sha256, map_path);
  g_autoptr(GArray) list = read_map(snap, map_sha);
  g_assert_cmpuint(m->diff_data_bytes, ==, vms_extents_total(list));
  g_assert_cmpuint(m->diff_extents, ==, list->len);
  g_assert_cmpuint(m->diff_data_sha256.len, ==, 32);
  g_assert_cmpstr(json_object_get_string_member(reply, "kind"), ==, "DIFF");
  g_assert_cmpstr(json_object_get_string_member(reply, "memory-capture"), ==, "DIFF");
  g_assert_cmpint(json_object_get_int_member(reply, "memory-bytes-written"), ==,
                  (gint64)m->diff_data_bytes);
  g_assert_true(vms_snapshot_verify(s, &error));
  g_assert_no_error(error);
  return g_steal_pointer(&s);
}

static void
assert_cli_ok(const char *cmd, const char *dir)
{
  g_autofree char *err = NULL;
  const char *const args[] = { cmd, dir, NULL };
  int status = run_cli(args, &err);

  if (status != 0)
    g_test_message("vmsnap %s %s: %s", cmd, dir, err);
  g_assert_cmpint(status, ==, 0);
}

/* A page of @path at guest address @addr holds @byte throughout. */
static void
assert_page_filled(const char *path, guint64 addr, guint8 byte)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  guint8 buf[PAGE];

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(vms_pread_full(fd, buf, PAGE, addr), ==, PAGE);
  for (guint i = 0; i < PAGE; i++)
    g_assert_cmpuint(buf[i], ==, byte);
}

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
  g_autofree char *log = vms_test_read_file(clone->debugcon_path);
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

/* base -> d1 -> d2 -> d3, each restored from the previous one's flattening:
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
  vm = restore_diff(f, 1, "vm1", d1);
  guest_cmd(vm, "C 0 10 1");
  guest_cmd(vm, "W 10 10 2");
  g_autoptr(JsonObject) r2 = save(vm, d2, "diff", "quit");
  vm = restore_diff(f, 2, "vm2", d2);
  guest_cmd(vm, "C 10 10 2");
  guest_cmd(vm, "W 20 10 3");
  guest_cmd(vm, "Z 0 5");
  g_autoptr(JsonObject) r3 = save(vm, d3, "diff", "pause");
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

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/diff/pages", Fixture, NULL, setup, test_pages, teardown);
  g_test_add("/diff/idle", Fixture, NULL, setup, test_idle, teardown);
  g_test_add("/diff/resume-twice", Fixture, NULL, setup, test_resume_twice, teardown);
  g_test_add("/diff/chain", Fixture, NULL, setup, test_chain, teardown);
  g_test_add("/diff/changed-parent", Fixture, NULL, setup, test_changed_parent, teardown);
  g_test_add("/diff/refused/share-on", Fixture, GINT_TO_POINTER(TRUE), setup, test_refused, teardown);
  g_test_add("/diff/refused/not-restored", Fixture, GINT_TO_POINTER(FALSE), setup, test_refused,
             teardown);
  int ret = g_test_run();
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
  return ret;
}
