/* vmsnap plugin: the monitor console's words — parsing a line into a
 * command of the table, and formatting answers in plain words. Pure
 * functions, no sockets. */
#include "monitor.h"

#include <string.h>

#include "error.h"

static gboolean
parse_save_options(char **words, JsonObject *args, GError **error)
{
  for (char **w = words; *w != NULL; w++) {
    const char *eq = strchr(*w, '=');
    g_autofree char *key = eq != NULL ? g_strndup(*w, (gsize)(eq - *w)) : g_strdup(*w);

    if (eq == NULL || (strcmp(key, "memory") != 0 && strcmp(key, "then") != 0)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "unknown save option '%s' (expected memory=link|copy|diff or "
                  "then=pause|resume|quit)", *w);
      return FALSE;
    }
    json_object_set_string_member(args, key, eq + 1);
  }
  return TRUE;
}

gboolean
vms_monitor_parse_line(const char *line, char **ret_command, JsonObject **ret_args,
                       gboolean *ret_help, GError **error)
{
  g_auto(GStrv) w = NULL;
  g_autoptr(JsonObject) args = json_object_new();
  g_autoptr(GError) shell_error = NULL;
  const char *command = NULL;
  guint n;

  *ret_help = FALSE;
  if (!g_shell_parse_argv(line, NULL, &w, &shell_error)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "cannot parse the line: %s",
                shell_error->message);
    return FALSE;
  }
  n = g_strv_length(w);
  if (strcmp(w[0], "help") == 0 && n == 1) {
    *ret_help = TRUE;
    command = "help";
  } else if (strcmp(w[0], "info") == 0 && n == 2 && strcmp(w[1], "status") == 0) {
    command = "query-vmsnap";
  } else if (strcmp(w[0], "info") == 0 && n == 3 && strcmp(w[1], "snapshot") == 0) {
    command = "snapshot-info";
    json_object_set_string_member(args, "dir", w[2]);
  } else if (strcmp(w[0], "save") == 0 && n >= 2) {
    command = "snapshot-save";
    json_object_set_string_member(args, "dir", w[1]);
    if (!parse_save_options(w + 2, args, error))
      return FALSE;
  } else {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "unknown command or wrong arguments: '%s' (type 'help')", line);
    return FALSE;
  }
  *ret_command = g_strdup(command);
  *ret_args = g_steal_pointer(&args);
  return TRUE;
}

/* Members read with defaults: the formatter must cope with any object. */
static const char *
str_member(JsonObject *o, const char *name, const char *dflt)
{
  JsonNode *n = json_object_get_member(o, name);

  return n != NULL && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == G_TYPE_STRING
             ? json_node_get_string(n)
             : dflt;
}

static JsonObject *
obj_member(JsonObject *o, const char *name)
{
  JsonNode *n = json_object_get_member(o, name);

  return n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static char *
format_status(JsonObject *o)
{
  GString *s = g_string_new(NULL);
  JsonObject *mem = obj_member(o, "memory");
  const char *from = str_member(o, "restored-from", NULL);

  g_string_append_printf(s, "vmsnap %s, %" G_GINT64_FORMAT " vCPUs, VM %s\n",
                         str_member(o, "version", "?"),
                         json_object_get_int_member_with_default(o, "vcpus", 0),
                         json_object_get_boolean_member_with_default(o, "running", FALSE)
                             ? "running"
                             : "paused");
  if (mem != NULL) {
    g_autofree char *size = g_format_size_full(
        (guint64)json_object_get_int_member_with_default(mem, "size", 0), G_FORMAT_SIZE_IEC_UNITS);
    g_string_append_printf(s, "memory: %s, %s, %s, page size %" G_GINT64_FORMAT "\n",
                           str_member(mem, "path", "?"), size,
                           json_object_get_boolean_member_with_default(mem, "shared", FALSE)
                               ? "shared"
                               : "private",
                           json_object_get_int_member_with_default(mem, "page-size", 0));
  } else {
    g_string_append(s, "memory: not found (yet); `save` tells why\n");
  }
  g_string_append_printf(s, "restored from: %s", from != NULL ? from : "(none)");
  return g_string_free(s, FALSE);
}

static char *
format_value(JsonNode *v)
{
  if (JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_STRING)
    return g_strdup(json_node_get_string(v));
  if (JSON_NODE_HOLDS_ARRAY(v)) {
    JsonArray *a = json_node_get_array(v);
    GString *s = g_string_new(NULL);
    for (guint i = 0; i < json_array_get_length(a); i++) {
      g_autofree char *item = format_value(json_array_get_element(a, i));
      g_string_append_printf(s, "%s%s", i ? " " : "", item);
    }
    return g_string_free(s, FALSE);
  }
  return json_to_string(v, FALSE);
}

static char *
format_fields(JsonObject *o)
{
  g_autoptr(GList) members = json_object_get_members(o);
  GString *s = g_string_new(NULL);

  for (GList *l = members; l != NULL; l = l->next) {
    g_autofree char *v = format_value(json_object_get_member(o, l->data));
    g_string_append_printf(s, "%s%s: %s", s->len ? "\n" : "", (const char *)l->data, v);
  }
  return g_string_free(s, FALSE);
}

static char *
format_save(JsonObject *o)
{
  return g_strdup_printf("snapshot saved in %s: %s, memory %s, state %" G_GINT64_FORMAT
                         " bytes, memory written %" G_GINT64_FORMAT " bytes, downtime %.1f ms, "
                         "total %.1f ms",
                         str_member(o, "dir", "?"), str_member(o, "kind", "?"),
                         str_member(o, "memory-capture", "?"),
                         json_object_get_int_member_with_default(o, "state-bytes", 0),
                         json_object_get_int_member_with_default(o, "memory-bytes-written", 0),
                         json_object_get_double_member_with_default(o, "downtime-ms", 0),
                         json_object_get_double_member_with_default(o, "total-ms", 0));
}

char *
vms_monitor_format(const char *command, JsonNode *ret)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;

  if (o == NULL)
    return json_to_string(ret, FALSE);
  if (strcmp(command, "query-vmsnap") == 0)
    return format_status(o);
  if (strcmp(command, "snapshot-save") == 0)
    return format_save(o);
  return format_fields(o);
}
