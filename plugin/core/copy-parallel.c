/* vmsnap core: running a synchronous copy engine (copy_file_range or
 * pread/pwrite) on several threads, each over its own part of the extent
 * list. Used by AUTO when the source is cached: the copy is then bound by
 * CPU (system call and page-cache work per extent), so more cores help. */
#include "copy-private.h"

#include "error.h"

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
