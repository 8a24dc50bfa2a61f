/* vmsnap qemuctl: the QMP steps of a disk freeze (doc/spec.md section 8).
 *
 * query-block tells which block devices the VM has. Each new overlay is
 * created (qcow2.h) and added (blockdev-add) while the VM still runs; in
 * the stop window one QMP `transaction` of blockdev-snapshot actions
 * switches every writable disk onto its overlay at once, so the old top
 * images are frozen (QEMU reopens them read-only) and either all devices
 * switch or none does.
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

/* Creates the empty qcow2 file @path over @backing (@backing_format), @size
 * bytes virtual (qcow2.h; an existing file is refused). Outside the stop
 * window, with blockdev-add: the stop window only switches. */
gboolean vms_disks_create_overlay(const char *path, const char *backing,
                                  const char *backing_format, guint64 size, GError **error);

/* blockdev-add of the overlay file @path as qcow2 node @node with
 * backing=null (blockdev-snapshot attaches the frozen image below it). */
gboolean vms_disks_add_overlay(VmsQmpClient *qmp, const char *node, const char *path,
                               GError **error);
/* blockdev-del of an added overlay that was not switched in (errors logged). */
void vms_disks_del_overlay(VmsQmpClient *qmp, const char *node);

/* Switches every device in @devices whose @overlay_nodes entry is not NULL
 * onto that added overlay node, in one `transaction` of blockdev-snapshot
 * actions (@overlay_nodes has @devices->len entries). All or nothing: on
 * failure no device switched (QEMU's transaction semantics) and the error
 * names the transaction. The VM should be stopped. */
gboolean vms_disks_switch_overlays(VmsQmpClient *qmp, GPtrArray *devices,
                                   const char *const *overlay_nodes, GError **error);

/* The VM's vmgenid GUID (query-vm-generation-id), or NULL when it has no
 * vmgenid device (QEMU answers with an error then). Caller frees. */
char *vms_disks_query_vmgenid(VmsQmpClient *qmp);

G_END_DECLS
