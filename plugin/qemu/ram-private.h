/* vmsnap plugin: the private (share=off) restore's guard of the snapshot's
 * memory file (doc/restore.md, "The snapshot's memory is never written").
 *
 * With share=off QEMU maps the snapshot's memory.bin MAP_PRIVATE, so guest
 * writes stay in this process, but QEMU 7.2 opened the file read-write and
 * keeps that descriptor in its RAM block: a discard of guest RAM (a
 * virtio-balloon inflate, free page reporting, discard-data) then punches
 * holes into the file itself (fallocate), i.e. into the snapshot every
 * clone maps. At install the plugin swaps every writable descriptor of the
 * file for a read-only one of the same file: the mapping is untouched, and
 * such a discard fails in QEMU (it logs "Failed to fallocate") instead of
 * changing the snapshot.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Reopens read-only, in place (same descriptor numbers and close-on-exec
 * flags), every descriptor of this process open for writing on the guest
 * RAM backend's mem-path of QEMU's command line (a share=off backend only;
 * nothing to do for share=on or a command line without one). Sets
 * *@ret_reopened to how many. QEMU's main thread, at install only. */
gboolean vms_ram_private_guard(guint *ret_reopened, GError **error);

G_END_DECLS
