/* The Linux test guest itself (tests/linux-guest/): it boots Debian's generic
 * kernel from its ext4 root on virtio-blk, answers commands on the serial
 * console with their output and exit status, runs the history writer, and
 * leaves a filesystem that e2fsck passes after halt-clean. The disk tests
 * build on exactly these behaviours. */
#include "harness-linux.h"

#include <string.h>

typedef struct {
  char *dir;
  VmsVm *vm;
} Fixture;

static void
fixture_set_up(Fixture *f, gconstpointer data)
{
  f->dir = vms_test_make_dir("linux-guest");
  f->vm = vms_vm_new(f->dir);
}

static void
fixture_tear_down(Fixture *f, gconstpointer data)
{
  g_clear_pointer(&f->vm, vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

/* e2fsck -fn on a raw image: 0 means clean, nothing to fix. */
static void
assert_fsck_clean(const char *image)
{
  g_autofree char *out = NULL;
  g_autofree char *err = NULL;
  int status = 0;
  const char *argv[] = {"e2fsck", "-fn", image, NULL};
  g_autoptr(GError) error = NULL;

  g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                             &err, &status, &error));
  g_assert_no_error(error);
  if (!g_spawn_check_wait_status(status, NULL))
    g_error("e2fsck -fn %s: %s%s", image, out, err);
}

static void
test_boot_run_write(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const VmsLinuxGuest *guest = vms_linux_guest(&error);
  g_autofree char *root = g_build_filename(f->dir, "root.raw", NULL);
  int status = -1;

  if (guest == NULL) {
    vms_test_cannot_run(error->message);
    return;
  }
  g_assert_true(vms_linux_copy_root(guest, root, &error));
  vms_linux_vm_setup(f->vm, guest);
  f->vm->with_plugin = FALSE;
  vms_linux_add_disk(f->vm, "root", root, "raw");
  g_assert_true(vms_vm_start(f->vm, &error));
  g_assert_true(vms_linux_wait_boot(f->vm, VMS_LINUX_BOOT_TIMEOUT_MS, &error));
  g_assert_no_error(error);

  /* Output and exit status come back as the guest produced them. */
  g_autofree char *rel = vms_linux_run_ok(f->vm, "cat /etc/vmsnap-guest");
  g_assert_true(g_str_has_prefix(rel, "vmsnap-linux-guest "));
  g_autofree char *fail = vms_linux_run(f->vm, "echo to-stderr >&2; exit 3", &status, 30000, &error);
  g_assert_no_error(error);
  g_assert_cmpint(status, ==, 3);
  g_assert_cmpstr(fail, ==, "to-stderr\n");
  g_autofree char *mnt = vms_linux_run_ok(f->vm, "grep ' / ' /proc/mounts");
  g_assert_nonnull(strstr(mnt, "/dev/vda / ext4 rw"));

  /* The writer appends numbered lines with the current tag. */
  g_free(vms_linux_run_ok(f->vm, "start-writer /data/history 0.01"));
  g_free(vms_linux_run_ok(f->vm, "until [ -f /data/history ] && [ $(wc -l < /data/history) -ge 5 ]; do sleep 0.05; done"));
  g_free(vms_linux_run_ok(f->vm, "settag second"));
  g_free(vms_linux_run_ok(f->vm, "while ! grep -q second /data/history; do sleep 0.05; done"));
  g_assert_true(vms_linux_halt(f->vm, 60000, &error));
  g_assert_no_error(error);
  assert_fsck_clean(root);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/linux-guest/boot-run-write", Fixture, NULL, fixture_set_up, test_boot_run_write,
             fixture_tear_down);
  return g_test_run();
}
