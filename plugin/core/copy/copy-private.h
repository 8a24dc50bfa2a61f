/* vmsnap core: what the copy engines share (copy.c, copy-uring.c, copy-basic.c).
 * Not for use outside plugin/core. */
#pragma once

#include <glib.h>
#include "copy.h"

G_BEGIN_DECLS

/* The largest buffer any engine uses, and the size a large extent is cut into. */
#define VMS_COPY_CHUNK (1024u * 1024u)

/* One copy in progress: the inputs and the running byte count for progress. */
typedef struct {
  const VmsCopySource *src;
  int dst_fd;
  const GArray *list;
  VmsProgressFunc progress;   /* nullable */
  gpointer progress_data;
  guint64 total;              /* bytes in list */
  guint64 done;               /* bytes written so far */
  gint64 last_progress_us;    /* monotonic time of the last progress call */
} VmsCopyJob;

/* Adds @bytes to job->done and calls the progress function if ~100 ms passed. */
void vms_copy_job_advance(VmsCopyJob *job, guint64 bytes);

/* The io_uring engine. Returns 1 on success, 0 with @error set on failure,
 * and -errno (nothing copied, @error untouched) when io_uring cannot be set
 * up here, so the caller falls back to another engine. */
int vms_copy_uring(VmsCopyJob *job, GError **error);

/* copy_file_range per extent; a file source only. Where the kernel or the
 * filesystems refuse (EXDEV, EINVAL, EOPNOTSUPP, ENOSYS), the rest is copied
 * with pread/pwrite and that is said once; *@ret_used_rw then becomes TRUE
 * (also for a memory source, which copy_file_range cannot read). */
gboolean vms_copy_cfr(VmsCopyJob *job, gboolean *ret_used_rw, GError **error);

/* pread/pwrite through one 1 MiB buffer, or pwrite straight from a memory source. */
gboolean vms_copy_rw(VmsCopyJob *job, GError **error);

/* Copies [@offset, @offset+@length) with pread/pwrite (or pwrite from memory). */
gboolean vms_copy_rw_range(VmsCopyJob *job, guint8 *buf, guint64 offset, guint64 length,
                           GError **error);

/* Runs @engine (COPY_FILE_RANGE or READ_WRITE) on @n_threads threads (this
 * one included), each over a part of job->list of about equal cost. Needs
 * job->progress NULL (progress is reported from one thread only). On
 * failure the first error is returned after every thread has finished.
 * *@ret_used is READ_WRITE if any part had to use pread/pwrite. */
gboolean vms_copy_parallel(VmsCopyJob *job, VmsCopyEngine engine, guint n_threads,
                           VmsCopyEngine *ret_used, GError **error);

/* apply_diff without a page map, cached data: @n_threads threads (this one
 * included) each walk one range of the diff @src_fd with SEEK_DATA/SEEK_HOLE
 * and copy each data region with copy_file_range as they go, so the walk
 * runs in parallel too. Stats count a region split between two ranges once.
 * On failure the first error is returned after every thread has finished. */
gboolean vms_copy_walk_parallel(int src_fd, int dst_fd, guint64 size, guint n_threads,
                                VmsCopyStats *ret_stats, GError **error);

/* TRUE if the data of @list in @fd looks cached (RWF_NOWAIT probe; copy.c). */
gboolean vms_copy_source_is_cached(int fd, const GArray *list);

G_END_DECLS
