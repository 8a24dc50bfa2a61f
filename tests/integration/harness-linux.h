/* vmsnap integration tests: the Linux test guest (tests/linux-guest/):
 * Debian's generic kernel, an initramfs with the virtio/ext4 modules and an
 * ext4 root on virtio-blk whose init is a command agent on the serial console.
 *
 * Environment (set by tests/integration/meson.build):
 *   VMSNAP_LINUX_GUEST_BUILDER  tests/linux-guest/build-guest.sh
 *   VMSNAP_LINUX_GUEST_CACHE    where built guests are cached (<cache>/<arch>)
 *   VMSNAP_LINUX_GUEST_ARCH     Debian architecture (default amd64)
 *
 * Guest side: `start-writer [FILE] [PERIOD]` appends "N TAG" lines to FILE
 * (default /data/history); `settag TAG` changes TAG; `halt-clean` syncs,
 * remounts / read-only and powers off (QEMU exits: the VM runs -no-reboot).
 * All functions run on the test's main thread.
 */
#pragma once

#include "harness.h"

G_BEGIN_DECLS

typedef struct {
  char *dir;      /* <cache>/<arch> */
  char *kernel;   /* vmlinuz */
  char *initrd;   /* initrd.img */
  char *root;     /* root.ext4: copy it, never boot it in place */
  char *cmdline;  /* the kernel command line */
} VmsLinuxGuest;

/* The guest, built on first use by this process (build-guest.sh; cached
 * across processes). NULL with @error if it cannot be built here (no
 * builder, no Debian archive): the caller reports vms_test_cannot_run().
 * The result is owned by the harness and lives until exit. */
const VmsLinuxGuest *vms_linux_guest(GError **error);

/* Makes @vm boot @guest: -kernel/-initrd/-append, 256 MiB, -no-reboot,
 * -device virtio-rng-pci (the entropy that makes the guest's CRNG ready).
 * Adds no disk (see vms_linux_add_disk). */
void vms_linux_vm_setup(VmsVm *vm, const VmsLinuxGuest *guest);

/* Adds a virtio-blk disk to @vm: "-drive file=@path,format=@format,if=none,
 * id=@id" plus "-device virtio-blk-pci,drive=@id,id=@id-dev". The first disk
 * added is the guest's /dev/vda (its root). */
void vms_linux_add_disk(VmsVm *vm, const char *id, const char *path, const char *format);

/* Copies @guest's root.ext4 to @path (a fresh raw image the VM may write). */
gboolean vms_linux_copy_root(const VmsLinuxGuest *guest, const char *path, GError **error);

/* After vms_vm_start() of a booting guest: connects the serial console and
 * waits for "vmsnap-guest: ready". */
gboolean vms_linux_wait_boot(VmsVm *vm, guint timeout_ms, GError **error);

/* Runs @command in the guest with sh -c and returns its output (stdout and
 * stderr; caller frees); *@ret_status receives its exit status. A restored
 * VM's console is connected on first use, once QMP says it runs. */
char *vms_linux_run(VmsVm *vm, const char *command, int *ret_status, guint timeout_ms,
                    GError **error);
/* vms_linux_run() that fails the test unless the command exits 0. */
char *vms_linux_run_ok(VmsVm *vm, const char *command);

/* `halt-clean` in the guest, then waits until QEMU exits. */
gboolean vms_linux_halt(VmsVm *vm, guint timeout_ms, GError **error);

#define VMS_LINUX_BOOT_TIMEOUT_MS 180000u

G_END_DECLS
