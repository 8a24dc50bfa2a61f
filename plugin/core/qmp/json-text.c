/* vmsnap core: JSON text — the raw text of a member, and one writer so a number prints the same in every reply and event. */
#include "qmp.h"

#include <math.h>
#include <string.h>

#include "error.h"
#include "qmp-private.h"

static gboolean
is_json_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* The end of the string that starts at @p (a '"'): the byte after its
 * closing quote. */
static const char *
skip_string(const char *p)
{
  for (p++; *p != '\0' && *p != '"'; p++)
    if (*p == '\\' && p[1] != '\0')
      p++;
  return *p == '"' ? p + 1 : p;
}

/* The end of the value at @p: the first ',' or closing bracket outside it. */
static const char *
skip_value(const char *p)
{
  guint depth = 0;

  for (; *p != '\0'; p++) {
    if (*p == '"') {
      p = skip_string(p) - 1;
    } else if (*p == '{' || *p == '[') {
      depth++;
    } else if (*p == '}' || *p == ']') {
      if (depth == 0)
        return p;
      depth--;
    } else if (*p == ',' && depth == 0) {
      return p;
    }
  }
  return p;
}

/* @start..@end without the whitespace outside strings. */
static char *
compact(const char *start, const char *end)
{
  GString *s = g_string_new(NULL);

  for (const char *p = start; p < end; p++) {
    if (*p == '"') {
      const char *q = MIN(skip_string(p), end);
      g_string_append_len(s, p, q - p);
      p = q - 1;
    } else if (!is_json_space(*p)) {
      g_string_append_c(s, *p);
    }
  }
  return g_string_free(s, FALSE);
}

static gboolean
key_is(const char *start, const char *end, const char *name)
{
  g_autofree char *raw = g_strndup(start, (gsize)(end - start));
  g_autofree char *arr = NULL;
  g_autoptr(JsonNode) node = NULL;

  if (memchr(start, '\\', (gsize)(end - start)) == NULL)
    return end - start == (gssize)strlen(name) + 2 && strncmp(start + 1, name, strlen(name)) == 0;
  /* an escaped key ("\u0069d"): let the parser decode it */
  node = json_from_string(raw, NULL);
  return node != NULL && json_node_get_value_type(node) == G_TYPE_STRING &&
         strcmp(json_node_get_string(node), name) == 0;
}

char *
vms_json_member_raw(const char *text, const char *name)
{
  const char *p = text;
  char *found = NULL;

  while (is_json_space(*p))
    p++;
  if (*p++ != '{')
    return NULL;
  for (;;) {
    const char *key, *key_end, *value;

    while (is_json_space(*p) || *p == ',')
      p++;
    if (*p != '"')
      return found;
    key = p;
    key_end = skip_string(p);
    p = key_end;
    while (is_json_space(*p) || *p == ':')
      p++;
    value = p;
    p = skip_value(p);
    if (key_is(key, key_end, name)) {
      g_free(found);
      found = compact(value, p);
    }
    if (*p != ',')
      return found;
  }
}

/* ---- writing ---- */

static void
write_string(GString *out, const char *s)
{
  g_autofree char *valid = g_utf8_make_valid(s, -1);

  g_string_append_c(out, '"');
  for (const char *p = valid; *p != '\0'; p++) {
    guchar c = (guchar)*p;
    if (c == '"' || c == '\\')
      g_string_append_printf(out, "\\%c", c);
    else if (c == '\n')
      g_string_append(out, "\\n");
    else if (c == '\r')
      g_string_append(out, "\\r");
    else if (c == '\t')
      g_string_append(out, "\\t");
    else if (c < 0x20 || c == 0x7f)
      g_string_append_printf(out, "\\u%04x", c);
    else
      g_string_append_c(out, (char)c);
  }
  g_string_append_c(out, '"');
}

/* The shortest %g form that reads back as @d. */
static void
write_double(GString *out, double d)
{
  char buf[G_ASCII_DTOSTR_BUF_SIZE];

  if (!isfinite(d)) {
    g_string_append(out, "null");
    return;
  }
  for (int prec = 1; prec <= 17; prec++) {
    char fmt[8];
    g_snprintf(fmt, sizeof(fmt), "%%.%dg", prec);
    g_ascii_formatd(buf, sizeof(buf), fmt, d);
    if (g_ascii_strtod(buf, NULL) == d)
      break;
  }
  g_string_append(out, buf);
}

static void write_node(GString *out, JsonNode *node);

static void
write_object(GString *out, JsonObject *o)
{
  g_autoptr(GList) members = json_object_get_members(o);

  g_string_append_c(out, '{');
  for (GList *l = members; l != NULL; l = l->next) {
    if (l != members)
      g_string_append_c(out, ',');
    write_string(out, l->data);
    g_string_append_c(out, ':');
    write_node(out, json_object_get_member(o, l->data));
  }
  g_string_append_c(out, '}');
}

static void
write_value(GString *out, JsonNode *node)
{
  switch (json_node_get_value_type(node)) {
  case G_TYPE_INT64:
    g_string_append_printf(out, "%" G_GINT64_FORMAT, json_node_get_int(node));
    break;
  case G_TYPE_DOUBLE:
    write_double(out, json_node_get_double(node));
    break;
  case G_TYPE_BOOLEAN:
    g_string_append(out, json_node_get_boolean(node) ? "true" : "false");
    break;
  case G_TYPE_STRING:
    write_string(out, json_node_get_string(node));
    break;
  default:
    g_string_append(out, "null");
  }
}

static void
write_node(GString *out, JsonNode *node)
{
  if (node == NULL || JSON_NODE_HOLDS_NULL(node)) {
    g_string_append(out, "null");
  } else if (JSON_NODE_HOLDS_OBJECT(node)) {
    write_object(out, json_node_get_object(node));
  } else if (JSON_NODE_HOLDS_ARRAY(node)) {
    JsonArray *a = json_node_get_array(node);
    g_string_append_c(out, '[');
    for (guint i = 0; i < json_array_get_length(a); i++) {
      if (i > 0)
        g_string_append_c(out, ',');
      write_node(out, json_array_get_element(a, i));
    }
    g_string_append_c(out, ']');
  } else {
    write_value(out, node);
  }
}

char *
vms_json_to_text(JsonNode *node)
{
  GString *out = g_string_new(NULL);

  write_node(out, node);
  return g_string_free(out, FALSE);
}
