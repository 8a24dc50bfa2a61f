/* vmsnap core: the host-local disk identities of a pulled snapshot
 * (disks.local; doc/disks.md "Pulled snapshots", doc/format.md).
 *
 * A DiskRecord's identity (path, st_dev, st_ino, size, mtime) is a fact of
 * the host that saved the snapshot. `vmsnap pull` writes the images on
 * another host, where they have other paths and inodes; manifest.bin must
 * not change (its SHA-256 is what diffs name as their parent), so pull
 * records this host's identities in disks.local, bound to manifest.bin's
 * SHA-256. vms_snapshot_open() applies it: every reader (verify, restore,
 * the plugin's disk guard, flatten, push) sees the records as they are on
 * this host, and checks them exactly as it checks a snapshot saved here.
 * The manifest in memory then differs from manifest.bin's bytes in its disk
 * records only; manifest_sha256 stays that of the file.
 */
#pragma once

#include <glib.h>

#include "disk-record.h"

G_BEGIN_DECLS

#define VMS_DISKS_LOCAL_FILE "disks.local"
/* A disks.local larger than this is refused before it is read. */
#define VMS_DISKS_LOCAL_MAX_SIZE (4u << 20)

typedef Vmsnap__V1__RegDisksLocal VmsDisksLocal;
typedef Vmsnap__V1__RegDiskLocal VmsDiskLocal;

/* A new, empty set bound to @manifest_sha256. */
VmsDisksLocal *vms_disks_local_new(const guint8 manifest_sha256[32]);
void vms_disks_local_free(VmsDisksLocal *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsDisksLocal, vms_disks_local_free)

/* Appends the local record of disk @device: its frozen image @frozen_file
 * (a name in the snapshot directory), identity @id and backing chain
 * @backing (VmsDiskIdentity *, top-down), and @content (nullable: one
 * string per chain file, "" or a "sha256:" digest; copied). Takes @id and
 * the elements of @backing (the array is emptied, not freed). */
void vms_disks_local_add(VmsDisksLocal *l, const char *device, const char *frozen_file,
                         VmsDiskIdentity *id, GPtrArray *backing, GPtrArray *content);

/* Reads and decodes @dirfd/disks.local (no checks against a manifest).
 * NULL with @error (naming @dir) if it is missing, too large or does not
 * decode. */
VmsDisksLocal *vms_disks_local_read_at(int dirfd, const char *dir, GError **error);

/* Writes @l as @dirfd/disks.local: staged as disks.local.tmp (0600), fsync,
 * rename, fsync of the directory. Errors name @dir. */
gboolean vms_disks_local_write_at(int dirfd, const char *dir, const VmsDisksLocal *l,
                                  GError **error);

/* If @dirfd holds disks.local, checks it (it decodes, is bound to
 * @manifest_sha256, has one record per disk of @m with the same device, each
 * frozen_file a plain name) and replaces each record's frozen_file,
 * external, identity and backing in @m with the local ones. TRUE and no
 * change without the file. Errors (VMS_ERROR_CORRUPT) name @dir and the
 * file. */
gboolean vms_disks_local_apply(int dirfd, const char *dir, VmsManifest *m,
                               const guint8 manifest_sha256[32], GError **error);

G_END_DECLS
