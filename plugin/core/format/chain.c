/* vmsnap core: diff chains — resolve, verify and flatten (see chain.h). */
#include "chain.h"
#include "disk-record.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <stdio.h>
#include <sys/stat.h>

#include "chunks.h"
#include "error.h"
#include "extents.h"
#include "stream.h"
#include "util.h"

static gboolean
is_diff(const VmsSnapshot *s)
{
  return s->manifest->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
}

/* "dev:ino" of the snapshot directory, to find a cycle whatever the spelling. */
static char *
dir_identity(const VmsSnapshot *s, GError **error)
{
  struct stat st;

  if (fstat(s->dirfd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s", s->path), NULL;
  return g_strdup_printf("%" G_GUINT64_FORMAT ":%" G_GUINT64_FORMAT,
                         (guint64)st.st_dev, (guint64)st.st_ino);
}

/* Checks that @parent is what @child recorded: manifest hash and memory size. */
static gboolean
check_parent(const VmsSnapshot *child, const VmsSnapshot *parent, GError **error)
{
  const ProtobufCBinaryData *want = &child->manifest->parent_manifest_sha256;
  char have_hex[65], want_hex[65] = "(none)";

  if (want->len == VMS_SHA256_LEN)
    vms_sha256_hex(want->data, want_hex);
  if (want->len != VMS_SHA256_LEN ||
      memcmp(want->data, parent->manifest_sha256, VMS_SHA256_LEN) != 0) {
    vms_sha256_hex(parent->manifest_sha256, have_hex);
    return g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                       "parent %s of %s has changed: its manifest SHA-256 is %s, %s recorded %s",
                       parent->path, child->path, have_hex, child->path, want_hex), FALSE;
  }
  if (parent->manifest->memory_size_bytes != child->manifest->memory_size_bytes)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                       "parent %s memory size (%" G_GUINT64_FORMAT ") doesn't match %s (%"
                       G_GUINT64_FORMAT ")", parent->path, parent->manifest->memory_size_bytes,
                       child->path, child->manifest->memory_size_bytes), FALSE;
  return TRUE;
}

/* Opens the parent of @child, which must not be in @seen. */
static VmsSnapshot *
open_parent(const VmsSnapshot *child, GHashTable *seen, GError **error)
{
  g_autofree char *path = vms_snapshot_parent_path((VmsSnapshot *)child);
  g_autoptr(GError) local = NULL;

  if (path == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "diff snapshot %s names no parent", child->path), NULL;
  g_autoptr(VmsSnapshot) parent = vms_snapshot_open(path, &local);
  if (parent == NULL)
    return g_set_error(error, VMS_ERROR, local->code, "parent %s of %s: %s", path, child->path,
                       local->message), NULL;
  g_autofree char *id = dir_identity(parent, error);
  if (id == NULL)
    return NULL;
  if (g_hash_table_contains(seen, id))
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "parent chain of %s has a cycle: %s appears twice", child->path, path), NULL;
  if (!check_parent(child, parent, error))
    return NULL;
  g_hash_table_add(seen, g_steal_pointer(&id));
  return g_steal_pointer(&parent);
}

gboolean
vms_chain_resolve(const char *dir, GPtrArray **ret_chain, GError **error)
{
  g_autoptr(GPtrArray) chain = g_ptr_array_new_with_free_func((GDestroyNotify)vms_snapshot_free);
  g_autoptr(GHashTable) seen = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, NULL);
  VmsSnapshot *s = vms_snapshot_open(dir, error);

  if (s == NULL)
    return FALSE;
  g_ptr_array_add(chain, s);
  char *id = dir_identity(s, error);
  if (id == NULL)
    return FALSE;
  g_hash_table_add(seen, id);
  /* Newest first while walking; reversed at the end. */
  while (is_diff(s)) {
    if (chain->len > VMS_CHAIN_MAX_DEPTH)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                         "parent chain of %s is deeper than %d diffs", dir, VMS_CHAIN_MAX_DEPTH),
             FALSE;
    VmsSnapshot *parent = open_parent(s, seen, error);
    if (parent == NULL)
      return FALSE;
    g_ptr_array_add(chain, parent);
    s = parent;
  }
  for (guint i = 0; i < chain->len / 2; i++) {
    gpointer t = chain->pdata[i];
    chain->pdata[i] = chain->pdata[chain->len - 1 - i];
    chain->pdata[chain->len - 1 - i] = t;
  }
  *ret_chain = g_steal_pointer(&chain);
  return TRUE;
}

/* Every chunk digest of chain members [@first, len), newest first so a
 * broken diff is named before its base is read. */
static gboolean
verify_members_chunks(GPtrArray *chain, guint first, GError **error)
{
  for (guint i = chain->len; i > first; i--) {
    VmsSnapshot *s = chain->pdata[i - 1];
    if (!vms_snapshot_verify_chunks(s, error)) {
      if (i < chain->len)
        g_prefix_error(error, "parent %s: ", s->path);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
vms_chain_verify_diffs(const char *dir, gboolean with_base, GError **error)
{
  g_autoptr(GPtrArray) chain = NULL;
  guint first = with_base ? 0 : 1;

  if (!vms_chain_resolve(dir, &chain, error))
    return FALSE;
  /* Newest first, and the chunks before the whole-file checks, so that a
   * corrupt byte is reported with its file and offset. */
  for (guint i = chain->len; i > first; i--) {
    VmsSnapshot *s = chain->pdata[i - 1];
    if (!vms_snapshot_verify_chunks(s, error) || !vms_snapshot_verify(s, error)) {
      if (i < chain->len)
        g_prefix_error(error, "parent %s: ", s->path);
      return FALSE;
    }
  }
  return TRUE;
}

gboolean
vms_chain_verify(const char *dir, GError **error)
{
  return vms_chain_verify_diffs(dir, TRUE, error);
}

/* Applies the diff snapshot @s onto @mem_fd through its page map, checking
 * the map against the manifest's page_map_sha256 first. */
static gboolean
apply_member(VmsSnapshot *s, int mem_fd, const VmsCopyOptions *opts, GError **error)
{
  g_autoptr(GArray) list = NULL;
  guint8 map_sha[VMS_SHA256_LEN];
  const ProtobufCBinaryData *want = &s->manifest->page_map_sha256;

  vms_autofd map_fd = vms_snapshot_open_file(s, VMS_MAP_FILE, O_RDONLY, error);
  if (map_fd < 0)
    return FALSE;
  if (!vms_pagemap_file_read(map_fd, s->manifest->memory_size_bytes, &list, NULL, map_sha, error)) {
    g_prefix_error(error, "%s/%s: ", s->path, VMS_MAP_FILE);
    return FALSE;
  }
  if (want->len != VMS_SHA256_LEN || memcmp(want->data, map_sha, VMS_SHA256_LEN) != 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "%s/%s doesn't match the manifest's page_map_sha256", s->path, VMS_MAP_FILE),
           FALSE;
  vms_autofd diff_fd = vms_snapshot_open_file(s, vms_snapshot_memory_file(s), O_RDONLY, error);
  if (diff_fd < 0)
    return FALSE;
  if (!vms_apply_diff_fd(mem_fd, diff_fd, list, opts, NULL, error)) {
    g_prefix_error(error, "applying %s: ", s->path);
    return FALSE;
  }
  return TRUE;
}

/* memory.bin of the flattened snapshot: the base copied, each diff applied. */
static gboolean
flatten_memory(GPtrArray *chain, VmsSnapWriter *w, const VmsCopyOptions *opts,
               gboolean *ret_reflinked, GError **error)
{
  VmsSnapshot *base = chain->pdata[0];
  VmsCopyOptions apply_opts = opts != NULL ? *opts : (VmsCopyOptions){ 0 };
  struct stat st;

  apply_opts.fsync = FALSE;  /* vms_snap_writer_finish fsyncs once at the end */
  vms_autofd src_fd = vms_snapshot_open_file(base, vms_snapshot_memory_file(base), O_RDONLY, error);
  if (src_fd < 0)
    return FALSE;
  if (fstat(src_fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat the memory of %s", base->path);
  vms_autofd dst_fd = vms_snap_writer_stage(w, VMS_MEMORY_FILE, error);
  if (dst_fd < 0)
    return FALSE;
  VmsCopySource src = { .fd = src_fd, .mem = NULL, .size = (guint64)st.st_size };
  if (!vms_sparse_copy(&src, dst_fd, &apply_opts, ret_reflinked, NULL, error)) {
    g_prefix_error(error, "copying the memory of %s: ", base->path);
    return FALSE;
  }
  for (guint i = 1; i < chain->len; i++) {
    if (!apply_member(chain->pdata[i], dst_fd, &apply_opts, error))
      return FALSE;
  }
  return vms_snap_writer_finish(w, VMS_MEMORY_FILE, NULL, NULL, error);
}

/* state.bin of @newest, checked, then copied through GIO streams with its
 * SHA-256 taken while it is written, and checked again. */
static gboolean
flatten_state(VmsSnapshot *newest, VmsSnapWriter *w, GError **error)
{
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  g_autofree char *what = g_strdup_printf("%s/%s", newest->path, VMS_STATE_FILE);
  guint8 sha[VMS_SHA256_LEN];
  guint64 size = 0;

  if (!vms_snapshot_verify_state(newest, error))
    return FALSE;
  vms_autofd src_fd = vms_snapshot_open_file(newest, VMS_STATE_FILE, O_RDONLY, error);
  if (src_fd < 0)
    return FALSE;
  vms_autofd dst_fd = vms_snap_writer_stage(w, VMS_STATE_FILE, error);
  if (dst_fd < 0 || !vms_stream_copy(src_fd, dst_fd, sum, &size, what, error) ||
      !vms_snap_writer_finish(w, VMS_STATE_FILE, NULL, NULL, error))
    return FALSE;
  vms_stream_digest(sum, sha);
  const VmsManifest *m = newest->manifest;
  if (size != m->state_size || memcmp(sha, m->state_sha256.data, VMS_SHA256_LEN) != 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "the copy of %s/%s doesn't match its manifest's state", newest->path,
                       VMS_STATE_FILE), FALSE;
  return TRUE;
}

/* @newest's manifest as a FULL snapshot of its own: no parent, no diff fields. */
static VmsManifest *
flat_manifest(VmsSnapshot *newest, gboolean reflinked, GError **error)
{
  g_autoptr(GBytes) bytes = vms_manifest_encode(newest->manifest);
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(bytes, &len);
  g_autoptr(VmsManifest) m = vms_manifest_decode(data, len, error);
  g_autofree char *id = g_uuid_string_random();

  if (m == NULL)
    return NULL;
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL;
  m->memory_capture = reflinked ? VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_REFLINK
                                : VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_COPY;
  vms_manifest_set_string(&m->parent, "");
  vms_manifest_set_bytes(&m->parent_manifest_sha256, NULL, 0);
  vms_manifest_set_bytes(&m->page_map_sha256, NULL, 0);
  vms_manifest_set_bytes(&m->diff_data_sha256, NULL, 0);
  vms_manifest_set_string(&m->memory_file, "");
  vms_disks_refer_to(m, newest->path); /* disk layers stay where they are */
  vms_manifest_set_string(&m->id, id);
  m->diff_data_bytes = 0;
  m->diff_extents = 0;
  return g_steal_pointer(&m);
}

/* The files a flattening holds, for taking a private one away again. */
static const char *const flat_files[] = {
  VMS_MANIFEST_FILE, VMS_MEMORY_FILE, VMS_STATE_FILE, VMS_CHUNKS_FILE,
};

static void
remove_flat_dir(const char *path)
{
  for (gsize i = 0; i < G_N_ELEMENTS(flat_files); i++) {
    g_autofree char *f = g_build_filename(path, flat_files[i], NULL);
    (void)unlink(f);
  }
  (void)rmdir(path);
}

/* A new private directory beside @outdir (OUTDIR.XXXXXX.tmp, 0700), its
 * parents made if missing. */
static char *
private_sibling(const char *outdir, GError **error)
{
  g_autofree char *abs = g_canonicalize_filename(outdir, NULL);
  g_autofree char *parent = g_path_get_dirname(abs);
  g_autofree char *tmpl = g_strconcat(abs, ".XXXXXX.tmp", NULL);

  if (g_mkdir_with_parents(parent, 0700) < 0)
    return vms_set_error_errno(error, errno, "failed to create directory %s", parent), NULL;
  if (g_mkdtemp_full(tmpl, 0700) == NULL)
    return vms_set_error_errno(error, errno, "failed to create a directory beside %s", abs), NULL;
  return g_steal_pointer(&tmpl);
}

/* Writes the flattening of @chain into the empty directory @tmp. */
static gboolean
flatten_into(GPtrArray *chain, const char *tmp, const VmsCopyOptions *opts, GError **error)
{
  VmsSnapshot *newest = chain->pdata[chain->len - 1];
  gboolean reflinked = FALSE;
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(tmp, error);

  if (w == NULL || !flatten_memory(chain, w, opts, &reflinked, error) ||
      !flatten_state(newest, w, error))
    return FALSE;
  g_autoptr(VmsManifest) m = flat_manifest(newest, reflinked, error);
  if (m == NULL || !vms_snap_writer_commit(w, m, error))
    return FALSE;
  g_autoptr(VmsSnapshot) flat = vms_snapshot_open(tmp, error);
  return flat != NULL && vms_snapshot_write_chunks(flat, error);
}

/* Renames the finished @tmp onto @outdir. If another flatten of the same
 * diff got there first, its result is as good as ours: ours goes. */
static gboolean
publish_flat(VmsSnapshot *newest, const char *tmp, const char *outdir, GError **error)
{
  g_autofree char *parent = NULL;
  int err;

  if (rename(tmp, outdir) == 0) {
    parent = g_path_get_dirname(tmp);
    vms_autofd pfd = open(parent, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    int r = pfd >= 0 ? vms_fsync_dir(pfd) : -errno;
    if (r < 0)
      return vms_set_error_errno(error, -r, "failed to fsync directory %s", parent);
    return TRUE;
  }
  err = errno;
  g_autoptr(VmsSnapshot) other = vms_snapshot_open(outdir, NULL);
  remove_flat_dir(tmp);
  if (other != NULL && vms_chain_is_flattening(newest, other))
    return TRUE;
  if (err == ENOTEMPTY || err == EEXIST)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                       "%s already exists and is not a flattening of %s; remove it or flatten "
                       "elsewhere", outdir, newest->path), FALSE;
  return vms_set_error_errno(error, err, "failed to rename %s to %s", tmp, outdir);
}

/* @outdir already holds a snapshot: fine if it is a flattening of @newest
 * (another flatten of the same diff, maybe running beside this one, made
 * it), refused otherwise. */
static gboolean
already_flat(VmsSnapshot *newest, const char *outdir, GError **error)
{
  g_autoptr(VmsSnapshot) other = vms_snapshot_open(outdir, NULL);

  if (other != NULL && vms_chain_is_flattening(newest, other))
    return TRUE;
  return g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                     "%s already holds a committed snapshot (%s) that is not a flattening of "
                     "%s; flattening into it is refused", outdir, VMS_MANIFEST_FILE,
                     newest->path), FALSE;
}

gboolean
vms_chain_flatten(const char *dir, const char *outdir, const VmsCopyOptions *opts, GError **error)
{
  g_autoptr(GPtrArray) chain = NULL;
  g_autofree char *manifest = g_build_filename(outdir, VMS_MANIFEST_FILE, NULL);
  g_autofree char *tmp = NULL;

  if (!vms_chain_resolve(dir, &chain, error))
    return FALSE;
  /* Every byte flatten reads is checked first (doc/format.md). */
  if (!verify_members_chunks(chain, 0, error))
    return FALSE;
  if (g_file_test(manifest, G_FILE_TEST_EXISTS))
    return already_flat(chain->pdata[chain->len - 1], outdir, error);
  /* Built in a private directory and renamed into place: flattens of one
   * diff started at the same time never share a temporary file. */
  tmp = private_sibling(outdir, error);
  if (tmp == NULL)
    return FALSE;
  if (!flatten_into(chain, tmp, opts, error)) {
    remove_flat_dir(tmp);
    return FALSE;
  }
  return publish_flat(chain->pdata[chain->len - 1], tmp, outdir, error);
}

gboolean
vms_chain_is_flattening(const VmsSnapshot *diff, const VmsSnapshot *flat)
{
  const VmsManifest *a = diff->manifest;
  const VmsManifest *b = flat->manifest;

  return b->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL && a->created_at != NULL &&
         b->created_at != NULL && a->created_at->seconds == b->created_at->seconds &&
         a->created_at->nanos == b->created_at->nanos &&
         a->memory_size_bytes == b->memory_size_bytes &&
         a->state_sha256.len == VMS_SHA256_LEN && b->state_sha256.len == VMS_SHA256_LEN &&
         memcmp(a->state_sha256.data, b->state_sha256.data, VMS_SHA256_LEN) == 0;
}
