/* vmsnap integration tests: what the restore test programs share — a
 * per-test directory with up to four VMs reaped at teardown, a base link
 * snapshot per program, and helpers to save, restore and compare (see
 * restore-fixture.h). */
#include "restore-fixture.h"

#include <fcntl.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

#include "util.h"

/* One link snapshot (then=quit) per test program, shared by the tests that
 * only read it. */
static char *base_root;
static char *base_snap;
static guint64 base_counter_value;
static guint64 base_boot_id_value;

void
setup(Fixture *f, gconstpointer data)
{
  f->dir = vms_test_make_dir("restore");
}

void
teardown(Fixture *f, gconstpointer data)
{
  for (gsize i = 0; i < G_N_ELEMENTS(f->vms); i++)
    g_clear_pointer(&f->vms[i], vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

/* The 8 bytes at @addr of a memory file (guest-physical == file offset below 3 GiB). */
guint64
file_u64(const char *path, guint64 addr)
{
  vms_autofd fd = open(path, O_RDONLY | O_CLOEXEC);
  guint64 v = 0;

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(vms_pread_full(fd, &v, sizeof(v), addr), ==, sizeof(v));
  return GUINT64_FROM_LE(v);
}

JsonObject *
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
char *
make_snapshot_with(const char *root, const char *memory, guint smp, const char *extra_device,
                   guint64 *ret_counter, guint64 *ret_boot_id)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *src_dir = g_build_filename(root, "src", NULL);
  char *snap = g_build_filename(root, "snap", NULL);
  g_autoptr(VmsVm) vm = NULL;
  int status = -1;

  g_assert_cmpint(g_mkdir_with_parents(src_dir, 0700), ==, 0);
  vm = vms_vm_new(src_dir);
  vm->smp = smp;
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

char *
make_snapshot(const char *root, const char *memory, guint64 *ret_counter, guint64 *ret_boot_id)
{
  return make_snapshot_with(root, memory, 1, NULL, ret_counter, ret_boot_id);
}

const char *
base_snapshot(void)
{
  if (base_snap == NULL) {
    base_root = vms_test_make_dir("restore-base");
    base_snap = make_snapshot(base_root, "link", &base_counter_value, &base_boot_id_value);
  }
  return base_snap;
}

/* A VM configured to restore @snap, its files in a new dir under @root. */
VmsVm *
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
void
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
  g_autofree char *log = vms_test_read_text(vm->debugcon_path);
  g_assert_null(log != NULL ? strstr(log, VMS_GUEST_PREFIX "boot") : NULL);
  g_autofree char *k = vms_vm_guest_command(vm, "K", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(k, ==, "ok K");
  g_autofree char *c = vms_vm_guest_command(vm, "C 100 8 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(c, ==, "ok C 100 8 90");
}

char *
digest(const char *snap)
{
  g_autoptr(GError) error = NULL;
  char *d = vms_test_dir_digest(snap, &error);
  g_assert_no_error(error);
  return d;
}

/* ---- vmsnap restore ---- */


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
char *
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

guint64
base_counter(void)
{
  (void)base_snapshot();
  return base_counter_value;
}

guint64
base_boot_id(void)
{
  (void)base_snapshot();
  return base_boot_id_value;
}

void
base_snapshot_cleanup(void)
{
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
}

