/* vmsnap registry: the memory chunks of a pull — several GETs at once;
 * on the pool threads each blob is checked (blob digest, zstd frame, raw
 * digest) and written sparse, zero pages left as holes. On a resumed pull
 * a chunk the staged file already holds (same raw digest) is not fetched. */
#include "pull-private.h"

#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "blob.h"
#include "chunks.h"
#include "error.h"
#include "util.h"

/* What a target holds, for errors: memory unless it says otherwise. */
#define WHAT(t) ((t)->what != NULL ? (t)->what : "memory")

typedef struct {
  Pull *pull;
  const VmsRegTarget *t;
  const VmsRegChunk *c;
  guint64 chunk;     /* its number in the chunk stream */
  gboolean check;    /* resume: see whether the staged file already has it */
  gboolean present;  /* it had */
  gboolean rewrite;  /* the range may hold stale bytes: punch before writing */
  GByteArray *body;
  GError *error;
} Fetch;

void
vms_reg_pull_fail(Pull *p, GError *e)
{
  if (p->error == NULL)
    p->error = e;
  else
    g_error_free(e);
}

static gboolean
range_has_data(int fd, guint64 off, guint64 len)
{
  off_t d = lseek(fd, (off_t)off, SEEK_DATA);

  return d >= 0 ? (guint64)d < off + len : errno != ENXIO;
}

/* Writes the non-zero pages of @buf at @off; zero pages stay holes. */
static int
write_sparse(int fd, const guint8 *buf, guint32 len, guint64 off, guint32 page)
{
  for (guint32 i = 0; i < len;) {
    guint32 n = MIN(page, len - i);
    guint32 j;
    int r;
    if (vms_reg_is_zero(buf + i, n)) {
      i += n;
      continue;
    }
    /* Extend over the following non-zero pages: one write per run. */
    for (j = i + n; j < len && !vms_reg_is_zero(buf + j, MIN(page, len - j)); j += MIN(page, len - j))
      ;
    r = vms_pwrite_full(fd, buf + i, j - i, off + i);
    if (r < 0)
      return r;
    i = j;
  }
  return 0;
}

/* Checks @buf (the blob's raw bytes) chunk by chunk against memory.chunks;
 * the first chunk that differs, or -1. */
static gint64
first_bad_chunk(const Fetch *f, const guint8 *buf)
{
  const VmsChunkIndex *cidx = f->t->cidx;
  guint8 sha[32];

  for (guint64 k = f->chunk, at = 0; at < f->c->length; at += vms_chunk_index_length(cidx, k), k++) {
    vms_reg_sha256(buf + at, vms_chunk_index_length(cidx, k), sha);
    if (memcmp(sha, cidx->digests[k], 32) != 0)
      return (gint64)k;
  }
  return -1;
}

static gboolean
read_staged(const Fetch *f, guint8 *buf)
{
  for (guint64 k = f->chunk, at = 0; at < f->c->length; at += vms_chunk_index_length(f->t->cidx, k), k++)
    if (!vms_chunk_read(f->t->src, f->t->cidx, k, buf + at, NULL))
      return FALSE;
  return TRUE;
}

static void
fetch_check(Fetch *f)
{
  g_autofree guint8 *buf = NULL;

  if (f->t->sparse && !range_has_data(f->t->fd, f->c->offset, f->c->length))
    return;
  f->rewrite = TRUE;
  buf = g_malloc(f->c->length);
  f->present = read_staged(f, buf) && first_bad_chunk(f, buf) < 0;
}

/* Writes a verified chunk: a full snapshot's memory sparse (zero pages
 * stay holes; stale bytes of an interrupted pull punched out first, or
 * where holes can't be punched the whole chunk written, zeros included);
 * a diff's through its page map. */
static gboolean
store(Fetch *f, const guint8 *buf)
{
  const VmsRegChunk *c = f->c;
  int fd = f->t->fd;
  int r;

  if (!f->t->sparse) {
    for (guint64 k = f->chunk, at = 0; at < c->length; at += vms_chunk_index_length(f->t->cidx, k), k++)
      if (!vms_chunk_write(f->t->src, f->t->cidx, k, fd, buf + at, &f->error))
        return FALSE;
    return TRUE;
  }
  if (f->rewrite &&
      fallocate(fd, FALLOC_FL_PUNCH_HOLE | FALLOC_FL_KEEP_SIZE, (off_t)c->offset, c->length) < 0)
    r = vms_pwrite_full(fd, buf, c->length, c->offset);
  else
    r = write_sparse(fd, buf, c->length, c->offset, f->t->page);
  if (r < 0) {
    char d[72];
    vms_reg_digest_format(c->blob_sha256, d);
    return vms_set_error_errno(&f->error, -r, "failed to write %s at offset %" G_GUINT64_FORMAT
                               " (blob %s)", WHAT(f->t), c->offset, d);
  }
  return TRUE;
}

static void
fetch_store(Fetch *f)
{
  const VmsRegChunk *c = f->c;
  g_autofree guint8 *buf = NULL;
  guint8 sha[32];
  char want[72], got[72];

  vms_reg_sha256(f->body->data, f->body->len, sha);
  vms_reg_digest_format(c->blob_sha256, want);
  if (memcmp(sha, c->blob_sha256, 32) != 0) {
    vms_reg_digest_format(sha, got);
    g_set_error(&f->error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "blob %s (%s offset %" G_GUINT64_FORMAT ") is corrupt: its content has digest %s",
                want, WHAT(f->t), c->offset, got);
    return;
  }
  buf = g_malloc(c->length);
  g_autofree char *what = g_strdup_printf("blob %s (%s offset %" G_GUINT64_FORMAT ")", want,
                                          WHAT(f->t), c->offset);
  if (!vms_reg_decompress(f->body->data, f->body->len, buf, c->length, what, &f->error))
    return;
  gint64 bad = first_bad_chunk(f, buf);
  if (bad >= 0) {
    g_set_error(&f->error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s: %s chunk %" G_GINT64_FORMAT " it holds does not match its digest in %s",
                what, WHAT(f->t), bad, f->t->what != NULL ? "its chunk-digest layer" : "memory.chunks");
    return;
  }
  store(f, buf);
}

static void
fetch_work(gpointer job)
{
  Fetch *f = job;

  if (f->check)
    fetch_check(f);
  else
    fetch_store(f);
}

static void
fetch_finish(Fetch *f)
{
  Pull *p = f->pull;

  if (f->error != NULL)
    vms_reg_pull_fail(p, g_steal_pointer(&f->error));
  p->done += f->c->length;
  if (f->body != NULL)
    g_byte_array_unref(f->body);
  g_free(f);
  p->alive--;
}

static void
stored_done(VmsRegEngine *e, gpointer job)
{
  fetch_finish(job);
}

static void
on_get(VmsRegEngine *e, gpointer job, VmsRegResponse *resp, GError *transport)
{
  Fetch *f = job;
  Pull *p = f->pull;

  if (transport != NULL) {
    vms_reg_pull_fail(p, g_error_copy(transport));
  } else if (resp->status != 200) {
    char d[72];
    g_autofree char *what = NULL;
    GError *err = NULL;
    vms_reg_digest_format(f->c->blob_sha256, d);
    what = g_strdup_printf("%s chunk at offset %" G_GUINT64_FORMAT " (blob %s)", WHAT(f->t),
                           f->c->offset, d);
    vms_reg_client_status_error(p->client, resp, what, &err);
    vms_reg_pull_fail(p, err);
  } else if (p->error == NULL) {
    f->body = resp->body != NULL ? g_steal_pointer(&resp->body) : g_byte_array_new();
    p->stats->blobs_fetched++;
    p->stats->bytes_received += f->body->len;
    f->check = FALSE;
    vms_reg_engine_work(e, fetch_work, f, stored_done);
    return;
  }
  fetch_finish(f);
}

static void
fetch_start(Fetch *f)
{
  char d[72];
  g_autofree char *path = NULL;

  vms_reg_digest_format(f->c->blob_sha256, d);
  path = g_strdup_printf("/v2/%s/blobs/%s", vms_reg_client_repository(f->pull->client), d);
  vms_reg_engine_http(f->pull->engine, "GET", path, NULL, NULL, f->c->blob_size, f, on_get);
}

static void
checked_done(VmsRegEngine *e, gpointer job)
{
  Fetch *f = job;

  if (f->present) {
    f->pull->stats->blobs_present++;
  } else if (f->pull->error == NULL) {
    fetch_start(f);
    return;
  }
  fetch_finish(f);
}

gboolean
vms_reg_pull_chunks(Pull *p, const VmsRegTarget *target, const VmsRegIndex *ix, gboolean resume,
                    VmsRegTicker *t, GError **error)
{
  /* Blobs alive at once (up to 8 MiB each): one per transfer, and a few
   * being compressed or written meanwhile. */
  guint window = p->opts->transfers + 4;
  guint64 total = 0;

  for (guint i = 0; i < ix->chunks->len; i++)
    total += g_array_index(ix->chunks, VmsRegChunk, i).length;
  t->p.total_bytes = total;
  for (guint next = 0; (next < ix->chunks->len && p->error == NULL) || p->alive > 0;) {
    while (p->error == NULL && next < ix->chunks->len && p->alive < window) {
      Fetch *f = g_new0(Fetch, 1);
      f->pull = p;
      f->t = target;
      f->c = &g_array_index(ix->chunks, VmsRegChunk, next++);
      f->chunk = f->c->offset / ix->chunk_size;
      f->check = resume;
      p->alive++;
      if (resume)
        vms_reg_engine_work(p->engine, fetch_work, f, checked_done);
      else
        fetch_start(f);
    }
    vms_reg_engine_step(p->engine, 100);
    vms_reg_ticker_tick(t, p->done, p->stats->bytes_received, FALSE);
  }
  vms_reg_ticker_tick(t, p->done, p->stats->bytes_received, TRUE);
  if (p->error != NULL) {
    g_propagate_error(error, g_steal_pointer(&p->error));
    return FALSE;
  }
  return TRUE;
}
