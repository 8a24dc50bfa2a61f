/* vmsnap qemuctl: an empty qcow2 overlay (see qcow2.h). Layout from QEMU's
 * docs/interop/qcow2.txt: big-endian header, version 3, 64 KiB clusters,
 * 16-bit refcounts. */
#include "qcow2.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

#define CLUSTER 65536u
#define HEADER_LENGTH 104u
#define EXT_BACKING_FORMAT 0xE2792ACAu
#define MAX_SIZE (G_GUINT64_CONSTANT(4) << 40)

/* @v as @n big-endian bytes at @p. */
static void
put_be(guint8 *p, guint64 v, guint n)
{
  for (guint i = 0; i < n; i++)
    p[i] = (guint8)(v >> (8 * (n - 1 - i)));
}

/* Cluster 0: header, the backing-format extension, the end marker, then the
 * backing file name. Returns FALSE if the names do not fit. */
static gboolean
fill_header(guint8 *c, const char *backing, const char *format, guint64 size)
{
  gsize blen = strlen(backing), flen = strlen(format);
  gsize ext = HEADER_LENGTH, name_off = ext + 8 + ((flen + 7) & ~(gsize)7) + 8;
  guint64 l1_size = (size + (G_GUINT64_CONSTANT(512) << 20) - 1) / (G_GUINT64_CONSTANT(512) << 20);

  if (blen == 0 || blen >= 1024 || flen == 0 || flen > 16 || name_off + blen > CLUSTER)
    return FALSE;
  memcpy(c, "QFI\xfb", 4);
  put_be(c + 4, 3, 4);                 /* version */
  put_be(c + 8, name_off, 8);          /* backing_file_offset */
  put_be(c + 16, (guint32)blen, 4);    /* backing_file_size */
  put_be(c + 20, 16, 4);               /* cluster_bits */
  put_be(c + 24, size, 8);
  put_be(c + 36, (guint32)MAX(l1_size, 1), 4);
  put_be(c + 40, 3 * CLUSTER, 8);      /* l1_table_offset */
  put_be(c + 48, 1 * CLUSTER, 8);      /* refcount_table_offset */
  put_be(c + 56, 1, 4);                /* refcount_table_clusters */
  put_be(c + 96, 4, 4);                /* refcount_order: 16-bit */
  put_be(c + 100, HEADER_LENGTH, 4);
  put_be(c + ext, EXT_BACKING_FORMAT, 4);
  put_be(c + ext + 4, (guint32)flen, 4);
  memcpy(c + ext + 8, format, flen); /* then padding and the end extension: zeros */
  memcpy(c + name_off, backing, blen);
  return TRUE;
}

gboolean
vms_qcow2_create_overlay(const char *path, const char *backing, const char *backing_format,
                         guint64 size, GError **error)
{
  g_autofree guint8 *img = g_malloc0(4 * CLUSTER);
  vms_autofd fd = -1;
  int r;

  if (size == 0 || size > MAX_SIZE || !fill_header(img, backing, backing_format, size)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "qcow2 overlay %s: size %" G_GUINT64_FORMAT " or backing '%s' (%s) out of range",
                path, size, backing, backing_format);
    return FALSE;
  }
  put_be(img + CLUSTER, 2 * CLUSTER, 8);      /* refcount table -> the block in cluster 2 */
  for (guint i = 0; i < 4; i++)          /* clusters 0..3 are in use once */
    put_be(img + 2 * CLUSTER + 2 * i, 1, 2);
  fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
  if (fd < 0)
    return vms_set_error_errno(error, errno, "cannot create the qcow2 overlay %s", path);
  r = vms_pwrite_full(fd, img, 4 * CLUSTER, 0);
  if (r < 0) {
    (void)unlink(path);
    return vms_set_error_errno(error, -r, "cannot write the qcow2 overlay %s", path);
  }
  return TRUE;
}
