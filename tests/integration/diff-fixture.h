/* vmsnap integration tests: what test-diff.c and test-diff-chain.c share —
 * a 64 MiB base snapshot made once per program, restores (by the harness
 * or `vmsnap restore`), saves, page maps and manifest checks. Test code:
 * failures abort via g_assert. Functions are static (one copy per test
 * program) and marked unused where a program may not need them. */
#pragma once

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

static G_GNUC_UNUSED void
setup(Fixture *f, gconstpointer data)
{
  f->dir = vms_test_make_dir("diff");
}

static G_GNUC_UNUSED void
teardown(Fixture *f, gconstpointer data)
{
  for (gsize i = 0; i < G_N_ELEMENTS(f->vms); i++)
    g_clear_pointer(&f->vms[i], vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

static G_GNUC_UNUSED guint64
file_u64(const char *path, guint64 addr)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  guint64 v = 0;

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(vms_pread_full(fd, &v, sizeof(v), addr), ==, sizeof(v));
  return GUINT64_FROM_LE(v);
}

static G_GNUC_UNUSED void
guest_cmd(VmsVm *vm, const char *cmd)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *reply = vms_vm_guest_command(vm, cmd, VMS_TEST_TIMEOUT_MS, &error);
  g_autofree char *want = g_strdup_printf("ok %s", cmd);

  g_assert_no_error(error);
  g_assert_cmpstr(reply, ==, want);
}

static G_GNUC_UNUSED JsonObject *
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

static G_GNUC_UNUSED JsonObject *
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

static G_GNUC_UNUSED int
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

static G_GNUC_UNUSED void
flatten(const char *dir, const char *out)
{
  g_autofree char *err = NULL;
  const char *const args[] = { "flatten", dir, out, NULL };

  g_assert_cmpint(run_cli(args, &err), ==, 0);
}

static G_GNUC_UNUSED const char *
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

static void wait_running(VmsVm *vm);

/* A VM in @f->dir/@name restoring @snap from the memory file @mem (the
 * snapshot's memory.bin, or a diff's flattening), started and ready. */
static G_GNUC_UNUSED VmsVm *
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
  wait_running(vm);
  return vm;
}

/* The guest of a just-started restored VM runs: commands sent before could
 * meet a UART whose state is still being loaded. */
static G_GNUC_UNUSED void
wait_running(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  guint64 c = 0;

  g_assert_true(vms_vm_wait_counter_above(vm, 0, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_read_counter(vm, &c, &error));
  g_assert_true(vms_vm_wait_counter_above(vm, c + 100000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
}

/* `vmsnap restore @snap` (a diff is flattened into @snap.flat and restored
 * as itself), QEMU's sockets in @f->dir/@name. */
static G_GNUC_UNUSED VmsVm *
restore_cli(Fixture *f, guint slot, const char *name, const char *snap)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);
  VmsVm *vm;

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  vm = f->vms[slot] = vms_vm_new(dir);
  const char *const argv[] = { vms_test_cli(), "restore", snap, "--runtime-dir", dir, NULL };
  g_assert_true(vms_vm_spawn(vm, argv, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_connect(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  wait_running(vm);
  return vm;
}

static G_GNUC_UNUSED VmsVm *
restore_full(Fixture *f, guint slot, const char *name, const char *snap)
{
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  return restore(f, slot, name, snap, mem);
}

/* Flattens the diff @snap into @snap.flat and restores the diff itself from it. */
static G_GNUC_UNUSED VmsVm *
restore_diff(Fixture *f, guint slot, const char *name, const char *snap)
{
  g_autofree char *flat = g_strconcat(snap, ".flat", NULL);
  g_autofree char *mem = g_build_filename(flat, "memory.bin", NULL);

  flatten(snap, flat);
  return restore(f, slot, name, snap, mem);
}

static G_GNUC_UNUSED GArray *
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

static G_GNUC_UNUSED gboolean
map_has_page(const GArray *list, guint64 addr)
{
  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    if (addr >= e->offset && addr < e->offset + e->length)
      return TRUE;
  }
  return FALSE;
}

static G_GNUC_UNUSED guint64
scratch(guint page)
{
  return VMS_GUEST_SCRATCH_ADDR + (guint64)page * PAGE;
}

static G_GNUC_UNUSED guint64
guest_counter(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  guint64 c = 0;

  g_assert_true(vms_vm_read_counter(vm, &c, &error));
  g_assert_no_error(error);
  return c;
}

static G_GNUC_UNUSED char *
sha_hex_of(const char *path)
{
  g_autoptr(GError) error = NULL;
  char *hex = vms_test_file_sha256(path, &error);
  g_assert_no_error(error);
  return hex;
}

static G_GNUC_UNUSED void
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
static G_GNUC_UNUSED VmsSnapshot *
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

static G_GNUC_UNUSED void
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
static G_GNUC_UNUSED void
assert_page_filled(const char *path, guint64 addr, guint8 byte)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  guint8 buf[PAGE];

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(vms_pread_full(fd, buf, PAGE, addr), ==, PAGE);
  for (guint i = 0; i < PAGE; i++)
    g_assert_cmpuint(buf[i], ==, byte);
}

