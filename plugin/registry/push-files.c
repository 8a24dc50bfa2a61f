/* vmsnap registry: what push reads from a snapshot — whole small files,
 * compressed or not, and the memory's chunk digests (push-private.h). */
#include "push-private.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include "blob.h"
#include "error.h"
#include "util.h"

/* The whole of @name in @s (state.bin, memory.map, manifest.bin). */
GBytes *
vms_reg_read_snapshot_file(VmsSnapshot *s, const char *name, GError **error)
{
  vms_autofd fd = vms_snapshot_open_file(s, name, O_RDONLY, error);
  struct stat st;
  guint8 *buf;
  gssize n;

  if (fd < 0)
    return NULL;
  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s/%s", s->path, name), NULL;
  buf = g_malloc((gsize)st.st_size + 1);
  n = vms_pread_full(fd, buf, (gsize)st.st_size, 0);
  if (n != st.st_size) {
    g_free(buf);
    return vms_set_error_errno(error, n < 0 ? (int)-n : EIO, "failed to read %s/%s", s->path, name),
           NULL;
  }
  return g_bytes_new_take(buf, (gsize)st.st_size);
}

/* @name of @s, zstd-compressed. */
GBytes *
vms_reg_read_compressed(VmsSnapshot *s, const char *name, GError **error)
{
  g_autoptr(GBytes) raw = vms_reg_read_snapshot_file(s, name, error);
  gsize len;
  const void *data;

  if (raw == NULL)
    return NULL;
  data = g_bytes_get_data(raw, &len);
  return vms_reg_compress(data, len);
}

/* memory.chunks of @s (its bytes and digests); computed into a private
 * temporary directory when the snapshot has none, so push never writes
 * into the snapshot it sends. */
gboolean
vms_reg_chunk_digests(VmsSnapshot *s, const VmsChunkSource *src, VmsChunkIndex **ret_idx,
              GBytes **ret_file, GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(VmsChunkIndex) idx = NULL;
  g_autofree char *tmp = NULL;
  g_autofree char *path = NULL;
  g_autofree char *data = NULL;
  gsize len = 0;
  vms_autofd dfd = -1;
  gboolean ok;

  if (vms_snapshot_read_chunks(s, &idx, &local)) {
    *ret_file = vms_reg_read_snapshot_file(s, VMS_CHUNKS_FILE, error);
    *ret_idx = g_steal_pointer(&idx);
    return *ret_file != NULL;
  }
  if (!g_error_matches(local, VMS_ERROR, VMS_ERROR_NO_DIGESTS)) {
    g_propagate_error(error, g_steal_pointer(&local));
    return FALSE;
  }
  if (!vms_chunks_compute(src, VMS_CHUNK_SIZE, &idx, error))
    return FALSE;
  tmp = g_dir_make_tmp("vmsnap-push-XXXXXX", error);
  if (tmp == NULL)
    return FALSE;
  dfd = open(tmp, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  path = g_build_filename(tmp, VMS_CHUNKS_FILE, NULL);
  ok = dfd >= 0 && vms_chunks_write_at(dfd, idx, s->manifest_sha256, error) &&
       g_file_get_contents(path, &data, &len, error);
  unlink(path);
  rmdir(tmp);
  if (!ok)
    return FALSE;
  *ret_file = g_bytes_new_take(g_steal_pointer(&data), len);
  *ret_idx = g_steal_pointer(&idx);
  return TRUE;
}

