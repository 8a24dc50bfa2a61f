/* vmsnap registry: the disk images of a pull (doc/format.md "Registry
 * artifacts", doc/disks.md "Push and pull").
 *
 * The disk table says which image files of each disk the artifact carries.
 * Each is staged in DIR/.pull-ID/ under its local name (the frozen image
 * as disk-<ID>.<format>, backing file j as disk-<ID>.<j>.<format>): its
 * chunk digests and chunk index are fetched and checked against each other,
 * then its chunks through pull-chunks.c (blob digest, each chunk's digest,
 * sparse writes, a resumed pull's staged chunks kept). Each pulled qcow2 is
 * then pointed at its backing file on this host: the next pulled file, or
 * for a diff the parent's file where the chain joins. Placing moves them
 * into DIR (0400) and writes disks.local, this host's identities of the
 * chain (disk-local.h), before manifest.bin is committed.
 */
#include "pull-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "disk-local.h"
#include "disk-table.h"
#include "error.h"
#include "snapdir.h"
#include "util.h"

typedef struct {
  const VmsDiskRecord *d;
  const VmsRegDiskEntry *e;
  const VmsDiskRecord *pd; /* the parent's disk the chain joins, or NULL */
  GPtrArray *names;        /* local names of the carried files */
} DiskPlan;

struct _VmsRegPullDisks {
  char *dir;               /* the target, absolute */
  guint8 sha[32];          /* manifest.bin's */
  VmsRegDiskTable *table;
  VmsSnapshot *parent;     /* a diff's, when a chain joins it */
  GArray *plans;           /* DiskPlan */
};

static void
plan_clear(gpointer p)
{
  g_clear_pointer(&((DiskPlan *)p)->names, g_ptr_array_unref);
}

void
vms_reg_pull_disks_free(VmsRegPullDisks *pd)
{
  if (pd == NULL)
    return;
  g_free(pd->dir);
  vms_reg_disk_table_free(pd->table);
  if (pd->parent != NULL)
    vms_snapshot_free(pd->parent);
  g_array_unref(pd->plans);
  g_free(pd);
}

static gboolean
disk_corrupt(GError **error, const char *ref, const char *device, const char *why)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s: disk %s: %s", ref, device, why);
  return FALSE;
}

/* The local name of carried file @j of @d. */
static char *
local_name(const VmsDiskRecord *d, guint j, const char *format)
{
  g_autofree char *f = j == 0 ? g_strdup(format) : g_strdup_printf("%u.%s", j, format);

  return vms_disk_file_name(d->device, f);
}

/* The parent snapshot a joining chain needs, opened once (its disks as
 * they are on this host). */
static gboolean
open_parent(VmsRegPullDisks *pd, const VmsManifest *m, const char *ref, GError **error)
{
  g_autofree char *path = NULL;

  if (pd->parent != NULL)
    return TRUE;
  if (m->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    return disk_corrupt(error, ref, "(table)", "a FULL snapshot's disk joins a parent");
  path = g_canonicalize_filename(m->parent, pd->dir);
  pd->parent = vms_snapshot_open(path, error);
  if (pd->parent == NULL)
    return FALSE;
  if (memcmp(pd->parent->manifest_sha256, m->parent_manifest_sha256.data, 32) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH, "%s: the parent at %s is another snapshot",
                ref, path);
    return FALSE;
  }
  return TRUE;
}

static const VmsDiskRecord *
parent_disk(const VmsSnapshot *parent, const char *device)
{
  for (gsize i = 0; i < parent->manifest->n_disks; i++)
    if (!parent->manifest->disks[i]->read_only &&
        g_strcmp0(parent->manifest->disks[i]->device, device) == 0)
      return parent->manifest->disks[i];
  return NULL;
}

/* Checks entry @e against record @d and plans its local names. */
static gboolean
plan_disk(VmsRegPullDisks *pd, const VmsManifest *m, const VmsDiskRecord *d,
          const VmsRegDiskEntry *e, const char *ref, GHashTable *names, GError **error)
{
  DiskPlan plan = { .d = d, .e = e, .names = g_ptr_array_new_with_free_func(g_free) };
  guint total = e->files->len;

  g_array_append_val(pd->plans, plan);
  if (g_strcmp0(d->device, e->device) != 0 || d->read_only || d->identity == NULL)
    return disk_corrupt(error, ref, d->device, "the disk table does not match the manifest");
  if (e->parent_file >= 0) {
    if (!open_parent(pd, m, ref, error))
      return FALSE;
    plan.pd = parent_disk(pd->parent, d->device);
    if (plan.pd == NULL || (guint)e->parent_file >= vms_disk_chain_length(plan.pd))
      return disk_corrupt(error, ref, d->device, "its parent has no such disk file to join");
    total += vms_disk_chain_length(plan.pd) - (guint)e->parent_file;
  }
  if (e->files->len == 0 || total != vms_disk_chain_length(d))
    return disk_corrupt(error, ref, d->device, "the disk table's chain is not the manifest's");
  for (guint j = 0; j < e->files->len; j++) {
    const VmsRegDiskFile *f = &g_array_index(e->files, VmsRegDiskFile, j);
    if (g_strcmp0(f->format, vms_disk_chain_identity(d, j)->format) != 0)
      return disk_corrupt(error, ref, d->device, "a file's format is not the manifest's");
    char *name = local_name(d, j, f->format);
    g_ptr_array_add(plan.names, name);
    if (!g_hash_table_add(names, g_strdup(name)))
      return disk_corrupt(error, ref, d->device, "two disk files would have one name");
  }
  g_array_index(pd->plans, DiskPlan, pd->plans->len - 1) = plan;
  return TRUE;
}

/* The next disk layer of @a from *@at must be @media_type @digest. */
static gboolean
next_layer(const VmsRegArtifact *a, guint *at, const char *media_type, const char *digest)
{
  for (; *at < a->layers->len; (*at)++) {
    const VmsRegDesc *l = &g_array_index(a->layers, VmsRegDesc, *at);
    if (!g_str_has_prefix(l->media_type, "application/vnd.vmsnap.disk-chunk"))
      continue;
    (*at)++;
    return strcmp(l->media_type, media_type) == 0 && strcmp(l->digest, digest) == 0;
  }
  return FALSE;
}

/* The digests and index of one file, checked against each other and
 * against the artifact's layers (from *@at on). */
static gboolean
fetch_file_meta(Pull *p, const VmsRegArtifact *a, guint *at, guint32 chunk_size,
                const VmsRegDiskFile *f, const char *what, VmsChunkIndex **ret_cidx,
                VmsRegIndex **ret_ix, GError **error)
{
  guint64 count = vms_reg_disk_chunk_count(f->size, chunk_size);
  g_autoptr(GBytes) dig = vms_reg_pull_blob(p, f->digests, count * 32, what, error);
  g_autoptr(GBytes) raw = NULL;
  g_autoptr(VmsChunkIndex) cidx = NULL;
  g_autoptr(VmsRegIndex) ix = NULL;
  gboolean ok;

  if (dig == NULL || (raw = vms_reg_pull_blob(p, f->index, 32 + 80ull * VMS_REG_MAX_LAYERS, what,
                                               error)) == NULL ||
      (ix = vms_reg_index_decode(raw, error)) == NULL)
    return FALSE;
  if (g_bytes_get_size(dig) != count * 32)
    return disk_corrupt(error, p->ref, what, "its chunk digests do not match its size");
  cidx = vms_chunk_index_new(chunk_size, f->size);
  memcpy(cidx->digests, g_bytes_get_data(dig, NULL), count * 32);
  if (!vms_reg_pull_index_covers(ix, cidx))
    return disk_corrupt(error, p->ref, what, "its chunk index does not match its chunk digests");
  ok = next_layer(a, at, VMS_REG_MT_DISK_DIGESTS, f->digests) &&
       next_layer(a, at, VMS_REG_MT_DISK_INDEX, f->index);
  for (guint i = 0; ok && i < ix->chunks->len; i++) {
    char d[72];
    vms_reg_digest_format(g_array_index(ix->chunks, VmsRegChunk, i).blob_sha256, d);
    ok = next_layer(a, at, VMS_REG_MT_DISK_CHUNK, d);
  }
  if (!ok)
    return disk_corrupt(error, p->ref, what, "its layers are not those of its chunk index");
  *ret_cidx = g_steal_pointer(&cidx);
  *ret_ix = g_steal_pointer(&ix);
  return TRUE;
}

/* Sets the mode of the staged regular file @name (never through a
 * symlink). With @missing_ok, a file that is not there is no error. */
static gboolean
chmod_staged(int sdfd, const char *name, mode_t mode, gboolean missing_ok, const char *what,
             GError **error)
{
  struct stat st;
  vms_autofd fd = -1;

  if (missing_ok && fstatat(sdfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
    return TRUE;
  fd = vms_openat_regular(sdfd, name, O_RDONLY, 0, error);
  if (fd < 0)
    return FALSE;
  if (fchmod(fd, mode) < 0)
    return vms_set_error_errno(error, errno, "failed to set the mode of %s (staged)", what);
  return TRUE;
}

/* Opens (creating) staged file @name at @size bytes; *@ret_resume if it
 * holds bytes of an earlier run. */
static int
open_staged(int sdfd, const char *name, guint64 size, const char *what, gboolean *ret_resume,
            GError **error)
{
  vms_autofd fd = -1;
  struct stat st;

  /* A file an earlier run linked from beside the target (pull-reuse.c) is
   * another snapshot's too: never written, started afresh. */
  if (fstatat(sdfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && st.st_nlink > 1 &&
      unlinkat(sdfd, name, 0) < 0)
    return vms_set_error_errno(error, errno, "failed to remove %s (staged)", what), -1;
  /* A run killed while placing may have left it read-only. */
  if (!chmod_staged(sdfd, name, 0600, TRUE, what, error))
    return -1;
  fd = vms_openat_regular(sdfd, name, O_RDWR | O_CREAT, 0600, error);
  if (fd < 0)
    return -1;
  if (fstat(fd, &st) < 0 || ((guint64)st.st_size != size && ftruncate(fd, (off_t)size) < 0))
    return vms_set_error_errno(error, errno, "failed to size %s (staged)", what), -1;
  *ret_resume = st.st_size > 0;
  return g_steal_fd(&fd);
}

/* Where chain file @j of plan @pl will be on this host. */
static char *
chain_target(const VmsRegPullDisks *pd, const DiskPlan *pl, guint j)
{
  g_autofree char *path = NULL;

  if (j < pl->names->len)
    return g_build_filename(pd->dir, g_ptr_array_index(pl->names, j), NULL);
  path = vms_disk_chain_path(pd->parent->path, pl->pd, (guint)pl->e->parent_file + j - pl->names->len);
  return g_canonicalize_filename(path, NULL);
}

/* Points staged file @j (open as @fd) at its backing file on this host. */
static gboolean
link_backing(const VmsRegPullDisks *pd, const DiskPlan *pl, guint j, int fd, const char *what,
             GError **error)
{
  const char *format = vms_disk_chain_identity(pl->d, j)->format;
  g_autofree char *backing = NULL;

  if (j + 1 >= vms_disk_chain_length(pl->d))
    return TRUE;
  if (strcmp(format, "qcow2") != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "%s: a %s image with a backing file cannot be pointed at its pulled backing file "
                "(only qcow2 can)", what, format);
    return FALSE;
  }
  backing = chain_target(pd, pl, j + 1);
  return vms_reg_qcow2_rebase(fd, backing, vms_disk_chain_identity(pl->d, j + 1)->format, what,
                              error);
}

static gboolean
stage_file(Pull *p, VmsRegPullDisks *pd, const DiskPlan *pl, guint j, int sdfd,
           const VmsRegArtifact *a, guint *at, GError **error)
{
  const VmsRegDiskFile *f = &g_array_index(pl->e->files, VmsRegDiskFile, j);
  const char *name = g_ptr_array_index(pl->names, j);
  g_autofree char *what = g_strdup_printf("disk %s image %s", pl->d->device, name);
  g_autofree char *title = g_strdup_printf("pull %s: %s", pd->dir, what);
  g_autoptr(VmsChunkIndex) cidx = NULL;
  g_autoptr(VmsRegIndex) ix = NULL;
  g_autoptr(VmsChunkSource) src = NULL;
  gboolean resume = FALSE;
  vms_autofd fd = -1;
  VmsRegTicker t;

  if (!fetch_file_meta(p, a, at, pd->table->chunk_size, f, what, &cidx, &ix, error))
    return FALSE;
  /* The bottom of a chain (never rewritten) may be beside us already. */
  if (j + 1 == vms_disk_chain_length(pl->d) &&
      vms_reg_pull_reuse(pd->dir, f->digests, f->size, cidx, sdfd, name)) {
    p->stats->blobs_present += ix->chunks->len;
    p->stats->disk_files++;
    p->stats->disk_files_linked++;
    return TRUE;
  }
  fd = open_staged(sdfd, name, f->size, what, &resume, error);
  if (fd < 0 || (src = vms_chunk_source_new(fd, NULL, f->size, error)) == NULL)
    return FALSE;
  VmsRegTarget target = { .fd = fd, .src = src, .cidx = cidx, .sparse = TRUE, .page = 4096,
                          .what = what };
  vms_reg_ticker_init(&t, p->opts, title, 0);
  p->done = 0; /* progress: this file's bytes of its data */
  if (!vms_reg_pull_chunks(p, &target, ix, resume, &t, error) ||
      !link_backing(pd, pl, j, fd, what, error))
    return FALSE;
  if (fsync(fd) < 0)
    return vms_set_error_errno(error, errno, "failed to fsync %s (staged)", what);
  p->stats->disk_files++;
  return TRUE;
}

static const VmsRegDesc *
find_table(const VmsRegArtifact *a)
{
  return vms_reg_artifact_find(a, VMS_REG_MT_DISK_TABLE);
}

static gboolean
plan_all(Pull *p, VmsRegPullDisks *pd, const VmsRegArtifact *a, const VmsManifest *m,
         GError **error)
{
  const VmsRegDesc *td = find_table(a);
  g_autoptr(GBytes) json = NULL;
  g_autoptr(GHashTable) names = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);

  if (td == NULL && m->n_disks == 0)
    return TRUE;
  if (td == NULL || m->n_disks == 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s: its manifest records %zu disk(s) but the artifact %s a disk table", p->ref,
                m->n_disks, td == NULL ? "has no" : "has");
    return FALSE;
  }
  json = vms_reg_pull_blob(p, td->digest, VMS_REG_DISK_TABLE_MAX, "disk table", error);
  if (json == NULL || (pd->table = vms_reg_disk_table_from_json(json, p->ref, error)) == NULL)
    return FALSE;
  if (pd->table->disks->len != m->n_disks)
    return disk_corrupt(error, p->ref, "(table)", "the disk table does not list every disk");
  for (gsize i = 0; i < m->n_disks; i++)
    if (!plan_disk(pd, m, m->disks[i], &g_array_index(pd->table->disks, VmsRegDiskEntry, i),
                   p->ref, names, error))
      return FALSE;
  return TRUE;
}

VmsRegPullDisks *
vms_reg_pull_disks_stage(Pull *p, int sdfd, const char *dir, const VmsRegArtifact *a,
                         const VmsManifest *m, const char *config_digest, GError **error)
{
  g_autoptr(VmsRegPullDisks) pd = g_new0(VmsRegPullDisks, 1);
  VmsRegStats before = *p->stats;
  guint at = 0;

  pd->dir = g_canonicalize_filename(dir, NULL);
  pd->plans = g_array_new(FALSE, TRUE, sizeof(DiskPlan));
  g_array_set_clear_func(pd->plans, plan_clear);
  vms_reg_digest_parse(config_digest, pd->sha);
  if (!plan_all(p, pd, a, m, error))
    return NULL;
  for (guint i = 0; i < pd->plans->len; i++) {
    const DiskPlan *pl = &g_array_index(pd->plans, DiskPlan, i);
    for (guint j = 0; j < pl->names->len; j++)
      if (!stage_file(p, pd, pl, j, sdfd, a, &at, error))
        return NULL;
  }
  p->stats->disk_blobs_sent += p->stats->blobs_fetched - before.blobs_fetched;
  p->stats->disk_blobs_present += p->stats->blobs_present - before.blobs_present;
  p->stats->disk_bytes += p->stats->bytes_received - before.bytes_received;
  return g_steal_pointer(&pd);
}

/* This host's identity of chain file @j of plan @pl, once placed. */
static VmsDiskIdentity *
local_identity(const VmsRegPullDisks *pd, const DiskPlan *pl, guint j, GError **error)
{
  g_autofree char *path = chain_target(pd, pl, j);
  VmsDiskIdentity *id;

  if (j < pl->names->len)
    return vms_disk_identity_new(path, vms_disk_chain_identity(pl->d, j)->format, error);
  /* The parent's file as the parent records it: a parent changed since is
   * refused by verify, as it would be at home. */
  id = vms_disk_identity_copy(
    vms_disk_chain_identity(pl->pd, (guint)pl->e->parent_file + j - pl->names->len));
  vms_manifest_set_string(&id->path, path);
  return id;
}

static gboolean
place_disk(const VmsRegPullDisks *pd, const DiskPlan *pl, int sdfd, int dirfd,
           VmsDisksLocal *local, GError **error)
{
  g_autoptr(GPtrArray) backing = g_ptr_array_new_with_free_func((GDestroyNotify)vms_disk_identity_free);
  g_autoptr(GPtrArray) content = g_ptr_array_new();
  g_autoptr(VmsDiskIdentity) top = NULL;
  guint n = vms_disk_chain_length(pl->d);

  for (guint j = 0; j < pl->names->len; j++) {
    const char *name = g_ptr_array_index(pl->names, j);
    g_autofree char *what = g_strdup_printf("disk %s image %s", pl->d->device, name);
    if (!chmod_staged(sdfd, name, 0400, FALSE, what, error))
      return FALSE;
    if (renameat(sdfd, name, dirfd, name) < 0)
      return vms_set_error_errno(error, errno, "%s: failed to move it into %s", what, pd->dir);
  }
  /* The files written as pushed (the bottom of a chain is never rewritten):
   * what a later pull beside this one may link (pull-reuse.c). */
  for (guint j = 0; j < n; j++)
    g_ptr_array_add(content, (gpointer)(j + 1 == n && j < pl->names->len
                                          ? g_array_index(pl->e->files, VmsRegDiskFile, j).digests
                                          : ""));
  top = local_identity(pd, pl, 0, error);
  if (top == NULL)
    return FALSE;
  for (guint j = 1; j < n; j++) {
    VmsDiskIdentity *id = local_identity(pd, pl, j, error);
    if (id == NULL)
      return FALSE;
    g_ptr_array_add(backing, id);
  }
  vms_disks_local_add(local, pl->d->device, g_ptr_array_index(pl->names, 0), g_steal_pointer(&top),
                      backing, content);
  return TRUE;
}

gboolean
vms_reg_pull_disks_place(VmsRegPullDisks *pd, int sdfd, int dirfd, GError **error)
{
  g_autoptr(VmsDisksLocal) local = vms_disks_local_new(pd->sha);

  if (pd->plans->len == 0)
    return TRUE;
  for (guint i = 0; i < pd->plans->len; i++)
    if (!place_disk(pd, &g_array_index(pd->plans, DiskPlan, i), sdfd, dirfd, local, error))
      return FALSE;
  return vms_disks_local_write_at(dirfd, pd->dir, local, error);
}
