/* vmsnap core: finding the guest memory mapping of this process.
 *
 * QEMU maps a memory-backend-file with mmap(MAP_SHARED) for share=on and
 * MAP_PRIVATE for share=off; /proc/self/maps shows the file, the range and
 * the s/p flag. Hypervisor-independent: any process that maps its guest RAM
 * from a file can use this.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>

G_BEGIN_DECLS

typedef struct {
  char *path;           /* the backing file as /proc/self/maps shows it */
  guint8 *addr;         /* start of the mapping in this process */
  guint64 size;         /* length of the mapping */
  guint64 file_offset;  /* offset of the mapping in the file (normally 0) */
  gboolean shared;      /* MAP_SHARED (share=on) or private (share=off) */
  guint32 page_size;    /* 4096, or the huge page size on hugetlbfs */
  dev_t dev;            /* of the file, from stat() */
  ino_t ino;
} VmsMemInfo;

void vms_meminfo_clear(VmsMemInfo *info);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsMemInfo, vms_meminfo_clear)

/* Finds the guest memory mapping in @maps_text (the text of a
 * /proc/PID/maps; NULL reads /proc/self/maps).
 *   @want_path: if not NULL, the mapping of exactly this file (after
 *     realpath); else the single writable regular-file mapping of
 *     @want_size bytes (or, if @want_size is 0, the largest writable
 *     regular-file mapping that is not a shared library).
 * Fails with a message that shows the QEMU options to use
 * (-object memory-backend-file,...,mem-path=...) when nothing matches. */
gboolean vms_memfile_find(const char *maps_text, const char *want_path, guint64 want_size,
                          VmsMemInfo *ret_info, GError **error);

/* The page size of files on the filesystem holding @path: the huge page
 * size on hugetlbfs, else the system page size. */
gboolean vms_memfile_page_size(const char *path, guint32 *ret_page_size, GError **error);

G_END_DECLS
