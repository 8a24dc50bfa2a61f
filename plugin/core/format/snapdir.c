/* vmsnap core: snapshot directories — the writer with its commit protocol,
 * opening files safely inside a snapshot, and the reader. Verification of a
 * committed snapshot is in snapdir-verify.c. See snapdir.h. */
#include "snapdir.h"
#include "snapdir-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "copy.h"
#include "disk-local.h"
#include "error.h"
#include "extents.h"
#include "stream.h"
#include "util.h"

struct _VmsSnapWriter {
  char *path;
  int dirfd;
  gboolean committed;
  GPtrArray *created_files; /* names inside the directory this writer made */
  GPtrArray *created_dirs;  /* directories it made, outermost first */
};

/* Names the writer may leave staged; removed when a new writer starts. */
static const char *const staged_names[] = {
  VMS_STATE_FILE ".tmp", VMS_STATE_STREAM_FILE ".tmp", VMS_MEMORY_FILE ".tmp",
  VMS_DIFF_FILE ".tmp", VMS_MAP_FILE ".tmp", VMS_CHUNKS_TMP_FILE, VMS_MANIFEST_FILE ".tmp",
};

static const char *
file_type_name(mode_t mode)
{
  if (S_ISLNK(mode))
    return "a symbolic link";
  if (S_ISFIFO(mode))
    return "a FIFO";
  if (S_ISDIR(mode))
    return "a directory";
  if (S_ISCHR(mode) || S_ISBLK(mode))
    return "a device";
  if (S_ISSOCK(mode))
    return "a socket";
  return "of an unknown type";
}

/* The path of @dirfd for messages, or "(directory)" if it can't be told. */
static char *
dirfd_path(int dirfd)
{
  g_autofree char *link = NULL;
  char *path;

  if (dirfd == AT_FDCWD)
    return g_strdup(".");
  link = g_strdup_printf("/proc/self/fd/%d", dirfd);
  path = g_file_read_link(link, NULL);

  return path != NULL ? path : g_strdup("(directory)");
}

static gboolean
refuse_not_regular(int dirfd, const char *name, mode_t mode, GError **error)
{
  g_autofree char *dir = dirfd_path(dirfd);

  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
              "%s/%s is %s, not a regular file; refused", dir, name, file_type_name(mode));
  return FALSE;
}

int
vms_openat_regular(int dirfd, const char *name, int flags, mode_t mode, GError **error)
{
  vms_autofd fd = -1;
  struct stat st;

  /* O_NONBLOCK so that a FIFO planted in place of the file cannot block the
   * open; it is cleared again below for the regular file we accept. */
  fd = openat(dirfd, name, flags | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK, mode);
  if (fd < 0) {
    int err = errno;
    g_autofree char *dir = dirfd_path(dirfd);
    if (fstatat(dirfd, name, &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISREG(st.st_mode)) {
      refuse_not_regular(dirfd, name, st.st_mode, error);
      return -1;
    }
    vms_set_error_errno(error, err, "failed to open %s/%s", dir, name);
    return -1;
  }
  if (fstat(fd, &st) < 0) {
    int err = errno;
    g_autofree char *dir = dirfd_path(dirfd);
    vms_set_error_errno(error, err, "failed to stat %s/%s", dir, name);
    return -1;
  }
  if (!S_ISREG(st.st_mode)) {
    refuse_not_regular(dirfd, name, st.st_mode, error);
    return -1;
  }
  if (!(flags & O_NONBLOCK)) {
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0 || fcntl(fd, F_SETFL, fl & ~O_NONBLOCK) < 0) {
      vms_set_error_errno(error, errno, "failed to clear O_NONBLOCK on %s", name);
      return -1;
    }
  }
  return g_steal_fd(&fd);
}

/* ---- writing ---- */

/* mkdir -p that remembers which directories it made, so a failed save can
 * take them away again. */
static gboolean
make_dirs(const char *dir, GPtrArray *created, GError **error)
{
  g_autofree char *abs = g_canonicalize_filename(dir, NULL);
  g_autoptr(GString) prefix = g_string_new("");
  g_auto(GStrv) parts = g_strsplit(abs, "/", -1);

  for (gsize i = 0; parts[i] != NULL; i++) {
    if (parts[i][0] == '\0')
      continue;
    g_string_append_c(prefix, '/');
    g_string_append(prefix, parts[i]);
    if (mkdir(prefix->str, VMS_SNAPSHOT_DIR_MODE) == 0) {
      g_ptr_array_add(created, g_strdup(prefix->str));
      /* The mode whatever the umask: guest memory holds secrets. */
      if (chmod(prefix->str, VMS_SNAPSHOT_DIR_MODE) < 0)
        return vms_set_error_errno(error, errno, "failed to chmod directory %s", prefix->str);
    } else if (errno != EEXIST)
      return vms_set_error_errno(error, errno, "failed to create directory %s", prefix->str);
  }
  return TRUE;
}

static void
forget_created(VmsSnapWriter *w, const char *name)
{
  for (guint i = 0; i < w->created_files->len; i++) {
    if (strcmp(g_ptr_array_index(w->created_files, i), name) == 0) {
      g_ptr_array_remove_index(w->created_files, i);
      return;
    }
  }
}

static void
remember_created(VmsSnapWriter *w, const char *name)
{
  forget_created(w, name);
  g_ptr_array_add(w->created_files, g_strdup(name));
}

VmsSnapWriter *
vms_snap_writer_new(const char *dir, GError **error)
{
  g_autoptr(VmsSnapWriter) w = g_new0(VmsSnapWriter, 1);
  struct stat st;

  g_return_val_if_fail(dir != NULL, NULL);
  w->path = g_strdup(dir);
  w->dirfd = -1;
  w->created_files = g_ptr_array_new_with_free_func(g_free);
  w->created_dirs = g_ptr_array_new_with_free_func(g_free);
  if (!make_dirs(dir, w->created_dirs, error))
    return NULL;
  w->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (w->dirfd < 0) {
    vms_set_error_errno(error, errno, "failed to open snapshot directory %s", dir);
    return NULL;
  }
  if (fstatat(w->dirfd, VMS_MANIFEST_FILE, &st, AT_SYMLINK_NOFOLLOW) == 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                "%s already holds a committed snapshot (%s); saving into it is refused",
                dir, VMS_MANIFEST_FILE);
    return NULL;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(staged_names); i++)
    unlinkat(w->dirfd, staged_names[i], 0);
  return g_steal_pointer(&w);
}

void
vms_snap_writer_free(VmsSnapWriter *w)
{
  if (w == NULL)
    return;
  if (!w->committed && w->dirfd >= 0) {
    for (guint i = 0; i < w->created_files->len; i++)
      unlinkat(w->dirfd, g_ptr_array_index(w->created_files, i), 0);
  }
  /* Only empty directories go; rmdir refuses the others, as it should. */
  for (guint i = w->created_dirs->len; !w->committed && i > 0; i--)
    rmdir(g_ptr_array_index(w->created_dirs, i - 1));
  vms_close_fdp(&w->dirfd);
  g_ptr_array_unref(w->created_files);
  g_ptr_array_unref(w->created_dirs);
  g_free(w->path);
  g_free(w);
}

const char *
vms_snap_writer_get_path(VmsSnapWriter *w)
{
  return w->path;
}

int
vms_snap_writer_get_dirfd(VmsSnapWriter *w)
{
  return w->dirfd;
}

int
vms_snap_writer_stage(VmsSnapWriter *w, const char *name, GError **error)
{
  g_autofree char *tmp = g_strconcat(name, ".tmp", NULL);
  int fd;

  g_return_val_if_fail(w != NULL && !w->committed, -1);
  fd = vms_openat_regular(w->dirfd, tmp, O_RDWR | O_CREAT | O_TRUNC, VMS_SNAPSHOT_FILE_MODE,
                          error);
  if (fd < 0)
    return -1;
  remember_created(w, tmp);
  if (fchmod(fd, VMS_SNAPSHOT_FILE_MODE) < 0) {
    vms_set_error_errno(error, errno, "failed to chmod %s/%s", w->path, tmp);
    return vms_close_fdp(&fd), -1;
  }
  return fd;
}

gboolean
vms_snapdir_hash_fd(int fd, const char *what, guint8 ret_sha256[VMS_SHA256_LEN],
                    guint64 *ret_size, GError **error)
{
  return vms_stream_sha256(fd, ret_sha256, ret_size, what, error);
}

gboolean
vms_snap_writer_finish(VmsSnapWriter *w, const char *name,
                       guint8 ret_sha256[VMS_SHA256_LEN], guint64 *ret_size,
                       GError **error)
{
  g_autofree char *tmp = g_strconcat(name, ".tmp", NULL);
  vms_autofd fd = -1;
  guint8 digest[VMS_SHA256_LEN];
  guint64 size = 0;

  g_return_val_if_fail(w != NULL && !w->committed, FALSE);
  fd = vms_openat_regular(w->dirfd, tmp, O_RDONLY, 0, error);
  if (fd < 0)
    return FALSE;
  if (fsync(fd) < 0)
    return vms_set_error_errno(error, errno, "failed to fsync %s/%s", w->path, tmp);
  if ((ret_sha256 != NULL || ret_size != NULL) &&
      !vms_snapdir_hash_fd(fd, name, digest, &size, error))
    return FALSE;
  if (renameat(w->dirfd, tmp, w->dirfd, name) < 0)
    return vms_set_error_errno(error, errno, "failed to rename %s/%s to %s", w->path, tmp, name);
  forget_created(w, tmp);
  remember_created(w, name);
  if (ret_sha256 != NULL)
    memcpy(ret_sha256, digest, VMS_SHA256_LEN);
  if (ret_size != NULL)
    *ret_size = size;
  return TRUE;
}

static gboolean
link_error(VmsSnapWriter *w, int err, const char *memory_path, GError **error)
{
  if (err == EXDEV) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "cannot hard-link the memory backing file %s into %s: they are on different "
                "filesystems; place the memory backing file inside the snapshot directory "
                "(mem-path=%s/%s) or save with memory=copy",
                memory_path, w->path, w->path, VMS_MEMORY_FILE);
    return FALSE;
  }
  return vms_set_error_errno(error, err, "failed to hard-link %s -> %s/%s",
                             memory_path, w->path, VMS_MEMORY_FILE);
}

/* A linked memory.bin is the VM's backing file itself: it gets the mode of
 * every snapshot file too (guest RAM must not be readable by others). */
static gboolean
private_memory(VmsSnapWriter *w, const char *memory_path, GError **error)
{
  if (fchmodat(w->dirfd, VMS_MEMORY_FILE, VMS_SNAPSHOT_FILE_MODE, 0) < 0)
    return vms_set_error_errno(error, errno, "failed to chmod %s/%s (the memory backing file %s)",
                               w->path, VMS_MEMORY_FILE, memory_path);
  return TRUE;
}

gboolean
vms_snap_writer_link_memory(VmsSnapWriter *w, const char *memory_path, GError **error)
{
  const char *tmp = VMS_MEMORY_FILE ".tmp";
  struct stat src, dst;

  g_return_val_if_fail(w != NULL && !w->committed && memory_path != NULL, FALSE);
  if (stat(memory_path, &src) < 0)
    return vms_set_error_errno(error, errno, "failed to stat memory backing file %s", memory_path);
  if (!S_ISREG(src.st_mode)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "memory backing file %s is %s, not a regular file", memory_path,
                file_type_name(src.st_mode));
    return FALSE;
  }
  /* Already DIR/memory.bin (the VM's mem-path is inside the snapshot): the
   * link exists and must not be touched — nor removed on failure. */
  if (fstatat(w->dirfd, VMS_MEMORY_FILE, &dst, AT_SYMLINK_NOFOLLOW) == 0 &&
      dst.st_dev == src.st_dev && dst.st_ino == src.st_ino)
    return private_memory(w, memory_path, error);
  /* Link under a temp name and rename over memory.bin, so that a different
   * existing memory.bin is replaced atomically. */
  unlinkat(w->dirfd, tmp, 0);
  if (linkat(AT_FDCWD, memory_path, w->dirfd, tmp, AT_SYMLINK_FOLLOW) < 0)
    return link_error(w, errno, memory_path, error);
  remember_created(w, tmp);
  if (renameat(w->dirfd, tmp, w->dirfd, VMS_MEMORY_FILE) < 0)
    return vms_set_error_errno(error, errno, "failed to rename %s/%s to %s",
                               w->path, tmp, VMS_MEMORY_FILE);
  forget_created(w, tmp);
  remember_created(w, VMS_MEMORY_FILE);
  return private_memory(w, memory_path, error);
}

/* rename that refuses to replace an existing manifest.bin (another save
 * committed meanwhile); plain renameat where the filesystem can't. */
static int
rename_noreplace(int dirfd, const char *from, const char *to)
{
  if (renameat2(dirfd, from, dirfd, to, RENAME_NOREPLACE) == 0)
    return 0;
  if (errno != EINVAL && errno != ENOSYS)
    return -errno;
  return renameat(dirfd, from, dirfd, to) == 0 ? 0 : -errno;
}

gboolean
vms_snap_writer_commit(VmsSnapWriter *w, const VmsManifest *m, GError **error)
{
  const char *tmp = VMS_MANIFEST_FILE ".tmp";
  g_autoptr(GBytes) bytes = NULL;
  vms_autofd fd = -1;
  gsize len;
  const guint8 *data;
  int r;

  g_return_val_if_fail(w != NULL && !w->committed && m != NULL, FALSE);
  /* Never commit a manifest that would not be read back. */
  if (!vms_manifest_check_complete(m, error))
    return FALSE;
  bytes = vms_manifest_encode(m);
  data = g_bytes_get_data(bytes, &len);
  fd = vms_openat_regular(w->dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC, VMS_SNAPSHOT_FILE_MODE,
                          error);
  if (fd < 0)
    return FALSE;
  remember_created(w, tmp);
  if (fchmod(fd, VMS_SNAPSHOT_FILE_MODE) < 0)
    return vms_set_error_errno(error, errno, "failed to chmod %s/%s", w->path, tmp);
  g_autofree char *what = g_strdup_printf("%s/%s", w->path, tmp);
  if (!vms_stream_write_all(fd, data, len, NULL, what, error))
    return FALSE;
  if (fsync(fd) < 0)
    return vms_set_error_errno(error, errno, "failed to fsync %s/%s", w->path, tmp);
  /* The renames of the other files must be durable before the commit record. */
  r = vms_fsync_dir(w->dirfd);
  if (r == 0)
    r = rename_noreplace(w->dirfd, tmp, VMS_MANIFEST_FILE);
  if (r < 0)
    return vms_set_error_errno(error, -r, "failed to commit %s/%s", w->path, VMS_MANIFEST_FILE);
  forget_created(w, tmp);
  /* A commit that may not survive a crash is no commit: take it back, so
   * that failure always means "no manifest.bin". */
  r = vms_fsync_dir(w->dirfd);
  if (r < 0) {
    unlinkat(w->dirfd, VMS_MANIFEST_FILE, 0);
    return vms_set_error_errno(error, -r, "failed to fsync directory %s after the commit", w->path);
  }
  w->committed = TRUE;
  return TRUE;
}

/* ---- reading ---- */

VmsSnapshot *
vms_snapshot_open(const char *dir, GError **error)
{
  g_autoptr(VmsSnapshot) s = g_new0(VmsSnapshot, 1);
  vms_autofd fd = -1;
  struct stat st;

  g_return_val_if_fail(dir != NULL, NULL);
  s->path = g_strdup(dir);
  s->dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (s->dirfd < 0) {
    vms_set_error_errno(error, errno, "failed to open snapshot directory %s", dir);
    return NULL;
  }
  if (fstatat(s->dirfd, VMS_MANIFEST_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
    gboolean invalidated =
        fstatat(s->dirfd, VMS_MANIFEST_FILE VMS_INVALID_SUFFIX, &st, AT_SYMLINK_NOFOLLOW) == 0;
    g_set_error(error, VMS_ERROR, VMS_ERROR_INCOMPLETE, "%s is %s", dir,
                invalidated ? "an invalidated snapshot (manifest.bin.invalid: its linked memory "
                              "changed after the save)"
                            : "an incomplete snapshot (no manifest.bin)");
    return NULL;
  }
  fd = vms_openat_regular(s->dirfd, VMS_MANIFEST_FILE, O_RDONLY, 0, error);
  if (fd < 0)
    return NULL;
  s->manifest = vms_manifest_read_fd(fd, s->manifest_sha256, error);
  if (s->manifest == NULL) {
    g_prefix_error(error, "%s/%s: ", dir, VMS_MANIFEST_FILE);
    return NULL;
  }
  /* A pulled snapshot's disks as they are on this host (disk-local.h). */
  if (!vms_disks_local_apply(s->dirfd, dir, s->manifest, s->manifest_sha256, error))
    return NULL;
  return g_steal_pointer(&s);
}

void
vms_snapshot_free(VmsSnapshot *s)
{
  if (s == NULL)
    return;
  vms_close_fdp(&s->dirfd);
  vms_manifest_free(s->manifest);
  g_free(s->path);
  g_free(s);
}

int
vms_snapshot_open_file(VmsSnapshot *s, const char *name, int flags, GError **error)
{
  return vms_openat_regular(s->dirfd, name, flags, 0, error);
}

const char *
vms_snapshot_memory_file(VmsSnapshot *s)
{
  const VmsManifest *m = s->manifest;

  if (m->memory_file != NULL && m->memory_file[0] != '\0')
    return m->memory_file;
  return m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF ? VMS_DIFF_FILE
                                                                 : VMS_MEMORY_FILE;
}

char *
vms_snapshot_parent_path(VmsSnapshot *s)
{
  g_autofree char *base = NULL;
  const char *parent = s->manifest->parent;

  if (s->manifest->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF ||
      parent == NULL || parent[0] == '\0')
    return NULL;
  base = g_canonicalize_filename(s->path, NULL);
  return g_canonicalize_filename(parent, base);
}

gboolean
vms_snapshot_invalidate(const char *dir, GError **error)
{
  vms_autofd dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  int r;

  if (dirfd < 0)
    return vms_set_error_errno(error, errno, "failed to open snapshot directory %s", dir);
  if (renameat(dirfd, VMS_MANIFEST_FILE, dirfd, VMS_MANIFEST_FILE VMS_INVALID_SUFFIX) < 0)
    return vms_set_error_errno(error, errno, "failed to invalidate %s (rename %s to %s%s)",
                               dir, VMS_MANIFEST_FILE, VMS_MANIFEST_FILE, VMS_INVALID_SUFFIX);
  r = vms_fsync_dir(dirfd);
  if (r < 0)
    return vms_set_error_errno(error, -r, "failed to fsync directory %s", dir);
  return TRUE;
}
