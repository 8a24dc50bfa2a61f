/* vmsnap core: the one error channel of the core layer.
 *
 * Core functions return gboolean (or a pointer, NULL on failure) and fill a
 * GError in VMS_ERROR. Thin syscall wrappers (util.h) return -errno instead;
 * they are converted to GError once, at their caller. The core never prints.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

#define VMS_ERROR (vms_error_quark())

typedef enum {
  VMS_ERROR_FAILED,           /* anything else; the message says what */
  VMS_ERROR_INVALID_ARGUMENT, /* a caller-supplied value is out of range */
  VMS_ERROR_MISMATCH,         /* a manifest does not match this VM; message names the field */
  VMS_ERROR_CORRUPT,          /* a file fails a check: decode, size, checksum */
  VMS_ERROR_INCOMPLETE,       /* a snapshot directory without manifest.bin */
  VMS_ERROR_EXISTS,           /* the target already holds a committed snapshot */
  VMS_ERROR_NOT_SUPPORTED,    /* the platform or filesystem cannot do it */
  VMS_ERROR_IO,               /* a system call failed; message ends with strerror */
  VMS_ERROR_BUSY,             /* another operation is in progress */
  VMS_ERROR_QMP,              /* QEMU answered a QMP command with an error */
  VMS_ERROR_NO_DIGESTS,       /* a snapshot has no memory digests: it cannot be verified */
  VMS_ERROR_COMMAND_NOT_FOUND, /* no command of that name (QMP class CommandNotFound) */
  VMS_ERROR_RESUMED,          /* someone else resumed the VM during a save */
} VmsErrorCode;

GQuark vms_error_quark(void);

/* Sets @error (if not NULL) to VMS_ERROR_IO with "<formatted>: <strerror(errnum)>".
 * @errnum is a positive errno value. Always returns FALSE so callers can
 * `return vms_set_error_errno(...)`. EXDEV maps to VMS_ERROR_NOT_SUPPORTED. */
gboolean vms_set_error_errno(GError **error, int errnum, const char *format, ...)
    G_GNUC_PRINTF(3, 4);

G_END_DECLS
