/* vmsnap registry: pull (doc/spec.md section 12).
 *
 * The OCI manifest first, then manifest.bin (the config), then the parent
 * if the target lacks it, then state.bin, memory.map and the chunk index,
 * then the chunks: several GETs at once, each verified on a pool thread
 * (blob digest, zstd frame, raw digest) and written sparse (zero pages
 * stay holes). Files are staged as NAME.pull-<id>, where <id> comes from
 * the config digest, and are kept on failure: the next pull of the same
 * snapshot checks the chunks they hold by digest and fetches the rest.
 * manifest.bin is committed last by snapdir.
 */
#include "pull-private.h"

#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zstd.h>

#include "artifact.h"
#include "blob.h"
#include "chunks.h"
#include "extents.h"
#include "engine.h"
#include "error.h"
#include "snapdir.h"
#include "util.h"

/* memory.map and state.bin larger than this are refused. */
#define SMALL_BLOB_MAX (1024u << 20)

/* GET of a blob, verified against its digest. */
static GBytes *
get_blob(Pull *p, const char *digest, guint64 max, const char *what, GError **error)
{
  g_autofree char *path = g_strdup_printf("/v2/%s/blobs/%s", vms_reg_client_repository(p->client),
                                          digest);
  g_auto(VmsRegResponse) r = { .max_body = max };
  char got[72];

  if (!vms_reg_client_request(p->client, "GET", path, NULL, NULL, NULL, &r, error))
    return NULL;
  if (r.status != 200) {
    g_autofree char *w = g_strdup_printf("%s (blob %s)", what, digest);
    return vms_reg_client_status_error(p->client, &r, w, error), NULL;
  }
  if (r.body == NULL)
    r.body = g_byte_array_new();
  p->stats->bytes_received += r.body->len;
  p->stats->blobs_fetched++;
  vms_reg_digest_of(r.body->data, r.body->len, got);
  if (strcmp(got, digest) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s: blob %s from %s is corrupt (its content has digest %s)", what, digest,
                vms_reg_client_name(p->client), got);
    return NULL;
  }
  return g_byte_array_free_to_bytes(g_steal_pointer(&r.body));
}

GBytes *
vms_reg_pull_blob(Pull *p, const char *digest, guint64 max, const char *what, GError **error)
{
  return get_blob(p, digest, max, what, error);
}

/* A zstd blob of unknown but bounded raw size (memory.map, state.bin). */
static GBytes *
get_zstd_blob(Pull *p, const VmsRegDesc *d, guint64 expect, const char *what, GError **error)
{
  g_autoptr(GBytes) z = get_blob(p, d->digest, SMALL_BLOB_MAX, what, error);
  guint64 n;
  guint8 *out;
  gsize zlen;
  const void *zdata;

  if (z == NULL)
    return NULL;
  zdata = g_bytes_get_data(z, &zlen);
  n = expect;
  if (n == 0) {
    unsigned long long c = ZSTD_getFrameContentSize(zdata, zlen);
    if (c == ZSTD_CONTENTSIZE_UNKNOWN || c == ZSTD_CONTENTSIZE_ERROR || c > SMALL_BLOB_MAX) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s: blob %s is not a zstd frame of known size",
                  what, d->digest);
      return NULL;
    }
    n = c;
  }
  out = g_malloc(MAX(n, 1));
  if (!vms_reg_decompress(zdata, zlen, out, n, what, error)) {
    g_free(out);
    return NULL;
  }
  return g_bytes_new_take(out, n);
}

/* ---- one snapshot ---- */

typedef struct {
  VmsRegArtifact *artifact;
  GBytes *config;       /* manifest.bin */
  VmsManifest *manifest;
  char digest[72];      /* of the OCI manifest */
} Remote;

static void
remote_clear(Remote *r)
{
  vms_reg_artifact_free(r->artifact);
  if (r->config != NULL)
    g_bytes_unref(r->config);
  vms_manifest_free(r->manifest);
}
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(Remote, remote_clear)

/* The OCI manifest of @reference and its config, decoded and checked. */
static gboolean
fetch_remote(Pull *p, const char *reference, Remote *ret, GError **error)
{
  g_autofree char *path = g_strdup_printf("/v2/%s/manifests/%s",
                                          vms_reg_client_repository(p->client), reference);
  g_autofree char *what = g_strdup_printf("%s/%s", vms_reg_client_name(p->client), reference);
  g_auto(VmsRegResponse) r = { .max_body = 16u << 20 };
  g_autoptr(GBytes) json = NULL;
  g_autoptr(GBytes) again = NULL;

  if (!vms_reg_client_request(p->client, "GET", path, NULL, NULL, VMS_REG_MT_MANIFEST, &r, error))
    return FALSE;
  if (r.status != 200) {
    g_autofree char *w = g_strdup_printf("snapshot %s", reference);
    return vms_reg_client_status_error(p->client, &r, w, error);
  }
  json = g_bytes_new(r.body != NULL ? r.body->data : NULL, r.body != NULL ? r.body->len : 0);
  p->stats->bytes_received += g_bytes_get_size(json);
  vms_reg_digest_of(g_bytes_get_data(json, NULL), g_bytes_get_size(json), ret->digest);
  if (g_str_has_prefix(reference, "sha256:") && strcmp(reference, ret->digest) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest %s is corrupt: its content has digest %s", what, ret->digest);
    return FALSE;
  }
  ret->artifact = vms_reg_artifact_from_json(json, what, error);
  if (ret->artifact == NULL)
    return FALSE;
  ret->config = get_blob(p, ret->artifact->config.digest, VMS_MANIFEST_MAX_SIZE, "manifest.bin", error);
  if (ret->config == NULL)
    return FALSE;
  ret->manifest = vms_manifest_decode(g_bytes_get_data(ret->config, NULL),
                                      g_bytes_get_size(ret->config), error);
  if (ret->manifest == NULL)
    return FALSE;
  /* snapdir commits by encoding: the bytes must come out the same, or the
   * children's parent digests would no longer match. */
  again = vms_manifest_encode(ret->manifest);
  if (!g_bytes_equal(again, ret->config)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "%s: manifest.bin has fields this vmsnap does not know; use a newer vmsnap", what);
    return FALSE;
  }
  return TRUE;
}

/* Everything of one pull is staged in DIR/.pull-<id> (<id>: the config
 * digest's first 12 hex digits) under its final name, and renamed into DIR
 * only when all of it is there and verified. */
static char *
staging_name(const Remote *rem)
{
  return g_strdup_printf(".pull-%.12s", rem->artifact->config.digest + 7);
}

/* Removes the staging directories of other snapshots (an abandoned pull of
 * something else) and opens (creating) ours. */
static int
open_staging(int dirfd, const char *dir, const char *name, GError **error)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *n;
  int fd;

  while (d != NULL && (n = g_dir_read_name(d)) != NULL) {
    if (!g_str_has_prefix(n, ".pull-") || strcmp(n, name) == 0)
      continue;
    g_autofree char *sub = g_build_filename(dir, n, NULL);
    g_autoptr(GDir) sd = g_dir_open(sub, 0, NULL);
    for (const char *f; sd != NULL && (f = g_dir_read_name(sd)) != NULL;) {
      g_autofree char *path = g_build_filename(sub, f, NULL);
      unlink(path);
    }
    rmdir(sub);
  }
  if (mkdirat(dirfd, name, 0700) < 0 && errno != EEXIST)
    return vms_set_error_errno(error, errno, "failed to create %s/%s", dir, name), -1;
  fd = openat(dirfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0)
    return vms_set_error_errno(error, errno, "failed to open %s/%s", dir, name), -1;
  return fd;
}

/* Writes a small file staged (fsynced); verified by the caller first. */
static gboolean
stage_small(int sdfd, const char *dir, const char *name, GBytes *data, GError **error)
{
  vms_autofd fd = vms_openat_regular(sdfd, name, O_RDWR | O_CREAT | O_TRUNC, 0600, error);
  int r;

  if (fd < 0)
    return FALSE;
  r = vms_pwrite_full(fd, g_bytes_get_data(data, NULL), g_bytes_get_size(data), 0);
  if (r == 0 && fsync(fd) < 0)
    r = -errno;
  if (r < 0)
    return vms_set_error_errno(error, -r, "failed to write %s (staged) for %s", name, dir);
  return TRUE;
}

static gboolean
digest_check(const guint8 *want, GBytes *data, const char *what, const char *dir, GError **error)
{
  guint8 sha[32];

  vms_reg_sha256(g_bytes_get_data(data, NULL), g_bytes_get_size(data), sha);
  if (memcmp(sha, want, 32) == 0)
    return TRUE;
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
              "pulled %s for %s does not match the SHA-256 in manifest.bin", what, dir);
  return FALSE;
}

/* One index entry: whole non-zero chunks of one window, with their digest. */
static gboolean
group_matches(const VmsRegChunk *c, const VmsChunkIndex *cidx, guint64 *covered)
{
  guint64 first = c->offset / cidx->chunk_size;
  guint64 len = 0;
  guint n = 0;
  guint8 sha[32];

  while (len < c->length && first + n < cidx->count && n < VMS_REG_BLOB_CHUNKS) {
    if (vms_chunk_index_is_zero(cidx, first + n))
      return FALSE;
    len += vms_chunk_index_length(cidx, first + n);
    n++;
  }
  if (len != c->length || first / VMS_REG_BLOB_CHUNKS != (first + n - 1) / VMS_REG_BLOB_CHUNKS)
    return FALSE;
  vms_reg_group_digest((const guint8(*)[32])cidx->digests, first, n, sha);
  *covered += n;
  return memcmp(sha, c->raw_sha256, 32) == 0;
}

/* The chunk index, checked against the artifact and against memory.chunks:
 * the same chunk size and stream size, every non-zero chunk in exactly one
 * blob, each blob's group digest made of memory.chunks' digests. */
static VmsRegIndex *
fetch_index(Pull *p, const Remote *rem, const VmsChunkIndex *cidx, GError **error)
{
  const VmsRegDesc *d = vms_reg_artifact_find(rem->artifact, VMS_REG_MT_INDEX);
  g_autoptr(GBytes) raw = NULL;
  g_autoptr(VmsRegIndex) ix = NULL;

  if (d == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s has no chunk index layer", p->ref),
           NULL;
  raw = get_blob(p, d->digest, 32 + 80ull * VMS_REG_MAX_LAYERS, "chunk index", error);
  if (raw == NULL || (ix = vms_reg_index_decode(raw, error)) == NULL ||
      !vms_reg_index_matches(ix, rem->artifact, p->ref, error))
    return NULL;
  if (!vms_reg_pull_index_covers(ix, cidx))
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "%s: its chunk index does not match its memory.chunks", p->ref), NULL;
  return g_steal_pointer(&ix);
}

gboolean
vms_reg_pull_index_covers(const VmsRegIndex *ix, const VmsChunkIndex *cidx)
{
  guint64 nonzero = 0, covered = 0;

  for (guint64 i = 0; i < cidx->count; i++)
    nonzero += !vms_chunk_index_is_zero(cidx, i);
  gboolean ok = ix->chunk_size == cidx->chunk_size && ix->memory_size == cidx->data_size;
  for (guint i = 0; ok && i < ix->chunks->len; i++)
    ok = group_matches(&g_array_index(ix->chunks, VmsRegChunk, i), cidx, &covered);
  return ok && covered == nonzero;
}

/* memory.chunks, staged and read back through chunks.h (which checks its
 * own checksum and its binding to the pulled manifest.bin). */
static VmsChunkIndex *
stage_digests(Pull *p, int sdfd, const char *dir, const Remote *rem, guint64 data_size,
              GError **error)
{
  const VmsRegDesc *d = vms_reg_artifact_find(rem->artifact, VMS_REG_MT_DIGESTS);
  g_autoptr(GBytes) raw = NULL;
  VmsChunkIndex *cidx = NULL;
  guint8 sha[32];

  if (d == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s has no memory.chunks layer", p->ref),
           NULL;
  raw = get_blob(p, d->digest, 64ull << 20, VMS_CHUNKS_FILE, error);
  vms_reg_digest_parse(rem->artifact->config.digest, sha);
  if (raw == NULL || !stage_small(sdfd, dir, VMS_CHUNKS_FILE, raw, error) ||
      !vms_chunks_read_at(sdfd, sha, data_size, &cidx, error))
    return NULL;
  return cidx;
}

static gboolean
stage_memory(Pull *p, int sdfd, const char *dir, const Remote *rem, const char *memfile,
             GError **error)
{
  const VmsManifest *m = rem->manifest;
  g_autoptr(GArray) list = NULL;
  g_autoptr(VmsChunkSource) src = NULL;
  g_autoptr(VmsChunkIndex) cidx = NULL;
  g_autoptr(VmsRegIndex) ix = NULL;
  g_autofree char *what = g_strdup_printf("pull %s", dir);
  gboolean diff = m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  vms_autofd fd = -1;
  struct stat st;
  VmsRegTicker t;

  if (diff) {
    vms_autofd mfd = vms_openat_regular(sdfd, VMS_MAP_FILE, O_RDONLY, 0, error);
    if (mfd < 0 || !vms_pagemap_file_read(mfd, m->memory_size_bytes, &list, NULL, NULL, error))
      return FALSE;
  }
  fd = vms_openat_regular(sdfd, memfile, O_RDWR | O_CREAT, 0600, error);
  if (fd < 0)
    return FALSE;
  if (fstat(fd, &st) < 0 || ((guint64)st.st_size != m->memory_size_bytes &&
                             ftruncate(fd, (off_t)m->memory_size_bytes) < 0))
    return vms_set_error_errno(error, errno, "failed to size %s (staged) for %s", memfile, dir);
  src = vms_chunk_source_new(fd, list, m->memory_size_bytes, error);
  if (src == NULL || (cidx = stage_digests(p, sdfd, dir, rem, vms_chunk_source_size(src), error)) == NULL ||
      (ix = fetch_index(p, rem, cidx, error)) == NULL)
    return FALSE;
  VmsRegTarget target = { .fd = fd, .src = src, .cidx = cidx, .sparse = !diff, .page = m->page_size };
  vms_reg_ticker_init(&t, p->opts, what, 0);
  if (!vms_reg_pull_chunks(p, &target, ix, st.st_size > 0, &t, error))
    return FALSE;
  if (fsync(fd) < 0)
    return vms_set_error_errno(error, errno, "failed to fsync %s (staged) for %s", memfile, dir);
  return TRUE;
}

static gboolean pull_member(Pull *p, const char *reference, const char *dir,
                            const char *expect_config, GError **error);

/* TRUE with *@ret_same if @dir already holds a committed snapshot whose
 * manifest.bin has @config_digest; an error if it holds another. */
static gboolean
existing(const char *dir, const char *config_digest, gboolean *ret_same, GError **error)
{
  g_autofree char *path = g_build_filename(dir, VMS_MANIFEST_FILE, NULL);
  g_autoptr(VmsSnapshot) s = NULL;
  char d[72];

  *ret_same = FALSE;
  if (!g_file_test(path, G_FILE_TEST_EXISTS))
    return TRUE;
  s = vms_snapshot_open(dir, error);
  if (s == NULL)
    return FALSE;
  vms_reg_digest_format(s->manifest_sha256, d);
  if (strcmp(d, config_digest) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                "%s already holds another snapshot (manifest.bin %s, wanted %s)", dir, d, config_digest);
    return FALSE;
  }
  *ret_same = TRUE;
  return TRUE;
}

/* A diff's parent: there already, or pulled to where the manifest points. */
static gboolean
ensure_parent(Pull *p, const char *dir, const Remote *rem, GError **error)
{
  const VmsManifest *m = rem->manifest;
  g_autofree char *parent = NULL;
  g_autoptr(GError) local = NULL;
  char want[72];
  gboolean same = FALSE;

  if (m->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    return TRUE;
  /* Canonical: "DIR/../d1" must work before DIR exists. */
  parent = g_canonicalize_filename(m->parent, dir);
  vms_reg_digest_format(m->parent_manifest_sha256.data, want);
  if (!existing(parent, want, &same, error))
    return FALSE;
  if (same)
    return TRUE;
  if (rem->artifact->parent_manifest == NULL ||
      !pull_member(p, rem->artifact->parent_manifest, parent, want, &local)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INCOMPLETE,
                "the parent of %s (manifest.bin %s) is not at %s and could not be pulled: %s",
                dir, want, parent, local != NULL ? local->message : "the artifact names no parent manifest");
    return FALSE;
  }
  return TRUE;
}

/* state.bin and (diffs) memory.map, staged and checked against manifest.bin. */
static gboolean
stage_small_files(Pull *p, int sdfd, const char *dir, const Remote *rem, GError **error)
{
  const VmsManifest *m = rem->manifest;
  const VmsRegDesc *ds = vms_reg_artifact_find(rem->artifact, VMS_REG_MT_STATE);
  const VmsRegDesc *dm = vms_reg_artifact_find(rem->artifact, VMS_REG_MT_PAGEMAP);
  g_autoptr(GBytes) state = NULL;
  g_autoptr(GBytes) map = NULL;

  if (ds == NULL || (m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF && dm == NULL)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s lacks its state.bin or memory.map layer", p->ref);
    return FALSE;
  }
  state = get_zstd_blob(p, ds, m->state_size, VMS_STATE_FILE, error);
  if (state == NULL || !digest_check(m->state_sha256.data, state, VMS_STATE_FILE, dir, error) ||
      !stage_small(sdfd, dir, VMS_STATE_FILE, state, error))
    return FALSE;
  if (m->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    return TRUE;
  map = get_zstd_blob(p, dm, 0, VMS_MAP_FILE, error);
  return map != NULL && digest_check(m->page_map_sha256.data, map, VMS_MAP_FILE, dir, error) &&
         stage_small(sdfd, dir, VMS_MAP_FILE, map, error);
}

/* Renames every staged file into @dir and removes the staging directory;
 * manifest.bin is left to the commit. */
static gboolean
place_files(int dirfd, int sdfd, const char *dir, const char *staging, const Remote *rem,
            const char *memfile, GError **error)
{
  const char *names[] = { VMS_STATE_FILE, memfile, VMS_CHUNKS_FILE,
                          rem->manifest->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF ? VMS_MAP_FILE : NULL };

  for (gsize i = 0; i < G_N_ELEMENTS(names) && names[i] != NULL; i++) {
    if (renameat(sdfd, names[i], dirfd, names[i]) < 0)
      return vms_set_error_errno(error, errno, "failed to move %s/%s/%s into place", dir, staging,
                                 names[i]);
  }
  if (unlinkat(dirfd, staging, AT_REMOVEDIR) < 0)
    return vms_set_error_errno(error, errno, "failed to remove %s/%s", dir, staging);
  return TRUE;
}

static const char *
memory_name(const VmsManifest *m)
{
  if (m->memory_file != NULL && m->memory_file[0] != '\0')
    return m->memory_file;
  return m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF ? VMS_DIFF_FILE : VMS_MEMORY_FILE;
}

static gboolean
pull_member(Pull *p, const char *reference, const char *dir, const char *expect_config,
            GError **error)
{
  g_auto(Remote) rem = { 0 };
  g_autoptr(VmsSnapWriter) w = NULL;
  g_autoptr(VmsRegPullDisks) disks = NULL;
  g_autofree char *staging = NULL;
  vms_autofd sdfd = -1;
  gboolean same = FALSE;
  int dirfd;

  if (!fetch_remote(p, reference, &rem, error))
    return FALSE;
  if (expect_config != NULL && strcmp(rem.artifact->config.digest, expect_config) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s holds manifest.bin %s, expected %s",
                reference, rem.artifact->config.digest, expect_config);
    return FALSE;
  }
  if (!existing(dir, rem.artifact->config.digest, &same, error))
    return FALSE;
  if (same)
    return TRUE;
  if (!ensure_parent(p, dir, &rem, error))
    return FALSE;
  w = vms_snap_writer_new(dir, error);
  if (w == NULL)
    return FALSE;
  dirfd = vms_snap_writer_get_dirfd(w);
  staging = staging_name(&rem);
  sdfd = open_staging(dirfd, dir, staging, error);
  if (sdfd < 0 || !stage_small_files(p, sdfd, dir, &rem, error) ||
      !stage_memory(p, sdfd, dir, &rem, memory_name(rem.manifest), error) ||
      (disks = vms_reg_pull_disks_stage(p, sdfd, dir, rem.artifact, rem.manifest,
                                        rem.artifact->config.digest, error)) == NULL ||
      !vms_reg_pull_disks_place(disks, sdfd, dirfd, error) ||
      !place_files(dirfd, sdfd, dir, staging, &rem, memory_name(rem.manifest), error) ||
      !vms_snap_writer_commit(w, rem.manifest, error))
    return FALSE;
  p->stats->snapshots++;
  memcpy(p->stats->digest, rem.digest, sizeof p->stats->digest);
  return TRUE;
}

gboolean
vms_reg_pull(const char *ref_text, const char *dir, const VmsRegTransferOptions *opts,
             VmsRegStats *ret_stats, GError **error)
{
  g_autoptr(VmsRegRef) ref = vms_reg_ref_parse(ref_text, error);
  VmsRegOptions copts = { .insecure = opts->insecure, .push = FALSE };
  g_autoptr(VmsRegClient) client = NULL;
  g_autoptr(VmsRegEngine) engine = NULL;
  VmsRegStats stats = { 0 };
  VmsRegTransferOptions o = *opts;
  Pull p;

  if (ref == NULL)
    return FALSE;
  if (!vms_reg_session_open(ref, &copts, &o.transfers, &client, &engine, error))
    return FALSE;
  p = (Pull){ .client = client, .engine = engine, .opts = &o, .stats = &stats, .ref = ref_text };
  if (!pull_member(&p, vms_reg_ref_reference(ref), dir, NULL, error))
    return FALSE;
  if (ret_stats != NULL)
    *ret_stats = stats;
  return TRUE;
}
