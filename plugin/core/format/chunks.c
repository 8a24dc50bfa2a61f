/* vmsnap core: chunk digests — the index, chunk streams over a file or a
 * diff's page list, computing and checking digests (chunks.h). The file
 * memory.chunks and a snapshot's chunks are in chunks-file.c. */
#include "chunks.h"
#include "chunks-private.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>
#include <openssl/evp.h>

#include "error.h"
#include "extents.h"
#include "util.h"

struct _VmsChunkSource {
  int fd;
  gboolean owns_fd;
  GArray *extents;   /* VmsExtent; NULL for a plain file */
  GArray *starts;    /* guint64 stream offset of each extent */
  guint64 size;      /* stream bytes */
};

/* One piece of a chunk: @length bytes at file @offset. */
typedef gboolean (*SegmentFunc)(guint64 offset, guint8 *buf, gsize length, gpointer data,
                                GError **error);

void
vms_chunk_digest(const void *data, gsize len, guint8 ret_sha256[VMS_SHA256_LEN])
{
  unsigned int n = VMS_SHA256_LEN;

  /* EVP_Digest fails only on allocation failure, which aborts anyway. */
  if (EVP_Digest(data, len, ret_sha256, &n, EVP_sha256(), NULL) != 1)
    g_error("SHA-256 of %" G_GSIZE_FORMAT " bytes failed in libcrypto", len);
}

static void
zero_digest(gsize len, guint8 ret[VMS_SHA256_LEN])
{
  g_autofree guint8 *zeros = g_malloc0(MAX(len, 1));

  vms_chunk_digest(zeros, len, ret);
}

static gboolean
valid_chunk_size(guint32 chunk_size)
{
  return chunk_size >= VMS_CHUNK_SIZE_MIN && chunk_size <= VMS_CHUNK_SIZE_MAX &&
         (chunk_size & (chunk_size - 1)) == 0;
}

VmsChunkIndex *
vms_chunk_index_new(guint32 chunk_size, guint64 data_size)
{
  VmsChunkIndex *idx;

  g_return_val_if_fail(valid_chunk_size(chunk_size), NULL);
  idx = g_new0(VmsChunkIndex, 1);
  idx->chunk_size = chunk_size;
  idx->data_size = data_size;
  idx->count = (data_size + chunk_size - 1) / chunk_size;
  idx->digests = g_malloc0_n(MAX(idx->count, 1), VMS_SHA256_LEN);
  zero_digest(chunk_size, idx->zero_full);
  if (idx->count > 0)
    zero_digest(vms_chunk_index_length(idx, idx->count - 1), idx->zero_last);
  for (guint64 i = 0; i < idx->count; i++)
    memcpy(idx->digests[i], i + 1 < idx->count ? idx->zero_full : idx->zero_last, VMS_SHA256_LEN);
  return idx;
}

void
vms_chunk_index_free(VmsChunkIndex *idx)
{
  if (idx == NULL)
    return;
  g_free(idx->digests);
  g_free(idx);
}

guint32
vms_chunk_index_length(const VmsChunkIndex *idx, guint64 i)
{
  g_return_val_if_fail(i < idx->count, 0);
  return (guint32)MIN((guint64)idx->chunk_size, idx->data_size - i * idx->chunk_size);
}

static const guint8 *
zero_digest_of(const VmsChunkIndex *idx, guint64 i)
{
  return vms_chunk_index_length(idx, i) == idx->chunk_size ? idx->zero_full : idx->zero_last;
}

gboolean
vms_chunk_index_is_zero(const VmsChunkIndex *idx, guint64 i)
{
  g_return_val_if_fail(i < idx->count, FALSE);
  return memcmp(idx->digests[i], zero_digest_of(idx, i), VMS_SHA256_LEN) == 0;
}

/* ---- sources ---- */

VmsChunkSource *
vms_chunk_source_new(int fd, const GArray *extents, guint64 file_size, GError **error)
{
  g_autoptr(GArray) starts = g_array_new(FALSE, FALSE, sizeof(guint64));
  VmsChunkSource *src;
  guint64 total = 0;

  g_return_val_if_fail(fd >= 0, NULL);
  for (guint i = 0; extents != NULL && i < extents->len; i++) {
    const VmsExtent *e = &g_array_index(extents, VmsExtent, i);
    if (e->offset > file_size || e->length > file_size - e->offset) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                  "page list extent %u (offset %" G_GUINT64_FORMAT ", length %" G_GUINT64_FORMAT
                  ") runs past the memory file's %" G_GUINT64_FORMAT " bytes",
                  i, e->offset, e->length, file_size);
      return NULL;
    }
    g_array_append_val(starts, total);
    total += e->length;
  }
  src = g_new0(VmsChunkSource, 1);
  src->fd = fd;
  if (extents != NULL) {
    src->extents = g_array_sized_new(FALSE, FALSE, sizeof(VmsExtent), extents->len);
    g_array_append_vals(src->extents, extents->data, extents->len);
    src->starts = g_steal_pointer(&starts);
    src->size = total;
  } else {
    src->size = file_size;
  }
  return src;
}

void
vms_chunk_source_take_fd(VmsChunkSource *src)
{
  src->owns_fd = TRUE;
}

void
vms_chunk_source_free(VmsChunkSource *src)
{
  if (src == NULL)
    return;
  if (src->owns_fd)
    vms_close_fdp(&src->fd);
  g_clear_pointer(&src->extents, g_array_unref);
  g_clear_pointer(&src->starts, g_array_unref);
  g_free(src);
}

guint64
vms_chunk_source_size(const VmsChunkSource *src)
{
  return src->size;
}

/* The extent holding stream offset @pos (binary search over starts). */
static guint
extent_at(const VmsChunkSource *src, guint64 pos)
{
  guint lo = 0, hi = src->starts->len;

  while (hi - lo > 1) {
    guint mid = lo + (hi - lo) / 2;
    if (g_array_index(src->starts, guint64, mid) <= pos)
      lo = mid;
    else
      hi = mid;
  }
  return lo;
}

/* Calls @fn for each file piece of stream bytes [@pos, @pos + @len), with
 * @buf advanced to match. */
static gboolean
for_each_segment(const VmsChunkSource *src, guint64 pos, gsize len, guint8 *buf, SegmentFunc fn,
                 gpointer data, GError **error)
{
  if (src->extents == NULL)
    return fn(pos, buf, len, data, error);
  for (guint i = extent_at(src, pos); len > 0 && i < src->extents->len; i++) {
    const VmsExtent *e = &g_array_index(src->extents, VmsExtent, i);
    guint64 skip = pos - g_array_index(src->starts, guint64, i);
    gsize n = (gsize)MIN((guint64)len, e->length - skip);
    if (!fn(e->offset + skip, buf, n, data, error))
      return FALSE;
    pos += n;
    buf += n;
    len -= n;
  }
  return TRUE;
}

static gboolean
read_segment(guint64 offset, guint8 *buf, gsize length, gpointer data, GError **error)
{
  const VmsChunkSource *src = data;
  gssize n = vms_pread_full(src->fd, buf, length, offset);

  if (n < 0)
    return vms_set_error_errno(error, (int)-n, "failed to read %" G_GSIZE_FORMAT " bytes at "
                               "offset %" G_GUINT64_FORMAT, length, offset);
  /* A file shorter than its stream reads as zeros past its end, like a hole;
   * the callers check the file's size against the manifest. */
  memset(buf + n, 0, length - (gsize)n);
  return TRUE;
}

static gboolean
write_segment(guint64 offset, guint8 *buf, gsize length, gpointer data, GError **error)
{
  int r = vms_pwrite_full(GPOINTER_TO_INT(data), buf, length, offset);

  if (r < 0)
    return vms_set_error_errno(error, -r, "failed to write %" G_GSIZE_FORMAT " bytes at "
                               "offset %" G_GUINT64_FORMAT, length, offset);
  return TRUE;
}

static gboolean
check_chunk_arg(const VmsChunkSource *src, const VmsChunkIndex *idx, guint64 i, GError **error)
{
  if (idx->data_size != src->size || i >= idx->count) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "chunk %" G_GUINT64_FORMAT " of an index of %" G_GUINT64_FORMAT " chunks over %"
                G_GUINT64_FORMAT " bytes does not fit a stream of %" G_GUINT64_FORMAT " bytes",
                i, idx->count, idx->data_size, src->size);
    return FALSE;
  }
  return TRUE;
}

gboolean
vms_chunk_read(const VmsChunkSource *src, const VmsChunkIndex *idx, guint64 i, guint8 *buf,
               GError **error)
{
  if (!check_chunk_arg(src, idx, i, error))
    return FALSE;
  return for_each_segment(src, i * idx->chunk_size, vms_chunk_index_length(idx, i), buf,
                          read_segment, (gpointer)src, error);
}

gboolean
vms_chunk_write(const VmsChunkSource *src, const VmsChunkIndex *idx, guint64 i, int dst_fd,
                const guint8 *buf, GError **error)
{
  if (!check_chunk_arg(src, idx, i, error))
    return FALSE;
  return for_each_segment(src, i * idx->chunk_size, vms_chunk_index_length(idx, i),
                          (guint8 *)buf, write_segment, GINT_TO_POINTER(dst_fd), error);
}

/* ---- hashing ---- */

/* TRUE if chunk @i of a plain-file source lies wholly in a hole. */
static gboolean
chunk_is_hole(const VmsChunkSource *src, const VmsChunkIndex *idx, guint64 i)
{
  off_t start = (off_t)(i * idx->chunk_size);
  off_t data;

  if (src->extents != NULL)
    return FALSE;
  data = lseek(src->fd, start, SEEK_DATA);
  if (data < 0)
    return errno == ENXIO; /* no data up to the end; other errors: read it */
  return (guint64)data >= (guint64)start + vms_chunk_index_length(idx, i);
}

static gboolean
all_zero(const guint8 *buf, gsize len)
{
  return len == 0 || (buf[0] == 0 && memcmp(buf, buf + 1, len - 1) == 0);
}

/* The digest of chunk @i of @src, read into @buf (chunk_size bytes). */
static gboolean
hash_chunk(const VmsChunkSource *src, const VmsChunkIndex *idx, guint64 i, guint8 *buf,
           guint8 ret[VMS_SHA256_LEN], GError **error)
{
  guint32 len = vms_chunk_index_length(idx, i);

  if (chunk_is_hole(src, idx, i)) {
    memcpy(ret, zero_digest_of(idx, i), VMS_SHA256_LEN);
    return TRUE;
  }
  if (!vms_chunk_read(src, idx, i, buf, error))
    return FALSE;
  if (all_zero(buf, len))
    memcpy(ret, zero_digest_of(idx, i), VMS_SHA256_LEN);
  else
    vms_chunk_digest(buf, len, ret);
  return TRUE;
}

gboolean
vms_chunks_compute(const VmsChunkSource *src, guint32 chunk_size, VmsChunkIndex **ret_idx,
                   GError **error)
{
  g_autoptr(VmsChunkIndex) idx = NULL;
  g_autofree guint8 *buf = NULL;

  if (!valid_chunk_size(chunk_size)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "chunk size %u is not a power of two from %u to %u", chunk_size,
                VMS_CHUNK_SIZE_MIN, VMS_CHUNK_SIZE_MAX);
    return FALSE;
  }
  idx = vms_chunk_index_new(chunk_size, src->size);
  buf = g_malloc(chunk_size);
  for (guint64 i = 0; i < idx->count; i++) {
    if (!hash_chunk(src, idx, i, buf, idx->digests[i], error)) {
      g_prefix_error(error, "hashing chunk %" G_GUINT64_FORMAT ": ", i);
      return FALSE;
    }
  }
  *ret_idx = g_steal_pointer(&idx);
  return TRUE;
}

/* The file offset where stream offset @pos lies. */
static guint64
file_offset_of(const VmsChunkSource *src, guint64 pos)
{
  guint i;

  if (src->extents == NULL || src->extents->len == 0)
    return pos;
  i = extent_at(src, pos);
  return g_array_index(src->extents, VmsExtent, i).offset +
         (pos - g_array_index(src->starts, guint64, i));
}

static gboolean
chunk_mismatch(const VmsChunkSource *src, const VmsChunkIndex *idx, const char *what, guint64 i,
               GError **error)
{
  guint64 start = i * idx->chunk_size;
  guint64 end = start + vms_chunk_index_length(idx, i);

  if (src->extents == NULL)
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s is corrupt: chunk %" G_GUINT64_FORMAT " (bytes %" G_GUINT64_FORMAT "-%"
                G_GUINT64_FORMAT ") doesn't match its digest in %s", what, i, start, end - 1,
                VMS_CHUNKS_FILE);
  else
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s is corrupt: chunk %" G_GUINT64_FORMAT " (diff data bytes %" G_GUINT64_FORMAT
                "-%" G_GUINT64_FORMAT ", starting at file offset %" G_GUINT64_FORMAT
                ") doesn't match its digest in %s", what, i, start, end - 1,
                file_offset_of(src, start), VMS_CHUNKS_FILE);
  return FALSE;
}

gboolean
vms_chunks_verify_range(const VmsChunkSource *src, const VmsChunkIndex *idx, const char *what,
                        guint64 first, guint64 n, GError **error)
{
  g_autofree guint8 *buf = g_malloc(idx->chunk_size);
  guint64 end = first + MIN(n, idx->count - MIN(first, idx->count));
  guint8 digest[VMS_SHA256_LEN];

  if (idx->data_size != src->size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s: its digests cover %" G_GUINT64_FORMAT " bytes, the data is %"
                G_GUINT64_FORMAT " bytes", what, idx->data_size, src->size);
    return FALSE;
  }
  for (guint64 i = first; i < end; i++) {
    if (!hash_chunk(src, idx, i, buf, digest, error)) {
      g_prefix_error(error, "%s: chunk %" G_GUINT64_FORMAT ": ", what, i);
      return FALSE;
    }
    if (memcmp(digest, idx->digests[i], VMS_SHA256_LEN) != 0)
      return chunk_mismatch(src, idx, what, i, error);
  }
  return TRUE;
}
