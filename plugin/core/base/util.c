/* vmsnap core: system call wrappers that loop over EINTR and short transfers. */
#include "util.h"

#include <errno.h>
#include <unistd.h>

void
vms_close_fdp(int *fdp)
{
  if (*fdp >= 0) {
    int saved = errno;
    close(*fdp);
    errno = saved;
  }
  *fdp = -1;
}

/* One read loop for read() and pread(): @offset < 0 reads at the file
 * position. Stops at end of file; -errno on failure. */
static gssize
read_loop(int fd, void *buf, gsize len, gint64 offset)
{
  gsize done = 0;

  while (done < len) {
    char *at = (char *)buf + done;
    ssize_t n = offset < 0 ? read(fd, at, len - done)
                           : pread(fd, at, len - done, (off_t)((guint64)offset + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      break;
    done += (gsize)n;
  }
  return (gssize)done;
}

/* The same for write() and pwrite(); a write of nothing is -EIO. */
static int
write_loop(int fd, const void *buf, gsize len, gint64 offset)
{
  gsize done = 0;

  while (done < len) {
    const char *at = (const char *)buf + done;
    ssize_t n = offset < 0 ? write(fd, at, len - done)
                           : pwrite(fd, at, len - done, (off_t)((guint64)offset + done));
    if (n < 0) {
      if (errno == EINTR)
        continue;
      return -errno;
    }
    if (n == 0)
      return -EIO;
    done += (gsize)n;
  }
  return 0;
}

gssize
vms_pread_full(int fd, void *buf, gsize len, guint64 offset)
{
  g_return_val_if_fail(offset <= G_MAXINT64, -EINVAL);
  return read_loop(fd, buf, len, (gint64)offset);
}

int
vms_pwrite_full(int fd, const void *buf, gsize len, guint64 offset)
{
  g_return_val_if_fail(offset <= G_MAXINT64, -EINVAL);
  return write_loop(fd, buf, len, (gint64)offset);
}

gssize
vms_read_full(int fd, void *buf, gsize len)
{
  return read_loop(fd, buf, len, -1);
}

int
vms_write_full(int fd, const void *buf, gsize len)
{
  return write_loop(fd, buf, len, -1);
}

int
vms_fsync_dir(int dirfd)
{
  if (fsync(dirfd) < 0)
    return -errno;
  return 0;
}

void
vms_sha256_hex(const guint8 digest[32], char out[65])
{
  static const char hex[] = "0123456789abcdef";

  for (int i = 0; i < 32; i++) {
    out[2 * i] = hex[digest[i] >> 4];
    out[2 * i + 1] = hex[digest[i] & 0xf];
  }
  out[64] = '\0';
}
