/* vmsnap core: the QMP server side (the plugin's control socket).
 *
 * Threading: accepting and reading happen on the server's GMainContext.
 * Replies and events may be sent from any thread: each connection has its
 * own write lock, and a connection is reference-counted so a request that
 * outlives its client (a save that finishes after the client hung up) only
 * drops its reply.
 *
 * Order: as in QEMU, one connection's commands run one at a time, in the
 * order they arrived, each answered before the next starts (a client that
 * pipelines `snapshot-save` and `snapshot-info` gets the info of the
 * finished snapshot). Messages read meanwhile wait in the connection's
 * inbox; other connections and events are not held up.
 */
#include "qmp.h"

#include <string.h>
#include <unistd.h>

#include "error.h"
#include "qmp-private.h"

#define SERVER_MAX_MESSAGE (1u << 20)
/* A peer that does not read its replies for this long is dropped. (Not a
 * g_socket_set_timeout(): that would also fire the read source of an idle
 * client and close it.) */
#define SERVER_SEND_TIMEOUT_S 10
/* Messages a client may queue behind a running command; more are refused. */
#define SERVER_MAX_QUEUED 256

/* A message read but not handled yet: a command's text, or the framing
 * error to answer in its place. */
typedef struct {
  char *text;
  char *frame_error;
} QueuedMsg;

static void
queued_msg_free(gpointer p)
{
  QueuedMsg *m = p;

  g_free(m->text);
  g_free(m->frame_error);
  g_free(m);
}

typedef struct {
  gint ref;
  GMainContext *context;
  VmsQmpServer *server; /* only used on the context thread */
  GSocket *sock;
  GSource *source;
  VmsJsonSplitter *split;
  GQueue inbox;         /* QueuedMsg, oldest first; context thread only */
  GMutex wlock;         /* guards sending, `closed`, `eof`, `pending` */
  gboolean closed;
  gboolean eof;         /* the client shut down its sending side */
  guint pending;        /* commands dispatched and not answered yet */
  gint finished;        /* atomic: conn_close ran */
  gboolean negotiated;  /* read on any thread, written on the context */
} ServerConn;

struct _VmsQmpServer {
  GMainContext *context;
  GSocket *listener;
  GSource *accept_source;
  char *path;
  JsonObject *version;
  VmsQmpCommandFunc dispatch;
  gpointer user_data;
  GMutex lock;          /* guards conns */
  GList *conns;         /* ServerConn*, one reference each */
};

struct _VmsQmpRequest {
  ServerConn *conn;
  JsonNode *id;         /* nullable */
};

static ServerConn *
conn_ref(ServerConn *conn)
{
  g_atomic_int_inc(&conn->ref);
  return conn;
}

static void
conn_unref(ServerConn *conn)
{
  if (!g_atomic_int_dec_and_test(&conn->ref))
    return;
  if (conn->source != NULL)
    g_source_unref(conn->source);
  g_object_unref(conn->sock);
  vms_json_splitter_free(conn->split);
  g_queue_clear_full(&conn->inbox, queued_msg_free);
  g_mutex_clear(&conn->wlock);
  g_main_context_unref(conn->context);
  g_free(conn);
}

/* Sends one message; on failure the connection is shut down (the context
 * thread then sees EOF and closes it). Silently does nothing once closed. */
static void
conn_send(ServerConn *conn, JsonObject *msg)
{
  g_autofree char *line = vms_qmp_object_to_line(msg);
  g_autoptr(GError) error = NULL;

  g_mutex_lock(&conn->wlock);
  if (!conn->closed &&
      !vms_socket_send_all(conn->sock, line, strlen(line), SERVER_SEND_TIMEOUT_S, &error)) {
    g_debug("control socket: dropping a client: %s", error->message);
    conn->closed = TRUE;
    g_socket_shutdown(conn->sock, TRUE, TRUE, NULL);
  }
  g_mutex_unlock(&conn->wlock);
}

/* Forgets the connection, once. Any thread: the context thread at EOF, or
 * the thread that answered the last pending command of a client that had
 * already shut down its sending side. */
static void
conn_close(ServerConn *conn)
{
  VmsQmpServer *s = conn->server;

  if (!g_atomic_int_compare_and_exchange(&conn->finished, 0, 1))
    return;
  g_mutex_lock(&conn->wlock);
  conn->closed = TRUE;
  g_mutex_unlock(&conn->wlock);
  g_source_destroy(conn->source);
  g_socket_close(conn->sock, NULL);
  g_mutex_lock(&s->lock);
  s->conns = g_list_remove(s->conns, conn);
  g_mutex_unlock(&s->lock);
  conn_unref(conn);
}

static void conn_pump(ServerConn *conn);

/* The client will send no more. A client that half-closes after its last
 * command (`echo '{...}' | socat - UNIX-CONNECT:...`) still gets its
 * answers: the connection closes when its inbox is empty and the last
 * command is done (conn_pump). Context thread. */
static void
conn_eof(ServerConn *conn)
{
  g_mutex_lock(&conn->wlock);
  conn->eof = TRUE;
  g_mutex_unlock(&conn->wlock);
  conn_pump(conn);
}

static void
conn_reply_error(ServerConn *conn, JsonNode *id, const char *desc)
{
  g_autoptr(JsonObject) msg = json_object_new();
  JsonObject *err = json_object_new();

  json_object_set_string_member(err, "class", "GenericError");
  json_object_set_string_member(err, "desc", desc);
  json_object_set_object_member(msg, "error", err);
  if (id != NULL)
    json_object_set_member(msg, "id", json_node_copy(id));
  conn_send(conn, msg);
}

static void
conn_reply_empty(ServerConn *conn, JsonNode *id)
{
  g_autoptr(JsonObject) msg = json_object_new();

  json_object_set_object_member(msg, "return", json_object_new());
  if (id != NULL)
    json_object_set_member(msg, "id", json_node_copy(id));
  conn_send(conn, msg);
}

/* Checks the envelope as QEMU does; returns the command name or NULL after
 * setting @error. */
static const char *
check_envelope(JsonObject *obj, GError **error)
{
  g_autoptr(GList) members = json_object_get_members(obj);
  JsonNode *exec = json_object_get_member(obj, "execute");
  JsonNode *args = json_object_get_member(obj, "arguments");

  for (GList *l = members; l != NULL; l = l->next) {
    const char *m = l->data;
    if (strcmp(m, "execute") != 0 && strcmp(m, "arguments") != 0 && strcmp(m, "id") != 0) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "QMP input member '%s' is unexpected", m);
      return NULL;
    }
  }
  if (exec == NULL || json_node_get_value_type(exec) != G_TYPE_STRING) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                        exec == NULL ? "QMP input lacks member 'execute'"
                                     : "QMP input member 'execute' must be a string");
    return NULL;
  }
  if (args != NULL && !JSON_NODE_HOLDS_OBJECT(args)) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                        "QMP input member 'arguments' must be an object");
    return NULL;
  }
  return json_node_get_string(exec);
}

/* qmp_capabilities: the only command before negotiation, refused after. */
static void
conn_capabilities(ServerConn *conn, JsonNode *id, JsonObject *args)
{
  JsonArray *enable;

  if (conn->negotiated) {
    conn_reply_error(conn, id, "Capabilities negotiation is already complete, command ignored");
    return;
  }
  enable = vms_json_get_array(args, "enable");
  if ((enable != NULL && json_array_get_length(enable) > 0) ||
      (json_object_has_member(args, "enable") && enable == NULL)) {
    conn_reply_error(conn, id, "Capability is not supported");
    return;
  }
  conn->negotiated = TRUE;
  conn_reply_empty(conn, id);
}

static void
conn_handle(ServerConn *conn, const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) root = vms_qmp_parse_object(text, &error);
  g_autoptr(JsonObject) empty = json_object_new();
  JsonObject *obj, *args;
  JsonNode *id;
  const char *command;
  VmsQmpRequest *req;

  if (root == NULL) {
    conn_reply_error(conn, NULL, error->message);
    return;
  }
  obj = json_node_get_object(root);
  id = json_object_get_member(obj, "id");
  command = check_envelope(obj, &error);
  if (command == NULL) {
    conn_reply_error(conn, id, error->message);
    return;
  }
  args = json_object_has_member(obj, "arguments") ? json_object_get_object_member(obj, "arguments")
                                                  : empty;
  if (strcmp(command, "qmp_capabilities") == 0) {
    conn_capabilities(conn, id, args);
    return;
  }
  if (!conn->negotiated) {
    conn_reply_error(conn, id, "Expecting capabilities negotiation with 'qmp_capabilities'");
    return;
  }
  req = g_new0(VmsQmpRequest, 1);
  req->conn = conn_ref(conn);
  g_mutex_lock(&conn->wlock);
  conn->pending++;
  g_mutex_unlock(&conn->wlock);
  req->id = id != NULL ? json_node_copy(id) : NULL;
  conn->server->dispatch(req, command, args, conn->server->user_data);
}

static gboolean
conn_busy(ServerConn *conn)
{
  gboolean busy;

  g_mutex_lock(&conn->wlock);
  busy = conn->pending > 0;
  g_mutex_unlock(&conn->wlock);
  return busy;
}

/* Handles queued messages in order while no command is running; closes the
 * connection once the client has shut down and everything is answered.
 * Context thread; @conn may be gone when it returns. */
static void
conn_pump(ServerConn *conn)
{
  gboolean done;

  if (g_atomic_int_get(&conn->finished))
    return;
  while (!conn_busy(conn) && !g_queue_is_empty(&conn->inbox)) {
    QueuedMsg *m = g_queue_pop_head(&conn->inbox);

    if (m->text == NULL)
      conn_reply_error(conn, NULL, m->frame_error);
    else
      conn_handle(conn, m->text);
    queued_msg_free(m);
  }
  g_mutex_lock(&conn->wlock);
  done = conn->eof && conn->pending == 0 && g_queue_is_empty(&conn->inbox);
  g_mutex_unlock(&conn->wlock);
  if (done)
    conn_close(conn);
}

static gboolean
conn_pump_idle(gpointer user_data)
{
  conn_pump(user_data);
  return G_SOURCE_REMOVE;
}

/* Runs conn_pump soon on the connection's context (from any thread). */
static void
conn_schedule_pump(ServerConn *conn)
{
  GSource *src = g_idle_source_new();

  g_source_set_callback(src, conn_pump_idle, conn_ref(conn), (GDestroyNotify)conn_unref);
  g_source_attach(src, conn->context);
  g_source_unref(src);
}

/* Moves every complete message of the splitter into the inbox. */
static void
conn_queue_input(ServerConn *conn)
{
  for (;;) {
    g_autofree char *text = NULL;
    g_autoptr(GError) frame_error = NULL;
    QueuedMsg *m;

    if (!vms_json_splitter_next(conn->split, &text, &frame_error))
      break;
    if (g_queue_get_length(&conn->inbox) >= SERVER_MAX_QUEUED) {
      conn_reply_error(conn, NULL, "too many commands queued behind a running one; dropped");
      continue;
    }
    m = g_new0(QueuedMsg, 1);
    m->text = g_steal_pointer(&text);
    m->frame_error = m->text == NULL ? g_strdup(frame_error->message) : NULL;
    g_queue_push_tail(&conn->inbox, m);
  }
}

static gboolean
conn_on_readable(GSocket *sock, GIOCondition cond, gpointer user_data)
{
  ServerConn *conn = user_data;
  char buf[16384];
  g_autoptr(GError) error = NULL;
  gssize n = g_socket_receive_with_blocking(sock, buf, sizeof(buf), FALSE, NULL, &error);

  if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  if (n <= 0) {
    conn_eof(conn);
    return G_SOURCE_REMOVE;
  }
  vms_json_splitter_feed(conn->split, buf, (gsize)n);
  conn_ref(conn);
  conn_queue_input(conn);
  conn_pump(conn);
  conn_unref(conn);
  return G_SOURCE_CONTINUE;
}

static void
server_send_greeting(VmsQmpServer *s, ServerConn *conn)
{
  g_autoptr(JsonObject) msg = json_object_new();
  JsonObject *qmp = json_object_new();

  json_object_set_object_member(qmp, "version", json_object_ref(s->version));
  json_object_set_array_member(qmp, "capabilities", json_array_new());
  json_object_set_object_member(msg, "QMP", qmp);
  conn_send(conn, msg);
}

static gboolean
server_on_accept(GSocket *listener, GIOCondition cond, gpointer user_data)
{
  VmsQmpServer *s = user_data;
  g_autoptr(GSocket) sock = g_socket_accept(listener, NULL, NULL);
  ServerConn *conn;

  if (sock == NULL)
    return G_SOURCE_CONTINUE;
  if (!vms_unix_peer_is_us(sock)) {
    g_socket_close(sock, NULL);
    return G_SOURCE_CONTINUE;
  }
  conn = g_new0(ServerConn, 1);
  conn->ref = 1;
  conn->context = g_main_context_ref(s->context);
  conn->server = s;
  conn->sock = g_steal_pointer(&sock);
  conn->split = vms_json_splitter_new(SERVER_MAX_MESSAGE);
  g_mutex_init(&conn->wlock);
  g_mutex_lock(&s->lock);
  s->conns = g_list_prepend(s->conns, conn);
  g_mutex_unlock(&s->lock);
  server_send_greeting(s, conn);
  conn->source = g_socket_create_source(conn->sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback(conn->source, G_SOURCE_FUNC(conn_on_readable), conn, NULL);
  g_source_attach(conn->source, s->context);
  return G_SOURCE_CONTINUE;
}

VmsQmpServer *
vms_qmp_server_new(const char *path, GMainContext *context, JsonObject *version,
                   VmsQmpCommandFunc dispatch, gpointer user_data, GError **error)
{
  g_autoptr(GSocket) listener = vms_unix_listen(path, error);
  VmsQmpServer *s;

  if (listener == NULL)
    return NULL;
  g_socket_set_blocking(listener, FALSE);
  s = g_new0(VmsQmpServer, 1);
  s->context = g_main_context_ref(context);
  s->listener = g_steal_pointer(&listener);
  s->path = g_strdup(path);
  s->version = json_object_ref(version);
  s->dispatch = dispatch;
  s->user_data = user_data;
  g_mutex_init(&s->lock);
  s->accept_source = g_socket_create_source(s->listener, G_IO_IN, NULL);
  g_source_set_callback(s->accept_source, G_SOURCE_FUNC(server_on_accept), s, NULL);
  g_source_attach(s->accept_source, context);
  return s;
}

void
vms_qmp_server_free(VmsQmpServer *s)
{
  if (s == NULL)
    return;
  g_source_destroy(s->accept_source);
  g_source_unref(s->accept_source);
  while (s->conns != NULL) {
    ServerConn *conn = s->conns->data;
    conn_close(conn);
  }
  g_socket_close(s->listener, NULL);
  g_object_unref(s->listener);
  unlink(s->path);
  g_free(s->path);
  json_object_unref(s->version);
  g_main_context_unref(s->context);
  g_mutex_clear(&s->lock);
  g_free(s);
}

/* Any thread. The next queued command (or the close after EOF) is left to
 * the context thread. */
static void
request_finish(VmsQmpRequest *req, JsonObject *msg)
{
  if (req->id != NULL)
    json_object_set_member(msg, "id", json_node_copy(req->id));
  conn_send(req->conn, msg);
  g_mutex_lock(&req->conn->wlock);
  req->conn->pending--;
  g_mutex_unlock(&req->conn->wlock);
  conn_schedule_pump(req->conn);
  conn_unref(req->conn);
  if (req->id != NULL)
    json_node_unref(req->id);
  g_free(req);
}

void
vms_qmp_request_return(VmsQmpRequest *req, JsonNode *ret)
{
  g_autoptr(JsonObject) msg = json_object_new();

  if (ret == NULL) {
    ret = json_node_init(json_node_alloc(), JSON_NODE_OBJECT);
    json_node_take_object(ret, json_object_new());
  }
  json_object_set_member(msg, "return", ret);
  request_finish(req, msg);
}

void
vms_qmp_request_error(VmsQmpRequest *req, const char *format, ...)
{
  g_autoptr(JsonObject) msg = json_object_new();
  JsonObject *err = json_object_new();
  g_autofree char *desc = NULL;
  va_list ap;

  va_start(ap, format);
  desc = g_strdup_vprintf(format, ap);
  va_end(ap);
  json_object_set_string_member(err, "class", "GenericError");
  json_object_set_string_member(err, "desc", desc);
  json_object_set_object_member(msg, "error", err);
  request_finish(req, msg);
}

void
vms_qmp_request_gerror(VmsQmpRequest *req, const GError *error)
{
  vms_qmp_request_error(req, "%s", error->message);
}

void
vms_qmp_server_emit(VmsQmpServer *s, const char *event, JsonObject *data)
{
  g_autoptr(JsonObject) msg = json_object_new();
  JsonObject *ts = json_object_new();
  gint64 now = g_get_real_time();
  GList *targets = NULL;

  json_object_set_string_member(msg, "event", event);
  if (data != NULL)
    json_object_set_object_member(msg, "data", data);
  json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
  json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
  json_object_set_object_member(msg, "timestamp", ts);
  g_mutex_lock(&s->lock);
  for (GList *l = s->conns; l != NULL; l = l->next) {
    ServerConn *conn = l->data;
    if (conn->negotiated)
      targets = g_list_prepend(targets, conn_ref(conn));
  }
  g_mutex_unlock(&s->lock);
  for (GList *l = targets; l != NULL; l = l->next) {
    conn_send(l->data, msg);
    conn_unref(l->data);
  }
  g_list_free(targets);
}
