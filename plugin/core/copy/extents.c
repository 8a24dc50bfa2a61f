/* vmsnap core: extent lists from page maps, SEEK_DATA/SEEK_HOLE and
 * /proc/self/pagemap, and the memory.map file format (see extents.h). */
#include "extents.h"

#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "pagemap-scan.h"
#include "util.h"

#define PAGEMAP_FILE_MAGIC "VMSNMAP1"
#define PAGEMAP_FILE_HEADER 32u
#define PAGEMAP_FILE_ENTRY 16u

/* /proc/self/pagemap entry bits (Documentation/admin-guide/mm/pagemap.rst). */
#define PM_PRESENT (1ull << 63)
#define PM_SWAPPED (1ull << 62)
#define PM_FILE (1ull << 61)
/* Entries read per pread of /proc/self/pagemap: 512 KiB, 256 MiB of memory. */
#define PAGEMAP_CHUNK_ENTRIES 65536u

GArray *
vms_extents_new(void)
{
  return g_array_new(FALSE, FALSE, sizeof(VmsExtent));
}

void
vms_extents_append(GArray *list, guint64 offset, guint64 length)
{
  g_return_if_fail(list != NULL);
  if (length == 0)
    return;
  if (list->len > 0) {
    VmsExtent *last = &g_array_index(list, VmsExtent, list->len - 1);
    g_return_if_fail(offset >= last->offset + last->length);
    if (offset == last->offset + last->length) {
      last->length += length;
      return;
    }
  }
  VmsExtent e = { .offset = offset, .length = length };
  g_array_append_val(list, e);
}

guint64
vms_extents_total(const GArray *list)
{
  guint64 total = 0;

  for (guint i = 0; i < list->len; i++)
    total += g_array_index(list, VmsExtent, i).length;
  return total;
}

gboolean
vms_extents_from_seek_data(int fd, guint64 size, GArray **ret_list, GError **error)
{
  g_autoptr(GArray) list = vms_extents_new();
  guint64 pos = 0;

  while (pos < size) {
    off_t data = lseek(fd, (off_t)pos, SEEK_DATA);
    if (data < 0) {
      if (errno == ENXIO)
        break;
      if (errno == EINVAL)
        return g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                           "lseek(SEEK_DATA) is not supported here: refusing to treat the whole "
                           "file as data"), FALSE;
      return vms_set_error_errno(error, errno, "lseek(SEEK_DATA) at %" G_GUINT64_FORMAT, pos);
    }
    if ((guint64)data >= size)
      break;
    off_t hole = lseek(fd, data, SEEK_HOLE);
    if (hole < 0)
      return vms_set_error_errno(error, errno, "lseek(SEEK_HOLE) at %" G_GUINT64_FORMAT,
                                 (guint64)data);
    guint64 end = MIN((guint64)hole, size);
    if (end <= (guint64)data)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED,
                         "lseek(SEEK_HOLE) at %" G_GUINT64_FORMAT " went backwards (%" G_GUINT64_FORMAT ")",
                         (guint64)data, (guint64)hole), FALSE;
    vms_extents_append(list, (guint64)data, end - (guint64)data);
    pos = end;
  }
  *ret_list = g_steal_pointer(&list);
  return TRUE;
}

/* A page of a private file mapping holds this process's data once it is an
 * anonymous page: present or swapped out, and no longer a file page. */
static inline gboolean
pagemap_entry_written(guint64 e)
{
  return (e & (PM_PRESENT | PM_SWAPPED)) != 0 && (e & PM_FILE) == 0;
}

/* Reads the pagemap entries of @n_entries base pages from @first_entry into @buf.
 * 0 or -errno (-EIO on a short read: the range is not mapped). */
static int
pagemap_read_chunk(int fd, guint64 first_entry, guint64 *buf, gsize n_entries)
{
  gssize n = vms_pread_full(fd, buf, n_entries * sizeof(guint64), first_entry * sizeof(guint64));
  if (n < 0)
    return (int)n;
  if ((gsize)n != n_entries * sizeof(guint64))
    return -EIO;
  return 0;
}

gboolean
vms_extents_from_pagemap(const void *addr, guint64 length, guint64 page_size,
                         GArray **ret_list, GError **error)
{
  guint64 base = (guint64)sysconf(_SC_PAGESIZE);
  guint64 start = (guint64)(uintptr_t)addr;

  if (page_size < base || page_size % base != 0 || start % page_size != 0 ||
      length % page_size != 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "pagemap range %p+%" G_GUINT64_FORMAT " is not aligned to page size %" G_GUINT64_FORMAT,
                       addr, length, page_size), FALSE;

  vms_autofd fd = open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return vms_set_error_errno(error, errno, "failed to open /proc/self/pagemap");

  g_autoptr(GArray) list = vms_extents_new();
  /* Base pages only: a scan region of a huge-page mapping could start or
   * end inside a page of @page_size. */
  if (page_size == base && g_getenv("VMSNAP_TEST_NO_PAGEMAP_SCAN") == NULL) {
    int r = vms_pagemap_scan(fd, start, length, TRUE, list, NULL);
    if (r == 0) {
      *ret_list = g_steal_pointer(&list);
      return TRUE;
    }
    if (r != -ENOTTY && r != -EINVAL)
      return vms_set_error_errno(error, -r, "PAGEMAP_SCAN of %p+%" G_GUINT64_FORMAT, addr, length);
    g_array_set_size(list, 0);
  }
  g_autofree guint64 *buf = g_new(guint64, PAGEMAP_CHUNK_ENTRIES);
  guint64 per_page = page_size / base;
  guint64 n_total = length / base;
  /* Chunks hold whole pages so a huge page never straddles two reads. */
  guint64 chunk = PAGEMAP_CHUNK_ENTRIES - PAGEMAP_CHUNK_ENTRIES % per_page;
  if (chunk == 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "page size %" G_GUINT64_FORMAT " is too large for the pagemap reader",
                       page_size), FALSE;

  for (guint64 done = 0; done < n_total; done += chunk) {
    gsize n = (gsize)MIN(chunk, n_total - done);
    int r = pagemap_read_chunk(fd, start / base + done, buf, n);
    if (r < 0)
      return vms_set_error_errno(error, -r, "failed to read /proc/self/pagemap for %p+%" G_GUINT64_FORMAT,
                                 addr, length);
    for (gsize i = 0; i < n; i += per_page) {
      gboolean written = FALSE;
      for (guint64 j = 0; j < per_page && !written; j++)
        written = pagemap_entry_written(buf[i + j]);
      if (written)
        vms_extents_append(list, (done + i) * base, page_size);
    }
  }
  *ret_list = g_steal_pointer(&list);
  return TRUE;
}

static void
sha256_of(const guint8 *data, gsize len, guint8 out[32])
{
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  gsize out_len = 32;

  g_checksum_update(sum, data, (gssize)len);
  g_checksum_get_digest(sum, out, &out_len);
}

/* Checks that @list is a valid page list for a map of @page_size and @memory_size. */
static gboolean
pagemap_check_list(const GArray *list, guint32 page_size, guint64 memory_size, GError **error)
{
  guint64 end = 0;

  if (page_size == 0 || (page_size & (page_size - 1)) != 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "page map page size %u is not a power of two", page_size), FALSE;
  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    if (e->offset % page_size != 0 || e->length % page_size != 0 || e->length == 0 ||
        e->offset < end || e->offset > memory_size || e->length > memory_size - e->offset)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                         "page map extent %u (%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                         ") is unaligned to %u, unsorted or outside %" G_GUINT64_FORMAT " bytes",
                         i, e->offset, e->length, page_size, memory_size), FALSE;
    end = e->offset + e->length;
  }
  return TRUE;
}

gboolean
vms_pagemap_file_write(int fd, const GArray *list, guint32 page_size,
                       guint64 memory_size, guint8 ret_sha256[32], GError **error)
{
  if (!pagemap_check_list(list, page_size, memory_size, error))
    return FALSE;

  gsize size = PAGEMAP_FILE_HEADER + (gsize)list->len * PAGEMAP_FILE_ENTRY;
  g_autofree guint8 *buf = g_malloc0(size);
  memcpy(buf, PAGEMAP_FILE_MAGIC, 8);
  vms_put_le32(buf + 8, page_size);
  vms_put_le32(buf + 12, 0);
  vms_put_le64(buf + 16, memory_size);
  vms_put_le64(buf + 24, list->len);
  for (guint i = 0; i < list->len; i++) {
    const VmsExtent *e = &g_array_index(list, VmsExtent, i);
    vms_put_le64(buf + PAGEMAP_FILE_HEADER + (gsize)i * PAGEMAP_FILE_ENTRY, e->offset);
    vms_put_le64(buf + PAGEMAP_FILE_HEADER + (gsize)i * PAGEMAP_FILE_ENTRY + 8, e->length);
  }

  if (ftruncate(fd, 0) < 0)
    return vms_set_error_errno(error, errno, "failed to truncate the page map file");
  int r = vms_pwrite_full(fd, buf, size, 0);
  if (r < 0)
    return vms_set_error_errno(error, -r, "failed to write the page map file (%zu bytes)", size);
  if (ret_sha256 != NULL)
    sha256_of(buf, size, ret_sha256);
  return TRUE;
}

/* Parses and checks the header of a map file of @file_size bytes. */
static gboolean
pagemap_parse_header(const guint8 *hdr, guint64 file_size, guint64 expect_memory_size,
                     guint32 *ret_page_size, guint64 *ret_memory_size, guint64 *ret_count,
                     GError **error)
{
  guint32 page_size = vms_get_le32(hdr + 8);
  guint64 memory_size = vms_get_le64(hdr + 16);
  guint64 count = vms_get_le64(hdr + 24);

  if (memcmp(hdr, PAGEMAP_FILE_MAGIC, 8) != 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "page map: bad magic (not a memory.map file)"), FALSE;
  if (vms_get_le32(hdr + 12) != 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "page map: unknown flags 0x%x",
                       vms_get_le32(hdr + 12)), FALSE;
  if (page_size == 0 || (page_size & (page_size - 1)) != 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "page map: page size %u is not a power of two", page_size), FALSE;
  if (expect_memory_size != 0 && memory_size != expect_memory_size)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                       "page map memory size (%" G_GUINT64_FORMAT ") doesn't match the memory file (%"
                       G_GUINT64_FORMAT ")", memory_size, expect_memory_size), FALSE;
  if (count > (file_size - PAGEMAP_FILE_HEADER) / PAGEMAP_FILE_ENTRY ||
      file_size != PAGEMAP_FILE_HEADER + count * PAGEMAP_FILE_ENTRY ||
      count > memory_size / page_size)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "page map: count %" G_GUINT64_FORMAT " doesn't fit a %" G_GUINT64_FORMAT
                       "-byte file or %" G_GUINT64_FORMAT " bytes of memory",
                       count, file_size, memory_size), FALSE;
  *ret_page_size = page_size;
  *ret_memory_size = memory_size;
  *ret_count = count;
  return TRUE;
}

gboolean
vms_pagemap_file_read(int fd, guint64 expect_memory_size, GArray **ret_list,
                      guint32 *ret_page_size, guint8 ret_sha256[32], GError **error)
{
  struct stat st;
  if (fstat(fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat the page map file");
  if (!S_ISREG(st.st_mode) || (guint64)st.st_size < PAGEMAP_FILE_HEADER)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "page map: %" G_GUINT64_FORMAT "-byte file is too short or not a regular file",
                       (guint64)st.st_size), FALSE;

  guint8 hdr[PAGEMAP_FILE_HEADER];
  gssize n = vms_pread_full(fd, hdr, sizeof hdr, 0);
  if (n < 0)
    return vms_set_error_errno(error, (int)-n, "failed to read the page map file");
  if ((gsize)n != sizeof hdr)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "page map: short header"), FALSE;

  guint32 page_size;
  guint64 memory_size, count;
  if (!pagemap_parse_header(hdr, (guint64)st.st_size, expect_memory_size, &page_size,
                            &memory_size, &count, error))
    return FALSE;

  /* The size is now checked against both the file and the memory size. */
  gsize size = (gsize)st.st_size;
  g_autofree guint8 *buf = g_malloc(size);
  n = vms_pread_full(fd, buf, size, 0);
  if (n < 0)
    return vms_set_error_errno(error, (int)-n, "failed to read the page map file");
  if ((gsize)n != size)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                       "page map: file shrank while read (%zd of %zu bytes)", n, size), FALSE;

  g_autoptr(GArray) list = vms_extents_new();
  guint64 end = 0;
  for (guint64 i = 0; i < count; i++) {
    const guint8 *p = buf + PAGEMAP_FILE_HEADER + i * PAGEMAP_FILE_ENTRY;
    guint64 off = vms_get_le64(p), len = vms_get_le64(p + 8);
    if (off % page_size != 0 || len % page_size != 0 || len == 0 || off < end ||
        off > memory_size || len > memory_size - off)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                         "page map: extent %" G_GUINT64_FORMAT " (%" G_GUINT64_FORMAT "+%" G_GUINT64_FORMAT
                         ") is unaligned, unsorted or outside %" G_GUINT64_FORMAT " bytes",
                         i, off, len, memory_size), FALSE;
    vms_extents_append(list, off, len);
    end = off + len;
  }
  if (ret_sha256 != NULL)
    sha256_of(buf, size, ret_sha256);
  if (ret_page_size != NULL)
    *ret_page_size = page_size;
  *ret_list = g_steal_pointer(&list);
  return TRUE;
}
