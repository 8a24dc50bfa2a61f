/* vmsnap registry: a pulled disk image taken from a snapshot beside the
 * target instead of the registry (pull-private.h).
 *
 * Snapshots of one base image pulled into sibling directories (/snaps/a,
 * /snaps/b) would each fetch and hold the whole base. So before a disk file
 * is fetched, the disks.local of every directory beside the target is read
 * for a file pulled there unchanged from the same chunk-digest layer (its
 * `content`) with the same size. Such a file is hard-linked into the
 * staging directory, and only used if it is a regular file of this user
 * and every chunk of the linked inode matches the digests this pull got
 * from the registry: a sibling's disks.local is a hint, never trusted. Any
 * failure (another filesystem, a changed file) falls back to fetching.
 */
#include "pull-private.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-local.h"
#include "snapdir.h"
#include "util.h"

/* Directories looked at beside the target, at most. */
#define MAX_SIBLINGS 256

/* Links @path as @sdfd/@name.reuse, checks the linked inode, and renames
 * it over @name (a partly staged file of an earlier run); removes the link
 * and returns FALSE if it does not serve. */
static gboolean
try_link(const char *path, guint64 size, const VmsChunkIndex *cidx, int sdfd, const char *name)
{
  g_autofree char *tmp = g_strconcat(name, ".reuse", NULL);
  struct stat before, st;
  vms_autofd fd = -1;
  g_autoptr(VmsChunkSource) src = NULL;

  if (lstat(path, &before) < 0 || !S_ISREG(before.st_mode) || before.st_uid != geteuid() ||
      (guint64)before.st_size != size)
    return FALSE;
  (void)unlinkat(sdfd, tmp, 0);
  if (linkat(AT_FDCWD, path, sdfd, tmp, 0) < 0)
    return FALSE;
  fd = vms_openat_regular(sdfd, tmp, O_RDONLY, 0, NULL);
  gboolean ok = fd >= 0 && fstat(fd, &st) == 0 && st.st_ino == before.st_ino &&
                st.st_dev == before.st_dev && st.st_uid == geteuid() &&
                (guint64)st.st_size == size &&
                (src = vms_chunk_source_new(fd, NULL, size, NULL)) != NULL &&
                vms_chunks_verify_range(src, cidx, name, 0, cidx->count, NULL) &&
                renameat(sdfd, tmp, sdfd, name) == 0;
  if (!ok)
    (void)unlinkat(sdfd, tmp, 0);
  return ok;
}

/* A file of @l (in the directory @sub) pulled from @content, linked. */
static gboolean
reuse_from(const VmsDisksLocal *l, const char *sub, const char *content, guint64 size,
           const VmsChunkIndex *cidx, int sdfd, const char *name)
{
  for (gsize i = 0; i < l->n_disks; i++) {
    const VmsDiskLocal *d = l->disks[i];
    for (gsize j = 0; j < d->n_content && j <= d->n_backing; j++) {
      const VmsDiskIdentity *id = j == 0 ? d->identity : d->backing[j - 1];
      if (g_strcmp0(d->content[j], content) != 0 || id == NULL || id->size != size)
        continue;
      g_autofree char *path = j == 0 ? g_build_filename(sub, d->frozen_file, NULL)
                                     : g_strdup(id->path);
      if (strchr(d->frozen_file, '/') == NULL && try_link(path, size, cidx, sdfd, name))
        return TRUE;
    }
  }
  return FALSE;
}

gboolean
vms_reg_pull_reuse(const char *dir, const char *content, guint64 size, const VmsChunkIndex *cidx,
                   int sdfd, const char *name)
{
  g_autofree char *parent = g_path_get_dirname(dir);
  g_autofree char *self = g_path_get_basename(dir);
  g_autoptr(GDir) d = g_dir_open(parent, 0, NULL);
  guint seen = 0;

  for (const char *n; d != NULL && seen < MAX_SIBLINGS && (n = g_dir_read_name(d)) != NULL;) {
    if (n[0] == '.' || strcmp(n, self) == 0)
      continue;
    g_autofree char *sub = g_build_filename(parent, n, NULL);
    vms_autofd dfd = open(sub, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dfd < 0)
      continue;
    seen++;
    g_autoptr(VmsDisksLocal) l = vms_disks_local_read_at(dfd, sub, NULL);
    if (l != NULL && reuse_from(l, sub, content, size, cidx, sdfd, name))
      return TRUE;
  }
  return FALSE;
}
