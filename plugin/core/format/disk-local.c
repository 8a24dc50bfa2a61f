/* vmsnap core: disks.local, the host-local disk identities of a pulled
 * snapshot (see disk-local.h). */
#include "disk-local.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "snapdir.h"
#include "util.h"

#define TMP_NAME VMS_DISKS_LOCAL_FILE ".tmp"

static VmsDisksLocal *read_local(int fd, const char *dir, GError **error);

VmsDisksLocal *
vms_disks_local_new(const guint8 manifest_sha256[32])
{
  VmsDisksLocal *l = g_new0(VmsDisksLocal, 1);

  vmsnap__v1__reg_disks_local__init(l);
  vms_manifest_set_bytes(&l->manifest_sha256, manifest_sha256, 32);
  return l;
}

void
vms_disks_local_free(VmsDisksLocal *l)
{
  if (l != NULL)
    protobuf_c_message_free_unpacked(&l->base, NULL);
}

void
vms_disks_local_add(VmsDisksLocal *l, const char *device, const char *frozen_file,
                    VmsDiskIdentity *id, GPtrArray *backing, GPtrArray *content)
{
  VmsDiskLocal *d = g_new0(VmsDiskLocal, 1);

  vmsnap__v1__reg_disk_local__init(d);
  vms_manifest_set_string(&d->device, device);
  vms_manifest_set_string(&d->frozen_file, frozen_file);
  d->identity = id;
  d->n_backing = backing->len;
  d->backing = g_new0(VmsDiskIdentity *, MAX(backing->len, 1));
  for (guint i = 0; i < backing->len; i++)
    d->backing[i] = g_ptr_array_index(backing, i);
  g_ptr_array_set_free_func(backing, NULL);
  g_ptr_array_set_size(backing, 0);
  d->n_content = content != NULL ? content->len : 0;
  d->content = g_new0(char *, MAX(d->n_content, 1));
  for (gsize i = 0; i < d->n_content; i++)
    d->content[i] = g_strdup(g_ptr_array_index(content, i));
  l->disks = g_renew(VmsDiskLocal *, l->disks, l->n_disks + 1);
  l->disks[l->n_disks++] = d;
}

gboolean
vms_disks_local_write_at(int dirfd, const char *dir, const VmsDisksLocal *l, GError **error)
{
  gsize len = vmsnap__v1__reg_disks_local__get_packed_size(l);
  g_autofree guint8 *buf = g_malloc(MAX(len, 1));
  vms_autofd fd = -1;
  int r;

  vmsnap__v1__reg_disks_local__pack(l, buf);
  (void)unlinkat(dirfd, TMP_NAME, 0);
  fd = vms_openat_regular(dirfd, TMP_NAME, O_RDWR | O_CREAT | O_EXCL, 0600, error);
  if (fd < 0)
    return FALSE;
  r = vms_pwrite_full(fd, buf, len, 0);
  if (r == 0 && fsync(fd) < 0)
    r = -errno;
  if (r == 0 && renameat(dirfd, TMP_NAME, dirfd, VMS_DISKS_LOCAL_FILE) < 0)
    r = -errno;
  if (r == 0)
    r = vms_fsync_dir(dirfd);
  if (r < 0) {
    (void)unlinkat(dirfd, TMP_NAME, 0);
    return vms_set_error_errno(error, -r, "failed to write %s/%s", dir, VMS_DISKS_LOCAL_FILE);
  }
  return TRUE;
}

static gboolean
local_corrupt(GError **error, const char *dir, const char *why)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s/%s: %s", dir, VMS_DISKS_LOCAL_FILE, why);
  return FALSE;
}

VmsDisksLocal *
vms_disks_local_read_at(int dirfd, const char *dir, GError **error)
{
  vms_autofd fd = vms_openat_regular(dirfd, VMS_DISKS_LOCAL_FILE, O_RDONLY, 0, error);

  return fd < 0 ? NULL : read_local(fd, dir, error);
}

static VmsDisksLocal *
read_local(int fd, const char *dir, GError **error)
{
  struct stat st;
  g_autofree guint8 *buf = NULL;
  VmsDisksLocal *l;

  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s/%s", dir, VMS_DISKS_LOCAL_FILE),
           NULL;
  if (st.st_size > VMS_DISKS_LOCAL_MAX_SIZE)
    return local_corrupt(error, dir, "too large"), NULL;
  buf = g_malloc((gsize)st.st_size + 1);
  if (vms_pread_full(fd, buf, (gsize)st.st_size, 0) != st.st_size)
    return vms_set_error_errno(error, EIO, "failed to read %s/%s", dir, VMS_DISKS_LOCAL_FILE), NULL;
  l = vmsnap__v1__reg_disks_local__unpack(NULL, (gsize)st.st_size, buf);
  if (l == NULL)
    return local_corrupt(error, dir, "does not decode"), NULL;
  return l;
}

/* The record matches its manifest record and names a plain file. */
static gboolean
local_record_ok(const VmsDiskLocal *d, const VmsDiskRecord *r)
{
  return g_strcmp0(d->device, r->device) == 0 && !r->read_only && d->identity != NULL &&
         d->frozen_file != NULL && d->frozen_file[0] != '\0' &&
         strchr(d->frozen_file, '/') == NULL && strcmp(d->frozen_file, "..") != 0 &&
         strcmp(d->frozen_file, ".") != 0;
}

/* Moves @d's identities into @r (@d keeps nothing). */
static void
take_local(VmsDiskRecord *r, VmsDiskLocal *d)
{
  vms_manifest_set_string(&r->frozen_file, d->frozen_file);
  r->external = FALSE;
  vms_disk_record_set_identity(r, g_steal_pointer(&d->identity));
  for (gsize j = 0; j < r->n_backing; j++)
    vms_disk_identity_free(r->backing[j]);
  g_free(r->backing);
  r->backing = g_steal_pointer(&d->backing);
  r->n_backing = d->n_backing;
  d->n_backing = 0;
}

gboolean
vms_disks_local_apply(int dirfd, const char *dir, VmsManifest *m,
                      const guint8 manifest_sha256[32], GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(VmsDisksLocal) l = NULL;
  vms_autofd fd = vms_openat_regular(dirfd, VMS_DISKS_LOCAL_FILE, O_RDONLY, 0, &local);

  if (fd < 0) {
    struct stat st;
    if (fstatat(dirfd, VMS_DISKS_LOCAL_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT)
      return TRUE;
    g_propagate_error(error, g_steal_pointer(&local));
    return FALSE;
  }
  l = read_local(fd, dir, error);
  if (l == NULL)
    return FALSE;
  if (l->manifest_sha256.len != 32 || memcmp(l->manifest_sha256.data, manifest_sha256, 32) != 0)
    return local_corrupt(error, dir, "belongs to another manifest.bin");
  if (l->n_disks != m->n_disks)
    return local_corrupt(error, dir, "its disks are not the manifest's");
  for (gsize i = 0; i < l->n_disks; i++)
    if (!local_record_ok(l->disks[i], m->disks[i]))
      return local_corrupt(error, dir, "a disk record does not match the manifest's");
  for (gsize i = 0; i < l->n_disks; i++)
    take_local(m->disks[i], l->disks[i]);
  return TRUE;
}
