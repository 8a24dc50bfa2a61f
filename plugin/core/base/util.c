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

gssize
vms_pread_full(int fd, void *buf, gsize len, guint64 offset)
{
  gsize done = 0;

  while (done < len) {
    ssize_t n = pread(fd, (char *)buf + done, len - done, (off_t)(offset + done));
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

int
vms_pwrite_full(int fd, const void *buf, gsize len, guint64 offset)
{
  gsize done = 0;

  while (done < len) {
    ssize_t n = pwrite(fd, (const char *)buf + done, len - done, (off_t)(offset + done));
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
vms_read_full(int fd, void *buf, gsize len)
{
  gsize done = 0;

  while (done < len) {
    ssize_t n = read(fd, (char *)buf + done, len - done);
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

int
vms_write_full(int fd, const void *buf, gsize len)
{
  gsize done = 0;

  while (done < len) {
    ssize_t n = write(fd, (const char *)buf + done, len - done);
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
