/* vmsnap core: the disks of a snapshot (doc/spec.md section 8) — the
 * manifest's DiskRecord list, the identity that detects a changed image,
 * and where a record's frozen image lives.
 *
 * Memory: records and identities are malloc'ed protobuf-c messages owned by
 * the manifest they are added to (vms_manifest_free frees them).
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

#include "manifest.h"

G_BEGIN_DECLS

typedef Vmsnap__V1__DiskRecord VmsDiskRecord;
typedef Vmsnap__V1__DiskFileIdentity VmsDiskIdentity;

/* Frees an identity not (yet) owned by a record. NULL is allowed. */
static inline void
vms_disk_identity_free(VmsDiskIdentity *id)
{
  if (id != NULL)
    protobuf_c_message_free_unpacked(&id->base, NULL);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsDiskIdentity, vms_disk_identity_free)

/* A new identity of the image @path (made absolute against the current
 * directory) in @format: lstat-free stat() facts (device, inode, size,
 * mtime). NULL with @error naming the path if it cannot be stat'ed. */
VmsDiskIdentity *vms_disk_identity_new(const char *path, const char *format, GError **error);

/* Checks that @path (NULL: @id->path) is still the file @id describes.
 * Fails with VMS_ERROR_MISMATCH, and a message that begins
 * "disk <device>: " and names the file and what changed. */
gboolean vms_disk_identity_check(const VmsDiskIdentity *id, const char *device, const char *path,
                                 GError **error);

/* A disk's chain of image files, top-down: file 0 is the frozen image
 * (@d->identity), file j > 0 its backing file j (@d->backing[j - 1]). */
static inline guint
vms_disk_chain_length(const VmsDiskRecord *d)
{
  return 1 + (guint)d->n_backing;
}
static inline const VmsDiskIdentity *
vms_disk_chain_identity(const VmsDiskRecord *d, guint j)
{
  return j == 0 ? d->identity : d->backing[j - 1];
}
/* Where chain file @j of @d (in the snapshot directory @dir) is on this
 * host (caller frees). */
char *vms_disk_chain_path(const char *dir, const VmsDiskRecord *d, guint j);
/* TRUE if @a and @b describe the same unchanged file (device, inode, size,
 * mtime; the path may differ, as for a hard link). */
gboolean vms_disk_identity_same(const VmsDiskIdentity *a, const VmsDiskIdentity *b);
/* A copy of @id (caller frees with vms_disk_identity_free). */
VmsDiskIdentity *vms_disk_identity_copy(const VmsDiskIdentity *id);

/* A new, empty record (strings empty, no identity). */
VmsDiskRecord *vms_disk_record_new(void);
/* Appends @d to @m's disks; @m takes ownership. */
void vms_manifest_add_disk(VmsManifest *m, VmsDiskRecord *d);
/* Appends @id to @d's backing chain; @d takes ownership. */
void vms_disk_record_add_backing(VmsDiskRecord *d, VmsDiskIdentity *id);
/* Sets @d's identity (replacing any); @d takes ownership. */
void vms_disk_record_set_identity(VmsDiskRecord *d, VmsDiskIdentity *id);

/* "disk-<device>.<format>", with every byte of @device outside
 * [A-Za-z0-9_.-] replaced by '_' (caller frees). */
char *vms_disk_file_name(const char *device, const char *format);

/* The frozen image of @d in the snapshot directory @dir: @dir/frozen_file,
 * or frozen_file itself when it is absolute (caller frees). */
char *vms_disk_frozen_path(const char *dir, const VmsDiskRecord *d);

/* Checks every disk of the snapshot @dir with manifest @m: each frozen
 * image and each file of its backing chain against its identity (errors as
 * vms_disk_identity_check). A read-only device's image is not checked (the
 * snapshot does not own it). TRUE for a diskless snapshot. */
gboolean vms_snapshot_verify_disks(const char *dir, const VmsManifest *m, GError **error);

/* Makes every frozen_file of @m that is relative to the snapshot directory
 * @dir absolute, so another directory's manifest (a flattening) refers to
 * the same frozen images without copying them. */
void vms_disks_refer_to(VmsManifest *m, const char *dir);

/* The writable (frozen) disks of @m. */
guint vms_manifest_frozen_disk_count(const VmsManifest *m);

/* @m's disks as a JSON array (field names as in the .proto). Caller owns. */
JsonArray *vms_disks_to_json(const VmsManifest *m);

G_END_DECLS
