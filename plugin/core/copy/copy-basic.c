/* vmsnap core: the two simple copy engines, copy_file_range per extent and
 * pread/pwrite through one 1 MiB buffer (or pwrite straight from a mapping). */
#include "copy-private.h"

#include <errno.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

void
vms_copy_job_advance(VmsCopyJob *job, guint64 bytes)
{
  job->done += bytes;
  if (job->progress == NULL)
    return;
  gint64 now = g_get_monotonic_time();
  if (now - job->last_progress_us >= 100 * 1000) {
    job->last_progress_us = now;
    job->progress(job->done, job->total, job->progress_data);
  }
}

gboolean
vms_copy_rw_range(VmsCopyJob *job, guint8 *buf, guint64 offset, guint64 length, GError **error)
{
  const VmsCopySource *src = job->src;

  while (length > 0) {
    gsize n = (gsize)MIN(length, (guint64)VMS_COPY_CHUNK);
    const guint8 *data = src->mem != NULL ? src->mem + offset : buf;
    if (src->mem == NULL) {
      gssize r = vms_pread_full(src->fd, buf, n, offset);
      if (r < 0)
        return vms_set_error_errno(error, (int)-r, "failed to read %zu bytes at %" G_GUINT64_FORMAT,
                                   n, offset);
      if ((gsize)r != n)
        return g_set_error(error, VMS_ERROR, VMS_ERROR_IO,
                           "source ended at %" G_GUINT64_FORMAT " inside an extent (wanted %zu bytes at %"
                           G_GUINT64_FORMAT ")", offset + (guint64)r, n, offset), FALSE;
    }
    int w = vms_pwrite_full(job->dst_fd, data, n, offset);
    if (w < 0)
      return vms_set_error_errno(error, -w, "failed to write %zu bytes at %" G_GUINT64_FORMAT,
                                 n, offset);
    vms_copy_job_advance(job, n);
    offset += n;
    length -= n;
  }
  return TRUE;
}

gboolean
vms_copy_rw(VmsCopyJob *job, GError **error)
{
  g_autofree guint8 *buf = job->src->mem == NULL ? g_malloc(VMS_COPY_CHUNK) : NULL;

  for (guint i = 0; i < job->list->len; i++) {
    const VmsExtent *e = &g_array_index(job->list, VmsExtent, i);
    if (!vms_copy_rw_range(job, buf, e->offset, e->length, error))
      return FALSE;
  }
  return TRUE;
}

static gboolean
cfr_unsupported(int err)
{
  return err == EXDEV || err == EINVAL || err == EOPNOTSUPP || err == ENOSYS;
}

/* One copy_file_range call moves at most this much, so a long extent (a
 * whole memory file is one) still reports progress a few times a second;
 * 64 MiB calls cost nothing measurable against 2 GiB ones. */
#define CFR_CHUNK ((guint64)64 << 20)

/* copy_file_range of one extent. Returns 1 when done, 0 on error, and -errno
 * when the kernel refuses the pair of files; *@copied says how far it got. */
static int
cfr_extent(VmsCopyJob *job, guint64 offset, guint64 length, guint64 *copied, GError **error)
{
  *copied = 0;
  while (*copied < length) {
    loff_t in = (loff_t)(offset + *copied), out = in;
    gsize n = (gsize)MIN(length - *copied, CFR_CHUNK);
    ssize_t r = copy_file_range(job->src->fd, &in, job->dst_fd, &out, n, 0);
    if (r < 0 && errno == EINTR)
      continue;
    if (r < 0 && cfr_unsupported(errno))
      return -errno;
    if (r < 0)
      return vms_set_error_errno(error, errno, "copy_file_range of %zu bytes at %" G_GUINT64_FORMAT,
                                 n, offset + *copied), 0;
    if (r == 0)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_IO,
                         "source ended at %" G_GUINT64_FORMAT " inside an extent",
                         offset + *copied), 0;
    *copied += (guint64)r;
    vms_copy_job_advance(job, (guint64)r);
  }
  return 1;
}

gboolean
vms_copy_cfr(VmsCopyJob *job, gboolean *ret_used_rw, GError **error)
{
  static gsize said_once = 0;
  g_autofree guint8 *buf = NULL;
  gboolean fallback = FALSE;

  *ret_used_rw = job->src->mem != NULL;
  if (job->src->mem != NULL)
    return vms_copy_rw(job, error);
  for (guint i = 0; i < job->list->len; i++) {
    const VmsExtent *e = &g_array_index(job->list, VmsExtent, i);
    guint64 copied = 0;
    if (!fallback) {
      int r = cfr_extent(job, e->offset, e->length, &copied, error);
      if (r == 0)
        return FALSE;
      if (r < 0) {
        fallback = TRUE;
        *ret_used_rw = TRUE;
        if (g_once_init_enter(&said_once)) {
          g_debug("copy_file_range refused (%s): copying with pread/pwrite", g_strerror(-r));
          g_once_init_leave(&said_once, 1);
        }
      }
    }
    if (fallback) {
      if (buf == NULL)
        buf = g_malloc(VMS_COPY_CHUNK);
      if (!vms_copy_rw_range(job, buf, e->offset + copied, e->length - copied, error))
        return FALSE;
    }
  }
  return TRUE;
}
