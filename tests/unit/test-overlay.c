/* Unit tests for the RAM overlay's decisions (plugin/qemuctl/overlay.c) and
 * its command line (relaunch.c with overlay_placeholder and paused). */
#include <glib.h>
#include <string.h>

#include "error.h"
#include "overlay.h"
#include "relaunch.h"

static void
assert_refused(const char *const *argv, const char *word)
{
  g_autoptr(GError) error = NULL;

  g_assert_false(vms_overlay_check_argv(argv, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED);
  g_assert_nonnull(strstr(error->message, word));
}

static void
test_check_argv(void)
{
  g_autoptr(GError) error = NULL;
  const char *const ok[] = { "qemu", "-object", "memory-backend-file,id=r,size=1G,mem-path=/x,share=on",
                             "-device", "virtio-net-pci,netdev=n", "-netdev", "user,id=n",
                             "-device", "virtio-balloon", "-name", "vhost-user-and-vfio-in-a-name",
                             "-chardev", "socket,id=c,path=/run/vhost-user.sock", NULL };
  g_assert_true(vms_overlay_check_argv(ok, &error));
  g_assert_no_error(error);

  const char *const vu[] = { "qemu", "-device", "vhost-user-blk-pci,chardev=c", NULL };
  assert_refused(vu, "vhost-user-blk-pci");
  const char *const vu_json[] = { "qemu", "-device", "{\"driver\": \"vhost-user-fs-pci\"}", NULL };
  assert_refused(vu_json, "vhost-user-fs-pci");
  const char *const netdev[] = { "qemu", "-netdev", "vhost-user,id=n,chardev=c", NULL };
  assert_refused(netdev, "vhost-user");
  const char *const nic[] = { "qemu", "-nic", "vhost-user,chardev=c", NULL };
  assert_refused(nic, "-nic");
  const char *const vfio[] = { "qemu", "-device", "driver=vfio-pci,host=01:00.0", NULL };
  assert_refused(vfio, "vfio-pci");
  const char *const vmem[] = { "qemu", "-device", "virtio-mem-pci,memdev=m", NULL };
  assert_refused(vmem, "virtio-mem");
  const char *const remote[] = { "qemu", "-object", "x-remote-object,id=r", NULL };
  assert_refused(remote, "x-remote-object");
  const char *const prealloc[] = { "qemu", "-object", "memory-backend-file,id=m,prealloc=on", NULL };
  assert_refused(prealloc, "preallocation");
  const char *const pmem[] = { "qemu", "--object", "memory-backend-file,id=m,pmem=on", NULL };
  assert_refused(pmem, "persistent memory");
  const char *const legacy[] = { "qemu", "-mem-prealloc", NULL };
  assert_refused(legacy, "-mem-prealloc");
}

static void
test_relaunch(void)
{
  g_autoptr(GError) error = NULL;
  const char *const argv[] = {
    "qemu-system-x86_64", "-object", "memory-backend-file,id=ram0,size=64M,mem-path=/vm/ram,share=on",
    "-machine", "memory-backend=ram0",
    "-plugin", "/lib/libvmsnap.so,qmp=/vm/q.sock,restore=/old,overlay=/old/memory.bin,resume=off",
    "-chardev", "socket,id=q,path=/vm/q.sock,server=on,wait=off", NULL };
  VmsRelaunchOptions opts = { .snapshot_dir = "/snaps/s1", .runtime_dir = "/run/c" };

  g_auto(GStrv) priv = vms_relaunch_argv(argv, &opts, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(priv[2], ==, "memory-backend-file,id=ram0,size=64M,mem-path=/snaps/s1/memory.bin,share=off");
  /* What a restored VM recorded is not carried over. */
  g_assert_cmpstr(priv[6], ==, "/lib/libvmsnap.so,qmp=/run/c/q.sock,restore=/snaps/s1");

  opts.overlay_placeholder = "/run/c/" VMS_OVERLAY_PLACEHOLDER;
  opts.paused = TRUE;
  g_auto(GStrv) ov = vms_relaunch_argv(argv, &opts, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(ov[2], ==, "memory-backend-file,id=ram0,size=64M,"
                             "mem-path=/run/c/guest-ram.placeholder,share=on");
  g_assert_cmpstr(ov[6], ==, "/lib/libvmsnap.so,qmp=/run/c/q.sock,restore=/snaps/s1,"
                             "overlay=/snaps/s1/memory.bin,resume=off");
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/overlay/check-argv", test_check_argv);
  g_test_add_func("/overlay/relaunch", test_relaunch);
  return g_test_run();
}
