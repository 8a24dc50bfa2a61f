/* vmsnap plugin: the monitor console. */
#include "monitor.h"

#include <string.h>

#include "commands.h"
#include "error.h"
#include "qmp.h"

#define MONITOR_PROMPT "(vmsnap) "
#define MONITOR_MAX_LINE 4096
#define MONITOR_SEND_TIMEOUT_S 10

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

typedef struct {
  gint ref;
  GSocket *sock;
  GSource *source;
  GString *line;
  gboolean discarding; /* the current line is too long */
  GMutex wlock;
  gboolean closed;
} MonConn;

typedef struct {
  MonConn *conn;
  char *command;
} MonReply;

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
  g_object_unref(c->sock);
  g_string_free(c->line, TRUE);
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

static void
mon_reply(JsonNode *ret, const GError *error, gpointer user_data)
{
  MonReply *r = user_data;
  g_autofree char *text = NULL;

  if (error != NULL)
    text = g_strdup_printf("error: %s\n" MONITOR_PROMPT, error->message);
  else {
    g_autofree char *body = vms_monitor_format(r->command, ret);
    text = g_strdup_printf("%s\n" MONITOR_PROMPT, body);
    json_node_unref(ret);
  }
  mon_send(r->conn, text);
  mon_conn_unref(r->conn);
  g_free(r->command);
  g_free(r);
}

static void
mon_handle_line(VmsMonitor *mon, MonConn *c, const char *line)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *command = NULL;
  g_autoptr(JsonObject) args = NULL;
  gboolean help = FALSE;
  MonReply *r;

  if (*g_strstrip((char *)line) == '\0') {
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
  vms_commands_dispatch(mon->svc, command, args, mon_reply, r);
}

static void
mon_close(MonConn *c)
{
  g_mutex_lock(&c->wlock);
  c->closed = TRUE;
  g_mutex_unlock(&c->wlock);
  g_source_destroy(c->source);
  g_source_unref(c->source);
  c->source = NULL;
  g_socket_close(c->sock, NULL);
  mon_conn_unref(c);
}

/* Splits input into lines; a line longer than MONITOR_MAX_LINE is refused
 * once and skipped up to its newline. */
static void
mon_feed(VmsMonitor *mon, MonConn *c, const char *buf, gsize n)
{
  for (gsize i = 0; i < n; i++) {
    if (buf[i] == '\n') {
      if (c->discarding)
        mon_send(c, "error: line too long\n" MONITOR_PROMPT);
      else
        mon_handle_line(mon, c, c->line->str);
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

typedef struct {
  VmsMonitor *mon;
  MonConn *conn;
} MonSourceData;

static gboolean
mon_on_readable(GSocket *sock, GIOCondition cond, gpointer user_data)
{
  MonSourceData *d = user_data;
  char buf[4096];
  g_autoptr(GError) error = NULL;
  gssize n = g_socket_receive_with_blocking(sock, buf, sizeof(buf), FALSE, NULL, &error);

  if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  if (n <= 0) {
    mon_close(d->conn);
    return G_SOURCE_REMOVE;
  }
  mon_conn_ref(d->conn);
  mon_feed(d->mon, d->conn, buf, (gsize)n);
  mon_conn_unref(d->conn);
  return G_SOURCE_CONTINUE;
}

static gboolean
mon_on_accept(GSocket *listener, GIOCondition cond, gpointer user_data)
{
  VmsMonitor *mon = user_data;
  g_autoptr(GSocket) sock = g_socket_accept(listener, NULL, NULL);
  MonConn *c;
  MonSourceData *d;

  if (sock == NULL)
    return G_SOURCE_CONTINUE;
  if (!vms_unix_peer_is_us(sock)) {
    g_socket_close(sock, NULL);
    return G_SOURCE_CONTINUE;
  }
  c = g_new0(MonConn, 1);
  c->ref = 1;
  c->sock = g_steal_pointer(&sock);
  c->line = g_string_new(NULL);
  g_mutex_init(&c->wlock);
  mon_send(c, "vmsnap monitor - type 'help' for help\n" MONITOR_PROMPT);
  d = g_new0(MonSourceData, 1);
  d->mon = mon;
  d->conn = c;
  c->source = g_socket_create_source(c->sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback(c->source, G_SOURCE_FUNC(mon_on_readable), d, g_free);
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
