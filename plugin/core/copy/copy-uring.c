/* vmsnap core: the io_uring copy engine.
 *
 * Up to VMS_URING_SLOTS chunks are in flight at once. A chunk is a piece of
 * an extent of at most VMS_URING_BUF bytes; from a file it is read into the
 * slot's buffer and then written from it; from a memory source it is written
 * straight from the mapping (no buffer). Buffers come from one pool of
 * VMS_URING_SLOTS x VMS_URING_BUF bytes (32 MiB), allocated per copy and
 * touched only as far as chunks need. Every completion's res is checked; a
 * short read or write is re-queued for the remainder, -EAGAIN and -EINTR for
 * the whole; any other error stops new submissions, the chunks in flight are
 * drained, and the first error is returned.
 *
 * Test hooks, read once from the environment, test-only:
 *   VMSNAP_TEST_URING_FAIL=1 makes ring setup fail with ENOSYS, so tests can
 *   check the fallback;
 *   VMSNAP_TEST_URING_MAX_IO=N caps every request at N bytes, so each chunk
 *   completes short and goes through the same re-queue path as a short
 *   transfer from the kernel.
 */
#include "copy-private.h"

#include <errno.h>
#include <liburing.h>
#include <stdlib.h>
#include <string.h>

#include "error.h"

#define VMS_URING_SLOTS 256u
#define VMS_URING_BUF (128u * 1024u)

G_STATIC_ASSERT(VMS_URING_SLOTS >= 32);
G_STATIC_ASSERT(VMS_URING_BUF <= VMS_COPY_CHUNK);

typedef enum { SLOT_FREE, SLOT_READ, SLOT_WRITE } SlotState;

typedef struct {
  SlotState state;
  guint64 offset;   /* of the chunk in both files */
  guint32 length;   /* of the chunk */
  guint32 done;     /* bytes of the current phase finished */
} Slot;

typedef struct {
  VmsCopyJob *job;
  struct io_uring ring;
  Slot slots[VMS_URING_SLOTS];
  guint free_stack[VMS_URING_SLOTS];
  guint n_free;
  guint8 *pool;            /* NULL for a memory source */
  guint ext_index;         /* next extent to cut chunks from */
  guint64 ext_pos;         /* bytes of that extent already cut */
  guint in_flight;
  gboolean leak_pool;      /* set if I/O may still target the pool */
  GError *error;           /* the first failure */
} UringCopy;

static gboolean test_fail;
static guint32 test_max_io;

static void
uring_read_test_hooks(void)
{
  static gsize once = 0;

  if (g_once_init_enter(&once)) {
    test_fail = g_strcmp0(g_getenv("VMSNAP_TEST_URING_FAIL"), "1") == 0;
    test_max_io = (guint32)g_ascii_strtoull(g_getenv("VMSNAP_TEST_URING_MAX_IO") ?: "0", NULL, 10);
    g_once_init_leave(&once, 1);
  }
}

/* Queues the current phase of slot @i for its remaining bytes. */
static void
slot_queue(UringCopy *u, guint i)
{
  Slot *s = &u->slots[i];
  const VmsCopySource *src = u->job->src;
  struct io_uring_sqe *sqe = io_uring_get_sqe(&u->ring);

  /* One SQE per slot at most, and the ring has as many entries as slots. */
  g_assert(sqe != NULL);
  guint64 off = s->offset + s->done;
  guint32 len = s->length - s->done;
  if (test_max_io > 0)
    len = MIN(len, test_max_io);
  if (s->state == SLOT_READ) {
    io_uring_prep_read(sqe, src->fd, u->pool + (gsize)i * VMS_URING_BUF + s->done, len, off);
  } else {
    const guint8 *data = src->mem != NULL ? src->mem + s->offset
                                          : u->pool + (gsize)i * VMS_URING_BUF;
    io_uring_prep_write(sqe, u->job->dst_fd, data + s->done, len, off);
  }
  io_uring_sqe_set_data64(sqe, i);
}

/* Cuts the next chunk from the extent list into free slots while both last. */
static void
uring_fill(UringCopy *u)
{
  const GArray *list = u->job->list;

  while (u->error == NULL && u->n_free > 0 && u->ext_index < list->len) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, u->ext_index);
    guint i = u->free_stack[--u->n_free];
    Slot *s = &u->slots[i];
    s->offset = e->offset + u->ext_pos;
    s->length = (guint32)MIN(e->length - u->ext_pos, (guint64)VMS_URING_BUF);
    s->done = 0;
    s->state = u->job->src->mem != NULL ? SLOT_WRITE : SLOT_READ;
    u->ext_pos += s->length;
    if (u->ext_pos == e->length) {
      u->ext_index++;
      u->ext_pos = 0;
    }
    slot_queue(u, i);
    u->in_flight++;
  }
}

static void
uring_fail(UringCopy *u, Slot *s, int res)
{
  if (u->error != NULL)
    return;
  const char *what = s->state == SLOT_READ ? "read" : "write";
  if (res == 0)
    g_set_error(&u->error, VMS_ERROR, VMS_ERROR_IO,
                "io_uring %s of %u bytes at %" G_GUINT64_FORMAT " returned 0 (%s)", what,
                s->length - s->done, s->offset + s->done,
                s->state == SLOT_READ ? "source ended inside an extent" : "no progress");
  else
    vms_set_error_errno(&u->error, -res, "io_uring %s of %u bytes at %" G_GUINT64_FORMAT, what,
                        s->length - s->done, s->offset + s->done);
}

/* Handles one completion of slot @i: next phase, re-queue, or release. */
static void
uring_complete(UringCopy *u, guint i, int res)
{
  Slot *s = &u->slots[i];

  if ((res == -EAGAIN || res == -EINTR) && u->error == NULL) {
    slot_queue(u, i);
    return;
  }
  if (res <= 0 || u->error != NULL) {
    uring_fail(u, s, res);
    s->state = SLOT_FREE;
    u->in_flight--;
    return;
  }
  s->done += (guint32)res;
  if (s->done < s->length) {
    slot_queue(u, i);           /* short transfer: the remainder */
    return;
  }
  if (s->state == SLOT_READ) {
    s->state = SLOT_WRITE;
    s->done = 0;
    slot_queue(u, i);
    return;
  }
  vms_copy_job_advance(u->job, s->length);
  s->state = SLOT_FREE;
  u->free_stack[u->n_free++] = i;
  u->in_flight--;
}

/* io_uring_enter failed: waits for what the kernel already took (so no
 * buffer is freed under it) and records the error. */
static void
uring_abort(UringCopy *u, int res)
{
  guint in_kernel = u->in_flight - io_uring_sq_ready(&u->ring);

  if (u->error == NULL)
    vms_set_error_errno(&u->error, -res, "io_uring_submit_and_wait");
  while (in_kernel > 0) {
    struct io_uring_cqe *cqe;
    int r = io_uring_wait_cqe(&u->ring, &cqe);
    if (r == -EINTR)
      continue;
    if (r < 0) {
      u->leak_pool = TRUE;      /* the kernel may still write into it */
      return;
    }
    io_uring_cqe_seen(&u->ring, cqe);
    in_kernel--;
  }
}

static gboolean
uring_run(UringCopy *u)
{
  uring_fill(u);
  while (u->in_flight > 0) {
    int r = io_uring_submit_and_wait(&u->ring, 1);
    if (r < 0 && r != -EINTR && r != -EAGAIN && r != -EBUSY) {
      uring_abort(u, r);
      return FALSE;
    }
    struct io_uring_cqe *cqe;
    unsigned head, seen = 0;
    io_uring_for_each_cqe(&u->ring, head, cqe) {
      uring_complete(u, (guint)io_uring_cqe_get_data64(cqe), cqe->res);
      seen++;
    }
    io_uring_cq_advance(&u->ring, seen);
    uring_fill(u);
  }
  return u->error == NULL;
}

int
vms_copy_uring(VmsCopyJob *job, GError **error)
{
  g_autofree UringCopy *u = g_new0(UringCopy, 1);

  uring_read_test_hooks();
  if (test_fail)
    return -ENOSYS;
  int r = io_uring_queue_init(VMS_URING_SLOTS, &u->ring, 0);
  if (r < 0)
    return r;
  u->job = job;
  for (guint i = 0; i < VMS_URING_SLOTS; i++)
    u->free_stack[i] = VMS_URING_SLOTS - 1 - i;
  u->n_free = VMS_URING_SLOTS;
  if (job->src->mem == NULL) {
    /* malloc maps a block this large lazily: only the pages chunks use are touched. */
    u->pool = g_malloc((gsize)VMS_URING_SLOTS * VMS_URING_BUF);
  }
  gboolean ok = uring_run(u);
  io_uring_queue_exit(&u->ring);
  if (!u->leak_pool)
    g_free(u->pool);
  if (!ok) {
    g_propagate_error(error, u->error);
    return 0;
  }
  return 1;
}
