/* vmsnap registry: pointing a pulled qcow2 image at its pulled backing
 * file — what `qemu-img rebase -u -b BACKING -F FORMAT` does, without
 * spawning it (pull-private.h). Layout from QEMU's docs/interop/qcow2.txt:
 * big-endian header; header extensions right after it (header_length in
 * version 3, 72 bytes in version 2), each {u32 type, u32 length, data
 * padded to 8}, ended by type 0; the backing file name after them; all of
 * it inside cluster 0, which holds nothing else. */
#include "pull-private.h"

#include <errno.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "util.h"

#define EXT_BACKING_FORMAT 0xE2792ACAu
#define V2_HEADER_LENGTH 72u
#define INCOMPAT_DATA_FILE (1u << 2)

static guint64
get_be(const guint8 *p, guint n)
{
  guint64 v = 0;

  for (guint i = 0; i < n; i++)
    v = (v << 8) | p[i];
  return v;
}

static void
put_be(guint8 *p, guint64 v, guint n)
{
  for (guint i = 0; i < n; i++)
    p[i] = (guint8)(v >> (8 * (n - 1 - i)));
}

static gboolean
bad_image(GError **error, const char *what, const char *why)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s: cannot set its backing file: %s", what, why);
  return FALSE;
}

/* Copies the extensions of @c from @off on, except the backing format, to
 * @out; the bytes written, or -1 if they run past @limit. */
static gssize
keep_extensions(const guint8 *c, gsize off, gsize limit, guint8 *out)
{
  gssize n = 0;

  while (off + 8 <= limit) {
    guint32 type = (guint32)get_be(c + off, 4);
    gsize len = (gsize)get_be(c + off + 4, 4), padded = (len + 7) & ~(gsize)7;
    if (type == 0)
      return n;
    if (off + 8 + padded > limit)
      return -1;
    if (type != EXT_BACKING_FORMAT) {
      memcpy(out + n, c + off, 8 + padded);
      n += (gssize)(8 + padded);
    }
    off += 8 + padded;
  }
  return -1;
}

/* Rewrites cluster @c (@cs bytes): kept extensions, the backing format
 * extension for @format, the end marker, then @backing. */
static gboolean
rewrite_cluster(guint8 *c, gsize cs, gsize hlen, const char *backing, const char *format,
                const char *what, GError **error)
{
  g_autofree guint8 *ext = g_malloc0(cs);
  gssize n = keep_extensions(c, hlen, cs, ext);
  gsize kept = (gsize)MAX(n, 0), flen = strlen(format), blen = strlen(backing), at;

  if (n < 0)
    return bad_image(error, what, "its header extensions run past the first cluster");
  at = hlen + kept + 8 + ((flen + 7) & ~(gsize)7) + 8;
  if (blen == 0 || blen >= 1024 || at + blen > cs)
    return bad_image(error, what, "the backing file name does not fit its first cluster");
  memset(c + hlen, 0, cs - hlen);
  memcpy(c + hlen, ext, kept);
  put_be(c + hlen + kept, EXT_BACKING_FORMAT, 4);
  put_be(c + hlen + kept + 4, flen, 4);
  memcpy(c + hlen + kept + 8, format, flen);
  memcpy(c + at, backing, blen);
  put_be(c + 8, at, 8);
  put_be(c + 16, blen, 4);
  return TRUE;
}

gboolean
vms_reg_qcow2_rebase(int fd, const char *backing, const char *format, const char *what,
                     GError **error)
{
  guint8 h[V2_HEADER_LENGTH + 32];
  g_autofree guint8 *c = NULL;
  guint64 version, boff, bsize, cbits, hlen;
  gsize cs;
  int r;

  if (vms_pread_full(fd, h, sizeof h, 0) != (gssize)sizeof h || memcmp(h, "QFI\xfb", 4) != 0)
    return bad_image(error, what, "no qcow2 header");
  version = get_be(h + 4, 4);
  boff = get_be(h + 8, 8);
  bsize = get_be(h + 16, 4);
  cbits = get_be(h + 20, 4);
  hlen = version >= 3 ? get_be(h + 100, 4) : V2_HEADER_LENGTH;
  if ((version != 2 && version != 3) || cbits < 9 || cbits > 21)
    return bad_image(error, what, "an unknown qcow2 version or cluster size");
  /* Its data lives in another file the artifact does not carry. */
  if (version >= 3 && (get_be(h + 72, 8) & INCOMPAT_DATA_FILE) != 0)
    return bad_image(error, what, "it keeps its data in an external data file");
  cs = (gsize)1 << cbits;
  if (boff == 0 || hlen < V2_HEADER_LENGTH || hlen >= cs || boff + bsize > cs)
    return bad_image(error, what, "it names no backing file in its first cluster");
  c = g_malloc(cs);
  if (vms_pread_full(fd, c, cs, 0) != (gssize)cs)
    return bad_image(error, what, "its first cluster is short");
  if (!rewrite_cluster(c, cs, (gsize)hlen, backing, format, what, error))
    return FALSE;
  r = vms_pwrite_full(fd, c, cs, 0);
  if (r == 0 && fsync(fd) < 0)
    r = -errno;
  if (r < 0)
    return vms_set_error_errno(error, -r, "%s: failed to write its header", what);
  return TRUE;
}
