/* vmsnap fuzz target: QMP framing and parsing, as the control socket sees a
 * byte stream. The input is fed in pieces whose sizes come from the input
 * itself; every value the splitter returns must be a bracketed text within
 * the size bound, and parsing it must either give an object or an error. */
#include <glib.h>
#include <string.h>

#include "fuzz.h"
#include "qmp-private.h"
#include "qmp.h"

#define MAX_MESSAGE 256

static void
drain(VmsJsonSplitter *s)
{
  for (;;) {
    g_autofree char *text = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) node = NULL;
    gsize len;

    if (!vms_json_splitter_next(s, &text, &error))
      return;
    if (text == NULL) {
      g_assert_nonnull(error);
      continue;
    }
    len = strlen(text);
    g_assert_cmpuint(len, >=, 2);
    g_assert_cmpuint(len, <=, MAX_MESSAGE);
    g_assert_true(text[0] == '{' || text[0] == '[');
    g_assert_true(text[len - 1] == '}' || text[len - 1] == ']');
    node = vms_qmp_parse_object(text, &error);
    g_assert_true((node != NULL) != (error != NULL));
    if (node != NULL)
      g_assert_true(JSON_NODE_HOLDS_OBJECT(node));
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  g_autoptr(VmsJsonSplitter) s = vms_json_splitter_new(MAX_MESSAGE);
  size_t pos = 0;

  while (pos < size) {
    size_t chunk = 1 + data[pos] % 64;
    if (chunk > size - pos)
      chunk = size - pos;
    vms_json_splitter_feed(s, (const char *)data + pos, chunk);
    drain(s);
    pos += chunk;
  }
  return 0;
}
