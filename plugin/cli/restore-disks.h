/* vmsnap CLI: what makes a clone its own at restore (doc/spec.md sections 8
 * and 9): a new qcow2 overlay per disk on the snapshot's frozen image, and a
 * fresh vmgenid GUID. */
#pragma once

#include <glib.h>

#include "manifest.h"
#include "relaunch.h"

G_BEGIN_DECLS

typedef struct {
  GArray *disks;       /* VmsRelaunchDisk; strings owned by @strings */
  GPtrArray *strings;
  char *vmgenid;       /* the clone's GUID, or NULL (no vmgenid device) */
} VmsCloneIdentity;

void vms_clone_identity_clear(VmsCloneIdentity *c);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsCloneIdentity, vms_clone_identity_clear)

/* Plans (and unless @dry_run creates) the clone's overlays for every
 * writable disk of @m (snapshot directory @snap_dir): "disk-<ID>.qcow2" in
 * @runtime_dir, or "<runtime dir name>-disk-<ID>.qcow2" in @disk_dir when
 * it is not NULL; each an empty qcow2 over the frozen image (qcow2.h).
 * @vmgenid_opt: NULL for a fresh random GUID, "saved" for the one in the
 * manifest, or a GUID to use. An existing overlay file is refused. On
 * failure nothing stays created. */
gboolean vms_clone_identity_prepare(const char *snap_dir, const VmsManifest *m,
                                    const char *runtime_dir, const char *disk_dir,
                                    const char *vmgenid_opt, gboolean dry_run,
                                    VmsCloneIdentity *ret, GError **error);

/* Points @opts at @c's disks and vmgenid. @c must outlive @opts. */
void vms_clone_identity_apply(const VmsCloneIdentity *c, VmsRelaunchOptions *opts);

G_END_DECLS
