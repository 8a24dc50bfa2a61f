/* vmsnap plugin: the monitor console's words — one table of console
 * commands (HMP-like) that serves parsing, help and completion, and the
 * answers in plain words. Pure functions, no sockets. */
#include "monitor.h"

#include <string.h>

#include "error.h"
#include "save-modes.h"

typedef gboolean (*ParseFunc)(char **words, VmsMonitorLine *ret, GError **error);

typedef struct {
  const char *name;
  const char *params; /* NULL: none */
  const char *help;
  ParseFunc parse;    /* @words are the arguments after the name */
  guint min_args, max_args;
} ConsoleCmd;

static gboolean parse_help(char **words, VmsMonitorLine *ret, GError **error);
static gboolean parse_info(char **words, VmsMonitorLine *ret, GError **error);
static gboolean parse_save(char **words, VmsMonitorLine *ret, GError **error);
static gboolean parse_cancel(char **words, VmsMonitorLine *ret, GError **error);
static gboolean parse_quit(char **words, VmsMonitorLine *ret, GError **error);

static const ConsoleCmd console_cmds[] = {
  { "help", "[CMD]", "this text, or the help of CMD", parse_help, 0, 1 },
  { "info", "SUBCOMMAND", "show information (a bare `info` lists the subcommands)", parse_info,
    0, 2 },
  { "save", "DIR [memory=M] [then=T]", "take a snapshot into DIR", parse_save, 1, 3 },
  { "cancel", NULL, "stop the running save; nothing is committed", parse_cancel, 0, 0 },
  { "quit", NULL, "close this console (the VM keeps running)", parse_quit, 0, 0 },
};

/* `info` subcommands: name, parameter, help, control-socket command. */
static const struct {
  const char *name;
  const char *param;
  const char *help;
  const char *command;
} info_cmds[] = {
  { "status", NULL, "vCPUs, run state, guest memory, restore origin", "query-vmsnap" },
  { "snapshot", "DIR", "the manifest of the snapshot in DIR", "snapshot-info" },
};

void
vms_monitor_line_clear(VmsMonitorLine *l)
{
  g_clear_pointer(&l->command, g_free);
  g_clear_pointer(&l->args, json_object_unref);
  g_clear_pointer(&l->text, g_free);
  l->quit = FALSE;
}

static void
append_usage(GString *s, const char *name, const char *params, const char *help)
{
  g_autofree char *left = g_strdup_printf("%s%s%s", name, params != NULL ? " " : "",
                                          params != NULL ? params : "");
  g_string_append_printf(s, "  %-36s %s\n", left, help);
}

static char *
info_help(void)
{
  GString *s = g_string_new(NULL);

  for (gsize i = 0; i < G_N_ELEMENTS(info_cmds); i++) {
    g_autofree char *name = g_strdup_printf("info %s", info_cmds[i].name);
    append_usage(s, name, info_cmds[i].param, info_cmds[i].help);
  }
  return g_string_free(s, FALSE);
}

static char *
save_help(void)
{
  g_autofree char *m = vms_save_memory_choices();
  g_autofree char *t = vms_save_then_choices();

  return g_strdup_printf("    memory=%s (default %s), then=%s (default %s)\n", m,
                         vms_save_memory_names[0], t, vms_save_then_names[0]);
}

static char *
command_help(const ConsoleCmd *cmd)
{
  GString *s = g_string_new(NULL);

  append_usage(s, cmd->name, cmd->params, cmd->help);
  if (cmd->parse == parse_info) {
    g_autofree char *sub = info_help();
    g_string_append(s, sub);
  } else if (cmd->parse == parse_save) {
    g_autofree char *modes = save_help();
    g_string_append(s, modes);
  }
  return g_string_free(s, FALSE);
}

static const ConsoleCmd *
find_cmd(const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS(console_cmds); i++)
    if (strcmp(console_cmds[i].name, name) == 0)
      return &console_cmds[i];
  return NULL;
}

static gboolean
parse_help(char **words, VmsMonitorLine *ret, GError **error)
{
  g_autofree char *sub = NULL, *modes = NULL;
  const ConsoleCmd *cmd;
  GString *s;

  if (words[0] != NULL) {
    cmd = find_cmd(words[0]);
    if (cmd == NULL) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "help: unknown command '%s' (type 'help')", words[0]);
      return FALSE;
    }
    ret->text = command_help(cmd);
    return TRUE;
  }
  s = g_string_new("Commands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS(console_cmds); i++)
    append_usage(s, console_cmds[i].name, console_cmds[i].params, console_cmds[i].help);
  sub = info_help();
  modes = save_help();
  g_string_append_printf(s, "%s%s", sub, modes);
  ret->text = g_string_free(s, FALSE);
  return TRUE;
}

static gboolean
parse_info(char **words, VmsMonitorLine *ret, GError **error)
{
  guint n = g_strv_length(words);

  if (n == 0) {
    ret->text = info_help();
    return TRUE;
  }
  for (gsize i = 0; i < G_N_ELEMENTS(info_cmds); i++) {
    if (strcmp(words[0], info_cmds[i].name) != 0)
      continue;
    if ((info_cmds[i].param != NULL) != (n == 2)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "usage: info %s%s%s",
                  info_cmds[i].name, info_cmds[i].param != NULL ? " " : "",
                  info_cmds[i].param != NULL ? info_cmds[i].param : "");
      return FALSE;
    }
    ret->command = g_strdup(info_cmds[i].command);
    ret->args = json_object_new();
    if (n == 2)
      json_object_set_string_member(ret->args, "dir", words[1]);
    return TRUE;
  }
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "info: unknown subcommand '%s' (type 'info' for the list)", words[0]);
  return FALSE;
}

static gboolean
parse_save(char **words, VmsMonitorLine *ret, GError **error)
{
  g_autoptr(JsonObject) args = json_object_new();

  json_object_set_string_member(args, "dir", words[0]);
  for (char **w = words + 1; *w != NULL; w++) {
    const char *eq = strchr(*w, '=');
    g_autofree char *key = eq != NULL ? g_strndup(*w, (gsize)(eq - *w)) : g_strdup(*w);

    if (eq == NULL || (strcmp(key, "memory") != 0 && strcmp(key, "then") != 0)) {
      g_autofree char *m = vms_save_memory_choices();
      g_autofree char *t = vms_save_then_choices();
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "unknown save option '%s' (expected memory=%s or then=%s)", *w, m, t);
      return FALSE;
    }
    json_object_set_string_member(args, key, eq + 1);
  }
  ret->command = g_strdup("snapshot-save");
  ret->args = g_steal_pointer(&args);
  return TRUE;
}

static gboolean
parse_cancel(char **words, VmsMonitorLine *ret, GError **error)
{
  ret->command = g_strdup("snapshot-cancel");
  ret->args = json_object_new();
  return TRUE;
}

static gboolean
parse_quit(char **words, VmsMonitorLine *ret, GError **error)
{
  ret->quit = TRUE;
  return TRUE;
}

gboolean
vms_monitor_parse_line(const char *line, VmsMonitorLine *ret, GError **error)
{
  g_auto(GStrv) w = NULL;
  g_autoptr(GError) shell_error = NULL;
  g_auto(VmsMonitorLine) out = { 0 };
  const ConsoleCmd *cmd;
  guint n;

  if (strspn(line, " \t") == strlen(line)) {
    ret->text = g_strdup("");
    return TRUE;
  }
  if (!g_shell_parse_argv(line, NULL, &w, &shell_error)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "cannot parse the line: %s",
                shell_error->message);
    return FALSE;
  }
  n = g_strv_length(w) - 1;
  cmd = find_cmd(w[0]);
  if (cmd == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "unknown command: '%s' (type 'help')", w[0]);
    return FALSE;
  }
  if (n < cmd->min_args || n > cmd->max_args) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "usage: %s%s%s", cmd->name,
                cmd->params != NULL ? " " : "", cmd->params != NULL ? cmd->params : "");
    return FALSE;
  }
  if (!cmd->parse(w + 1, &out, error))
    return FALSE;
  *ret = out;
  memset(&out, 0, sizeof(out));
  return TRUE;
}

/* ---- completion ---- */

static void
add_match(GPtrArray *out, const char *prefix, const char *name, const char *before)
{
  if (g_str_has_prefix(name, prefix))
    g_ptr_array_add(out, g_strconcat(before, name, NULL));
}

static void
add_matches(GPtrArray *out, const char *prefix, const char *const *names, const char *before)
{
  for (gsize i = 0; names[i] != NULL; i++)
    add_match(out, prefix, names[i], before);
}

/* A DIR argument: the directories (and entries) of the plugin's file
 * system that start with @prefix; a directory ends in '/'. Hidden entries
 * only when the prefix asks for them. */
static void
complete_path(GPtrArray *out, const char *prefix)
{
  const char *slash = strrchr(prefix, '/');
  g_autofree char *dir = slash != NULL ? g_strndup(prefix, (gsize)(slash - prefix + 1))
                                       : g_strdup("");
  const char *base = slash != NULL ? slash + 1 : prefix;
  g_autoptr(GDir) d = g_dir_open(*dir != '\0' ? dir : ".", 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name(d)) != NULL) {
    g_autofree char *full = g_strconcat(dir, name, NULL);
    if (!g_str_has_prefix(name, base) || (name[0] == '.' && base[0] != '.'))
      continue;
    g_ptr_array_add(out, g_strconcat(full, g_file_test(full, G_FILE_TEST_IS_DIR) ? "/" : "",
                                     NULL));
  }
}

/* The console words that may stand as word @index (0-based) after @words. */
static void
complete_word(GPtrArray *out, char **words, guint index, const char *prefix)
{
  static const char *const save_keys[] = { "memory=", "then=", NULL };

  if ((index == 1 && strcmp(words[0], "save") == 0) ||
      (index == 2 && strcmp(words[0], "info") == 0 && strcmp(words[1], "snapshot") == 0)) {
    complete_path(out, prefix);
  } else if (index == 0 || (index == 1 && strcmp(words[0], "help") == 0)) {
    for (gsize i = 0; i < G_N_ELEMENTS(console_cmds); i++)
      add_match(out, prefix, console_cmds[i].name, "");
  } else if (index == 1 && strcmp(words[0], "info") == 0) {
    for (gsize i = 0; i < G_N_ELEMENTS(info_cmds); i++)
      add_match(out, prefix, info_cmds[i].name, "");
  } else if (index >= 2 && strcmp(words[0], "save") == 0) {
    if (g_str_has_prefix(prefix, "memory="))
      add_matches(out, prefix + 7, vms_save_memory_names, "memory=");
    else if (g_str_has_prefix(prefix, "then="))
      add_matches(out, prefix + 5, vms_save_then_names, "then=");
    else
      add_matches(out, prefix, save_keys, "");
  }
}

char **
vms_monitor_complete(const char *line)
{
  g_autoptr(GPtrArray) out = g_ptr_array_new();
  const char *last = strrchr(line, ' ');
  const char *prefix = last != NULL ? last + 1 : line;
  g_autofree char *head = g_strndup(line, (gsize)(prefix - line));
  g_auto(GStrv) words = g_strsplit_set(head, " ", -1);
  g_autoptr(GPtrArray) nonempty = g_ptr_array_new();

  for (char **w = words; *w != NULL; w++)
    if (**w != '\0')
      g_ptr_array_add(nonempty, *w);
  g_ptr_array_add(nonempty, NULL);
  complete_word(out, (char **)nonempty->pdata, nonempty->len - 1, prefix);
  g_ptr_array_add(out, NULL);
  return (char **)g_ptr_array_free(g_steal_pointer(&out), FALSE);
}

/* ---- answers ---- */

char *
vms_monitor_escape(const char *text)
{
  GString *s = g_string_new(NULL);
  const char *p = text;

  while (*p != '\0') {
    gunichar c = g_utf8_get_char_validated(p, -1);

    if (c == (gunichar)-1 || c == (gunichar)-2) {
      g_string_append_printf(s, "\\x%02x", (guchar)*p);
      p++;
      continue;
    }
    if (c == '\\')
      g_string_append(s, "\\\\");
    else if ((c < 0x20 && c != '\n') || (c >= 0x7f && c < 0xa0))
      g_string_append_printf(s, "\\x%02x", (guint)c);
    else
      g_string_append_unichar(s, c);
    p = g_utf8_next_char(p);
  }
  return g_string_free(s, FALSE);
}

/* Members read with defaults: the formatter must cope with any object. */
static JsonNode *
value_member(JsonObject *o, const char *name, GType type)
{
  JsonNode *n = json_object_get_member(o, name);

  return n != NULL && JSON_NODE_HOLDS_VALUE(n) && json_node_get_value_type(n) == type ? n : NULL;
}

static const char *
str_member(JsonObject *o, const char *name, const char *dflt)
{
  JsonNode *n = value_member(o, name, G_TYPE_STRING);

  return n != NULL ? json_node_get_string(n) : dflt;
}

static gint64
int_member(JsonObject *o, const char *name)
{
  JsonNode *n = value_member(o, name, G_TYPE_INT64);

  return n != NULL ? json_node_get_int(n) : 0;
}

static gboolean
bool_member(JsonObject *o, const char *name)
{
  JsonNode *n = value_member(o, name, G_TYPE_BOOLEAN);

  return n != NULL && json_node_get_boolean(n);
}

static double
num_member(JsonObject *o, const char *name)
{
  JsonNode *n = value_member(o, name, G_TYPE_DOUBLE);

  return n != NULL ? json_node_get_double(n) : (double)int_member(o, name);
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
                         str_member(o, "version", "?"), int_member(o, "vcpus"),
                         bool_member(o, "running") ? "running" : "paused");
  if (mem != NULL) {
    g_autofree char *size = g_format_size_full((guint64)int_member(mem, "size"),
                                               G_FORMAT_SIZE_IEC_UNITS);
    g_string_append_printf(s, "memory: %s, %s, %s, page size %" G_GINT64_FORMAT "\n",
                           str_member(mem, "path", "?"), size,
                           bool_member(mem, "shared") ? "shared" : "private",
                           int_member(mem, "page-size"));
  } else {
    g_string_append(s, "memory: not found (yet); `save` tells why\n");
  }
  g_string_append_printf(s, "restored from: %s", from != NULL ? from : "(none)");
  return g_string_free(s, FALSE);
}

static char *format_value(const char *key, JsonNode *v);

static char *
format_list(JsonArray *a)
{
  GString *s = g_string_new(NULL);

  for (guint i = 0; i < json_array_get_length(a); i++) {
    g_autofree char *item = format_value("", json_array_get_element(a, i));
    g_string_append_printf(s, "%s%s", i ? " " : "", item);
  }
  return g_string_free(s, FALSE);
}

static char *
format_inline(JsonObject *o)
{
  g_autoptr(GList) members = json_object_get_members(o);
  GString *s = g_string_new(NULL);

  for (GList *l = members; l != NULL; l = l->next) {
    g_autofree char *item = format_value(l->data, json_object_get_member(o, l->data));
    g_string_append_printf(s, "%s%s %s", s->len ? ", " : "", (const char *)l->data, item);
  }
  return g_string_free(s, FALSE);
}

/* A field for people: sizes in IEC units, times as dates, lists on a line. */
static char *
format_value(const char *key, JsonNode *v)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT(v) ? json_node_get_object(v) : NULL;

  if (o != NULL && json_object_has_member(o, "seconds")) {
    g_autoptr(GDateTime) t = g_date_time_new_from_unix_utc(int_member(o, "seconds"));
    return t != NULL ? g_date_time_format(t, "%Y-%m-%d %H:%M:%S UTC") : g_strdup("?");
  }
  if (o != NULL)
    return format_inline(o);
  if (JSON_NODE_HOLDS_ARRAY(v))
    return format_list(json_node_get_array(v));
  if (JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_STRING)
    return g_strdup(json_node_get_string(v));
  if (JSON_NODE_HOLDS_VALUE(v) && json_node_get_value_type(v) == G_TYPE_INT64 &&
      (g_str_has_suffix(key, "-bytes") || g_str_has_suffix(key, "-size")))
    return g_format_size_full((guint64)json_node_get_int(v),
                              G_FORMAT_SIZE_IEC_UNITS | G_FORMAT_SIZE_LONG_FORMAT);
  return vms_json_to_text(v);
}

static char *
format_fields(JsonObject *o)
{
  g_autoptr(GList) members = json_object_get_members(o);
  GString *s = g_string_new(NULL);

  for (GList *l = members; l != NULL; l = l->next) {
    g_autofree char *v = format_value(l->data, json_object_get_member(o, l->data));
    g_autofree char *label = g_strdelimit(g_strdup(l->data), "-_", ' ');
    g_string_append_printf(s, "%s%-20s %s", s->len ? "\n" : "", label, v);
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
                         str_member(o, "memory-capture", "?"), int_member(o, "state-bytes"),
                         int_member(o, "memory-bytes-written"), num_member(o, "downtime-ms"),
                         num_member(o, "total-ms"));
}

static char *
format_raw(const char *command, JsonNode *ret)
{
  JsonObject *o = JSON_NODE_HOLDS_OBJECT(ret) ? json_node_get_object(ret) : NULL;

  if (o == NULL)
    return vms_json_to_text(ret);
  if (strcmp(command, "query-vmsnap") == 0)
    return format_status(o);
  if (strcmp(command, "snapshot-save") == 0)
    return format_save(o);
  if (strcmp(command, "snapshot-cancel") == 0)
    return g_strdup(bool_member(o, "cancelled") ? "the running save is being cancelled"
                                                : "no save is running");
  if (json_object_get_size(o) == 0)
    return g_strdup("done");
  return format_fields(o);
}

char *
vms_monitor_format(const char *command, JsonNode *ret)
{
  g_autofree char *raw = format_raw(command, ret);

  return vms_monitor_escape(raw);
}
