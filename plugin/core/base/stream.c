/* vmsnap core: GIO streams over borrowed fds (stream.h). */
#include "stream.h"

#include <errno.h>
#include <unistd.h>
#include <gio/gunixinputstream.h>
#include <gio/gunixoutputstream.h>

#include "error.h"

#define STREAM_BUF (1u << 20)

static gboolean
io_failed(GError **error, GError *local, const char *verb, const char *what)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_IO, "failed to %s %s: %s", verb, what, local->message);
  g_error_free(local);
  return FALSE;
}

gboolean
vms_stream_write_all(int fd, const void *data, gsize len, GChecksum *sum, const char *what,
                     GError **error)
{
  g_autoptr(GOutputStream) out = g_unix_output_stream_new(fd, FALSE);
  GError *local = NULL;

  if (!g_output_stream_write_all(out, data, len, NULL, NULL, &local))
    return io_failed(error, local, "write", what);
  if (sum != NULL)
    g_checksum_update(sum, data, (gssize)len);
  return TRUE;
}

/* Reads @in to its end, calling @out_fd's write (when >= 0) and @sum. */
static gboolean
pump(GInputStream *in, int out_fd, GChecksum *sum, guint64 *ret_size, const char *what,
     GError **error)
{
  g_autofree guint8 *buf = g_malloc(STREAM_BUF);
  guint64 total = 0;
  GError *local = NULL;

  for (;;) {
    gssize n = g_input_stream_read(in, buf, STREAM_BUF, NULL, &local);
    if (n < 0)
      return io_failed(error, local, "read", what);
    if (n == 0)
      break;
    if (out_fd >= 0 && !vms_stream_write_all(out_fd, buf, (gsize)n, NULL, what, error))
      return FALSE;
    if (sum != NULL)
      g_checksum_update(sum, buf, n);
    total += (guint64)n;
  }
  if (ret_size != NULL)
    *ret_size = total;
  return TRUE;
}

static GInputStream *
input_from_start(int fd, const char *what, GError **error)
{
  if (lseek(fd, 0, SEEK_SET) < 0) {
    vms_set_error_errno(error, errno, "failed to seek %s", what);
    return NULL;
  }
  return g_unix_input_stream_new(fd, FALSE);
}

gboolean
vms_stream_copy(int src_fd, int dst_fd, GChecksum *sum, guint64 *ret_size, const char *what,
                GError **error)
{
  g_autoptr(GInputStream) in = input_from_start(src_fd, what, error);

  return in != NULL && pump(in, dst_fd, sum, ret_size, what, error);
}

void
vms_stream_digest(GChecksum *sum, guint8 ret_sha256[32])
{
  gsize len = 32;

  g_checksum_get_digest(sum, ret_sha256, &len);
}

gboolean
vms_stream_sha256(int fd, guint8 ret_sha256[32], guint64 *ret_size, const char *what,
                  GError **error)
{
  g_autoptr(GInputStream) in = input_from_start(fd, what, error);
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);

  if (in == NULL || !pump(in, -1, sum, ret_size, what, error))
    return FALSE;
  vms_stream_digest(sum, ret_sha256);
  return TRUE;
}
