/* vmsnap plugin: memory=diff for snapshot-save (doc/spec.md sections 2 and 4).
 *
 * A VM restored with a private (share=off) mapping of a snapshot's memory
 * holds every page written since the restore — by the guest or by a device,
 * since a DMA write into a private mapping is a copy-on-write fault too — as
 * an anonymous page of this process; every other page is still the file's.
 * /proc/self/pagemap tells them apart (present and not a file page, or
 * swapped), so the diff needs no per-access tracking.
 *
 * The parent of a diff is always the snapshot the VM was restored from
 * (query-vmsnap's restored-from), also for the second and later diffs of a
 * VM that ran on after a diff save: the page map still lists every page
 * written since the restore, not since the last diff (doc/diff.md).
 *
 * Used by save.c in this order, on the save's worker thread:
 * vms_save_diff_check (before anything), vms_save_diff_new (prepare),
 * vms_save_diff_capture (VM stopped), vms_save_diff_finish (after the VM
 * may run again, before the commit).
 */
#pragma once

#include <glib.h>
#include "copy.h"
#include "manifest.h"
#include "memfile.h"
#include "service.h"
#include "snapdir.h"

G_BEGIN_DECLS

typedef struct _VmsSaveDiff VmsSaveDiff;

/* Whether memory=diff can run on this VM with guest memory @mem: refused
 * with VMS_ERROR_NOT_SUPPORTED and the reason when the mapping is shared
 * (share=on) or the VM was not restored from a snapshot (restore=DIR).
 * Touches nothing. Any thread. */
gboolean vms_save_diff_check(VmsService *svc, const VmsMemInfo *mem, GError **error);

/* Before the VM stops. @dir is the new snapshot's directory (it exists;
 * vms_snap_writer_new made it). Opens the parent — the snapshot this VM was
 * restored from — and checks that its manifest.bin still hashes to what the
 * restore read and that its memory size is @mem's; either failure names
 * "parent". Records the parent path relative to @dir when neither path
 * goes through a symlink, else absolute. Returns NULL on failure. */
VmsSaveDiff *vms_save_diff_new(VmsService *svc, const char *dir, const VmsMemInfo *mem,
                               GError **error);
void vms_save_diff_free(VmsSaveDiff *d);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsSaveDiff, vms_save_diff_free)

/* While the VM still runs, after vms_save_diff_new: when the guest has
 * written a lot and the kernel can track writes (diff-precopy.h), stages
 * memory.diff and writes the pages written so far, so the capture only
 * writes those written since. Otherwise (or on any failure, logged at
 * debug level) nothing changes. */
void vms_save_diff_precopy(VmsSaveDiff *d, VmsSnapWriter *w, const VmsMemInfo *mem,
                           const VmsCopyOptions *opts);

/* While the VM is stopped (nothing may write @mem's mapping): finds the
 * pages written since the restore from /proc/self/pagemap and writes
 * memory.diff (sparse, @mem->size bytes, exactly those pages) and
 * memory.map, staged in @w, straight from the mapping. *@ret_bytes
 * receives the page data bytes written. No checksum of the data is taken
 * here: that is vms_save_diff_finish's, off the downtime path. */
gboolean vms_save_diff_capture(VmsSaveDiff *d, VmsSnapWriter *w, const VmsMemInfo *mem,
                               const VmsCopyOptions *opts, guint64 *ret_bytes, GError **error);

/* After vms_save_diff_capture, when the guest may already run again (the
 * files no longer depend on guest memory): the pre-copy's write-protection
 * removed (kept past the stop: removing it is O(RAM)), fsync and rename of memory.diff
 * and memory.map, the SHA-256 of the page data read back from memory.diff,
 * and the DIFF fields of @m: kind, memory_capture, memory_file, parent,
 * parent_manifest_sha256, diff_data_bytes, diff_extents, page_map_sha256,
 * diff_data_sha256. */
gboolean vms_save_diff_finish(VmsSaveDiff *d, VmsSnapWriter *w, VmsManifest *m, GError **error);

G_END_DECLS
