/* vmsnap core: verifying a committed snapshot alone — state.bin, the memory
 * file's size, a diff's page map and data (snapdir.h). The chain is
 * chain.c's, memory chunk digests chunks.c's. */
#include "snapdir.h"
#include "snapdir-private.h"
#include "disk-record.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>

#include "copy.h"
#include "disk-record.h"
#include "error.h"
#include "extents.h"
#include "util.h"

/* ---- verifying ---- */

static gboolean
digest_mismatch(GError **error, const char *what, const guint8 *got, const guint8 *want)
{
  char got_hex[65], want_hex[65];

  vms_sha256_hex(got, got_hex);
  vms_sha256_hex(want, want_hex);
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
              "%s SHA-256 (%s) doesn't match the manifest (%s)", what, got_hex, want_hex);
  return FALSE;
}

gboolean
vms_snapshot_verify_state(VmsSnapshot *s, GError **error)
{
  vms_autofd fd = -1;
  struct stat st;
  guint8 digest[VMS_SHA256_LEN];
  guint64 size;
  g_autofree char *what = g_strdup_printf("%s/%s", s->path, VMS_STATE_FILE);

  fd = vms_snapshot_open_file(s, VMS_STATE_FILE, O_RDONLY, error);
  if (fd < 0) {
    g_prefix_error(error, "state: ");
    return FALSE;
  }
  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s", what);
  if ((guint64)st.st_size != s->manifest->state_size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "state file %s is %" G_GINT64_FORMAT " bytes, the manifest's state_size is %"
                G_GUINT64_FORMAT, what, (gint64)st.st_size, s->manifest->state_size);
    return FALSE;
  }
  if (!vms_snapdir_hash_fd(fd, what, digest, &size, error))
    return FALSE;
  if (memcmp(digest, s->manifest->state_sha256.data, VMS_SHA256_LEN) != 0) {
    g_autofree char *label = g_strdup_printf("state file %s", what);
    return digest_mismatch(error, label, digest, s->manifest->state_sha256.data);
  }
  return TRUE;
}

/* memory.map of a DIFF: its SHA-256 is the manifest's, it fits the memory
 * size and page size, and the data it names hashes to diff_data_sha256. */
static gboolean
verify_diff_map(VmsSnapshot *s, int mem_fd, GError **error)
{
  const VmsManifest *m = s->manifest;
  g_autoptr(GArray) list = NULL;
  g_autofree char *what = g_strdup_printf("%s/%s", s->path, VMS_MAP_FILE);
  vms_autofd fd = vms_snapshot_open_file(s, VMS_MAP_FILE, O_RDONLY, error);
  guint8 digest[VMS_SHA256_LEN];
  guint32 page_size = 0;

  if (fd < 0)
    return FALSE;
  if (!vms_pagemap_file_read(fd, m->memory_size_bytes, &list, &page_size, digest, error)) {
    g_prefix_error(error, "%s: ", what);
    return FALSE;
  }
  if (memcmp(digest, m->page_map_sha256.data, VMS_SHA256_LEN) != 0)
    return digest_mismatch(error, what, digest, m->page_map_sha256.data);
  if (page_size != m->page_size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s page size (%u) doesn't match the manifest's page size (%u)",
                what, page_size, m->page_size);
    return FALSE;
  }
  if (m->diff_data_sha256.len != VMS_SHA256_LEN)
    return TRUE;
  g_free(what);
  what = g_strdup_printf("%s/%s", s->path, vms_snapshot_memory_file(s));
  if (!vms_hash_extents(mem_fd, list, digest, error)) {
    g_prefix_error(error, "%s: ", what);
    return FALSE;
  }
  if (memcmp(digest, m->diff_data_sha256.data, VMS_SHA256_LEN) != 0) {
    g_autofree char *label = g_strdup_printf("diff data of %s", what);
    return digest_mismatch(error, label, digest, m->diff_data_sha256.data);
  }
  return TRUE;
}

gboolean
vms_snapshot_verify(VmsSnapshot *s, GError **error)
{
  const VmsManifest *m = s->manifest;
  const char *mem_name = vms_snapshot_memory_file(s);
  vms_autofd fd = -1;
  struct stat st;

  if (m->version != VMS_MANIFEST_VERSION) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "%s: unsupported manifest version %u (this vmsnap reads version %u)",
                s->path, m->version, VMS_MANIFEST_VERSION);
    return FALSE;
  }
  if (!vms_snapshot_verify_state(s, error) || !vms_snapshot_verify_disks(s->path, m, error))
    return FALSE;
  fd = vms_snapshot_open_file(s, mem_name, O_RDONLY, error);
  if (fd < 0)
    return FALSE;
  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s/%s", s->path, mem_name);
  if ((guint64)st.st_size != m->memory_size_bytes) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "memory file %s/%s is %" G_GINT64_FORMAT " bytes, the manifest's memory size is %"
                G_GUINT64_FORMAT, s->path, mem_name, (gint64)st.st_size, m->memory_size_bytes);
    return FALSE;
  }
  if (m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    return verify_diff_map(s, fd, error);
  return TRUE;
}
