/* vmsnap core: bounded JSON parsing (json-bounded.h). */
#include "json-bounded.h"

#include <string.h>

#include "error.h"

gboolean
vms_json_check_depth(const char *text, gsize len, guint max_depth, GError **error)
{
  guint depth = 0;
  gboolean in_str = FALSE;

  for (gsize i = 0; i < len; i++) {
    char c = text[i];

    if (in_str) {
      if (c == '\\')
        i++;
      else if (c == '"')
        in_str = FALSE;
    } else if (c == '"') {
      in_str = TRUE;
    } else if (c == '{' || c == '[') {
      if (++depth > max_depth) {
        g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                    "JSON nesting depth limit exceeded (more than %u levels)", max_depth);
        return FALSE;
      }
    } else if ((c == '}' || c == ']') && depth > 0) {
      depth--;
    }
  }
  return TRUE;
}

/* json-glib turns "\u0000" into a NUL that silently ends the C string
 * ("query-vmsnap\u0000x" would run query-vmsnap): refused, as QEMU does. */
static gboolean
check_no_nul_escape(const char *text, GError **error)
{
  gboolean in_str = FALSE;

  for (const char *p = text; *p != '\0'; p++) {
    if (!in_str) {
      in_str = *p == '"';
    } else if (*p == '"') {
      in_str = FALSE;
    } else if (*p == '\\') {
      if (g_ascii_strncasecmp(p + 1, "u0000", 5) == 0) {
        g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                            "JSON parse error, \\u0000 is not supported");
        return FALSE;
      }
      if (p[1] != '\0')
        p++;
    }
  }
  return TRUE;
}

JsonNode *
vms_json_parse_bounded(const char *text, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  g_autoptr(GError) local = NULL;
  JsonNode *root;

  if (!vms_json_check_depth(text, strlen(text), VMS_JSON_MAX_DEPTH, error) ||
      !check_no_nul_escape(text, error))
    return NULL;
  if (!json_parser_load_from_data(parser, text, -1, &local)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "JSON parse error, %s",
                local->message);
    return NULL;
  }
  root = json_parser_get_root(parser);
  if (root == NULL) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                        "JSON parse error, no value");
    return NULL;
  }
  return json_node_ref(root);
}

