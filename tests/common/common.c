/* vmsnap tests: helpers shared by the unit and the integration tests (see
 * common.h). */
#include "common.h"

GBytes *
vms_test_read_bytes(const char *path)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_autoptr(GError) error = NULL;

  g_file_get_contents(path, &data, &len, &error);
  g_assert_no_error(error);
  return g_bytes_new_take(g_steal_pointer(&data), len);
}

char *
vms_test_read_text(const char *path)
{
  char *text = NULL;
  return g_file_get_contents(path, &text, NULL, NULL) ? text : NULL;
}

void
vms_test_cannot_run(const char *why)
{
  const char *ci = g_getenv("CI");

  if (ci != NULL && g_ascii_strcasecmp(ci, "true") == 0)
    g_test_fail_printf("cannot run under CI, where nothing may be skipped: %s", why);
  else
    g_test_skip(why);
}
