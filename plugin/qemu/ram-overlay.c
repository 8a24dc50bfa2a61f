/* vmsnap plugin: overlay=FILE (ram-overlay.h). */
#include "ram-overlay.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "memfile.h"
#include "overlay.h"
#include "relaunch.h"
#include "restore.h"
#include "util.h"

/* The VmFlags of /proc/self/smaps that QEMU sets on guest RAM with
 * madvise, and the advice that sets each again on the new mapping. */
static const struct {
  const char *flag;
  int advice;
} kept_flags[] = {
  { "dc", MADV_DONTFORK }, { "dd", MADV_DONTDUMP }, { "mg", MADV_MERGEABLE },
  { "hg", MADV_HUGEPAGE }, { "nh", MADV_NOHUGEPAGE },
};

/* The VmFlags line of the mapping starting at @addr ("" if not found).
 * Read line by line and no further than that mapping: the kernel walks the
 * page tables of every mapping it reports, which for all of QEMU's costs
 * tens of milliseconds of the restore. */
static char *
vm_flags_of(const guint8 *addr)
{
  FILE *f = fopen("/proc/self/smaps", "re");
  char line[512];
  gboolean in = FALSE;
  char *ret = NULL;

  while (f != NULL && ret == NULL && fgets(line, sizeof(line), f) != NULL) {
    unsigned long lo = 0, hi = 0;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &lo, &hi, perms) == 3) /* a mapping's header */
      in = lo == (unsigned long)(guintptr)addr;
    else if (in && g_str_has_prefix(line, "VmFlags:"))
      ret = g_strchomp(g_strdup(line + strlen("VmFlags:")));
  }
  if (f != NULL)
    fclose(f);
  return ret != NULL ? ret : g_strdup("");
}

static gboolean
reapply_flags(guint8 *addr, guint64 size, const char *flags, GError **error)
{
  g_auto(GStrv) words = g_strsplit_set(flags, " \t", -1);

  for (gsize k = 0; k < G_N_ELEMENTS(kept_flags); k++) {
    if (g_strv_contains((const char *const *)words, kept_flags[k].flag) &&
        madvise(addr, size, kept_flags[k].advice) < 0)
      return vms_set_error_errno(error, errno, "overlay: madvise (%s) of the guest RAM",
                                 kept_flags[k].flag);
  }
  return TRUE;
}

/* The placeholder must hold no data: nothing of it is kept. */
static gboolean
check_placeholder(const char *placeholder, const char *memory_path, guint64 size, GError **error)
{
  struct stat ps, ms;
  vms_autofd fd = open(placeholder, O_RDONLY | O_CLOEXEC);

  if (fd < 0 || fstat(fd, &ps) < 0)
    return vms_set_error_errno(error, errno, "overlay: the guest RAM placeholder %s", placeholder);
  if (stat(memory_path, &ms) < 0)
    return vms_set_error_errno(error, errno, "overlay: the snapshot's memory %s", memory_path);
  if (ps.st_dev == ms.st_dev && ps.st_ino == ms.st_ino) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "overlay: QEMU maps the snapshot's memory %s itself share=on; the backend's "
                "mem-path must be an empty placeholder file", memory_path);
    return FALSE;
  }
  if (!S_ISREG(ps.st_mode) || lseek(fd, 0, SEEK_DATA) >= 0 || errno != ENXIO) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "overlay: the guest RAM placeholder %s is not an empty regular file (it must "
                "hold no data: the plugin maps the snapshot over it)", placeholder);
    return FALSE;
  }
  if ((guint64)ms.st_size < size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "overlay: the snapshot's memory %s (%lld bytes) is smaller than the guest RAM "
                "(%" G_GUINT64_FORMAT ")", memory_path, (long long)ms.st_size, size);
    return FALSE;
  }
  return TRUE;
}

/* QEMU's mapping of @placeholder: shared, @size bytes, the host's base
 * pages (4 KiB on x86; 4, 16 or 64 KiB on an aarch64 host), no huge pages. */
static gboolean
find_placeholder_mapping(const char *placeholder, guint64 size, VmsMemInfo *ret, GError **error)
{
  guint32 host_page = (guint32)sysconf(_SC_PAGESIZE);

  if (!vms_memfile_find(NULL, placeholder, size, ret, error)) {
    g_prefix_error(error, "overlay: QEMU's mapping of the guest RAM placeholder: ");
    return FALSE;
  }
  if (!ret->shared || ret->size != size || ret->file_offset != 0 || ret->page_size != host_page) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "overlay: QEMU maps %s %s, %" G_GUINT64_FORMAT " bytes at offset %"
                G_GUINT64_FORMAT " with %u-byte pages; the overlay needs a shared mapping of "
                "%" G_GUINT64_FORMAT " bytes at 0 with %u-byte pages", placeholder,
                ret->shared ? "shared" : "private", ret->size, ret->file_offset,
                ret->page_size, size, host_page);
    return FALSE;
  }
  return TRUE;
}

gboolean
vms_ram_overlay_install(const char *memory_path, GError **error)
{
  gint64 t0 = g_get_monotonic_time();
  g_auto(GStrv) argv = vms_restore_read_cmdline();
  g_autofree char *placeholder = NULL;
  g_auto(VmsMemInfo) ph = { 0 };
  guint64 size = 0;
  gboolean share = FALSE;

  if (argv == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_IO,
                       "overlay: cannot read QEMU's command line"), FALSE;
  if (!vms_overlay_check_argv((const char *const *)argv, error) ||
      !vms_relaunch_find_memory((const char *const *)argv, &placeholder, &size, &share, error))
    return FALSE;
  if (!share)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "overlay: the guest RAM backend (mem-path=%s) must be share=on",
                       placeholder), FALSE;
  if (!check_placeholder(placeholder, memory_path, size, error) ||
      !find_placeholder_mapping(placeholder, size, &ph, error))
    return FALSE;

  gint64 t1 = g_get_monotonic_time();
  g_autofree char *flags = vm_flags_of(ph.addr);
  gint64 t2 = g_get_monotonic_time();
  vms_autofd fd = open(memory_path, O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vms_set_error_errno(error, errno, "overlay: failed to open %s", memory_path);
  /* Atomic for the range: nothing runs on it yet, and a fault would wait. */
  void *p = mmap(ph.addr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_FIXED, fd, 0);
  if (p == MAP_FAILED)
    return vms_set_error_errno(error, errno, "overlay: failed to map %s over the guest RAM",
                               memory_path);
  if (!reapply_flags(ph.addr, size, flags, error))
    return FALSE;
  /* QEMU keeps its descriptor; the name of an empty file is of no use. */
  if (unlink(placeholder) < 0)
    fprintf(stderr, "vmsnap: overlay: could not remove the placeholder %s: %s\n", placeholder,
            g_strerror(errno));
  g_debug("overlay: %s mapped over the placeholder in %.2f ms (checks %.2f, flags %.2f:%s)",
          memory_path, (g_get_monotonic_time() - t0) / 1000.0, (t1 - t0) / 1000.0,
          (t2 - t1) / 1000.0, flags);
  return TRUE;
}
