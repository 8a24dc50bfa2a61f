/* vmsnap core: extent lists — which byte ranges of guest memory to copy.
 *
 * An extent list is a GArray of VmsExtent, sorted by offset, non-overlapping,
 * adjacent extents merged. Three producers: a diff's page map file
 * (memory.map, the exact pages a diff carries), SEEK_DATA/SEEK_HOLE over a
 * file (for diffs without a map), and /proc/self/pagemap over a private
 * mapping (pages written since the mapping was made).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  guint64 offset;
  guint64 length;
} VmsExtent;

/* A new empty list (GArray of VmsExtent). Free with g_array_unref. */
GArray *vms_extents_new(void);

/* Appends [offset, offset+length). Precondition: @offset >= the end of the
 * last extent; a range that touches the last extent is merged into it. */
void vms_extents_append(GArray *list, guint64 offset, guint64 length);

/* Sum of the lengths. */
guint64 vms_extents_total(const GArray *list);

/* The data extents of @fd over [0, @size) via lseek SEEK_DATA/SEEK_HOLE
 * (ENXIO ends the walk). Where SEEK_DATA is not supported, fails with
 * VMS_ERROR_NOT_SUPPORTED — never falls back to the whole file. */
gboolean vms_extents_from_seek_data(int fd, guint64 size, GArray **ret_list, GError **error);

/* Pages of the private file mapping [@addr, @addr+@length) that this process
 * has written since it was mapped: from /proc/self/pagemap, a page that is
 * present and not a file page, or swapped. @page_size is the mapping's page
 * size. Base pages are found with one PAGEMAP_SCAN walk where the kernel
 * has it (6.7+), else (and for larger pages) from the pagemap entries.
 * Must be called while nothing writes the mapping (the VM stopped). */
gboolean vms_extents_from_pagemap(const void *addr, guint64 length, guint64 page_size,
                                  GArray **ret_list, GError **error);

/* ---- page map files (memory.map; format in doc/format.md) ----
 * 32-byte header: magic "VMSNMAP1", u32 page_size, u32 flags (0),
 * u64 memory_size, u64 count; then count x {u64 offset, u64 length},
 * all little-endian. Offsets and lengths are multiples of page_size, sorted,
 * non-overlapping, inside memory_size. */

/* Writes @list as a page map file to @fd (from offset 0, truncating).
 * @ret_sha256 (nullable) receives the SHA-256 of the file's bytes. */
gboolean vms_pagemap_file_write(int fd, const GArray *list, guint32 page_size,
                                guint64 memory_size, guint8 ret_sha256[32], GError **error);

/* Reads and checks a page map file. If @expect_memory_size is not 0 it must
 * match the header. Every count and range is checked before allocating.
 * @ret_page_size and @ret_sha256 are nullable. */
gboolean vms_pagemap_file_read(int fd, guint64 expect_memory_size, GArray **ret_list,
                               guint32 *ret_page_size, guint8 ret_sha256[32], GError **error);

G_END_DECLS
