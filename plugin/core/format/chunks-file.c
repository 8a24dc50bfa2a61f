/* vmsnap core: memory.chunks — writing and reading the digest file, and the
 * chunks of a committed snapshot (chunks.h; layout in doc/format.md).
 *
 * All integers little-endian:
 *   0   8  magic "VMSNCHK1"
 *   8   4  chunk_size (u32)
 *   12  4  flags (u32), 0
 *   16  8  data_size (u64): bytes of the chunk stream
 *   24  8  count (u64) = ceil(data_size / chunk_size)
 *   32  32 SHA-256 of manifest.bin (the binding)
 *   64  32 x count  digests
 *   end 32 SHA-256 of every byte before it
 */
#include "chunks.h"
#include "chunks-private.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "extents.h"
#include "stream.h"
#include "util.h"

#define CHUNKS_MAGIC "VMSNCHK1"
#define CHUNKS_HEADER 64u

/* The whole file's bytes for @idx bound to @manifest_sha256. */
static GBytes *
encode_chunks(const VmsChunkIndex *idx, const guint8 manifest_sha256[VMS_SHA256_LEN])
{
  gsize body = CHUNKS_HEADER + (gsize)idx->count * VMS_SHA256_LEN;
  guint8 *buf = g_malloc0(body + VMS_SHA256_LEN);

  memcpy(buf, CHUNKS_MAGIC, 8);
  vms_put_le32(buf + 8, idx->chunk_size);
  vms_put_le32(buf + 12, 0);
  vms_put_le64(buf + 16, idx->data_size);
  vms_put_le64(buf + 24, idx->count);
  memcpy(buf + 32, manifest_sha256, VMS_SHA256_LEN);
  memcpy(buf + CHUNKS_HEADER, idx->digests, (gsize)idx->count * VMS_SHA256_LEN);
  vms_chunk_digest(buf, body, buf + body);
  return g_bytes_new_take(buf, body + VMS_SHA256_LEN);
}

/* Writes @bytes to the new file @fd through a GIO stream, then fsyncs it. */
static gboolean
write_all_fd(int fd, GBytes *bytes, const char *what, GError **error)
{
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(bytes, &len);

  if (!vms_stream_write_all(fd, data, len, NULL, what, error))
    return FALSE;
  if (fsync(fd) < 0)
    return vms_set_error_errno(error, errno, "failed to fsync %s", what);
  return TRUE;
}

gboolean
vms_chunks_write_at(int dirfd, const VmsChunkIndex *idx,
                    const guint8 manifest_sha256[VMS_SHA256_LEN], GError **error)
{
  const char *tmp = VMS_CHUNKS_TMP_FILE;
  g_autoptr(GBytes) bytes = encode_chunks(idx, manifest_sha256);
  vms_autofd fd = -1;
  int r;

  fd = vms_openat_regular(dirfd, tmp, O_WRONLY | O_CREAT | O_TRUNC, VMS_SNAPSHOT_FILE_MODE,
                          error);
  if (fd < 0)
    return FALSE;
  /* 0600 whatever the umask, and whatever a stale temp had. */
  if (fchmod(fd, VMS_SNAPSHOT_FILE_MODE) < 0 || !write_all_fd(fd, bytes, tmp, error)) {
    if (error != NULL && *error == NULL)
      vms_set_error_errno(error, errno, "failed to chmod %s", tmp);
    unlinkat(dirfd, tmp, 0);
    return FALSE;
  }
  if (renameat(dirfd, tmp, dirfd, VMS_CHUNKS_FILE) < 0) {
    int err = errno;
    unlinkat(dirfd, tmp, 0);
    return vms_set_error_errno(error, err, "failed to rename %s to %s", tmp, VMS_CHUNKS_FILE);
  }
  r = vms_fsync_dir(dirfd);
  if (r < 0)
    return vms_set_error_errno(error, -r, "failed to fsync the directory of %s", VMS_CHUNKS_FILE);
  return TRUE;
}

static gboolean
chunks_corrupt(GError **error, const char *why)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s is corrupt: %s", VMS_CHUNKS_FILE, why);
  return FALSE;
}

/* Checks the header of @buf (@len bytes, at least the header) and returns
 * the file size it implies, or 0. */
static guint64
check_header(const guint8 *buf, const guint8 manifest_sha256[VMS_SHA256_LEN],
             guint64 expect_data_size, GError **error)
{
  guint32 chunk_size = vms_get_le32(buf + 8);
  guint64 data_size = vms_get_le64(buf + 16), count = vms_get_le64(buf + 24);

  if (memcmp(buf, CHUNKS_MAGIC, 8) != 0)
    return chunks_corrupt(error, "bad magic (not VMSNCHK1)"), 0;
  if (vms_get_le32(buf + 12) != 0)
    return chunks_corrupt(error, "unknown flags"), 0;
  if (chunk_size < VMS_CHUNK_SIZE_MIN || chunk_size > VMS_CHUNK_SIZE_MAX ||
      (chunk_size & (chunk_size - 1)) != 0)
    return chunks_corrupt(error, "chunk size is not a power of two from 64 KiB to 64 MiB"), 0;
  if (memcmp(buf + 32, manifest_sha256, VMS_SHA256_LEN) != 0)
    return chunks_corrupt(error, "it belongs to another manifest.bin (its binding SHA-256 "
                                 "differs)"), 0;
  if (data_size != expect_data_size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s is corrupt: it covers %" G_GUINT64_FORMAT " bytes, the memory data is %"
                G_GUINT64_FORMAT " bytes", VMS_CHUNKS_FILE, data_size, expect_data_size);
    return 0;
  }
  if (count != (data_size + chunk_size - 1) / chunk_size)
    return chunks_corrupt(error, "its count doesn't fit its data size"), 0;
  return CHUNKS_HEADER + count * VMS_SHA256_LEN + VMS_SHA256_LEN;
}

/* Reads all of @fd, which must be exactly @size bytes. */
static guint8 *
read_exact(int fd, guint64 size, GError **error)
{
  g_autofree guint8 *buf = g_malloc(size + 1);
  gssize n = vms_pread_full(fd, buf, size + 1, 0);

  if (n < 0)
    return vms_set_error_errno(error, (int)-n, "failed to read %s", VMS_CHUNKS_FILE), NULL;
  if ((guint64)n != size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s is corrupt: %" G_GSSIZE_FORMAT " bytes, its header says %" G_GUINT64_FORMAT,
                VMS_CHUNKS_FILE, n, size);
    return NULL;
  }
  return g_steal_pointer(&buf);
}

static gboolean
open_chunks_file(int dirfd, int *ret_fd, GError **error)
{
  struct stat st;

  if (fstatat(dirfd, VMS_CHUNKS_FILE, &st, AT_SYMLINK_NOFOLLOW) < 0 && errno == ENOENT) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NO_DIGESTS,
                "no memory digests (%s is missing): the memory cannot be verified",
                VMS_CHUNKS_FILE);
    return FALSE;
  }
  *ret_fd = vms_openat_regular(dirfd, VMS_CHUNKS_FILE, O_RDONLY, 0, error);
  return *ret_fd >= 0;
}

gboolean
vms_chunks_read_at(int dirfd, const guint8 manifest_sha256[VMS_SHA256_LEN],
                   guint64 expect_data_size, VmsChunkIndex **ret_idx, GError **error)
{
  vms_autofd fd = -1;
  guint8 head[CHUNKS_HEADER], sum[VMS_SHA256_LEN];
  g_autofree guint8 *buf = NULL;
  struct stat st;
  guint64 size;
  gssize n;

  if (!open_chunks_file(dirfd, &fd, error))
    return FALSE;
  n = vms_pread_full(fd, head, sizeof head, 0);
  if (n < 0)
    return vms_set_error_errno(error, (int)-n, "failed to read %s", VMS_CHUNKS_FILE);
  if (n < (gssize)sizeof head)
    return chunks_corrupt(error, "shorter than its header");
  size = check_header(head, manifest_sha256, expect_data_size, error);
  if (size == 0)
    return FALSE;
  /* The size is checked before the allocation it implies. */
  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s", VMS_CHUNKS_FILE);
  if ((guint64)st.st_size != size)
    return chunks_corrupt(error, "its size doesn't match its header");
  buf = read_exact(fd, size, error);
  if (buf == NULL)
    return FALSE;
  vms_chunk_digest(buf, size - VMS_SHA256_LEN, sum);
  if (memcmp(sum, buf + size - VMS_SHA256_LEN, VMS_SHA256_LEN) != 0)
    return chunks_corrupt(error, "its own SHA-256 doesn't match its content");
  g_autoptr(VmsChunkIndex) idx = vms_chunk_index_new(vms_get_le32(head + 8), expect_data_size);
  memcpy(idx->manifest_sha256, manifest_sha256, VMS_SHA256_LEN);
  memcpy(idx->digests, buf + CHUNKS_HEADER, (gsize)idx->count * VMS_SHA256_LEN);
  *ret_idx = g_steal_pointer(&idx);
  return TRUE;
}

/* ---- a committed snapshot's chunks ---- */

static gboolean
is_diff(const VmsSnapshot *s)
{
  return s->manifest->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
}

/* A diff's page list, from memory.map checked against page_map_sha256. */
static GArray *
read_page_list(VmsSnapshot *s, GError **error)
{
  g_autoptr(GArray) list = NULL;
  guint8 sha[VMS_SHA256_LEN];
  const ProtobufCBinaryData *want = &s->manifest->page_map_sha256;
  vms_autofd fd = vms_snapshot_open_file(s, VMS_MAP_FILE, O_RDONLY, error);

  if (fd < 0)
    return NULL;
  if (!vms_pagemap_file_read(fd, s->manifest->memory_size_bytes, &list, NULL, sha, error)) {
    g_prefix_error(error, "%s/%s: ", s->path, VMS_MAP_FILE);
    return NULL;
  }
  if (want->len != VMS_SHA256_LEN || memcmp(want->data, sha, VMS_SHA256_LEN) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s/%s doesn't match the manifest's page_map_sha256", s->path, VMS_MAP_FILE);
    return NULL;
  }
  return g_steal_pointer(&list);
}

VmsChunkSource *
vms_snapshot_chunk_source(VmsSnapshot *s, GError **error)
{
  const char *name = vms_snapshot_memory_file(s);
  g_autoptr(GArray) list = NULL;
  struct stat st;
  vms_autofd fd = vms_snapshot_open_file(s, name, O_RDONLY, error);

  if (fd < 0)
    return NULL;
  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s/%s", s->path, name), NULL;
  if ((guint64)st.st_size != s->manifest->memory_size_bytes) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "memory file %s/%s is %" G_GINT64_FORMAT " bytes, the manifest's memory size is %"
                G_GUINT64_FORMAT, s->path, name, (gint64)st.st_size,
                s->manifest->memory_size_bytes);
    return NULL;
  }
  if (is_diff(s) && (list = read_page_list(s, error)) == NULL)
    return NULL;
  VmsChunkSource *src = vms_chunk_source_new(fd, list, (guint64)st.st_size, error);
  if (src == NULL) {
    g_prefix_error(error, "%s/%s: ", s->path, VMS_MAP_FILE);
    return NULL;
  }
  g_steal_fd(&fd);
  vms_chunk_source_take_fd(src);
  return src;
}

/* What the digests of @s cover: memory_size_bytes, or a diff's data bytes. */
static guint64
chunk_data_size(const VmsSnapshot *s, const VmsChunkSource *src)
{
  return src != NULL ? vms_chunk_source_size(src) : s->manifest->memory_size_bytes;
}

gboolean
vms_snapshot_read_chunks(VmsSnapshot *s, VmsChunkIndex **ret_idx, GError **error)
{
  g_autoptr(VmsChunkSource) src = NULL;
  guint64 size = s->manifest->memory_size_bytes;

  if (is_diff(s)) {
    src = vms_snapshot_chunk_source(s, error);
    if (src == NULL)
      return FALSE;
    size = chunk_data_size(s, src);
  }
  if (!vms_chunks_read_at(s->dirfd, s->manifest_sha256, size, ret_idx, error)) {
    g_prefix_error(error, "%s: ", s->path);
    return FALSE;
  }
  return TRUE;
}

gboolean
vms_snapshot_write_chunks(VmsSnapshot *s, GError **error)
{
  g_autoptr(VmsChunkSource) src = vms_snapshot_chunk_source(s, error);
  g_autoptr(VmsChunkIndex) idx = NULL;

  if (src == NULL || !vms_chunks_compute(src, VMS_CHUNK_SIZE, &idx, error) ||
      !vms_chunks_write_at(s->dirfd, idx, s->manifest_sha256, error)) {
    g_prefix_error(error, "%s: memory digests: ", s->path);
    return FALSE;
  }
  return TRUE;
}

gboolean
vms_snapshot_verify_chunks(VmsSnapshot *s, GError **error)
{
  g_autoptr(VmsChunkSource) src = vms_snapshot_chunk_source(s, error);
  g_autoptr(VmsChunkIndex) idx = NULL;
  g_autofree char *what = g_strdup_printf("%s/%s", s->path, vms_snapshot_memory_file(s));

  if (src == NULL)
    return FALSE;
  if (!vms_chunks_read_at(s->dirfd, s->manifest_sha256, vms_chunk_source_size(src), &idx, error)) {
    g_prefix_error(error, "%s: ", s->path);
    return FALSE;
  }
  return vms_chunks_verify_range(src, idx, what, 0, idx->count, error);
}
