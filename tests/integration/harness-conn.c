/* vmsnap integration tests: blocking socket clients with deadlines — raw
 * connections, QMP (QEMU's own and the plugin's control socket) and the
 * plugin's monitor console. See harness.h for the contracts. */
#include "harness.h"
#include "harness-private.h"

#include <errno.h>
#include <string.h>

struct _VmsTestConn {
  GSocketConnection *conn;
  GSocket *sock;
  GString *buf;
};

struct _VmsTestQmp {
  VmsTestConn *conn;
  JsonObject *greeting;
  GQueue events; /* JsonObject*, oldest first */
};

struct _VmsTestMonitor {
  VmsTestConn *conn;
};

static gint64
deadline_after(guint timeout_ms)
{
  return g_get_monotonic_time() + (gint64)timeout_ms * 1000;
}

VmsTestConn *
vms_test_conn_connect(const char *path, guint timeout_ms, GError **error)
{
  g_autoptr(GSocketClient) client = g_socket_client_new();
  g_autoptr(GSocketAddress) addr = g_unix_socket_address_new(path);
  gint64 deadline = deadline_after(timeout_ms);

  for (;;) {
    g_autoptr(GError) local = NULL;
    GSocketConnection *conn =
        g_socket_client_connect(client, G_SOCKET_CONNECTABLE(addr), NULL, &local);
    if (conn != NULL) {
      VmsTestConn *c = g_new0(VmsTestConn, 1);
      c->conn = conn;
      c->sock = g_socket_connection_get_socket(conn);
      c->buf = g_string_new(NULL);
      return c;
    }
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "cannot connect to %s within %u ms: %s",
                  path, timeout_ms, local->message);
      return NULL;
    }
    g_usleep(2 * 1000); /* short: the restore benchmark times through this */
  }
}

void
vms_test_conn_free(VmsTestConn *c)
{
  if (c == NULL)
    return;
  g_io_stream_close(G_IO_STREAM(c->conn), NULL, NULL);
  g_object_unref(c->conn);
  g_string_free(c->buf, TRUE);
  g_free(c);
}

GSocket *
vms_test_conn_socket(VmsTestConn *c)
{
  return c->sock;
}

gboolean
vms_test_conn_write(VmsTestConn *c, const char *text, GError **error)
{
  GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(c->conn));
  return g_output_stream_write_all(out, text, strlen(text), NULL, NULL, error);
}

/* Appends whatever arrives before @deadline to c->buf. FALSE on timeout/EOF. */
static gboolean
conn_fill(VmsTestConn *c, gint64 deadline, GError **error)
{
  char chunk[4096];
  gint64 left = deadline - g_get_monotonic_time();

  if (left <= 0 || !g_socket_condition_timed_wait(c->sock, G_IO_IN | G_IO_HUP, left, NULL, NULL)) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "timed out waiting for data (have: \"%s\")",
                c->buf->str);
    return FALSE;
  }
  gssize n = g_socket_receive(c->sock, chunk, sizeof(chunk), NULL, error);
  if (n < 0)
    return FALSE;
  if (n == 0) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_CONNECTION_CLOSED,
                "connection closed by peer (have: \"%s\")", c->buf->str);
    return FALSE;
  }
  g_string_append_len(c->buf, chunk, n);
  return TRUE;
}

char *
vms_test_conn_read_until(VmsTestConn *c, const char *suffix, guint timeout_ms, GError **error)
{
  gint64 deadline = deadline_after(timeout_ms);

  for (;;) {
    const char *hit = strstr(c->buf->str, suffix);
    if (hit != NULL) {
      gsize len = (gsize)(hit - c->buf->str);
      char *ret = g_strndup(c->buf->str, len);
      g_string_erase(c->buf, 0, (gssize)(len + strlen(suffix)));
      return ret;
    }
    if (!conn_fill(c, deadline, error))
      return NULL;
  }
}

char *
vms_test_conn_read_line(VmsTestConn *c, guint timeout_ms, GError **error)
{
  char *line = vms_test_conn_read_until(c, "\n", timeout_ms, error);
  gsize len = line != NULL ? strlen(line) : 0;

  if (len > 0 && line[len - 1] == '\r')
    line[len - 1] = '\0';
  return line;
}

/* ---- QMP ---- */

static JsonObject *
parse_object(const char *text, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new();

  if (!json_parser_load_from_data(parser, text, -1, error))
    return NULL;
  JsonNode *root = json_parser_get_root(parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "QMP message is not an object: %s", text);
    return NULL;
  }
  return json_object_ref(json_node_get_object(root));
}

/* The next message of any kind. */
static JsonObject *
qmp_read_any(VmsTestQmp *q, guint timeout_ms, GError **error)
{
  for (;;) {
    g_autofree char *line = vms_test_conn_read_line(q->conn, timeout_ms, error);
    if (line == NULL)
      return NULL;
    if (line[0] != '\0')
      return parse_object(line, error);
  }
}

JsonObject *
vms_test_qmp_read_reply(VmsTestQmp *q, guint timeout_ms, GError **error)
{
  gint64 deadline = deadline_after(timeout_ms);

  for (;;) {
    gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
    JsonObject *msg = qmp_read_any(q, left_ms > 0 ? (guint)left_ms : 0, error);
    if (msg == NULL)
      return NULL;
    if (!json_object_has_member(msg, "event"))
      return msg;
    g_queue_push_tail(&q->events, msg);
  }
}

gboolean
vms_test_qmp_send_raw(VmsTestQmp *q, const char *text, GError **error)
{
  g_autofree char *line = g_strconcat(text, "\n", NULL);
  return vms_test_conn_write(q->conn, line, error);
}

static JsonNode *
reply_return(JsonObject *reply, const char *command, GError **error)
{
  if (json_object_has_member(reply, "error")) {
    JsonObject *err = json_object_get_object_member(reply, "error");
    const char *desc = err != NULL ? json_object_get_string_member_with_default(err, "desc", "?") : "?";
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_FAILED, "%s", desc);
    return NULL;
  }
  if (!json_object_has_member(reply, "return")) {
    g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), reply);
    g_autofree char *text = json_to_string(node, FALSE);
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "reply to %s has no return: %s",
                command, text);
    return NULL;
  }
  return json_node_copy(json_object_get_member(reply, "return"));
}

JsonNode *
vms_test_qmp_execute(VmsTestQmp *q, const char *command, JsonObject *arguments, GError **error)
{
  g_autoptr(JsonObject) msg = json_object_new();
  json_object_set_string_member(msg, "execute", command);
  if (arguments != NULL)
    json_object_set_object_member(msg, "arguments", json_object_ref(arguments));
  g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), msg);
  g_autofree char *text = json_to_string(node, FALSE);

  if (!vms_test_qmp_send_raw(q, text, error))
    return NULL;
  g_autoptr(JsonObject) reply = vms_test_qmp_read_reply(q, VMS_TEST_TIMEOUT_MS * 4, error);
  if (reply == NULL)
    return NULL;
  return reply_return(reply, command, error);
}

JsonNode *
vms_test_qmp_executef(VmsTestQmp *q, const char *command, GError **error,
                      const char *args_format, ...)
{
  g_autoptr(JsonObject) args = NULL;

  if (args_format != NULL) {
    va_list ap;
    va_start(ap, args_format);
    g_autofree char *text = g_strdup_vprintf(args_format, ap);
    va_end(ap);
    args = parse_object(text, error);
    if (args == NULL)
      return NULL;
  }
  return vms_test_qmp_execute(q, command, args, error);
}

JsonObject *
vms_test_qmp_wait_event(VmsTestQmp *q, const char *name, guint timeout_ms, GError **error)
{
  gint64 deadline = deadline_after(timeout_ms);

  for (;;) {
    for (GList *l = q->events.head; l != NULL; l = l->next) {
      JsonObject *ev = l->data;
      if (g_strcmp0(json_object_get_string_member_with_default(ev, "event", ""), name) == 0) {
        g_queue_delete_link(&q->events, l);
        return ev;
      }
    }
    gint64 left_ms = (deadline - g_get_monotonic_time()) / 1000;
    g_autoptr(GError) local = NULL;
    JsonObject *msg = qmp_read_any(q, left_ms > 0 ? (guint)left_ms : 0, &local);
    if (msg == NULL) {
      g_set_error(error, G_IO_ERROR, G_IO_ERROR_TIMED_OUT, "no event %s: %s", name, local->message);
      return NULL;
    }
    if (json_object_has_member(msg, "event"))
      g_queue_push_tail(&q->events, msg);
    else
      json_object_unref(msg); /* a stray reply: nobody waits for it */
  }
}

void
vms_test_qmp_clear_events(VmsTestQmp *q)
{
  g_queue_clear_full(&q->events, (GDestroyNotify)json_object_unref);
}

VmsTestQmp *
vms_test_qmp_connect(const char *path, guint timeout_ms, GError **error)
{
  g_autoptr(VmsTestQmp) q = g_new0(VmsTestQmp, 1);

  g_queue_init(&q->events);
  q->conn = vms_test_conn_connect(path, timeout_ms, error);
  if (q->conn == NULL)
    return NULL;
  q->greeting = qmp_read_any(q, timeout_ms, error);
  if (q->greeting == NULL)
    return NULL;
  if (!json_object_has_member(q->greeting, "QMP")) {
    g_set_error(error, G_IO_ERROR, G_IO_ERROR_INVALID_DATA, "%s: first message is not a QMP greeting", path);
    return NULL;
  }
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(q, "qmp_capabilities", NULL, error);
  if (ret == NULL)
    return NULL;
  return g_steal_pointer(&q);
}

void
vms_test_qmp_free(VmsTestQmp *q)
{
  if (q == NULL)
    return;
  vms_test_qmp_clear_events(q);
  g_clear_pointer(&q->greeting, json_object_unref);
  vms_test_conn_free(q->conn);
  g_free(q);
}

JsonObject *
vms_test_qmp_greeting(VmsTestQmp *q)
{
  return q->greeting;
}

/* ---- monitor console ---- */

VmsTestMonitor *
vms_test_monitor_connect(const char *path, guint timeout_ms, GError **error)
{
  g_autoptr(VmsTestMonitor) m = g_new0(VmsTestMonitor, 1);

  m->conn = vms_test_conn_connect(path, timeout_ms, error);
  if (m->conn == NULL)
    return NULL;
  g_autofree char *banner = vms_test_conn_read_until(m->conn, VMS_TEST_MONITOR_PROMPT, timeout_ms, error);
  if (banner == NULL)
    return NULL;
  return g_steal_pointer(&m);
}

void
vms_test_monitor_free(VmsTestMonitor *m)
{
  if (m == NULL)
    return;
  vms_test_conn_free(m->conn);
  g_free(m);
}

char *
vms_test_monitor_command(VmsTestMonitor *m, const char *line, guint timeout_ms, GError **error)
{
  g_autofree char *text = g_strconcat(line, "\n", NULL);

  if (!vms_test_conn_write(m->conn, text, error))
    return NULL;
  return vms_test_conn_read_until(m->conn, VMS_TEST_MONITOR_PROMPT, timeout_ms, error);
}
