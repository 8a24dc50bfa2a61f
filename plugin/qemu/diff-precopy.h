/* vmsnap plugin: the diff written while the guest runs (doc/diff.md,
 * "Pre-copy of a large diff").
 *
 * A diff save writes every page the guest wrote since the restore. When
 * that is a lot, writing it with the VM stopped is most of the downtime.
 * On Linux 6.7+ (userfaultfd asynchronous write-protection, which works on
 * any mapping, and PAGEMAP_SCAN) the save can write them first, with the
 * guest running: the guest RAM is write-protected (asynchronously: a write
 * only clears the page's protection, nothing waits), the pages written so
 * far are copied into memory.diff, and with the VM stopped one page-table
 * walk gives every page written since the restore together with whether it
 * was written since the protection — only those are copied again. Where
 * the kernel (or the permission to use userfaultfd) is missing, or the
 * guest wrote little, nothing happens here and the capture writes all the
 * pages with the VM stopped, as before.
 */
#pragma once

#include <glib.h>

#include "copy.h"
#include "memfile.h"

G_BEGIN_DECLS

typedef struct _VmsDiffPrecopy VmsDiffPrecopy;

/* The guest is running. If the kernel can, and the guest has written at
 * least @min_bytes since the restore, write-protects @mem's mapping and
 * copies the pages written so far into @diff_fd (sized to the guest RAM
 * by the caller). NULL when it does not (a debug line says why); that is
 * not an error. */
VmsDiffPrecopy *vms_diff_precopy_start(const VmsMemInfo *mem, int diff_fd, guint64 min_bytes,
                                       const VmsCopyOptions *opts);

/* With the VM stopped: *@ret_all receives every page written since the
 * restore (what pagemap reports, as vms_extents_from_pagemap), and the
 * pages of it written since vms_diff_precopy_start() are copied into the
 * diff again. */
gboolean vms_diff_precopy_finish(VmsDiffPrecopy *p, int diff_fd, const VmsCopyOptions *opts,
                                 GArray **ret_all, guint64 *ret_copied, GError **error);

/* Ends the write-protection (unregisters) and frees. NULL is fine. */
void vms_diff_precopy_free(VmsDiffPrecopy *p);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsDiffPrecopy, vms_diff_precopy_free)

G_END_DECLS
