/* vmsnap core: the copy dispatcher (engine choice and fallback) and
 * apply_diff. The engines live in copy-uring.c and copy-basic.c; sparse
 * copies, diff writing and hashing in copy-sparse.c. */
#include "copy.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>

#include "copy-private.h"
#include "error.h"
#include "util.h"

static const char *const engine_names[] = {
  [VMS_ENGINE_AUTO] = "auto",
  [VMS_ENGINE_URING] = "uring",
  [VMS_ENGINE_COPY_FILE_RANGE] = "copy_file_range",
  [VMS_ENGINE_READ_WRITE] = "rw",
};

const char *
vms_copy_engine_name(VmsCopyEngine engine)
{
  if ((guint)engine >= G_N_ELEMENTS(engine_names))
    return "unknown";
  return engine_names[engine];
}

gboolean
vms_copy_engine_from_string(const char *name, VmsCopyEngine *ret_engine)
{
  for (guint i = 0; i < G_N_ELEMENTS(engine_names); i++) {
    if (g_strcmp0(name, engine_names[i]) == 0) {
      *ret_engine = (VmsCopyEngine)i;
      return TRUE;
    }
  }
  return FALSE;
}

/* Samples of the source probed for page-cache residency by AUTO. */
#define PROBE_SAMPLES 16u

/* TRUE if the source's data looks cached: the first byte of up to
 * PROBE_SAMPLES extents spread over @list reads with RWF_NOWAIT. A
 * filesystem without RWF_NOWAIT (tmpfs: EOPNOTSUPP) keeps its pages in
 * memory, so it counts as cached. */
gboolean
vms_copy_source_is_cached(int fd, const GArray *list)
{
  guint step = MAX(list->len / PROBE_SAMPLES, 1u);
  guint8 byte;
  struct iovec iov = { .iov_base = &byte, .iov_len = 1 };

  for (guint i = 0; i < list->len; i += step) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    ssize_t n = preadv2(fd, &iov, 1, (off_t)e->offset, RWF_NOWAIT);
    if (n < 0 && errno == EAGAIN)
      return FALSE;
    if (n < 0)
      return errno == EOPNOTSUPP;
  }
  return TRUE;
}

/* AUTO, from the measurements in doc/copy-engines.md: from memory, pwrite
 * straight from the mapping (nothing to read, nothing to overlap); from a
 * cached file, copy_file_range (one in-kernel copy per extent, no user
 * buffer); from a file whose data is not cached, io_uring (256 reads in
 * flight: 4-5x the one-at-a-time loops on scattered pages) unless the
 * extents are large (1 MiB on average), where the kernel's readahead on
 * each long region does as well or better. */
static VmsCopyEngine
auto_engine(const VmsCopySource *src, const GArray *list, gboolean *ret_cached)
{
  *ret_cached = src->mem != NULL || vms_copy_source_is_cached(src->fd, list);
  if (src->mem != NULL)
    return VMS_ENGINE_READ_WRITE;
  if (*ret_cached)
    return VMS_ENGINE_COPY_FILE_RANGE;
  if (list->len > 0 && vms_extents_total(list) / list->len >= 1024 * 1024)
    return VMS_ENGINE_COPY_FILE_RANGE;
  return VMS_ENGINE_URING;
}

/* AUTO copies cached data on up to this many threads. */
#define AUTO_MAX_THREADS 4u

/* Threads for a copy: AUTO with cached data is bound by CPU, so a copy big
 * enough to pay for starting threads (64 extents or 16 MiB) gets one per
 * core, up to AUTO_MAX_THREADS. Forced engines run on one thread, as does
 * a copy that reports progress. */
static guint
auto_threads(const VmsCopySource *src, const VmsCopyOptions *opts, VmsCopyEngine engine,
             gboolean cached, const GArray *list, guint64 total)
{
  if (opts->engine != VMS_ENGINE_AUTO || opts->progress != NULL || src->mem != NULL ||
      engine != VMS_ENGINE_COPY_FILE_RANGE || !cached ||
      (list->len < 64 && total < 16u * 1024 * 1024))
    return 1;
  return MIN((guint)g_get_num_processors(), AUTO_MAX_THREADS);
}

static gboolean
check_extents(const VmsCopySource *src, const GArray *list, GError **error)
{
  guint64 end = 0;

  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    if (e->offset < end || e->offset > src->size || e->length > src->size - e->offset)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                         "extent %u (%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                         ") is unsorted or outside the %" G_GUINT64_FORMAT "-byte source",
                         i, e->offset, e->length, src->size), FALSE;
    end = e->offset + e->length;
  }
  return TRUE;
}

/* Runs @engine over @job, falling back where it cannot run here. */
static gboolean
run_engine(VmsCopyJob *job, VmsCopyEngine engine, VmsCopyEngine *ret_used, GError **error)
{
  static gsize uring_said = 0;

  if (engine == VMS_ENGINE_URING) {
    int r = vms_copy_uring(job, error);
    if (r > 0 || r == 0) {
      *ret_used = VMS_ENGINE_URING;
      return r > 0;
    }
    if (g_once_init_enter(&uring_said)) {
      g_debug("io_uring cannot be set up here (%s): using %s", g_strerror(-r),
              job->src->mem != NULL ? "pwrite" : "copy_file_range");
      g_once_init_leave(&uring_said, 1);
    }
    engine = VMS_ENGINE_COPY_FILE_RANGE;
  }
  if (engine == VMS_ENGINE_COPY_FILE_RANGE) {
    gboolean used_rw = FALSE;
    gboolean ok = vms_copy_cfr(job, &used_rw, error);
    *ret_used = used_rw ? VMS_ENGINE_READ_WRITE : VMS_ENGINE_COPY_FILE_RANGE;
    return ok;
  }
  *ret_used = VMS_ENGINE_READ_WRITE;
  return vms_copy_rw(job, error);
}

gboolean
vms_copy_extents(const VmsCopySource *src, int dst_fd, const GArray *list,
                 const VmsCopyOptions *opts, VmsCopyStats *ret_stats, GError **error)
{
  static const VmsCopyOptions defaults = { 0 };

  g_return_val_if_fail(src != NULL && list != NULL, FALSE);
  g_return_val_if_fail((src->fd >= 0) != (src->mem != NULL), FALSE);
  if (opts == NULL)
    opts = &defaults;
  if (!check_extents(src, list, error))
    return FALSE;

  VmsCopyJob job = {
    .src = src, .dst_fd = dst_fd, .list = list,
    .progress = opts->progress, .progress_data = opts->progress_data,
    .total = vms_extents_total(list), .last_progress_us = g_get_monotonic_time(),
  };
  gboolean cached = FALSE;
  VmsCopyEngine engine = opts->engine == VMS_ENGINE_AUTO ? auto_engine(src, list, &cached)
                                                        : opts->engine;
  VmsCopyEngine used = engine;
  guint threads = auto_threads(src, opts, engine, cached, list, job.total);
  if (threads > 1) {
    if (!vms_copy_parallel(&job, engine, threads, &used, error))
      return FALSE;
  } else if (list->len > 0 && !run_engine(&job, engine, &used, error)) {
    return FALSE;
  }
  if (opts->fsync && fsync(dst_fd) < 0)
    return vms_set_error_errno(error, errno, "failed to fsync the destination");
  if (opts->progress != NULL)
    opts->progress(job.done, job.total, opts->progress_data);
  if (ret_stats != NULL)
    *ret_stats = (VmsCopyStats){ .bytes = job.total, .extents = list->len, .engine = used };
  return TRUE;
}

/* Up to @max data extents of @fd from offset 0 (for the cache probe).
 * FALSE where SEEK_DATA fails; the full walk then reports the error. */
static gboolean
first_extents(int fd, guint64 size, guint max, GArray *list)
{
  for (guint64 pos = 0; pos < size && list->len < max;) {
    off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
    if (data < 0)
      return errno == ENXIO;
    off_t hole = data < (off_t)size ? lseek(fd, data, SEEK_HOLE) : -1;
    if (hole <= data)
      return data >= (off_t)size;
    vms_extents_append(list, (guint64)data, MIN((guint64)hole, size) - (guint64)data);
    pos = (guint64)hole;
  }
  return TRUE;
}

/* AUTO without a page map: when the diff's first extents are cached and
 * the diff is big enough to pay for threads, walk and copy on one thread
 * per core at once (vms_copy_walk_parallel). Returns 1 when done, 0 on
 * error, -1 when this path does not apply. */
static int
apply_walk_parallel(int base_fd, int diff_fd, guint64 size, const VmsCopyOptions *opts,
                    VmsCopyStats *ret_stats, GError **error)
{
  guint n = MIN((guint)g_get_num_processors(), AUTO_MAX_THREADS);
  g_autoptr(GArray) probe = vms_extents_new();

  if ((opts != NULL && (opts->engine != VMS_ENGINE_AUTO || opts->progress != NULL)) ||
      n < 2 || size < 64u * 1024 * 1024)
    return -1;
  if (!first_extents(diff_fd, size, PROBE_SAMPLES, probe) || probe->len == 0 ||
      !vms_copy_source_is_cached(diff_fd, probe))
    return -1;
  g_debug("diff data cached: walking and copying on %u threads", n);
  if (!vms_copy_walk_parallel(diff_fd, base_fd, size, n, ret_stats, error))
    return 0;
  if (opts != NULL && opts->fsync && fsync(base_fd) < 0)
    return vms_set_error_errno(error, errno, "failed to fsync the base"), 0;
  return 1;
}

gboolean
vms_apply_diff_fd(int base_fd, int diff_fd, const GArray *list,
                  const VmsCopyOptions *opts, VmsCopyStats *ret_stats, GError **error)
{
  struct stat base_st, diff_st;
  g_autoptr(GArray) found = NULL;

  if (fstat(base_fd, &base_st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat the base");
  if (fstat(diff_fd, &diff_st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat the diff");
  if (!S_ISREG(base_st.st_mode) || !S_ISREG(diff_st.st_mode))
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "base and diff must be regular files"), FALSE;
  /* Writing in place through a hard link changes every other name of the
   * file: another snapshot's memory.bin, or a live VM's memory file. */
  if (base_st.st_nlink > 1)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "the base has %" G_GUINT64_FORMAT " hard links; applying a diff in place "
                       "would change the other links too (another snapshot's memory.bin or a "
                       "VM's memory file); apply onto a copy (cp --reflink=auto)",
                       (guint64)base_st.st_nlink), FALSE;
  if (base_st.st_size != diff_st.st_size)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                       "diff size (%" G_GUINT64_FORMAT ") doesn't match base size (%" G_GUINT64_FORMAT ")",
                       (guint64)diff_st.st_size, (guint64)base_st.st_size), FALSE;
  if (list == NULL) {
    int r = apply_walk_parallel(base_fd, diff_fd, (guint64)diff_st.st_size, opts, ret_stats, error);
    if (r >= 0)
      return r > 0;
    if (!vms_extents_from_seek_data(diff_fd, (guint64)diff_st.st_size, &found, error))
      return FALSE;
    list = found;
  }
  VmsCopySource src = { .fd = diff_fd, .mem = NULL, .size = (guint64)diff_st.st_size };
  return vms_copy_extents(&src, base_fd, list, opts, ret_stats, error);
}

gboolean
vms_apply_diff(const char *base_path, const char *diff_path, const char *map_path,
               const VmsCopyOptions *opts, VmsCopyStats *ret_stats, GError **error)
{
  g_autoptr(GArray) list = NULL;

  /* No O_CREAT: both files must exist. */
  vms_autofd base_fd = open(base_path, O_RDWR | O_CLOEXEC);
  if (base_fd < 0)
    return vms_set_error_errno(error, errno, "failed to open base %s read-write", base_path);
  vms_autofd diff_fd = open(diff_path, O_RDONLY | O_CLOEXEC);
  if (diff_fd < 0)
    return vms_set_error_errno(error, errno, "failed to open diff %s", diff_path);
  if (map_path != NULL) {
    struct stat st;
    vms_autofd map_fd = open(map_path, O_RDONLY | O_CLOEXEC);
    if (map_fd < 0)
      return vms_set_error_errno(error, errno, "failed to open page map %s", map_path);
    if (fstat(diff_fd, &st) < 0)
      return vms_set_error_errno(error, errno, "failed to stat diff %s", diff_path);
    if (!vms_pagemap_file_read(map_fd, (guint64)st.st_size, &list, NULL, NULL, error)) {
      g_prefix_error(error, "%s: ", map_path);
      return FALSE;
    }
  }
  if (!vms_apply_diff_fd(base_fd, diff_fd, list, opts, ret_stats, error)) {
    g_prefix_error(error, "apply %s onto %s: ", diff_path, base_path);
    return FALSE;
  }
  return TRUE;
}
