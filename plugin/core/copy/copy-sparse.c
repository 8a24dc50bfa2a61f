/* vmsnap core: full sparse copies (reflink, data extents, non-zero pages of
 * a mapping), diff writing and extent hashing (see copy.h). */
#include "copy.h"

#include <errno.h>
#include <linux/fs.h>
#include <string.h>
#include <sys/ioctl.h>
#include <unistd.h>

#include "copy-private.h"
#include "error.h"
#include "util.h"

static void
digest_of(GChecksum *sum, guint8 out[32])
{
  gsize len = 32;
  g_checksum_get_digest(sum, out, &len);
}

gboolean
vms_hash_extents(int fd, const GArray *list, guint8 ret_sha256[32], GError **error)
{
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  g_autofree guint8 *buf = g_malloc(VMS_COPY_CHUNK);

  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    for (guint64 pos = 0; pos < e->length;) {
      gsize n = (gsize)MIN(e->length - pos, (guint64)VMS_COPY_CHUNK);
      gssize r = vms_pread_full(fd, buf, n, e->offset + pos);
      if (r < 0)
        return vms_set_error_errno(error, (int)-r, "failed to read %zu bytes at %" G_GUINT64_FORMAT
                                   " to hash them", n, e->offset + pos);
      if ((gsize)r != n)
        return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                           "file ends at %" G_GUINT64_FORMAT " inside extent %" G_GUINT64_FORMAT
                           "+%" G_GUINT64_FORMAT, e->offset + pos + (guint64)r, e->offset, e->length),
               FALSE;
      g_checksum_update(sum, buf, (gssize)n);
      pos += n;
    }
  }
  digest_of(sum, ret_sha256);
  return TRUE;
}

static void
hash_mem_extents(const guint8 *mem, const GArray *list, guint8 out[32])
{
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);

  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    g_checksum_update(sum, mem + e->offset, (gssize)e->length);
  }
  digest_of(sum, out);
}

gboolean
vms_write_diff(const VmsCopySource *src, const GArray *list, int diff_fd, int map_fd,
               guint32 page_size, const VmsCopyOptions *opts,
               guint8 ret_data_sha256[32], guint8 ret_map_sha256[32],
               VmsCopyStats *ret_stats, GError **error)
{
  guint8 map_sha[32];
  VmsCopyStats stats;

  /* The map first: it checks the list (aligned, sorted, inside src->size). */
  if (!vms_pagemap_file_write(map_fd, list, page_size, src->size, map_sha, error))
    return FALSE;
  if (ftruncate(diff_fd, 0) < 0 || ftruncate(diff_fd, (off_t)src->size) < 0)
    return vms_set_error_errno(error, errno, "failed to size the diff to %" G_GUINT64_FORMAT " bytes",
                               src->size);
  if (!vms_copy_extents(src, diff_fd, list, opts, &stats, error))
    return FALSE;
  if (ret_data_sha256 != NULL) {
    if (src->mem != NULL)
      hash_mem_extents(src->mem, list, ret_data_sha256);
    else if (!vms_hash_extents(diff_fd, list, ret_data_sha256, error))
      return FALSE;
  }
  if (ret_map_sha256 != NULL)
    memcpy(ret_map_sha256, map_sha, 32);
  if (ret_stats != NULL)
    *ret_stats = stats;
  return TRUE;
}

/* TRUE if the @len bytes at @p (a multiple of 64, 8-aligned) are all zero.
 * Eight words per step, so the compiler vectorises it; a data page usually
 * fails on the first step. */
static inline gboolean
page_is_zero(const guint8 *p, gsize len)
{
  const guint64 *w = (const guint64 *)(const void *)p;

  for (gsize i = 0; i < len / 8; i += 8) {
    if ((w[i] | w[i + 1] | w[i + 2] | w[i + 3] | w[i + 4] | w[i + 5] | w[i + 6] | w[i + 7]) != 0)
      return FALSE;
  }
  return TRUE;
}

/* The non-zero pages of a memory source, as an extent list. */
static GArray *
mem_nonzero_extents(const VmsCopySource *src, gsize page)
{
  GArray *list = vms_extents_new();

  for (guint64 off = 0; off < src->size; off += page) {
    gsize n = (gsize)MIN((guint64)page, src->size - off);
    if (n != page || !page_is_zero(src->mem + off, n))
      vms_extents_append(list, off, n);
  }
  return list;
}

/* Writes the non-zero pages of a memory source in one pass: each run is
 * written as soon as it ends (or reaches 1 MiB) while it is still in cache. */
static gboolean
mem_sparse_stream(const VmsCopySource *src, int dst_fd, const VmsCopyOptions *opts,
                  VmsCopyStats *ret_stats, GError **error)
{
  gsize page = (gsize)sysconf(_SC_PAGESIZE);
  guint64 run_start = 0, run_len = 0, bytes = 0, extents = 0, last_end = G_MAXUINT64;
  VmsCopyJob job = { .src = src, .dst_fd = dst_fd, .total = src->size,
                     .progress = opts->progress, .progress_data = opts->progress_data,
                     .last_progress_us = g_get_monotonic_time() };

  for (guint64 off = 0; off <= src->size; off += page) {
    gsize n = off < src->size ? (gsize)MIN((guint64)page, src->size - off) : 0;
    gboolean data = n > 0 && (n != page || !page_is_zero(src->mem + off, n));
    if (data && run_len == 0)
      run_start = off;
    if (data)
      run_len += n;
    if (run_len > 0 && (!data || run_len >= VMS_COPY_CHUNK)) {
      if (!vms_copy_rw_range(&job, NULL, run_start, run_len, error))
        return FALSE;
      bytes += run_len;
      extents += run_start == last_end ? 0 : 1;
      last_end = run_start + run_len;
      run_len = 0;
    }
  }
  if (opts->progress != NULL)
    opts->progress(src->size, src->size, opts->progress_data);
  *ret_stats = (VmsCopyStats){ .bytes = bytes, .extents = extents, .engine = VMS_ENGINE_READ_WRITE };
  return TRUE;
}

static gboolean
sparse_copy_mem(const VmsCopySource *src, int dst_fd, const VmsCopyOptions *opts,
                VmsCopyStats *ret_stats, GError **error)
{
  if (opts->engine == VMS_ENGINE_URING) {
    g_autoptr(GArray) list = mem_nonzero_extents(src, (gsize)sysconf(_SC_PAGESIZE));
    return vms_copy_extents(src, dst_fd, list, opts, ret_stats, error);
  }
  return mem_sparse_stream(src, dst_fd, opts, ret_stats, error);
}

gboolean
vms_sparse_copy(const VmsCopySource *src, int dst_fd, const VmsCopyOptions *opts,
                gboolean *ret_reflinked, VmsCopyStats *ret_stats, GError **error)
{
  static const VmsCopyOptions defaults = { 0 };
  VmsCopyStats stats = { 0 };
  g_autoptr(GArray) list = NULL;

  g_return_val_if_fail(src != NULL && (src->fd >= 0) != (src->mem != NULL), FALSE);
  if (opts == NULL)
    opts = &defaults;
  if (src->fd >= 0 && ioctl(dst_fd, FICLONE, src->fd) == 0) {
    if (opts->fsync && fsync(dst_fd) < 0)
      return vms_set_error_errno(error, errno, "failed to fsync the reflinked copy");
    if (ret_reflinked != NULL)
      *ret_reflinked = TRUE;
    if (ret_stats != NULL)
      *ret_stats = stats;
    return TRUE;
  }
  /* No reflink here (EOPNOTSUPP, EXDEV, EINVAL, ...): a byte copy of the data. */
  if (ftruncate(dst_fd, 0) < 0 || ftruncate(dst_fd, (off_t)src->size) < 0)
    return vms_set_error_errno(error, errno, "failed to size the copy to %" G_GUINT64_FORMAT " bytes",
                               src->size);
  if (src->mem != NULL) {
    if (!sparse_copy_mem(src, dst_fd, opts, &stats, error))
      return FALSE;
    if (opts->fsync && fsync(dst_fd) < 0)
      return vms_set_error_errno(error, errno, "failed to fsync the copy");
  } else {
    if (!vms_extents_from_seek_data(src->fd, src->size, &list, error))
      return FALSE;
    if (!vms_copy_extents(src, dst_fd, list, opts, &stats, error))
      return FALSE;
  }
  if (ret_reflinked != NULL)
    *ret_reflinked = FALSE;
  if (ret_stats != NULL)
    *ret_stats = stats;
  return TRUE;
}
