/* vmsnap fuzz target: the monitor console's words and its line editor.
 * Any line either maps to a command of the table with string arguments,
 * text to print, `quit`, or an error; completion copes with any line; the
 * formatter copes with any JSON value as an answer, and nothing it prints
 * (nor an error) holds a control byte that could drive a terminal. The
 * input as keys into the line editor: whatever they are, the terminal gets
 * only text, CR, LF and the editor's own two sequences. */
#include <glib.h>
#include <string.h>

#include "fuzz.h"
#include "monitor-edit.h"
#include "monitor.h"

static void
assert_printable(const char *text)
{
  for (const char *p = text; *p != '\0'; p++)
    g_assert_true((guchar)*p >= 0x20 || *p == '\n');
}

/* Removes the editor's own sequences (ESC [ K, ESC [ n D) in place. */
static void
strip_own_sequences(GString *s)
{
  for (gsize i = 0; i < s->len;) {
    gsize j = i + 2;
    if (s->str[i] != '\033' || i + 2 >= s->len || s->str[i + 1] != '[') {
      i++;
      continue;
    }
    while (j < s->len && g_ascii_isdigit(s->str[j]))
      j++;
    g_assert_true(j < s->len && (s->str[j] == 'K' || (s->str[j] == 'D' && j > i + 2)));
    g_string_erase(s, (gssize)i, (gssize)(j + 1 - i));
  }
}

static void
fuzz_editor(const uint8_t *data, size_t size)
{
  g_autoptr(VmsLineEditor) e = vms_line_editor_new("(vmsnap) ");
  g_autoptr(GString) out = g_string_new(NULL);

  for (size_t i = 0; i < size; i++) {
    g_autofree char *line = NULL;
    VmsEditResult r = vms_line_editor_feed(e, data[i], out, &line);
    g_assert_true((r == VMS_EDIT_LINE) == (line != NULL));
    if (r == VMS_EDIT_EOF)
      break;
  }
  strip_own_sequences(out);
  for (gsize i = 0; i < out->len; i++)
    g_assert_true((guchar)out->str[i] >= 0x20 || out->str[i] == '\r' || out->str[i] == '\n');
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  g_autofree char *line = g_strndup((const char *)data, size);
  g_auto(VmsMonitorLine) parsed = { 0 };
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) parser = json_parser_new();
  g_auto(GStrv) completions = vms_monitor_complete(line);

  fuzz_editor(data, size);
  g_assert_nonnull(completions);
  if (!vms_monitor_parse_line(line, &parsed, &error)) {
    g_autofree char *safe = NULL;
    g_assert_nonnull(error);
    safe = vms_monitor_escape(error->message);
    assert_printable(safe);
    return 0;
  }
  g_assert_no_error(error);
  if (parsed.command == NULL) {
    g_assert_true(parsed.quit || parsed.text != NULL);
    return 0;
  }
  g_assert_true(g_strv_contains((const char *const[]){ "query-vmsnap", "snapshot-info",
                                                       "snapshot-save", "snapshot-cancel", NULL },
                                parsed.command));
  g_assert_nonnull(parsed.args);
  /* an answer made of the input, whatever it is, formats without crashing */
  if (size < 4096 && json_parser_load_from_data(parser, (const char *)data, (gssize)size, NULL) &&
      json_parser_get_root(parser) != NULL) {
    g_autofree char *text = vms_monitor_format(parsed.command, json_parser_get_root(parser));
    g_assert_nonnull(text);
    assert_printable(text);
  }
  return 0;
}
