/* vmsnap plugin: the disks of a save (doc/spec.md sections 8 and 9).
 *
 * prepare (VM running, outside the downtime): query-block; each writable
 * disk's top image is hard-linked into the snapshot directory as
 * disk-<ID>.<format> (another filesystem: referenced by absolute path) and,
 * when the VM will run on, its new overlay is created beside the image
 * (<image stem>-<snapshot name>.qcow2; an existing file there is refused)
 * and added to QEMU as a node (blockdev-add, backing=null).
 * freeze (VM stopped): one QMP transaction of blockdev-snapshot switches
 * every writable disk onto its overlay (none for then=quit: QEMU never runs
 * again), and the frozen images become mode 0400. record (commit): the manifest's disk records,
 * with identities taken after the migration flushed the images, and the
 * vmgenid GUID.
 * Worker thread of the save.
 */
#pragma once

#include <glib.h>

#include "manifest.h"
#include "qmp.h"
#include "snapdir.h"

G_BEGIN_DECLS

typedef struct _VmsSaveDisks VmsSaveDisks;

/* Plans the disks of a save into @writer's directory; @switch_overlays says
 * whether the VM runs on after the save. Fails naming the disk; what it
 * made (links, overlay files and nodes) goes with vms_save_disks_free of
 * the partial object, which this does itself. Never NULL on success, also
 * for no disks. */
VmsSaveDisks *vms_save_disks_new(VmsQmpClient *qmp, VmsSnapWriter *writer,
                                 gboolean switch_overlays, GError **error);

/* The freeze, inside the stop window. On failure no disk switched and the
 * error names the disk transaction; vms_save_disks_free then removes the
 * overlay nodes and files this save made. */
gboolean vms_save_disks_freeze(VmsSaveDisks *sd, GError **error);

/* Adds the disk records and vm_generation_id to @m. */
gboolean vms_save_disks_record(VmsSaveDisks *sd, VmsManifest *m, GError **error);

/* Number of disks frozen (writable ones). */
guint vms_save_disks_count(VmsSaveDisks *sd);

/* After a committed save: keeps the links. */
void vms_save_disks_keep(VmsSaveDisks *sd);

/* Frees @sd. Unless kept, removes the links it made in the snapshot
 * directory. If the VM was not switched, the overlay nodes are deleted
 * (QMP) and the overlay files removed; a VM already switched stays on its
 * overlays (they hold its writes since the freeze). NULL is allowed. */
void vms_save_disks_free(VmsSaveDisks *sd);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsSaveDisks, vms_save_disks_free)

G_END_DECLS
