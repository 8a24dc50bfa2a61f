/* vmsnap core: one PAGEMAP_SCAN walk (pagemap-scan.h). */
#include "pagemap-scan.h"

#include <errno.h>

#include "extents.h"

/* Regions returned per PAGEMAP_SCAN call. */
#define SCAN_REGIONS 4096u

int
vms_pagemap_scan(int pagemap_fd, guint64 start, guint64 length, gboolean include_swapped,
                 GArray *all, GArray *written)
{
  g_autofree struct page_region *regs = g_new(struct page_region, SCAN_REGIONS);
  guint64 at = start, end = start + length;

  while (at < end) {
    struct pm_scan_arg a = {
      .size = sizeof(a), .start = at, .end = end, .vec = (guintptr)regs,
      .vec_len = SCAN_REGIONS, .category_inverted = PAGE_IS_FILE, .category_mask = PAGE_IS_FILE,
      .category_anyof_mask = PAGE_IS_PRESENT | (include_swapped ? PAGE_IS_SWAPPED : 0),
      .return_mask = written != NULL ? PAGE_IS_WRITTEN : 0,
    };
    long n = ioctl(pagemap_fd, PAGEMAP_SCAN, &a);
    if (n < 0)
      return -errno;
    for (long i = 0; i < n; i++) {
      guint64 off = regs[i].start - start, len = regs[i].end - regs[i].start;
      vms_extents_append(all, off, len);
      if (written != NULL && (regs[i].categories & PAGE_IS_WRITTEN))
        vms_extents_append(written, off, len);
    }
    if (a.walk_end <= at)
      return -EIO;
    at = a.walk_end;
  }
  return 0;
}
