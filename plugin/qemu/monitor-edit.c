/* vmsnap plugin: the monitor console's line editor (monitor-edit.h). */
#include "monitor-edit.h"

#include <string.h>

#include "monitor.h"

#define HISTORY_MAX 100
#define LINE_MAX_BYTES 4096
#define ESC_MAX 16

typedef enum { ESC_NONE, ESC_START, ESC_CSI } EscState;

struct _VmsLineEditor {
  char *prompt;
  GString *line;
  gsize cursor;        /* byte offset, on a character boundary */
  GPtrArray *history;  /* oldest first */
  guint hist_pos;      /* == history->len: the line being typed */
  char *draft;         /* the line being typed while walking the history */
  EscState esc;
  GString *esc_buf;    /* parameters of a CSI sequence */
  gboolean after_cr;   /* the previous byte was CR: a LF now is its pair */
};

VmsLineEditor *
vms_line_editor_new(const char *prompt)
{
  VmsLineEditor *e = g_new0(VmsLineEditor, 1);

  e->prompt = g_strdup(prompt);
  e->line = g_string_new(NULL);
  e->history = g_ptr_array_new_with_free_func(g_free);
  e->esc_buf = g_string_new(NULL);
  return e;
}

void
vms_line_editor_free(VmsLineEditor *e)
{
  if (e == NULL)
    return;
  g_free(e->prompt);
  g_string_free(e->line, TRUE);
  g_ptr_array_unref(e->history);
  g_free(e->draft);
  g_string_free(e->esc_buf, TRUE);
  g_free(e);
}

const char *
vms_line_editor_get_line(VmsLineEditor *e)
{
  return e->line->str;
}

/* Columns of @len bytes of @s: characters, invalid bytes shown escaped. */
static glong
columns(const char *s, gsize len)
{
  g_autofree char *part = g_strndup(s, len);
  g_autofree char *shown = vms_monitor_escape(part);

  return g_utf8_strlen(shown, -1);
}

void
vms_line_editor_redraw(VmsLineEditor *e, GString *out)
{
  g_autofree char *shown = vms_monitor_escape(e->line->str);
  glong back = columns(e->line->str + e->cursor, e->line->len - e->cursor);

  g_string_append_printf(out, "\r%s%s\033[K", e->prompt, shown);
  if (back > 0)
    g_string_append_printf(out, "\033[%ldD", back);
}

static gsize
prev_char(VmsLineEditor *e, gsize pos)
{
  const char *p;

  if (pos == 0)
    return 0;
  p = g_utf8_find_prev_char(e->line->str, e->line->str + pos);
  return p != NULL ? (gsize)(p - e->line->str) : pos - 1;
}

static gsize
next_char(VmsLineEditor *e, gsize pos)
{
  const char *p;

  if (pos >= e->line->len)
    return e->line->len;
  p = g_utf8_find_next_char(e->line->str + pos, e->line->str + e->line->len);
  return p != NULL ? (gsize)(p - e->line->str) : e->line->len;
}

static void
set_line(VmsLineEditor *e, const char *text)
{
  g_string_assign(e->line, text);
  e->cursor = e->line->len;
}

static void
history_move(VmsLineEditor *e, int dir)
{
  if (dir < 0 && e->hist_pos == 0)
    return;
  if (dir > 0 && e->hist_pos >= e->history->len)
    return;
  if (e->hist_pos == e->history->len) {
    g_free(e->draft);
    e->draft = g_strdup(e->line->str);
  }
  e->hist_pos = (guint)((int)e->hist_pos + dir);
  set_line(e, e->hist_pos < e->history->len ? e->history->pdata[e->hist_pos] : e->draft);
}

static void
kill_range(VmsLineEditor *e, gsize from, gsize to)
{
  g_string_erase(e->line, (gssize)from, (gssize)(to - from));
  e->cursor = from;
}

static gsize
word_start(VmsLineEditor *e)
{
  gsize p = e->cursor;

  while (p > 0 && e->line->str[p - 1] == ' ')
    p--;
  while (p > 0 && e->line->str[p - 1] != ' ')
    p--;
  return p;
}

/* The longest prefix every match shares. */
static char *
common_prefix(char **matches)
{
  gsize n = strlen(matches[0]);

  for (char **m = matches + 1; *m != NULL; m++) {
    gsize i = 0;
    while (i < n && (*m)[i] == matches[0][i])
      i++;
    n = i;
  }
  return g_strndup(matches[0], n);
}

/* Tab: the word before the cursor becomes the one match (plus a space
 * unless it ends in '='), or the matches' common prefix; when that adds
 * nothing the matches are listed. */
static void
complete(VmsLineEditor *e, GString *out)
{
  g_autofree char *head = g_strndup(e->line->str, e->cursor);
  g_auto(GStrv) matches = vms_monitor_complete(head);
  gsize start = word_start(e);
  g_autofree char *word = g_strndup(e->line->str + start, e->cursor - start);
  g_autofree char *prefix = NULL;

  if (matches[0] == NULL)
    return;
  prefix = matches[1] == NULL ? g_strdup(matches[0]) : common_prefix(matches);
  if (strlen(prefix) > strlen(word) || matches[1] == NULL) {
    /* a whole word gets its space; "memory=" and "dir/" want more */
    gboolean space = matches[1] == NULL && !g_str_has_suffix(prefix, "=") &&
                     !g_str_has_suffix(prefix, "/");
    kill_range(e, start, e->cursor);
    g_string_insert(e->line, (gssize)start, prefix);
    e->cursor = start + strlen(prefix);
    if (space) {
      g_string_insert_c(e->line, (gssize)e->cursor, ' ');
      e->cursor++;
    }
    return;
  }
  g_string_append(out, "\r\n");
  for (char **m = matches; *m != NULL; m++) {
    g_autofree char *shown = vms_monitor_escape(*m); /* file names are anyone's bytes */
    g_string_append_printf(out, "%s%s", m == matches ? "" : "  ", shown);
  }
  g_string_append(out, "\r\n");
}

static VmsEditResult
submit(VmsLineEditor *e, GString *out, char **ret_line)
{
  const char *last = e->history->len > 0 ? e->history->pdata[e->history->len - 1] : NULL;

  g_string_append(out, "\r\n");
  if (e->line->len > 0 && g_strcmp0(last, e->line->str) != 0) {
    g_ptr_array_add(e->history, g_strdup(e->line->str));
    if (e->history->len > HISTORY_MAX)
      g_ptr_array_remove_index(e->history, 0);
  }
  e->hist_pos = e->history->len;
  g_clear_pointer(&e->draft, g_free);
  *ret_line = g_strdup(e->line->str);
  set_line(e, "");
  return VMS_EDIT_LINE;
}

/* The end of an escape sequence: ESC [ params final, or ESC O final. */
static void
escape_key(VmsLineEditor *e, char final)
{
  const char *p = e->esc_buf->str;

  if (final == 'A')
    history_move(e, -1);
  else if (final == 'B')
    history_move(e, 1);
  else if (final == 'C')
    e->cursor = next_char(e, e->cursor);
  else if (final == 'D')
    e->cursor = prev_char(e, e->cursor);
  else if (final == 'H' || (final == '~' && (strcmp(p, "1") == 0 || strcmp(p, "7") == 0)))
    e->cursor = 0;
  else if (final == 'F' || (final == '~' && (strcmp(p, "4") == 0 || strcmp(p, "8") == 0)))
    e->cursor = e->line->len;
  else if (final == '~' && strcmp(p, "3") == 0)
    kill_range(e, e->cursor, next_char(e, e->cursor));
  /* anything else (F-keys, mouse, bracketed paste marks...) is swallowed */
}

/* Inside an escape sequence. TRUE when the byte was part of one. */
static gboolean
feed_escape(VmsLineEditor *e, guchar c)
{
  if (e->esc == ESC_NONE)
    return FALSE;
  if (e->esc == ESC_START) {
    e->esc = c == '[' || c == 'O' ? ESC_CSI : ESC_NONE;
    g_string_truncate(e->esc_buf, 0);
    return TRUE;
  }
  if (c >= 0x40 && c <= 0x7e) {
    escape_key(e, (char)c);
    e->esc = ESC_NONE;
  } else if (e->esc_buf->len < ESC_MAX) {
    g_string_append_c(e->esc_buf, (char)c);
  } else {
    e->esc = ESC_NONE; /* not a sequence we know: drop it */
  }
  return TRUE;
}

/* A control byte: editing keys. */
static VmsEditResult
control_key(VmsLineEditor *e, guchar c, GString *out, char **ret_line)
{
  switch (c) {
  case '\r': case '\n': return submit(e, out, ret_line);
  case 0x1b: e->esc = ESC_START; break;
  case 0x7f: case 0x08: kill_range(e, prev_char(e, e->cursor), e->cursor); break;
  case 0x04:
    if (e->line->len == 0)
      return VMS_EDIT_EOF;
    kill_range(e, e->cursor, next_char(e, e->cursor));
    break;
  case 0x01: e->cursor = 0; break;
  case 0x05: e->cursor = e->line->len; break;
  case 0x02: e->cursor = prev_char(e, e->cursor); break;
  case 0x06: e->cursor = next_char(e, e->cursor); break;
  case 0x10: history_move(e, -1); break;
  case 0x0e: history_move(e, 1); break;
  case 0x0b: kill_range(e, e->cursor, e->line->len); break;
  case 0x15: kill_range(e, 0, e->cursor); break;
  case 0x17: kill_range(e, word_start(e), e->cursor); break;
  case 0x03:
    g_string_append(out, "^C\r\n");
    set_line(e, "");
    break;
  case '\t': complete(e, out); break;
  default: break; /* swallowed */
  }
  return VMS_EDIT_NONE;
}

VmsEditResult
vms_line_editor_feed(VmsLineEditor *e, guchar byte, GString *out, char **ret_line)
{
  VmsEditResult r = VMS_EDIT_NONE;
  gboolean pair = e->after_cr && byte == '\n';

  *ret_line = NULL;
  e->after_cr = byte == '\r';
  if (pair)
    return VMS_EDIT_NONE;
  if (feed_escape(e, byte)) {
    if (e->esc == ESC_NONE) /* a whole key: show what it did */
      vms_line_editor_redraw(e, out);
    return VMS_EDIT_NONE;
  }
  if (byte < 0x20 || byte == 0x7f) {
    r = control_key(e, byte, out, ret_line);
    if (r != VMS_EDIT_NONE || e->esc != ESC_NONE)
      return r;
  } else if (e->line->len < LINE_MAX_BYTES) {
    g_string_insert_c(e->line, (gssize)e->cursor, (char)byte);
    e->cursor++;
    /* in the middle of a UTF-8 character: show it once it is whole */
    if (byte >= 0x80 && !g_utf8_validate(e->line->str, (gssize)e->line->len, NULL))
      return VMS_EDIT_NONE;
  }
  vms_line_editor_redraw(e, out);
  return VMS_EDIT_NONE;
}
