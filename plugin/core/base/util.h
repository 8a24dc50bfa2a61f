/* vmsnap core: small system helpers shared by every core module.
 *
 * These wrappers return -errno (never set errno for the caller to read) and
 * loop over EINTR and short transfers; callers turn failures into GError.
 */
#pragma once

#include <glib.h>
#include <string.h>
#include <sys/types.h>

G_BEGIN_DECLS

/* Closes *fdp if it is >= 0 and sets it to -1. For the cleanup attribute. */
void vms_close_fdp(int *fdp);

/* An int file descriptor closed at scope exit; hand it on with g_steal_fd(). */
#define vms_autofd __attribute__((cleanup(vms_close_fdp))) int

/* Reads up to @len bytes at @offset, retrying on EINTR and short reads.
 * Returns the number of bytes read (less than @len only at end of file) or -errno. */
gssize vms_pread_full(int fd, void *buf, gsize len, guint64 offset);

/* Writes all @len bytes at @offset, retrying on EINTR and short writes.
 * Returns 0 or -errno (-EIO if the kernel reports a zero-byte write). */
int vms_pwrite_full(int fd, const void *buf, gsize len, guint64 offset);

/* Like the above at the current file position (for pipes and sockets too). */
gssize vms_read_full(int fd, void *buf, gsize len);
int vms_write_full(int fd, const void *buf, gsize len);

/* fsync() of the directory @dirfd, so a rename inside it is durable. 0 or -errno. */
int vms_fsync_dir(int dirfd);

/* Lower-case hex of a 32-byte SHA-256 digest into @out (65 bytes with NUL). */
void vms_sha256_hex(const guint8 digest[32], char out[65]);

/* Little-endian fields of our binary files (memory.map, memory.chunks), at
 * any alignment. */
static inline void
vms_put_le32(guint8 *p, guint32 v)
{
  v = GUINT32_TO_LE(v);
  memcpy(p, &v, 4);
}

static inline void
vms_put_le64(guint8 *p, guint64 v)
{
  v = GUINT64_TO_LE(v);
  memcpy(p, &v, 8);
}

static inline guint32
vms_get_le32(const guint8 *p)
{
  guint32 v;
  memcpy(&v, p, 4);
  return GUINT32_FROM_LE(v);
}

static inline guint64
vms_get_le64(const guint8 *p)
{
  guint64 v;
  memcpy(&v, p, 8);
  return GUINT64_FROM_LE(v);
}

G_END_DECLS
