/* vmsnap core: Linux's PAGEMAP_SCAN ioctl on /proc/PID/pagemap (6.7+):
 * the page regions of a range that fall in given categories, found by one
 * page-table walk in the kernel instead of one 8-byte entry per page read
 * out. The definitions come from the 6.7 UAPI (include/uapi/linux/fs.h),
 * which Debian 12's 6.1 headers lack; on an older kernel the ioctl fails
 * with ENOTTY or EINVAL and callers fall back to reading the entries. */
#pragma once

#include <glib.h>
#include <stdint.h>
#include <sys/ioctl.h>

#ifndef PAGEMAP_SCAN
#define PAGE_IS_WPALLOWED (1 << 0)
#define PAGE_IS_WRITTEN (1 << 1)
#define PAGE_IS_FILE (1 << 2)
#define PAGE_IS_PRESENT (1 << 3)
#define PAGE_IS_SWAPPED (1 << 4)
struct page_region {
  uint64_t start, end, categories;
};
struct pm_scan_arg {
  uint64_t size, flags, start, end, walk_end, vec, vec_len, max_pages;
  uint64_t category_inverted, category_mask, category_anyof_mask, return_mask;
};
#define PAGEMAP_SCAN _IOWR('f', 16, struct pm_scan_arg)
#endif

/* One PAGEMAP_SCAN walk of [@start, @start+@length) in @pagemap_fd (an open
 * /proc/self/pagemap): appends to @all the regions of pages that are not
 * file pages and are present (or, with @include_swapped, swapped out),
 * offsets relative to @start; and those of them also PAGE_IS_WRITTEN
 * (written since a userfaultfd write-protection) to @written (nullable).
 * 0, or -errno: -ENOTTY or -EINVAL where the kernel lacks the ioctl, -EIO
 * when a walk makes no progress. */
int vms_pagemap_scan(int pagemap_fd, guint64 start, guint64 length, gboolean include_swapped,
                     GArray *all, GArray *written);
