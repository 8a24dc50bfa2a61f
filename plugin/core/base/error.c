/* vmsnap core: the VMS_ERROR domain. */
#include "error.h"

#include <errno.h>
#include <string.h>

G_DEFINE_QUARK(vmsnap-error-quark, vms_error)

gboolean
vms_set_error_errno(GError **error, int errnum, const char *format, ...)
{
  va_list ap;
  g_autofree char *what = NULL;

  if (error == NULL)
    return FALSE;
  va_start(ap, format);
  what = g_strdup_vprintf(format, ap);
  va_end(ap);
  g_set_error(error, VMS_ERROR,
              errnum == EXDEV || errnum == EOPNOTSUPP ? VMS_ERROR_NOT_SUPPORTED : VMS_ERROR_IO,
              "%s: %s", what, g_strerror(errnum));
  return FALSE;
}
