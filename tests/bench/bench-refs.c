/* vmsnap benchmark: the two reference loops, written here from their
 * published descriptions, so they run in the same process and conditions
 * as our engines.
 *
 * forkd: walk the diff with lseek(SEEK_DATA)/lseek(SEEK_HOLE); for each data
 * region, lseek both files to its start and read()/write() it through one
 * 1 MiB buffer.
 *
 * Firecracker's rebase-snap: the same SEEK_DATA/SEEK_HOLE walk, and for each
 * region lseek the base to its start and sendfile(base, diff, &offset, len)
 * until the region is done.
 */
#include "bench.h"

#include <errno.h>
#include <fcntl.h>
#include <sys/sendfile.h>
#include <unistd.h>

#include "util.h"

#define REF_BUF (1024 * 1024)

typedef gboolean (*RegionFunc)(int base_fd, int diff_fd, off_t start, off_t end, guint8 *buf);

static gboolean
forkd_region(int base_fd, int diff_fd, off_t start, off_t end, guint8 *buf)
{
  if (lseek(diff_fd, start, SEEK_SET) < 0 || lseek(base_fd, start, SEEK_SET) < 0)
    return FALSE;
  for (off_t pos = start; pos < end;) {
    size_t want = (size_t)MIN((off_t)REF_BUF, end - pos);
    gssize n = vms_read_full(diff_fd, buf, want);
    if (n <= 0)
      return FALSE;
    if (vms_write_full(base_fd, buf, (gsize)n) < 0)
      return FALSE;
    pos += n;
  }
  return TRUE;
}

static gboolean
firecracker_region(int base_fd, int diff_fd, off_t start, off_t end, guint8 *buf)
{
  off_t offset = start;

  if (lseek(base_fd, start, SEEK_SET) < 0)
    return FALSE;
  while (offset < end) {
    ssize_t n = sendfile(base_fd, diff_fd, &offset, (size_t)(end - offset));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return FALSE;
  }
  return TRUE;
}

/* The shared SEEK_DATA/SEEK_HOLE walk; counts bytes and regions. */
static gboolean
ref_walk(const char *base_path, const char *diff_path, RegionFunc region, BenchResult *ret)
{
  vms_autofd base_fd = open(base_path, O_RDWR | O_CLOEXEC);
  vms_autofd diff_fd = open(diff_path, O_RDONLY | O_CLOEXEC);
  g_autofree guint8 *buf = g_malloc(REF_BUF);
  off_t size, pos = 0;

  if (base_fd < 0 || diff_fd < 0 || (size = lseek(diff_fd, 0, SEEK_END)) < 0)
    return FALSE;
  ret->bytes = 0;
  ret->extents = 0;
  while (pos < size) {
    off_t data = lseek(diff_fd, pos, SEEK_DATA);
    if (data < 0 && errno == ENXIO)
      break;
    if (data < 0)
      return FALSE;
    off_t hole = lseek(diff_fd, data, SEEK_HOLE);
    if (hole < 0)
      return FALSE;
    if (!region(base_fd, diff_fd, data, hole, buf))
      return FALSE;
    ret->bytes += (guint64)(hole - data);
    ret->extents++;
    pos = hole;
  }
  return TRUE;
}

gboolean
bench_ref_forkd(const char *base_path, const char *diff_path, BenchResult *ret)
{
  return ref_walk(base_path, diff_path, forkd_region, ret);
}

gboolean
bench_ref_firecracker(const char *base_path, const char *diff_path, BenchResult *ret)
{
  return ref_walk(base_path, diff_path, firecracker_region, ret);
}
