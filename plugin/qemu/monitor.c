/* vmsnap plugin: the monitor console (doc/spec.md sections 5 and 11) on
 * the connection engine (conn.h): lines in, plain words out.
 *
 * Two kinds of peer, told apart by what they send:
 *  - line clients (`socat - UNIX-CONNECT:...` on a cooked terminal,
 *    scripts) send whole lines; nothing is echoed;
 *  - raw terminals (`socat -,raw,echo=0 UNIX-CONNECT:...`, like QEMU's
 *    HMP) send a key at a time: a read of one byte that is not a newline,
 *    a lone CR, ESC, Tab, Backspace or another control key switches the
 *    connection to the line editor (monitor-edit.h) for good: echo,
 *    history, completion, and CR LF line ends.
 */
#include "monitor.h"

#include <string.h>

#include "error.h"
#include "monitor-edit.h"

#define MONITOR_PROMPT "(vmsnap) "
#define MONITOR_MAX_LINE 4096
#define MONITOR_BANNER "vmsnap monitor - type 'help' for help\n"
#define MONITOR_REFUSAL \
  "error: this console does not accept peers of your uid (see the plugin's allow-uids= and " \
  "allow-gid=)\n"

struct _VmsMonitor {
  VmsListener *listener;
  VmsDispatchFunc dispatch;
  gpointer user_data;
};

/* One console. Lines run one at a time, in order, like a shell: a line
 * that arrives while a save runs waits for it (the engine stops reading). */
typedef struct {
  VmsMonitor *mon;
  VmsConn *conn;    /* borrowed */
  GString *in;      /* bytes not yet cut into lines */
  gboolean discarding; /* the current line is too long */
  gboolean eof;
  VmsLineEditor *editor; /* set once the peer shows it is a raw terminal */
} MonConn;

typedef struct {
  MonConn *c;       /* lives as long as the reference on its connection */
  char *command;
} MonReply;

/* Any thread. A raw terminal does not turn LF into CR LF itself. */
static void
mon_send(MonConn *c, const char *text)
{
  if (g_atomic_pointer_get(&c->editor) != NULL) {
    g_autoptr(GString) s = g_string_new(NULL);
    for (const char *p = text; *p != '\0'; p++) {
      if (*p == '\n' && (p == text || p[-1] != '\r'))
        g_string_append_c(s, '\r');
      g_string_append_c(s, *p);
    }
    vms_conn_send(c->conn, s->str, s->len);
    return;
  }
  vms_conn_send(c->conn, text, strlen(text));
}

/* Any thread (snapshot-save answers from its worker). */
static void
mon_reply(JsonNode *ret, const GError *error, gpointer reply_data)
{
  MonReply *r = reply_data;
  g_autofree char *text = NULL;

  if (error != NULL) {
    g_autofree char *safe = vms_monitor_escape(error->message);
    text = g_strdup_printf("error: %s\n" MONITOR_PROMPT, safe);
  } else {
    g_autofree char *body = vms_monitor_format(r->command, ret);
    text = g_strdup_printf("%s\n" MONITOR_PROMPT, body);
    json_node_unref(ret);
  }
  mon_send(r->c, text);
  vms_conn_release(r->c->conn);
  vms_conn_unref(r->c->conn);
  g_free(r->command);
  g_free(r);
}

/* Runs one line; FALSE for `quit` (the console closes). */
static gboolean
mon_run_line(MonConn *c, const char *line)
{
  g_autoptr(GError) error = NULL;
  g_auto(VmsMonitorLine) parsed = { 0 };
  MonReply *r;

  if (!vms_monitor_parse_line(line, &parsed, &error)) {
    g_autofree char *safe = vms_monitor_escape(error->message);
    g_autofree char *text = g_strdup_printf("error: %s\n" MONITOR_PROMPT, safe);
    mon_send(c, text);
    return TRUE;
  }
  if (parsed.quit)
    return FALSE;
  if (parsed.command == NULL) {
    /* an empty line, help, a bare `info`: answered here */
    g_autofree char *text = g_strdup_printf("%s" MONITOR_PROMPT,
                                            parsed.text != NULL ? parsed.text : "");
    mon_send(c, text);
    return TRUE;
  }
  r = g_new0(MonReply, 1);
  r->c = c;
  vms_conn_ref(c->conn);
  r->command = g_strdup(parsed.command);
  vms_conn_hold(c->conn);
  c->mon->dispatch(parsed.command, parsed.args, mon_reply, r, c->mon->user_data);
  return TRUE;
}

/* Takes the next line out of the input (without its end); NULL when none
 * is complete. A line longer than MONITOR_MAX_LINE comes out as "" after
 * an error, its bytes dropped up to its newline. */
static char *
mon_next_line(MonConn *c, gsize *ret_len)
{
  char *nl = memchr(c->in->str, '\n', c->in->len);
  char *line;

  if (nl == NULL) {
    if (c->in->len > MONITOR_MAX_LINE) {
      if (!c->discarding)
        mon_send(c, "error: line too long\n" MONITOR_PROMPT);
      c->discarding = TRUE;
      g_string_truncate(c->in, 0);
    }
    if (!c->eof || c->in->len == 0 || c->discarding)
      return NULL;
    nl = c->in->str + c->in->len; /* a last line without its newline still counts */
  }
  *ret_len = (gsize)(nl - c->in->str);
  line = g_strndup(c->in->str, *ret_len);
  g_string_erase(c->in, 0, MIN((gssize)c->in->len, nl - c->in->str + 1));
  if (c->discarding) {
    /* the end of a refused line: already answered */
    c->discarding = FALSE;
    g_free(line);
    return mon_next_line(c, ret_len);
  }
  return line;
}

/* Raw terminal: keys through the editor until a line is submitted or the
 * input is used up. FALSE when the console must close. */
static gboolean
mon_pump_keys(MonConn *c)
{
  gsize used = 0;
  gboolean open = TRUE;

  while (open && used < c->in->len && !vms_conn_held(c->conn)) {
    g_autoptr(GString) out = g_string_new(NULL);
    g_autofree char *line = NULL;
    VmsEditResult r = vms_line_editor_feed(c->editor, (guchar)c->in->str[used++], out, &line);

    if (out->len > 0)
      vms_conn_send(c->conn, out->str, out->len);
    if (r == VMS_EDIT_EOF)
      open = FALSE;
    else if (r == VMS_EDIT_LINE)
      open = mon_run_line(c, line);
  }
  g_string_erase(c->in, 0, (gssize)used);
  return open;
}

static void
mon_pump(VmsConn *conn, gpointer conn_user)
{
  MonConn *c = conn_user;

  if (c->editor != NULL) {
    if (!mon_pump_keys(c))
      vms_conn_close(conn);
    return;
  }
  while (!vms_conn_held(conn)) {
    gsize len = 0;
    g_autofree char *line = mon_next_line(c, &len);

    if (line == NULL)
      return;
    if (strlen(line) != len) {
      /* a C string would end at the NUL: `info snapshot /a\0b` is not /a */
      mon_send(c, "error: the line holds a NUL byte; refused\n" MONITOR_PROMPT);
      continue;
    }
    if (len > 0 && line[len - 1] == '\r')
      line[len - 1] = '\0';
    if (!mon_run_line(c, line)) {
      vms_conn_close(conn);
      return;
    }
  }
}

/* What no line client sends: a single key, or keys a cooked terminal
 * would have handled itself. */
static gboolean
looks_like_raw_terminal(const char *data, gsize len)
{
  if (len == 1 && data[0] != '\n')
    return TRUE;
  for (gsize i = 0; i < len; i++) {
    guchar b = (guchar)data[i];
    if (b == '\r' && (i + 1 == len || data[i + 1] != '\n'))
      return TRUE;
    /* (a NUL is no key: a line holding one is refused, below) */
    if (b == 0x7f || (b < 0x20 && b != '\n' && b != '\r' && b != '\0'))
      return TRUE;
  }
  return FALSE;
}

static void
mon_input(VmsConn *conn, const char *data, gsize len, gpointer conn_user)
{
  MonConn *c = conn_user;

  /* a partial line read before the switch is typed into the editor */
  if (c->editor == NULL && looks_like_raw_terminal(data, len))
    g_atomic_pointer_set(&c->editor, vms_line_editor_new(MONITOR_PROMPT));
  g_string_append_len(c->in, data, (gssize)len);
  mon_pump(conn, conn_user);
}

static void
mon_eof(VmsConn *conn, gpointer conn_user)
{
  MonConn *c = conn_user;

  c->eof = TRUE;
  mon_pump(conn, conn_user);
}

static gpointer
mon_accepted(VmsConn *conn, gpointer listener_user)
{
  MonConn *c = g_new0(MonConn, 1);

  c->mon = listener_user;
  c->conn = conn;
  c->in = g_string_new(NULL);
  vms_conn_send(conn, MONITOR_BANNER MONITOR_PROMPT, strlen(MONITOR_BANNER MONITOR_PROMPT));
  return c;
}

static void
mon_conn_free(gpointer p)
{
  MonConn *c = p;

  g_string_free(c->in, TRUE);
  vms_line_editor_free(c->editor);
  g_free(c);
}

static const VmsConnClass monitor_class = {
  .accepted = mon_accepted,
  .input = mon_input,
  .resume = mon_pump,
  .eof = mon_eof,
  .free_user = mon_conn_free,
};

VmsMonitor *
vms_monitor_new(const char *path, GMainContext *context, const VmsPeerPolicy *policy,
                VmsDispatchFunc dispatch, gpointer user_data, GError **error)
{
  VmsMonitor *mon = g_new0(VmsMonitor, 1);

  mon->dispatch = dispatch;
  mon->user_data = user_data;
  mon->listener = vms_listener_new(path, context, policy, MONITOR_REFUSAL, &monitor_class, mon,
                                   error);
  if (mon->listener == NULL) {
    g_free(mon);
    return NULL;
  }
  return mon;
}

void
vms_monitor_free(VmsMonitor *mon)
{
  if (mon == NULL)
    return;
  vms_listener_free(mon->listener);
  g_free(mon);
}
