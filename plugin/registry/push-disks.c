/* vmsnap registry: the disk images of a push (doc/format.md "Registry
 * artifacts", doc/disks.md "Push and pull").
 *
 * Every writable disk's chain of image files (the frozen image, then each
 * backing file) travels as the memory does: each file cut into the 1 MiB
 * chunks of chunks.h, all-zero chunks (holes) absent, the others in zstd
 * blobs of up to 8 chunks, content-addressed, HEADed before upload. So a
 * backing file shared by many snapshots (the base image) is uploaded once
 * and found by HEAD after that. Each file adds a chunk-digest layer and a
 * chunk-index layer; a disk table layer says which files of which disk the
 * artifact carries. A diff carries its chain only down to where it joins
 * the parent's (the clone's overlay) and names the parent's file there.
 * Each file is checked against its identity before and after it is read,
 * and every chunk against the digest taken at the start.
 */
#include "push-private.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "disk-record.h"
#include "disk-table.h"
#include "error.h"
#include "util.h"

gboolean
vms_reg_push_disks_check(GPtrArray *chain, GError **error)
{
  for (guint i = 0; i < chain->len; i++) {
    VmsSnapshot *s = g_ptr_array_index(chain, i);
    for (gsize j = 0; j < s->manifest->n_disks; j++) {
      const VmsDiskRecord *d = s->manifest->disks[j];
      if (!d->read_only)
        continue;
      g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                  "%s: disk %s is read-only (image %s): push carries the writable disks a "
                  "snapshot froze, not read-only devices such as CD-ROMs; eject or detach it "
                  "before the save",
                  s->path, d->device, d->frozen_file);
      return FALSE;
    }
  }
  return TRUE;
}

/* Where @d's chain joins the chain of @parent's disk of the same device:
 * *@ret_carry files of @d are its own, the rest is the parent's from file
 * *@ret_parent_file on (same files: device, inode, size, mtime). */
static void
join_parent(const VmsDiskRecord *d, const VmsManifest *parent, guint *ret_carry,
            gint *ret_parent_file)
{
  *ret_carry = vms_disk_chain_length(d);
  *ret_parent_file = -1;
  for (gsize i = 0; parent != NULL && i < parent->n_disks; i++) {
    const VmsDiskRecord *pd = parent->disks[i];
    if (pd->read_only || pd->identity == NULL || g_strcmp0(pd->device, d->device) != 0)
      continue;
    for (guint j = 1; j < vms_disk_chain_length(d); j++)
      for (guint k = 0; k < vms_disk_chain_length(pd); k++)
        if (vms_disk_identity_same(vms_disk_chain_identity(d, j), vms_disk_chain_identity(pd, k)) &&
            vms_disk_chain_length(d) - j == vms_disk_chain_length(pd) - k) {
          *ret_carry = j;
          *ret_parent_file = (gint)k;
          return;
        }
  }
}

/* Opens @path read-only, checked to be the file @id describes. */
static int
open_image(const VmsDiskIdentity *id, const char *device, const char *path, GError **error)
{
  vms_autofd fd = -1;
  struct stat st;

  if (!vms_disk_identity_check(id, device, path, error))
    return -1;
  fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0 || fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "disk %s: cannot open image %s", device, path), -1;
  if ((guint64)st.st_dev != id->device || (guint64)st.st_ino != id->inode) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH, "disk %s: image %s was replaced", device,
                path);
    return -1;
  }
  return g_steal_fd(&fd);
}

static void
add_file_layers(VmsRegArtifact *a, const char *d_dig, gsize dig_len, const char *d_ix,
                gsize ix_len, const VmsRegIndex *ix)
{
  vms_reg_artifact_add(a, VMS_REG_MT_DISK_DIGESTS, d_dig, dig_len, NULL);
  vms_reg_artifact_add(a, VMS_REG_MT_DISK_INDEX, d_ix, ix_len, NULL);
  vms_reg_push_add_chunk_layers(a, ix, VMS_REG_MT_DISK_CHUNK);
}

/* Pushes one image file: its chunks, their digests and index; adds its
 * layers to @a and its entry to @e. */
static gboolean
push_file(Push *p, const VmsDiskRecord *d, guint j, const char *path, VmsRegDiskEntry *e,
          VmsRegArtifact *a, VmsRegTicker *t, GError **error)
{
  const VmsDiskIdentity *id = vms_disk_chain_identity(d, j);
  g_autofree char *label = g_strdup_printf("disk %s image %s", d->device, path);
  vms_autofd fd = open_image(id, d->device, path, error);
  g_autoptr(VmsChunkSource) src = NULL;
  g_autoptr(VmsChunkIndex) cidx = NULL;
  g_autoptr(VmsRegIndex) ix = NULL;
  char d_dig[72], d_ix[72] = "";
  gsize dig_len, ix_len;
  struct stat st;

  if (fd < 0)
    return FALSE;
  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s", label);
  src = vms_chunk_source_new(fd, NULL, (guint64)st.st_size, error);
  if (src == NULL || !vms_chunks_compute(src, VMS_CHUNK_SIZE, &cidx, error)) {
    g_prefix_error(error, "%s: ", label);
    return FALSE;
  }
  dig_len = (gsize)cidx->count * VMS_SHA256_LEN;
  vms_reg_push_bytes(p, g_bytes_new(cidx->digests, dig_len), d_dig);
  p->label = label;
  p->done = 0; /* progress: this file's bytes of its size */
  ix = vms_reg_push_chunks(p, src, cidx, t);
  ix_len = vms_reg_push_index(p, ix, d_ix);
  vms_reg_push_wait(p, t);
  p->label = NULL;
  if (p->error != NULL) {
    g_propagate_prefixed_error(error, g_steal_pointer(&p->error), "%s: ", label);
    return FALSE;
  }
  /* Read whole and unchanged: the identity still holds. */
  if (!vms_disk_identity_check(id, d->device, path, error))
    return FALSE;
  add_file_layers(a, d_dig, dig_len, d_ix, ix_len, ix);
  vms_reg_disk_entry_add_file(e, id->format, (guint64)st.st_size, d_dig, d_ix);
  p->stats->disk_files++;
  return TRUE;
}

static gboolean
push_disk(Push *p, VmsSnapshot *s, VmsSnapshot *parent, const VmsDiskRecord *d,
          VmsRegDiskTable *table, VmsRegArtifact *a, VmsRegTicker *t, GError **error)
{
  VmsRegDiskEntry *e = vms_reg_disk_table_add(table, d->device);
  guint carry;

  if (d->identity == NULL || d->frozen_file[0] == '\0') {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s: disk %s: the manifest records no frozen image", s->path, d->device);
    return FALSE;
  }
  join_parent(d, parent != NULL ? parent->manifest : NULL, &carry, &e->parent_file);
  for (guint j = 0; j < carry; j++) {
    g_autofree char *path = vms_disk_chain_path(s->path, d, j);
    if (!push_file(p, d, j, path, e, a, t, error))
      return FALSE;
  }
  return TRUE;
}

gboolean
vms_reg_push_disks(Push *p, VmsSnapshot *s, VmsSnapshot *parent, VmsRegArtifact *a,
                   VmsRegTicker *t, GError **error)
{
  const VmsManifest *m = s->manifest;
  g_autoptr(VmsRegDiskTable) table = vms_reg_disk_table_new(VMS_CHUNK_SIZE);
  VmsRegStats before = *p->stats;
  GBytes *json;
  char d_table[72];
  gsize len;

  if (m->n_disks == 0)
    return TRUE;
  for (gsize i = 0; i < m->n_disks; i++)
    if (!push_disk(p, s, parent, m->disks[i], table, a, t, error))
      return FALSE;
  json = vms_reg_disk_table_to_json(table);
  len = g_bytes_get_size(json);
  vms_reg_push_bytes(p, json, d_table);
  vms_reg_push_wait(p, t);
  if (p->error != NULL) {
    g_propagate_prefixed_error(error, g_steal_pointer(&p->error), "disk table of %s: ", s->path);
    return FALSE;
  }
  vms_reg_artifact_add(a, VMS_REG_MT_DISK_TABLE, d_table, len, NULL);
  p->stats->disk_blobs_sent += p->stats->blobs_sent - before.blobs_sent;
  p->stats->disk_blobs_present += p->stats->blobs_present - before.blobs_present;
  p->stats->disk_bytes += p->stats->bytes_sent - before.bytes_sent;
  return TRUE;
}
