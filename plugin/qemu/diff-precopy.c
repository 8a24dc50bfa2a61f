/* vmsnap plugin: the diff written while the guest runs (diff-precopy.h). */
#include "diff-precopy.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/userfaultfd.h>
#include <stdint.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "error.h"
#include "extents.h"
#include "pagemap-scan.h"
#include "util.h"

/* Linux 6.7 UAPI, not in Debian 12's 6.1 headers (userfaultfd.h; the
 * PAGEMAP_SCAN ones are in pagemap-scan.h). */
#ifndef UFFD_FEATURE_WP_ASYNC
#define UFFD_FEATURE_WP_UNPOPULATED (1 << 13)
#define UFFD_FEATURE_WP_ASYNC (1 << 15)
#endif

struct _VmsDiffPrecopy {
  int uffd;
  int pagemap_fd;
  const guint8 *addr;
  guint64 size;
};

void
vms_diff_precopy_free(VmsDiffPrecopy *p)
{
  if (p == NULL)
    return;
  if (p->uffd >= 0) {
    struct uffdio_range r = { .start = (guintptr)p->addr, .len = p->size };
    (void)ioctl(p->uffd, UFFDIO_UNREGISTER, &r);
  }
  vms_close_fdp(&p->uffd);
  vms_close_fdp(&p->pagemap_fd);
  g_free(p);
}

/* One PAGEMAP_SCAN walk: every page written since the restore (present and
 * not a file page: without swap, see swap_is_off) into *@ret_all, and those
 * also written since the write-protection into *@ret_again (nullable). */
static gboolean
scan(VmsDiffPrecopy *p, GArray **ret_all, GArray **ret_again, GError **error)
{
  g_autoptr(GArray) all = vms_extents_new();
  g_autoptr(GArray) again = vms_extents_new();
  int r = vms_pagemap_scan(p->pagemap_fd, (guintptr)p->addr, p->size, FALSE, all, again);

  if (r == -EIO)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_IO, "PAGEMAP_SCAN made no progress"), FALSE;
  if (r < 0)
    return vms_set_error_errno(error, -r, "PAGEMAP_SCAN of the guest memory");
  *ret_all = g_steal_pointer(&all);
  if (ret_again != NULL)
    *ret_again = g_steal_pointer(&again);
  return TRUE;
}

/* userfaultfd with asynchronous write-protection over the mapping. */
static gboolean
protect(VmsDiffPrecopy *p, GError **error)
{
  struct uffdio_api api = { .api = UFFD_API,
                            .features = UFFD_FEATURE_WP_ASYNC | UFFD_FEATURE_WP_UNPOPULATED };
  struct uffdio_register reg = { .range = { (guintptr)p->addr, p->size },
                                 .mode = UFFDIO_REGISTER_MODE_WP };
  struct uffdio_writeprotect wp = { .range = { (guintptr)p->addr, p->size },
                                    .mode = UFFDIO_WRITEPROTECT_MODE_WP };

  p->uffd = (int)syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  if (p->uffd < 0)
    return vms_set_error_errno(error, errno, "userfaultfd");
  if (ioctl(p->uffd, UFFDIO_API, &api) < 0)
    return vms_set_error_errno(error, errno, "userfaultfd: asynchronous write-protection");
  if (ioctl(p->uffd, UFFDIO_REGISTER, &reg) < 0) {
    vms_close_fdp(&p->uffd); /* nothing registered */
    return vms_set_error_errno(error, errno, "userfaultfd: registering the guest memory");
  }
  if (ioctl(p->uffd, UFFDIO_WRITEPROTECT, &wp) < 0)
    return vms_set_error_errno(error, errno, "userfaultfd: write-protecting the guest memory");
  return TRUE;
}

/* The write-protection marks unpopulated pages of a file mapping with
 * markers that PAGEMAP_SCAN reports as swapped, like a swapped-out written
 * page: only without swap is "present and not a file page" the whole set. */
static gboolean
swap_is_off(GError **error)
{
  g_autofree char *text = NULL;

  if (!g_file_get_contents("/proc/swaps", &text, NULL, error))
    return FALSE;
  if (strchr(text, '\n') != NULL && strchr(text, '\n')[1] != '\0') {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED, "swap is on");
    return FALSE;
  }
  return TRUE;
}

VmsDiffPrecopy *
vms_diff_precopy_start(const VmsMemInfo *mem, int diff_fd, guint64 min_bytes,
                       const VmsCopyOptions *opts)
{
  g_autoptr(VmsDiffPrecopy) p = g_new0(VmsDiffPrecopy, 1);
  g_autoptr(GError) error = NULL;
  g_autoptr(GArray) before = NULL;
  g_autoptr(GArray) list = NULL;
  VmsCopySource src = { .fd = -1, .mem = mem->addr, .size = mem->size };

  p->uffd = -1;
  p->addr = mem->addr;
  p->size = mem->size;
  p->pagemap_fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (p->pagemap_fd < 0 || mem->page_size != 4096 || !swap_is_off(&error) ||
      !scan(p, &before, NULL, &error)) {
    g_debug("diff pre-copy: not used (%s)", error != NULL ? error->message : "no pagemap");
    return NULL;
  }
  if (vms_extents_total(before) < min_bytes) {
    g_debug("diff pre-copy: not used (%" G_GUINT64_FORMAT " bytes written, below %"
            G_GUINT64_FORMAT ")", vms_extents_total(before), min_bytes);
    return NULL;
  }
  /* Protect first, then list: a page written after the list was taken is
   * written after the protection, so the stopped walk sees it. */
  gint64 t0 = g_get_monotonic_time();
  if (!protect(p, &error))
    return g_debug("diff pre-copy: not used (%s)", error->message), NULL;
  gint64 t1 = g_get_monotonic_time();
  if (!scan(p, &list, NULL, &error) || !vms_copy_extents(&src, diff_fd, list, opts, NULL, &error)) {
    g_debug("diff pre-copy: not used (%s)", error->message);
    return NULL;
  }
  g_debug("diff pre-copy: %" G_GUINT64_FORMAT " bytes in %u extents written while the guest "
          "runs (protect %.1f ms, list and write %.1f ms)", vms_extents_total(list), list->len,
          (t1 - t0) / 1000.0, (g_get_monotonic_time() - t1) / 1000.0);
  return g_steal_pointer(&p);
}

gboolean
vms_diff_precopy_finish(VmsDiffPrecopy *p, int diff_fd, const VmsCopyOptions *opts,
                        GArray **ret_all, guint64 *ret_copied, GError **error)
{
  g_autoptr(GArray) all = NULL;
  g_autoptr(GArray) again = NULL;
  VmsCopySource src = { .fd = -1, .mem = p->addr, .size = p->size };

  if (!scan(p, &all, &again, error) || !vms_copy_extents(&src, diff_fd, again, opts, NULL, error))
    return FALSE;
  *ret_copied = vms_extents_total(again);
  *ret_all = g_steal_pointer(&all);
  return TRUE;
}
