/* vmsnap core: what snapdir.c and snapdir-verify.c share (not installed). */
#pragma once

#include "snapdir.h"

G_BEGIN_DECLS

/* SHA-256 and length of the whole of @fd, read from offset 0; @what names
 * the file in errors. */
gboolean vms_snapdir_hash_fd(int fd, const char *what, guint8 ret_sha256[VMS_SHA256_LEN],
                             guint64 *ret_size, GError **error);

G_END_DECLS
