/* vmsnap qemuctl: the QMP steps of a disk freeze (doc/spec.md section 8).
 *
 * query-block tells which block devices the VM has; one QMP `transaction`
 * of blockdev-snapshot-sync actions switches every writable one onto a new
 * qcow2 overlay at once, so the old top images are frozen (QEMU reopens
 * them read-only) and either all devices switch or none does.
 * Worker threads only (every call blocks on QMP).
 */
#pragma once

#include <glib.h>

#include "qmp.h"

G_BEGIN_DECLS

typedef struct {
  char *file;    /* the image's filename as QEMU knows it */
  char *format;  /* its driver: raw, qcow2, ... */
} VmsBlockLayer;

typedef struct {
  char *device;         /* -drive id; for a -blockdev device its node name */
  char *qdev;           /* QOM path of the device */
  char *node_name;      /* the top (format) node */
  gboolean read_only;
  guint64 virtual_size;
  VmsBlockLayer top;
  GArray *backing;      /* VmsBlockLayer below the top, top-down */
} VmsBlockDevice;

void vms_block_device_free(VmsBlockDevice *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsBlockDevice, vms_block_device_free)

/* The block devices with a medium inserted (query-block order; empty drives
 * such as a CD-ROM without a disc are left out). A GPtrArray of
 * VmsBlockDevice (caller unrefs). Fails on a QMP error or a reply without
 * the members a medium must have (node-name, image filename and format). */
GPtrArray *vms_disks_query(VmsQmpClient *qmp, GError **error);

/* Switches every device in @devices whose @overlays entry is not NULL onto
 * a new qcow2 overlay at that absolute path, in one `transaction` of
 * blockdev-snapshot-sync (node name of the overlay: "<node>-vmsnap-<n>").
 * @overlays has @devices->len entries. All or nothing: on failure no device
 * switched (QEMU's transaction semantics) and the error names the
 * transaction; overlay files QEMU may have created are NOT removed here.
 * The VM should be stopped. */
gboolean vms_disks_switch_overlays(VmsQmpClient *qmp, GPtrArray *devices,
                                   const char *const *overlays, GError **error);

/* The VM's vmgenid GUID (query-vm-generation-id), or NULL when it has no
 * vmgenid device (QEMU answers with an error then). Caller frees. */
char *vms_disks_query_vmgenid(VmsQmpClient *qmp);

G_END_DECLS
