/* vmsnap fuzz target: the monitor console's line parser. Any line either
 * maps to a command of the table with string arguments, or is refused with
 * an error; the formatter copes with any JSON object as an answer. */
#include <glib.h>
#include <string.h>

#include "fuzz.h"
#include "monitor.h"

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  g_autofree char *line = g_strndup((const char *)data, size);
  g_autofree char *command = NULL;
  g_autoptr(JsonObject) args = NULL;
  g_autoptr(GError) error = NULL;
  gboolean help = FALSE;
  g_autoptr(JsonParser) parser = json_parser_new();

  if (*g_strstrip(line) == '\0')
    return 0;
  if (!vms_monitor_parse_line(line, &command, &args, &help, &error)) {
    g_assert_nonnull(error);
    return 0;
  }
  g_assert_no_error(error);
  g_assert_true(g_strv_contains((const char *const[]){ "help", "query-vmsnap", "snapshot-info",
                                                       "snapshot-save", NULL },
                                command));
  /* an answer made of the input, whatever it is, formats without crashing */
  if (json_parser_load_from_data(parser, (const char *)data, (gssize)size, NULL) &&
      json_parser_get_root(parser) != NULL) {
    g_autofree char *text = vms_monitor_format(command, json_parser_get_root(parser));
    g_assert_nonnull(text);
  }
  return 0;
}
