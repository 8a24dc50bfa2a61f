/* vmsnap core: running a synchronous copy engine (copy_file_range or
 * pread/pwrite) on several threads, each over its own part of the extent
 * list. Used by AUTO when the source is cached: the copy is then bound by
 * CPU (system call and page-cache work per extent), so more cores help. */
#include "copy-private.h"

#include <errno.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

typedef struct {
  VmsCopyJob job;
  GArray *list;
  VmsCopyEngine engine;
  gboolean used_rw;
  gboolean ok;
  GError *error;
} Part;

/* Cost of an extent for balancing the parts: its bytes plus a fixed cost
 * per extent (a system call costs about as much as copying 16 KiB). */
#define EXTENT_COST 16384u

static gpointer
part_run(gpointer data)
{
  Part *p = data;

  if (p->engine == VMS_ENGINE_COPY_FILE_RANGE)
    p->ok = vms_copy_cfr(&p->job, &p->used_rw, &p->error);
  else
    p->ok = vms_copy_rw(&p->job, &p->error);
  return NULL;
}

/* Cuts @list into @n lists of about equal cost; a long extent may be cut
 * (at a 4 KiB boundary) between two parts. */
static void
split_list(const GArray *list, Part *parts, guint n)
{
  guint64 total = 0;

  for (guint i = 0; i < list->len; i++)
    total += g_array_index(list, VmsExtent, i).length + EXTENT_COST;
  guint64 target = total / n + 1, acc = 0;
  guint k = 0;
  for (guint i = 0; i < list->len; i++) {
    VmsExtent e = g_array_index(list, VmsExtent, i);
    acc += EXTENT_COST;
    while (k + 1 < n && acc + e.length > target * (k + 1)) {
      guint64 take = (target * (k + 1) - MIN(acc, target * (k + 1))) & ~(guint64)4095;
      take = MIN(take, e.length);
      vms_extents_append(parts[k].list, e.offset, take);
      e.offset += take;
      e.length -= take;
      acc += take;
      k++;
    }
    vms_extents_append(parts[k].list, e.offset, e.length);
    acc += e.length;
  }
}

gboolean
vms_copy_parallel(VmsCopyJob *job, VmsCopyEngine engine, guint n_threads,
                  VmsCopyEngine *ret_used, GError **error)
{
  g_autofree Part *parts = g_new0(Part, n_threads);
  g_autofree GThread **threads = g_new0(GThread *, n_threads);
  gboolean ok = TRUE, used_rw = FALSE;

  g_return_val_if_fail(job->progress == NULL && n_threads >= 1, FALSE);
  for (guint i = 0; i < n_threads; i++) {
    parts[i].list = vms_extents_new();
    parts[i].engine = engine;
  }
  split_list(job->list, parts, n_threads);
  for (guint i = 0; i < n_threads; i++) {
    parts[i].job = *job;
    parts[i].job.list = parts[i].list;
    parts[i].job.total = vms_extents_total(parts[i].list);
    /* Part 0 runs on this thread, and so does a part whose thread can't start. */
    if (i > 0 && (threads[i] = g_thread_try_new("vmsnap-copy", part_run, &parts[i], NULL)) == NULL)
      part_run(&parts[i]);
  }
  part_run(&parts[0]);
  for (guint i = 0; i < n_threads; i++) {
    if (threads[i] != NULL)
      g_thread_join(threads[i]);
    job->done += parts[i].job.done;
    used_rw |= parts[i].used_rw;
    if (!parts[i].ok && ok) {
      ok = FALSE;
      g_propagate_error(error, g_steal_pointer(&parts[i].error));
    }
    g_clear_error(&parts[i].error);
    g_array_unref(parts[i].list);
  }
  *ret_used = used_rw || engine == VMS_ENGINE_READ_WRITE ? VMS_ENGINE_READ_WRITE
                                                        : VMS_ENGINE_COPY_FILE_RANGE;
  return ok;
}

/* ---- walking and copying a diff at once, one file range per thread ---- */

/* Regions copied per copy_file_range batch of a walking thread. */
#define WALK_BATCH 256u

typedef struct {
  int src_fd, dst_fd;
  guint64 start, end, size;   /* this part's range of the file, the file size */
  guint64 bytes, extents;
  gboolean used_rw, ok;
  GError *error;
} WalkPart;

static gboolean
walk_flush(WalkPart *p, GArray *batch)
{
  VmsCopySource src = { .fd = p->src_fd, .mem = NULL, .size = p->size };
  VmsCopyJob job = { .src = &src, .dst_fd = p->dst_fd, .list = batch,
                     .total = vms_extents_total(batch) };
  gboolean used_rw = FALSE;
  gboolean ok = vms_copy_cfr(&job, &used_rw, &p->error);

  p->used_rw |= used_rw;
  g_array_set_size(batch, 0);
  return ok;
}

/* SEEK_DATA/SEEK_HOLE over [start, end), copying as it goes. A region that
 * runs on from the previous part is counted there, not here. */
static gboolean
walk_part(WalkPart *p)
{
  g_autoptr(GArray) batch = vms_extents_new();
  gboolean continues = p->start > 0 && lseek(p->src_fd, (off_t)p->start - 1, SEEK_DATA) ==
                                           (off_t)p->start - 1;

  for (guint64 pos = p->start; pos < p->end;) {
    off_t data = lseek(p->src_fd, (off_t)pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO)
      break;
    if (data < 0)
      return vms_set_error_errno(&p->error, errno, "lseek(SEEK_DATA) at %" G_GUINT64_FORMAT, pos);
    if ((guint64)data >= p->end)
      break;
    off_t hole = lseek(p->src_fd, data, SEEK_HOLE);
    if (hole <= data)
      return vms_set_error_errno(&p->error, hole < 0 ? errno : EIO,
                                 "lseek(SEEK_HOLE) at %" G_GUINT64_FORMAT, (guint64)data);
    guint64 end = MIN((guint64)hole, p->end);
    vms_extents_append(batch, (guint64)data, end - (guint64)data);
    p->bytes += end - (guint64)data;
    p->extents += continues && (guint64)data == p->start ? 0 : 1;
    pos = end;
    if (batch->len >= WALK_BATCH && !walk_flush(p, batch))
      return FALSE;
  }
  return walk_flush(p, batch);
}

static gpointer
walk_part_run(gpointer data)
{
  WalkPart *p = data;

  p->ok = walk_part(p);
  return NULL;
}

gboolean
vms_copy_walk_parallel(int src_fd, int dst_fd, guint64 size, guint n_threads,
                       VmsCopyStats *ret_stats, GError **error)
{
  g_autofree WalkPart *parts = g_new0(WalkPart, n_threads);
  g_autofree GThread **threads = g_new0(GThread *, n_threads);
  guint64 chunk = ((size / n_threads) + VMS_COPY_CHUNK - 1) & ~(guint64)(VMS_COPY_CHUNK - 1);
  VmsCopyStats stats = { .engine = VMS_ENGINE_COPY_FILE_RANGE };
  gboolean ok = TRUE;

  for (guint i = 0; i < n_threads; i++) {
    parts[i] = (WalkPart){ .src_fd = src_fd, .dst_fd = dst_fd, .size = size,
                           .start = MIN(size, i * chunk), .end = MIN(size, (i + 1) * chunk) };
    if (i == n_threads - 1)
      parts[i].end = size;
    if (i > 0 &&
        (threads[i] = g_thread_try_new("vmsnap-copy", walk_part_run, &parts[i], NULL)) == NULL)
      walk_part_run(&parts[i]);
  }
  walk_part_run(&parts[0]);
  for (guint i = 0; i < n_threads; i++) {
    if (threads[i] != NULL)
      g_thread_join(threads[i]);
    stats.bytes += parts[i].bytes;
    stats.extents += parts[i].extents;
    if (parts[i].used_rw)
      stats.engine = VMS_ENGINE_READ_WRITE;
    if (!parts[i].ok && ok) {
      ok = FALSE;
      g_propagate_error(error, g_steal_pointer(&parts[i].error));
    }
    g_clear_error(&parts[i].error);
  }
  if (ok && ret_stats != NULL)
    *ret_stats = stats;
  return ok;
}
