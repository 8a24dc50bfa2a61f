/* vmsnap qemuctl: creating an empty qcow2 overlay without qemu-img.
 *
 * A clone's or a save's new overlay is an empty qcow2 v3 image whose
 * backing file is the frozen image: four 64 KiB clusters (header with the
 * backing format extension and the backing path; refcount table; refcount
 * block; L1 table), the same layout qemu-img writes for
 * `create -f qcow2 -u -b BACKING -F FORMAT FILE SIZE`. Writing it here takes
 * well under a millisecond; spawning qemu-img took 80-160 ms on a loaded
 * machine, per disk, on every restore. Any thread.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Creates @path (O_EXCL: an existing file is refused, naming it) as an empty
 * qcow2 image of @size virtual bytes (1 byte .. 4 TiB) over @backing
 * (absolute path, under 1024 bytes) of format @backing_format ("raw",
 * "qcow2", ...). Mode 0644. On failure nothing is left at @path. */
gboolean vms_qcow2_create_overlay(const char *path, const char *backing,
                                  const char *backing_format, guint64 size, GError **error);

G_END_DECLS
