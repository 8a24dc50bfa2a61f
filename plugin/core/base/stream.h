/* vmsnap core: writing and hashing files through GIO streams over fds the
 * caller opened (directory-relative, O_NOFOLLOW: snapdir.h), so the short
 * writes, EINTR and error text are GIO's and the checksum is taken while
 * the bytes go by. Raw syscalls stay where they are the point (io_uring,
 * copy_file_range, SEEK_DATA: copy.h).
 *
 * The fd is borrowed, never closed, and used from its current position
 * (vms_stream_sha256 seeks to 0 first). Any thread.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Writes all @len bytes of @data to @fd (g_output_stream_write_all on a
 * GUnixOutputStream); @sum (nullable) is updated with them as they are
 * written. FALSE with VMS_ERROR_IO "failed to write @what: ..." (the
 * message carries the errno text, e.g. "No space left on device"). */
gboolean vms_stream_write_all(int fd, const void *data, gsize len, GChecksum *sum,
                              const char *what, GError **error);

/* Copies all of @src_fd (from offset 0) to @dst_fd through GIO streams,
 * updating @sum (nullable) with every byte written; *@ret_size (nullable)
 * gets the byte count. */
gboolean vms_stream_copy(int src_fd, int dst_fd, GChecksum *sum, guint64 *ret_size,
                         const char *what, GError **error);

/* SHA-256 and length of all of @fd, read from offset 0 through a
 * GUnixInputStream. */
gboolean vms_stream_sha256(int fd, guint8 ret_sha256[32], guint64 *ret_size, const char *what,
                           GError **error);

/* The 32-byte digest of @sum (a SHA-256 GChecksum) into @ret_sha256. */
void vms_stream_digest(GChecksum *sum, guint8 ret_sha256[32]);

G_END_DECLS
