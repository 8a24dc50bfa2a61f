/* vmsnap plugin: memory=diff for snapshot-save (save-diff.h). */
#include "save-diff.h"

#include <errno.h>
#include <unistd.h>
#include <stdlib.h>
#include <string.h>

#include "diff-precopy.h"
#include "error.h"
#include "extents.h"
#include "util.h"

struct _VmsSaveDiff {
  char *parent_dir;        /* the restored snapshot, as restored-from names it */
  char *parent_field;      /* what the manifest records: relative to the new dir, or absolute */
  guint8 parent_sha256[VMS_SHA256_LEN];
  guint32 page_size;
  GArray *list;            /* the pages written since the restore (capture) */
  int diff_fd;             /* staged memory.diff, kept open to hash it after the resume */
  guint8 map_sha256[VMS_SHA256_LEN];
  VmsDiffPrecopy *pre;     /* pages written while the guest ran (diff-precopy.h), or NULL */
};

/* Written while the guest runs when at least this much is dirty: below it,
 * writing with the VM stopped costs less than the extra page-table walks. */
#define PRECOPY_MIN_BYTES (64ull << 20)

void
vms_save_diff_free(VmsSaveDiff *d)
{
  if (d == NULL)
    return;
  g_free(d->parent_dir);
  g_free(d->parent_field);
  g_clear_pointer(&d->list, g_array_unref);
  g_clear_pointer(&d->pre, vms_diff_precopy_free);
  vms_close_fdp(&d->diff_fd);
  g_free(d);
}

gboolean
vms_save_diff_check(VmsService *svc, const VmsMemInfo *mem, GError **error)
{
  g_autofree char *restored = vms_service_dup_restored(svc, NULL);
  if (mem->shared) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "memory=diff is refused: this VM's memory %s is a shared (share=on) mapping, "
                "so the pages the guest wrote cannot be told from the rest; a diff needs a VM "
                "restored from a snapshot with share=off (`vmsnap restore`); use memory=copy "
                "or memory=link", mem->path);
    return FALSE;
  }
  if (restored == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "memory=diff is refused: this VM was not restored from a snapshot (no "
                "restore=DIR), so its memory %s has no parent to diff against; use memory=copy",
                mem->path);
    return FALSE;
  }
  return TRUE;
}

/* TRUE if @path names itself: absolute, no "." or "..", and no symlink on
 * the way (realpath gives it back unchanged). */
static gboolean
is_real_path(const char *path)
{
  g_autofree char *real = realpath(path, NULL);
  return real != NULL && g_str_equal(real, path);
}

/* @to relative to the directory @from (both absolute and canonical). */
static char *
relative_path(const char *from, const char *to)
{
  g_auto(GStrv) a = g_strsplit(from + 1, "/", -1);
  g_auto(GStrv) b = g_strsplit(to + 1, "/", -1);
  g_autoptr(GString) out = g_string_new(NULL);
  guint i = 0;

  while (a[i] != NULL && b[i] != NULL && g_str_equal(a[i], b[i]))
    i++;
  for (guint j = i; a[j] != NULL; j++)
    g_string_append(out, "../");
  for (guint j = i; b[j] != NULL; j++)
    g_string_append_printf(out, "%s/", b[j]);
  if (out->len == 0)
    return g_strdup(".");
  g_string_truncate(out, out->len - 1);
  return g_string_free(g_steal_pointer(&out), FALSE);
}

/* The manifest's parent field (doc/diff.md): relative where that resolves
 * the same way lexically (vms_snapshot_parent_path) and by the kernel. */
static char *
parent_field(const char *dir, const char *parent)
{
  g_autofree char *from = g_canonicalize_filename(dir, NULL);
  g_autofree char *to = g_canonicalize_filename(parent, NULL);

  if (!is_real_path(from) || !is_real_path(to))
    return g_steal_pointer(&to);
  return relative_path(from, to);
}

/* The parent must be the very snapshot the restore loaded. */
static gboolean
check_parent_unchanged(const VmsSnapshot *p, const guint8 restored_sha[VMS_SHA256_LEN],
                       const VmsMemInfo *mem, GError **error)
{
  char now_hex[65], then_hex[65];

  if (memcmp(p->manifest_sha256, restored_sha, VMS_SHA256_LEN) != 0) {
    vms_sha256_hex(p->manifest_sha256, now_hex);
    vms_sha256_hex(restored_sha, then_hex);
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "parent %s has changed since this VM was restored from it: its manifest "
                "SHA-256 is %s now, %s at the restore", p->path, now_hex, then_hex);
    return FALSE;
  }
  if (p->manifest->memory_size_bytes != mem->size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "parent %s memory size (%" G_GUINT64_FORMAT ") doesn't match this VM (%"
                G_GUINT64_FORMAT ")", p->path, p->manifest->memory_size_bytes, mem->size);
    return FALSE;
  }
  return TRUE;
}

VmsSaveDiff *
vms_save_diff_new(VmsService *svc, const char *dir, const VmsMemInfo *mem, GError **error)
{
  g_autoptr(VmsSaveDiff) d = g_new0(VmsSaveDiff, 1);
  g_autoptr(GError) local = NULL;
  guint8 restored_sha[VMS_SHA256_LEN];

  d->diff_fd = -1;
  d->page_size = mem->page_size;
  d->parent_dir = vms_service_dup_restored(svc, restored_sha);
  if (d->parent_dir == NULL)
    return vms_save_diff_check(svc, mem, error), NULL;

  g_autoptr(VmsSnapshot) parent = vms_snapshot_open(d->parent_dir, &local);
  if (parent == NULL) {
    g_set_error(error, VMS_ERROR, local->code, "parent %s (the snapshot this VM was restored "
                "from): %s", d->parent_dir, local->message);
    return NULL;
  }
  if (!check_parent_unchanged(parent, restored_sha, mem, error))
    return NULL;
  memcpy(d->parent_sha256, restored_sha, VMS_SHA256_LEN);
  d->parent_field = parent_field(dir, d->parent_dir);
  return g_steal_pointer(&d);
}

void
vms_save_diff_precopy(VmsSaveDiff *d, VmsSnapWriter *w, const VmsMemInfo *mem,
                      const VmsCopyOptions *opts)
{
  g_autoptr(GError) error = NULL;

  g_return_if_fail(d->list == NULL && d->diff_fd < 0 && d->pre == NULL);
  vms_autofd fd = vms_snap_writer_stage(w, VMS_DIFF_FILE, &error);
  if (fd < 0 || ftruncate(fd, (off_t)mem->size) < 0) {
    g_debug("diff pre-copy: not used (%s)", error != NULL ? error->message : g_strerror(errno));
    return;
  }
  const char *test_min = g_getenv("VMSNAP_TEST_PRECOPY_MIN_BYTES"); /* tests only */
  guint64 min = test_min != NULL ? g_ascii_strtoull(test_min, NULL, 10) : PRECOPY_MIN_BYTES;
  d->pre = vms_diff_precopy_start(mem, fd, min, opts);
  d->diff_fd = g_steal_fd(&fd); /* staged either way: the capture writes it */
}

/* The capture after a pre-copy: one walk, the pages written since copied
 * again, the map of all of them. */
static gboolean
capture_precopied(VmsSaveDiff *d, VmsSnapWriter *w, const VmsMemInfo *mem,
                  const VmsCopyOptions *opts, guint64 *ret_bytes, GError **error)
{
  g_autoptr(GArray) list = NULL;
  guint64 again = 0;
  gint64 t0 = g_get_monotonic_time();

  /* The write-protection stays until vms_save_diff_finish, after the VM
   * runs again: undoing it walks every page table entry of the guest RAM
   * (31 ms at 4 GiB), and the captured pages no longer depend on it. */
  if (!vms_diff_precopy_finish(d->pre, d->diff_fd, opts, &list, &again, error))
    return FALSE;
  gint64 t1 = g_get_monotonic_time();
  vms_autofd map_fd = vms_snap_writer_stage(w, VMS_MAP_FILE, error);
  if (map_fd < 0 ||
      !vms_pagemap_file_write(map_fd, list, mem->page_size, mem->size, d->map_sha256, error))
    return FALSE;
  g_debug("diff pre-copy: %" G_GUINT64_FORMAT " of %" G_GUINT64_FORMAT " bytes written again "
          "with the VM stopped (walk and write %.1f ms, map %.1f ms)", again,
          vms_extents_total(list), (t1 - t0) / 1000.0, (g_get_monotonic_time() - t1) / 1000.0);
  *ret_bytes = vms_extents_total(list);
  d->list = g_steal_pointer(&list);
  return TRUE;
}

gboolean
vms_save_diff_capture(VmsSaveDiff *d, VmsSnapWriter *w, const VmsMemInfo *mem,
                      const VmsCopyOptions *opts, guint64 *ret_bytes, GError **error)
{
  VmsCopySource src = { .fd = -1, .mem = mem->addr, .size = mem->size };
  VmsCopyStats stats = { 0 };
  g_autoptr(GArray) list = NULL;

  g_return_val_if_fail(d->list == NULL, FALSE);
  if (d->pre != NULL)
    return capture_precopied(d, w, mem, opts, ret_bytes, error);
  if (!vms_extents_from_pagemap(mem->addr, mem->size, mem->page_size, &list, error))
    return FALSE;
  vms_autofd diff_fd = d->diff_fd >= 0 ? g_steal_fd(&d->diff_fd)
                                       : vms_snap_writer_stage(w, VMS_DIFF_FILE, error);
  if (diff_fd < 0)
    return FALSE;
  vms_autofd map_fd = vms_snap_writer_stage(w, VMS_MAP_FILE, error);
  if (map_fd < 0)
    return FALSE;
  if (!vms_write_diff(&src, list, diff_fd, map_fd, mem->page_size, opts, NULL, d->map_sha256,
                      &stats, error)) {
    g_prefix_error(error, "writing %s/%s from the guest memory mapping of %s: ",
                   vms_snap_writer_get_path(w), VMS_DIFF_FILE, mem->path);
    return FALSE;
  }
  d->list = g_steal_pointer(&list);
  d->diff_fd = g_steal_fd(&diff_fd);
  *ret_bytes = stats.bytes;
  return TRUE;
}

gboolean
vms_save_diff_finish(VmsSaveDiff *d, VmsSnapWriter *w, VmsManifest *m, GError **error)
{
  guint8 data_sha[VMS_SHA256_LEN];

  g_return_val_if_fail(d->list != NULL && d->diff_fd >= 0, FALSE);
  if (d->pre != NULL) {
    gint64 t0 = g_get_monotonic_time();
    g_clear_pointer(&d->pre, vms_diff_precopy_free); /* the guest writes freely again */
    g_debug("diff pre-copy: write-protection removed in %.1f ms, outside the stop",
            (g_get_monotonic_time() - t0) / 1000.0);
  }
  if (!vms_snap_writer_finish(w, VMS_DIFF_FILE, NULL, NULL, error) ||
      !vms_snap_writer_finish(w, VMS_MAP_FILE, NULL, NULL, error))
    return FALSE;
  if (!vms_hash_extents(d->diff_fd, d->list, data_sha, error)) {
    g_prefix_error(error, "hashing %s/%s: ", vms_snap_writer_get_path(w), VMS_DIFF_FILE);
    return FALSE;
  }
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;
  vms_manifest_set_string(&m->memory_file, VMS_DIFF_FILE);
  vms_manifest_set_string(&m->parent, d->parent_field);
  vms_manifest_set_bytes(&m->parent_manifest_sha256, d->parent_sha256, VMS_SHA256_LEN);
  vms_manifest_set_bytes(&m->page_map_sha256, d->map_sha256, VMS_SHA256_LEN);
  vms_manifest_set_bytes(&m->diff_data_sha256, data_sha, VMS_SHA256_LEN);
  m->diff_data_bytes = vms_extents_total(d->list);
  m->diff_extents = d->list->len;
  return TRUE;
}
