/* vmsnap registry: push (doc/spec.md section 12).
 *
 * Each member of the chain becomes one artifact. A blob is HEADed before
 * it is sent, mounted from opts->mount_from where the registry offers it,
 * else uploaded with POST + PUT (monolithic). Memory is read chunk by
 * chunk on the pool threads (pread, zero check, SHA-256, zstd), at most a
 * window of chunks alive at once, so memory use stays bounded. The OCI
 * manifest is PUT last: a push killed half way leaves blobs without a
 * manifest, and the next push finds them by HEAD and sends only the rest.
 */
#include "push-private.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <string.h>
#include <unistd.h>

#include "artifact.h"
#include "blob.h"
#include "chain.h"
#include "chunks.h"
#include "engine.h"
#include "error.h"
#include "extents.h"
#include "util.h"

typedef struct {
  Push *push;
  const VmsChunkSource *src; /* chunk jobs: the memory's chunk stream */
  const VmsChunkIndex *cidx; /* its digests (memory.chunks) */
  guint64 chunk;             /* first chunk number */
  guint n;                   /* chunks in this blob */
  guint64 offset;            /* in the stream */
  guint32 length;
  VmsRegChunk *out;  /* chunk jobs: the index slot */
  GBytes *blob;      /* what is sent */
  char digest[72];
  GError *error;     /* from the work function */
} Upload;

static void
fail(Push *p, GError *e)
{
  if (p->error == NULL)
    p->error = e;
  else
    g_error_free(e);
}

static void
upload_finish(Upload *u)
{
  Push *p = u->push;

  if (u->out != NULL)
    p->done += u->length;
  if (u->blob != NULL)
    g_bytes_unref(u->blob);
  g_free(u);
  p->alive--;
}

static gboolean
check_answer(Upload *u, VmsRegResponse *resp, GError *transport, const char *step)
{
  Push *p = u->push;

  if (transport != NULL) {
    fail(p, g_error_copy(transport));
    return FALSE;
  }
  if (resp->status >= 200 && resp->status < 300)
    return TRUE;
  if (resp->status == 404 && strcmp(step, "HEAD") == 0)
    return TRUE;
  g_autofree char *what = g_strdup_printf("%s of blob %s", step, u->digest);
  GError *e = NULL;
  vms_reg_client_status_error(p->client, resp, what, &e);
  fail(p, e);
  return FALSE;
}

static void
on_put(VmsRegEngine *e, gpointer job, VmsRegResponse *resp, GError *transport)
{
  Upload *u = job;

  if (check_answer(u, resp, transport, "upload")) {
    u->push->stats->blobs_sent++;
    u->push->stats->bytes_sent += g_bytes_get_size(u->blob);
  }
  upload_finish(u);
}

static void
on_post(VmsRegEngine *e, gpointer job, VmsRegResponse *resp, GError *transport)
{
  Upload *u = job;
  g_autofree char *url = NULL;

  if (!check_answer(u, resp, transport, "upload start")) {
    upload_finish(u);
    return;
  }
  if (resp->status == 201) { /* mounted */
    u->push->stats->blobs_mounted++;
    upload_finish(u);
    return;
  }
  if (resp->location == NULL) {
    fail(u->push, g_error_new(VMS_ERROR, VMS_ERROR_FAILED,
                              "registry %s gave no upload location for blob %s",
                              vms_reg_client_name(u->push->client), u->digest));
    upload_finish(u);
    return;
  }
  url = g_strdup_printf("%s%sdigest=%s", resp->location, strchr(resp->location, '?') ? "&" : "?",
                        u->digest);
  vms_reg_engine_http(e, "PUT", url, u->blob, NULL, 0, u, on_put);
}

static void
on_head(VmsRegEngine *e, gpointer job, VmsRegResponse *resp, GError *transport)
{
  Upload *u = job;
  Push *p = u->push;
  g_autofree char *path = NULL;

  if (!check_answer(u, resp, transport, "HEAD") || p->error != NULL) {
    upload_finish(u);
    return;
  }
  if (resp->status == 200) {
    p->stats->blobs_present++;
    upload_finish(u);
    return;
  }
  if (p->opts->mount_from != NULL)
    path = g_strdup_printf("/v2/%s/blobs/uploads/?mount=%s&from=%s",
                           vms_reg_client_repository(p->client), u->digest, p->opts->mount_from);
  else
    path = g_strdup_printf("/v2/%s/blobs/uploads/", vms_reg_client_repository(p->client));
  vms_reg_engine_http(e, "POST", path, NULL, NULL, 0, u, on_post);
}

static void
upload_start(Upload *u)
{
  g_autofree char *path = NULL;

  /* Identical chunks (zeroed-then-patterned memory, repeated pages) share
   * one blob: only the first is looked up and sent. */
  if (!g_hash_table_add(u->push->seen, g_strdup(u->digest))) {
    u->push->stats->blobs_present++;
    upload_finish(u);
    return;
  }
  path = g_strdup_printf("/v2/%s/blobs/%s", vms_reg_client_repository(u->push->client), u->digest);
  vms_reg_engine_http(u->push->engine, "HEAD", path, NULL, NULL, 0, u, on_head);
}

void
vms_reg_push_bytes(Push *p, GBytes *blob, char ret_digest[72])
{
  Upload *u = g_new0(Upload, 1);
  gsize len;
  const void *data = g_bytes_get_data(blob, &len);

  u->push = p;
  u->blob = blob;
  vms_reg_digest_of(data, len, u->digest);
  memcpy(ret_digest, u->digest, 72);
  p->alive++;
  upload_start(u);
}

static void
chunk_work(gpointer job)
{
  Upload *u = job;
  g_autofree guint8 *buf = g_malloc(u->length);
  gsize blen, at = 0;
  const void *bdata;
  guint8 sha[32];

  /* Push sends only what memory.chunks vouches for, chunk by chunk. */
  for (guint k = 0; k < u->n; at += vms_chunk_index_length(u->cidx, u->chunk + k), k++) {
    if (!vms_chunk_read(u->src, u->cidx, u->chunk + k, buf + at, &u->error))
      return;
    vms_reg_sha256(buf + at, vms_chunk_index_length(u->cidx, u->chunk + k), sha);
    if (memcmp(sha, u->cidx->digests[u->chunk + k], 32) != 0) {
      g_set_error(&u->error, VMS_ERROR, VMS_ERROR_CORRUPT,
                  "%s chunk %" G_GUINT64_FORMAT " (stream offset %" G_GUINT64_FORMAT
                  ") changed: it does not match its digest %s",
                  u->push->label != NULL ? u->push->label : "memory", u->chunk + k,
                  (u->chunk + k) * u->cidx->chunk_size,
                  u->push->label != NULL ? "taken at the start of the push" : "in memory.chunks");
      return;
    }
  }
  vms_reg_group_digest((const guint8(*)[32])u->cidx->digests, u->chunk, u->n, u->out->raw_sha256);
  u->blob = vms_reg_compress(buf, u->length);
  bdata = g_bytes_get_data(u->blob, &blen);
  vms_reg_sha256(bdata, blen, u->out->blob_sha256);
  vms_reg_digest_format(u->out->blob_sha256, u->digest);
  u->out->offset = u->offset;
  u->out->length = u->length;
  u->out->blob_size = (guint32)blen;
}

static void
chunk_done(VmsRegEngine *e, gpointer job)
{
  Upload *u = job;

  if (u->error != NULL) {
    fail(u->push, g_steal_pointer(&u->error));
  } else if (u->push->error == NULL) {
    upload_start(u);
    return;
  }
  upload_finish(u);
}

void
vms_reg_push_wait(Push *p, VmsRegTicker *t)
{
  while (p->alive > 0) {
    vms_reg_engine_step(p->engine, 100);
    vms_reg_ticker_tick(t, p->done, vms_reg_engine_bytes_up(p->engine), FALSE);
  }
}

/* The next blob from chunk *@next on: up to VMS_REG_BLOB_CHUNKS
 * consecutive non-zero chunks of one aligned window. Zero chunks before it
 * are skipped (counted). FALSE at the end of the stream. */
static gboolean
next_group(Push *p, const VmsChunkIndex *cidx, guint64 *next, guint64 *ret_first, guint *ret_n)
{
  guint64 i = *next;

  for (; i < cidx->count && vms_chunk_index_is_zero(cidx, i); i++) {
    p->stats->chunks_zero++; /* zero chunks are never stored */
    p->done += vms_chunk_index_length(cidx, i);
  }
  if (i >= cidx->count) {
    *next = i;
    return FALSE;
  }
  guint64 end = MIN(cidx->count, (i / VMS_REG_BLOB_CHUNKS + 1) * VMS_REG_BLOB_CHUNKS);
  *ret_first = i;
  while (i < end && !vms_chunk_index_is_zero(cidx, i))
    i++;
  *ret_n = (guint)(i - *ret_first);
  *next = i;
  return TRUE;
}

VmsRegIndex *
vms_reg_push_chunks(Push *p, const VmsChunkSource *src, const VmsChunkIndex *cidx, VmsRegTicker *t)
{
  g_autofree VmsRegChunk *slots = g_new0(VmsRegChunk, MAX(cidx->count, 1));
  /* Blobs alive at once (up to 8 MiB each): one per transfer, and a few
   * being compressed or written meanwhile. */
  guint window = p->opts->transfers + 4;
  VmsRegIndex *ix = g_new0(VmsRegIndex, 1);
  guint64 first = 0, next = 0;
  guint n = 0;

  t->p.total_bytes = cidx->data_size;
  for (gboolean more = TRUE; (more && p->error == NULL) || p->alive > 0;) {
    while (p->error == NULL && p->alive < window && (more = next_group(p, cidx, &next, &first, &n))) {
      Upload *u = g_new0(Upload, 1);
      u->push = p;
      u->src = src;
      u->cidx = cidx;
      u->chunk = first;
      u->n = n;
      u->offset = first * cidx->chunk_size;
      for (guint k = 0; k < n; k++)
        u->length += vms_chunk_index_length(cidx, first + k);
      u->out = &slots[first];
      p->alive++;
      vms_reg_engine_work(p->engine, chunk_work, u, chunk_done);
    }
    vms_reg_engine_step(p->engine, 100);
    vms_reg_ticker_tick(t, p->done, vms_reg_engine_bytes_up(p->engine), FALSE);
  }
  ix->chunk_size = cidx->chunk_size;
  ix->memory_size = cidx->data_size;
  ix->chunks = g_array_new(FALSE, FALSE, sizeof(VmsRegChunk));
  for (guint64 i = 0; i < cidx->count; i++)
    if (slots[i].length != 0)
      g_array_append_val(ix->chunks, slots[i]);
  return ix;
}

static char *
alias_tag(const guint8 sha[32])
{
  char hex[65];

  vms_sha256_hex(sha, hex);
  return g_strconcat("sha256-", hex, NULL);
}

/* PUT of the OCI manifest @json under @reference. */
static gboolean
put_manifest(Push *p, GBytes *json, const char *reference, GError **error)
{
  g_autofree char *path = g_strdup_printf("/v2/%s/manifests/%s",
                                          vms_reg_client_repository(p->client), reference);
  g_auto(VmsRegResponse) r = { 0 };

  if (!vms_reg_client_request(p->client, "PUT", path, json, VMS_REG_MT_MANIFEST, NULL, &r, error))
    return FALSE;
  if (r.status != 201) {
    g_autofree char *what = g_strdup_printf("manifest %s", reference);
    return vms_reg_client_status_error(p->client, &r, what, error);
  }
  p->stats->bytes_sent += g_bytes_get_size(json);
  return TRUE;
}

/* If the registry has this snapshot already (its alias tag), its manifest
 * digest and, when @tag is set, the manifest bytes to tag it with. */
static gboolean
find_pushed(Push *p, const char *alias, char ret_digest[72], GBytes **ret_json, GError **error)
{
  g_autofree char *path = g_strdup_printf("/v2/%s/manifests/%s",
                                          vms_reg_client_repository(p->client), alias);
  g_auto(VmsRegResponse) r = { 0 };

  *ret_json = NULL;
  ret_digest[0] = '\0';
  if (!vms_reg_client_request(p->client, "GET", path, NULL, NULL, VMS_REG_MT_MANIFEST, &r, error))
    return FALSE;
  if (r.status == 404)
    return TRUE;
  if (r.status != 200)
    return vms_reg_client_status_error(p->client, &r, "the manifest of an earlier push", error);
  p->stats->bytes_received += r.body != NULL ? r.body->len : 0;
  *ret_json = g_bytes_new(r.body != NULL ? r.body->data : NULL, r.body != NULL ? r.body->len : 0);
  vms_reg_digest_of(r.body != NULL ? r.body->data : NULL, r.body != NULL ? r.body->len : 0,
                    ret_digest);
  return TRUE;
}

void
vms_reg_push_add_chunk_layers(VmsRegArtifact *a, const VmsRegIndex *ix, const char *media_type)
{
  for (guint i = 0; i < ix->chunks->len; i++) {
    const VmsRegChunk *c = &g_array_index(ix->chunks, VmsRegChunk, i);
    char d[72];
    vms_reg_digest_format(c->blob_sha256, d);
    vms_reg_artifact_add(a, media_type, d, c->blob_size, NULL);
  }
}

gsize
vms_reg_push_index(Push *p, const VmsRegIndex *ix, char ret_digest[72])
{
  GBytes *enc;
  gsize len;

  if (p->error != NULL)
    return 0;
  enc = vms_reg_index_encode(ix);
  len = g_bytes_get_size(enc);
  vms_reg_push_bytes(p, enc, ret_digest);
  return len;
}

/* The memory's blobs: memory.chunks, the chunks, the chunk index. */
static gboolean
push_memory(Push *p, VmsSnapshot *s, VmsRegArtifact *a, VmsRegTicker *t, GError **error)
{
  g_autoptr(VmsChunkSource) src = vms_snapshot_chunk_source(s, error);
  g_autoptr(VmsChunkIndex) cidx = NULL;
  g_autoptr(VmsRegIndex) ix = NULL;
  GBytes *digests = NULL;
  char d_digests[72], d_index[72];
  gsize dig_len, ix_len;

  if (src == NULL || !vms_reg_chunk_digests(s, src, &cidx, &digests, error))
    return FALSE;
  dig_len = g_bytes_get_size(digests);
  vms_reg_push_bytes(p, digests, d_digests);
  ix = vms_reg_push_chunks(p, src, cidx, t);
  ix_len = vms_reg_push_index(p, ix, d_index);
  vms_reg_push_wait(p, t);
  if (p->error != NULL) {
    g_propagate_error(error, g_steal_pointer(&p->error));
    return FALSE;
  }
  vms_reg_artifact_add(a, VMS_REG_MT_DIGESTS, d_digests, dig_len, VMS_CHUNKS_FILE);
  vms_reg_artifact_add(a, VMS_REG_MT_INDEX, d_index, ix_len, NULL);
  vms_reg_push_add_chunk_layers(a, ix, VMS_REG_MT_CHUNK);
  return TRUE;
}

/* Uploads every blob of @s (@parent: a diff's parent); fills @a's layers. */
static gboolean
push_blobs(Push *p, VmsSnapshot *s, VmsSnapshot *parent, VmsRegArtifact *a, VmsRegTicker *t,
           GError **error)
{
  VmsManifest *m = s->manifest;
  GBytes *state = vms_reg_read_compressed(s, VMS_STATE_FILE, error);
  GBytes *map = NULL;
  char d_state[72], d_map[72];
  gsize state_len, map_len = 0;
  gboolean ok;

  if (state == NULL)
    return vms_reg_push_wait(p, t), FALSE;
  state_len = g_bytes_get_size(state);
  vms_reg_push_bytes(p, state, d_state);
  if (m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF) {
    map = vms_reg_read_compressed(s, VMS_MAP_FILE, error);
    if (map == NULL)
      return vms_reg_push_wait(p, t), FALSE;
    map_len = g_bytes_get_size(map);
    vms_reg_push_bytes(p, map, d_map);
  }
  vms_reg_artifact_add(a, VMS_REG_MT_STATE, d_state, state_len, VMS_STATE_FILE);
  if (map != NULL)
    vms_reg_artifact_add(a, VMS_REG_MT_PAGEMAP, d_map, map_len, VMS_MAP_FILE);
  ok = push_memory(p, s, a, t, error) && vms_reg_push_disks(p, s, parent, a, t, error);
  vms_reg_push_wait(p, t);
  if (ok && p->error != NULL) {
    g_propagate_error(error, g_steal_pointer(&p->error));
    return FALSE;
  }
  return ok;
}

/* Pushes one member of a chain; its manifest digest into @ret_digest. */
static gboolean
push_member(Push *p, VmsSnapshot *s, VmsSnapshot *parent, const char *parent_digest,
            const char *tag, char ret_digest[72], GError **error)
{
  g_autofree char *alias = alias_tag(s->manifest_sha256);
  g_autoptr(GBytes) json = NULL;
  g_autoptr(VmsRegArtifact) a = vms_reg_artifact_new();
  g_autoptr(GBytes) config = NULL;
  VmsRegTicker t;
  g_autofree char *what = g_strdup_printf("push %s", s->path);

  if (!find_pushed(p, alias, ret_digest, &json, error))
    return FALSE;
  if (json != NULL) /* pushed before: at most a new tag */
    return tag == NULL || put_manifest(p, json, tag, error);
  vms_reg_ticker_init(&t, p->opts, what, 0);
  config = vms_reg_read_snapshot_file(s, VMS_MANIFEST_FILE, error);
  if (config == NULL)
    return FALSE;
  vms_reg_digest_format(s->manifest_sha256, a->config.digest);
  a->config.media_type = g_strdup(VMS_REG_MT_CONFIG);
  a->config.size = g_bytes_get_size(config);
  a->kind = g_strdup(vms_manifest_kind_name(s->manifest->kind));
  if (s->manifest->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF) {
    char pc[72];
    vms_reg_digest_format(s->manifest->parent_manifest_sha256.data, pc);
    a->parent_config = g_strdup(pc);
    a->parent_manifest = g_strdup(parent_digest);
  }
  vms_reg_push_bytes(p, g_steal_pointer(&config), a->config.digest);
  if (!push_blobs(p, s, parent, a, &t, error))
    return FALSE;
  vms_reg_ticker_tick(&t, p->done, vms_reg_engine_bytes_up(p->engine), TRUE);
  json = vms_reg_artifact_to_json(a);
  vms_reg_digest_of(g_bytes_get_data(json, NULL), g_bytes_get_size(json), ret_digest);
  if (!put_manifest(p, json, alias, error))
    return FALSE;
  p->stats->snapshots++;
  return tag == NULL || put_manifest(p, json, tag, error);
}

gboolean
vms_reg_push(const char *dir, const char *ref_text, const VmsRegTransferOptions *opts,
             VmsRegStats *ret_stats, GError **error)
{
  g_autoptr(VmsRegRef) ref = vms_reg_ref_parse(ref_text, error);
  VmsRegOptions copts = { .insecure = opts->insecure, .push = TRUE, .mount_from = opts->mount_from };
  g_autoptr(VmsRegClient) client = NULL;
  g_autoptr(VmsRegEngine) engine = NULL;
  g_autoptr(GPtrArray) chain = NULL;
  VmsRegStats stats = { 0 };
  VmsRegTransferOptions o = *opts;
  Push p = { 0 };
  char digest[72] = "";

  if (ref == NULL)
    return FALSE;
  if (ref->digest != NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "push needs a tag, not a digest: %s (the digest is the result of the push)", ref_text);
    return FALSE;
  }
  if (!vms_chain_resolve(dir, &chain, error) || !vms_reg_push_disks_check(chain, error))
    return FALSE;
  if (!vms_reg_session_open(ref, &copts, &o.transfers, &client, &engine, error))
    return FALSE;
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  p = (Push){ .client = client, .engine = engine, .opts = &o, .stats = &stats, .seen = seen };
  for (guint i = 0; i < chain->len; i++) {
    VmsSnapshot *s = g_ptr_array_index(chain, i);
    g_autofree char *parent = i > 0 ? g_strdup(digest) : NULL;
    if (!push_member(&p, s, i > 0 ? g_ptr_array_index(chain, i - 1) : NULL, parent,
                     i + 1 == chain->len ? ref->tag : NULL, digest, error))
      return FALSE;
  }
  memcpy(stats.digest, digest, sizeof stats.digest);
  if (ret_stats != NULL)
    *ret_stats = stats;
  return TRUE;
}
