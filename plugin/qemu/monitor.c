/* vmsnap plugin: the monitor console. */
#include "monitor.h"

#include <string.h>

#include "commands.h"
#include "error.h"
#include "qmp.h"

#define MONITOR_PROMPT "(vmsnap) "
#define MONITOR_MAX_LINE 4096
#define MONITOR_SEND_TIMEOUT_S 10
/* Queued in place of a line that was too long (no real line holds \x01). */
#define TOO_LONG_LINE "\x01"

static const char help_text[] =
  "Commands:\n"
  "  help                                   this text\n"
  "  info status                            vCPUs, run state, guest memory, restore origin\n"
  "  info snapshot DIR                      the manifest of the snapshot in DIR\n"
  "  save DIR [memory=link|copy|diff] [then=pause|resume|quit]\n"
  "                                         take a snapshot (default memory=link then=pause)\n";

struct _VmsMonitor {
  VmsService *svc;
  GSocket *listener;
  GSource *accept_source;
};

/* One console connection. Lines are run one at a time, in order, like a
 * shell: a line that arrives while a save runs waits for it. Everything
 * but sending happens on the service context. */
typedef struct {
  gint ref;
  VmsMonitor *mon;
  GSocket *sock;
  GSource *source;
  GString *line;
  gboolean discarding; /* the current line is too long */
  GQueue lines;        /* complete lines not run yet */
  gboolean busy;       /* a command is running */
  gboolean eof;        /* the peer sends no more */
  gboolean gone;       /* closed and forgotten */
  GMutex wlock;        /* guards sending and `closed` (replies come from any thread) */
  gboolean closed;
} MonConn;

typedef struct {
  MonConn *conn;
  char *command;
} MonReply;

static void mon_pump(MonConn *c);

static MonConn *
mon_conn_ref(MonConn *c)
{
  g_atomic_int_inc(&c->ref);
  return c;
}

static void
mon_conn_unref(MonConn *c)
{
  if (!g_atomic_int_dec_and_test(&c->ref))
    return;
  if (c->source != NULL)
    g_source_unref(c->source);
  g_object_unref(c->sock);
  g_string_free(c->line, TRUE);
  g_queue_clear_full(&c->lines, g_free);
  g_mutex_clear(&c->wlock);
  g_free(c);
}

/* Any thread. A peer that stopped reading is cut off. */
static void
mon_send(MonConn *c, const char *text)
{
  g_mutex_lock(&c->wlock);
  if (!c->closed && !vms_socket_send_all(c->sock, text, strlen(text), MONITOR_SEND_TIMEOUT_S, NULL)) {
    c->closed = TRUE;
    g_socket_shutdown(c->sock, TRUE, TRUE, NULL);
  }
  g_mutex_unlock(&c->wlock);
}

/* Service context: the command finished, run the next line. */
static gboolean
mon_command_done(gpointer user_data)
{
  MonConn *c = user_data;

  c->busy = FALSE;
  mon_pump(c);
  return G_SOURCE_REMOVE;
}

/* Any thread (snapshot-save answers from its worker): print the answer and
 * let the service context go on with the next line. */
static void
mon_reply(JsonNode *ret, const GError *error, gpointer user_data)
{
  MonReply *r = user_data;
  g_autofree char *text = NULL;
  g_autoptr(GSource) idle = g_idle_source_new();

  if (error != NULL) {
    text = g_strdup_printf("error: %s\n" MONITOR_PROMPT, error->message);
  } else {
    g_autofree char *body = vms_monitor_format(r->command, ret);
    text = g_strdup_printf("%s\n" MONITOR_PROMPT, body);
    json_node_unref(ret);
  }
  mon_send(r->conn, text);
  g_source_set_callback(idle, mon_command_done, r->conn, (GDestroyNotify)mon_conn_unref);
  g_source_attach(idle, r->conn->mon->svc->context);
  g_free(r->command);
  g_free(r);
}

static void
mon_run_line(MonConn *c, char *line)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  g_autoptr(JsonObject) args = NULL;
  gboolean help = FALSE;
  MonReply *r;

  if (strcmp(line, TOO_LONG_LINE) == 0) {
    mon_send(c, "error: line too long\n" MONITOR_PROMPT);
    return;
  }
  if (*g_strstrip(line) == '\0') {
    mon_send(c, MONITOR_PROMPT);
    return;
  }
  if (!vms_monitor_parse_line(line, &command, &args, &help, &error)) {
    g_autofree char *text = g_strdup_printf("error: %s\n" MONITOR_PROMPT, error->message);
    mon_send(c, text);
    return;
  }
  if (help) {
    mon_send(c, help_text);
    mon_send(c, MONITOR_PROMPT);
    return;
  }
  r = g_new0(MonReply, 1);
  r->conn = mon_conn_ref(c);
  r->command = g_strdup(command);
  c->busy = TRUE;
  vms_commands_dispatch(c->mon->svc, command, args, mon_reply, r);
}

/* Service context, once: stop reading, close, forget. */
static void
mon_close(MonConn *c)
{
  if (c->gone)
    return;
  c->gone = TRUE;
  g_mutex_lock(&c->wlock);
  c->closed = TRUE;
  g_mutex_unlock(&c->wlock);
  g_source_destroy(c->source);
  g_socket_close(c->sock, NULL);
  mon_conn_unref(c);
}

/* Service context: runs queued lines until one is busy; closes a peer that
 * has sent everything once its last command is answered. */
static void
mon_pump(MonConn *c)
{
  while (!c->busy && !c->gone && !g_queue_is_empty(&c->lines)) {
    g_autofree char *line = g_queue_pop_head(&c->lines);
    mon_run_line(c, line);
  }
  if (!c->busy && c->eof && g_queue_is_empty(&c->lines))
    mon_close(c);
}

/* Splits input into lines; a line longer than MONITOR_MAX_LINE is refused
 * once and skipped up to its newline. */
static void
mon_feed(MonConn *c, const char *buf, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    if (buf[i] == '\n') {
      if (c->discarding)
        g_queue_push_tail(&c->lines, g_strdup(TOO_LONG_LINE));
      else
        g_queue_push_tail(&c->lines, g_strdup(c->line->str));
      g_string_truncate(c->line, 0);
      c->discarding = FALSE;
    } else if (!c->discarding && buf[i] != '\r') {
      g_string_append_c(c->line, buf[i]);
      if (c->line->len > MONITOR_MAX_LINE) {
        c->discarding = TRUE;
        g_string_truncate(c->line, 0);
      }
    }
  }
}

static gboolean
mon_on_readable(GSocket *sock, GIOCondition cond, gpointer user_data)
{
  MonConn *c = user_data;
  char buf[4096];
  g_autoptr(GError) error = NULL;
  gssize n = g_socket_receive_with_blocking(sock, buf, sizeof(buf), FALSE, NULL, &error);

  if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  mon_conn_ref(c);
  if (n <= 0) {
    /* a last line without its newline still counts */
    if (c->line->len > 0 && !c->discarding)
      g_queue_push_tail(&c->lines, g_strdup(c->line->str));
    c->eof = TRUE;
  } else {
    mon_feed(c, buf, (gsize)n);
  }
  mon_pump(c);
  mon_conn_unref(c);
  return n <= 0 ? G_SOURCE_REMOVE : G_SOURCE_CONTINUE;
}

static gboolean
mon_on_accept(GSocket *listener, GIOCondition cond, gpointer user_data)
{
  VmsMonitor *mon = user_data;
  g_autoptr(GSocket) sock = g_socket_accept(listener, NULL, NULL);
  MonConn *c;

  if (sock == NULL)
    return G_SOURCE_CONTINUE;
  if (!vms_unix_peer_is_us(sock)) {
    g_socket_close(sock, NULL);
    return G_SOURCE_CONTINUE;
  }
  c = g_new0(MonConn, 1);
  c->ref = 1;
  c->mon = mon;
  c->sock = g_steal_pointer(&sock);
  c->line = g_string_new(NULL);
  g_mutex_init(&c->wlock);
  mon_send(c, "vmsnap monitor - type 'help' for help\n" MONITOR_PROMPT);
  g_queue_init(&c->lines);
  c->source = g_socket_create_source(c->sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback(c->source, G_SOURCE_FUNC(mon_on_readable), c, NULL);
  g_source_attach(c->source, mon->svc->context);
  return G_SOURCE_CONTINUE;
}

VmsMonitor *
vms_monitor_new(const char *path, VmsService *svc, GError **error)
{
  g_autoptr(GSocket) listener = vms_unix_listen(path, error);
  VmsMonitor *mon;

  if (listener == NULL)
    return NULL;
  g_socket_set_blocking(listener, FALSE);
  mon = g_new0(VmsMonitor, 1);
  mon->svc = svc;
  mon->listener = g_steal_pointer(&listener);
  mon->accept_source = g_socket_create_source(mon->listener, G_IO_IN, NULL);
  g_source_set_callback(mon->accept_source, G_SOURCE_FUNC(mon_on_accept), mon, NULL);
  g_source_attach(mon->accept_source, svc->context);
  return mon;
}
