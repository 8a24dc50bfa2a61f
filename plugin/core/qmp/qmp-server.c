/* vmsnap core: the QMP server side (the plugin's control socket), on the
 * connection engine (conn.h).
 *
 * Order: as in QEMU, one connection's commands run one at a time, in the
 * order they arrived, each answered before the next starts (a client that
 * pipelines `snapshot-save` and `snapshot-info` gets the info of the
 * finished snapshot). While a command runs the socket is not read: a peer
 * that pipelines more is slowed down, never dropped. Replies and events
 * may be sent from any thread and never block it (conn.h).
 */
#include "qmp.h"

#include <string.h>

#include "conn.h"
#include "error.h"
#include "qmp-private.h"

/* What a refused peer reads before the close. */
#define REFUSAL_LINE                                                                         \
  "{\"error\": {\"class\": \"GenericError\", \"desc\": \"this socket does not accept peers " \
  "of your uid (see the plugin's allow-uids= and allow-gid=)\"}}\r\n"

struct _VmsQmpServer {
  VmsListener *listener;
  VmsDispatchFunc dispatch;
  gpointer user_data;
  GMutex lock;          /* guards version and waiting */
  JsonObject *version;  /* NULL until known */
  GList *waiting;       /* VmsConn* (a reference each) held until the greeting */
};

/* The front-end state of one connection. */
typedef struct {
  VmsQmpServer *server;
  VmsConn *conn; /* borrowed: the engine owns both */
  VmsJsonSplitter *split;
  gint negotiated; /* atomic: events go only to negotiated clients */
} ServerConn;

/* One command in flight: the reply goes to @conn with the id as sent. */
typedef struct {
  VmsConn *conn;
  char *id; /* the id's JSON text, nullable */
} Request;

static const char *
error_class(const GError *error)
{
  return g_error_matches(error, VMS_ERROR, VMS_ERROR_COMMAND_NOT_FOUND) ? "CommandNotFound"
                                                                        : "GenericError";
}

/* Sends @msg with the id as the client wrote it spliced in last (never
 * re-encoded: 1e400 or a 30-digit number comes back as sent). */
static void
send_msg(VmsConn *conn, JsonObject *msg, const char *id)
{
  g_autofree char *line = vms_qmp_object_to_line(msg);

  if (id != NULL) {
    /* line ends in "}\r\n" and @msg is never empty */
    g_autofree char *head = g_strndup(line, strlen(line) - 3);
    g_free(line);
    line = g_strdup_printf("%s,\"id\":%s}\r\n", head, id);
  }
  vms_conn_send(conn, line, strlen(line));
}

static void
send_error(VmsConn *conn, const char *id, const char *klass, const char *desc)
{
  g_autoptr(JsonObject) msg = json_object_new();
  JsonObject *err = json_object_new();

  json_object_set_string_member(err, "class", klass);
  json_object_set_string_member(err, "desc", desc);
  json_object_set_object_member(msg, "error", err);
  send_msg(conn, msg, id);
}

static void
send_return(VmsConn *conn, const char *id, JsonNode *ret)
{
  g_autoptr(JsonObject) msg = json_object_new();

  if (ret == NULL)
    ret = json_node_init_object(json_node_alloc(), json_object_new());
  json_object_set_member(msg, "return", ret);
  send_msg(conn, msg, id);
}

/* A command's answer (VmsReplyFunc), from any thread. */
static void
request_reply(JsonNode *ret, const GError *error, gpointer reply_data)
{
  Request *req = reply_data;

  if (error != NULL)
    send_error(req->conn, req->id, error_class(error), error->message);
  else
    send_return(req->conn, req->id, ret);
  vms_conn_release(req->conn);
  vms_conn_unref(req->conn);
  g_free(req->id);
  g_free(req);
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
run_capabilities(ServerConn *sc, const char *id, JsonObject *args)
{
  JsonArray *enable = vms_json_get_array(args, "enable");

  if (g_atomic_int_get(&sc->negotiated)) {
    send_error(sc->conn, id, "CommandNotFound",
               "Capabilities negotiation is already complete, command ignored");
    return;
  }
  if ((enable != NULL && json_array_get_length(enable) > 0) ||
      (json_object_has_member(args, "enable") && enable == NULL)) {
    send_error(sc->conn, id, "GenericError", "Capability is not supported");
    return;
  }
  g_atomic_int_set(&sc->negotiated, 1);
  send_return(sc->conn, id, NULL);
}

static void
handle_message(ServerConn *sc, const char *text)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) root = vms_qmp_parse_object(text, &error);
  g_autoptr(JsonObject) empty = json_object_new();
  g_autofree char *id = NULL;
  JsonObject *obj, *args;
  const char *command;
  Request *req;

  if (root == NULL) {
    send_error(sc->conn, NULL, "GenericError", error->message);
    return;
  }
  obj = json_node_get_object(root);
  id = json_object_has_member(obj, "id") ? vms_json_member_raw(text, "id") : NULL;
  command = check_envelope(obj, &error);
  if (command == NULL) {
    send_error(sc->conn, id, "GenericError", error->message);
    return;
  }
  args = json_object_has_member(obj, "arguments") ? json_object_get_object_member(obj, "arguments")
                                                  : empty;
  if (strcmp(command, "qmp_capabilities") == 0) {
    run_capabilities(sc, id, args);
    return;
  }
  if (!g_atomic_int_get(&sc->negotiated)) {
    send_error(sc->conn, id, "CommandNotFound",
               "Expecting capabilities negotiation with 'qmp_capabilities'");
    return;
  }
  req = g_new0(Request, 1);
  req->conn = vms_conn_ref(sc->conn);
  req->id = g_steal_pointer(&id);
  vms_conn_hold(sc->conn);
  sc->server->dispatch(command, args, request_reply, req, sc->server->user_data);
}

/* Runs the buffered messages in order until one is still running. */
static void
server_pump(VmsConn *conn, gpointer conn_user)
{
  ServerConn *sc = conn_user;

  while (!vms_conn_held(conn)) {
    g_autofree char *text = NULL;
    g_autoptr(GError) frame_error = NULL;

    if (!vms_json_splitter_next(sc->split, &text, &frame_error))
      return;
    if (text == NULL)
      send_error(conn, NULL, "GenericError", frame_error->message);
    else
      handle_message(sc, text);
  }
}

static void
server_input(VmsConn *conn, const char *data, gsize len, gpointer conn_user)
{
  ServerConn *sc = conn_user;

  vms_json_splitter_feed(sc->split, data, len);
  server_pump(conn, conn_user);
}

static void
send_greeting(VmsConn *conn, JsonObject *version)
{
  g_autoptr(JsonObject) msg = json_object_new();
  JsonObject *qmp = json_object_new();

  json_object_set_object_member(qmp, "version", json_object_ref(version));
  json_object_set_array_member(qmp, "capabilities", json_array_new());
  json_object_set_object_member(msg, "QMP", qmp);
  send_msg(conn, msg, NULL);
}

static gpointer
server_accepted(VmsConn *conn, gpointer listener_user)
{
  VmsQmpServer *s = listener_user;
  ServerConn *sc = g_new0(ServerConn, 1);

  sc->server = s;
  sc->conn = conn;
  sc->split = vms_json_splitter_new(VMS_QMP_MAX_MESSAGE);
  g_mutex_lock(&s->lock);
  if (s->version != NULL) {
    send_greeting(conn, s->version);
  } else {
    /* the greeting names QEMU's version, known once the plugin's own QMP
     * connection is up: the client waits (and is not read) until then */
    vms_conn_hold(conn);
    s->waiting = g_list_prepend(s->waiting, vms_conn_ref(conn));
  }
  g_mutex_unlock(&s->lock);
  return sc;
}

void
vms_qmp_server_set_version(VmsQmpServer *s, JsonObject *version)
{
  GList *waiting;

  g_mutex_lock(&s->lock);
  g_return_if_fail(s->version == NULL);
  s->version = json_object_ref(version);
  waiting = g_steal_pointer(&s->waiting);
  for (GList *l = waiting; l != NULL; l = l->next)
    send_greeting(l->data, version);
  g_mutex_unlock(&s->lock);
  for (GList *l = waiting; l != NULL; l = l->next) {
    vms_conn_release(l->data);
    vms_conn_unref(l->data);
  }
  g_list_free(waiting);
}

static void
server_conn_free(gpointer p)
{
  ServerConn *sc = p;

  vms_json_splitter_free(sc->split);
  g_free(sc);
}

static const VmsConnClass server_class = {
  .accepted = server_accepted,
  .input = server_input,
  .resume = server_pump,
  .free_user = server_conn_free,
};

VmsQmpServer *
vms_qmp_server_new(const char *path, GMainContext *context, JsonObject *version,
                   const VmsPeerPolicy *policy, VmsDispatchFunc dispatch, gpointer user_data,
                   GError **error)
{
  VmsQmpServer *s = g_new0(VmsQmpServer, 1);

  g_mutex_init(&s->lock);
  s->version = version != NULL ? json_object_ref(version) : NULL;
  s->dispatch = dispatch;
  s->user_data = user_data;
  s->listener = vms_listener_new(path, context, policy, REFUSAL_LINE, &server_class, s, error);
  if (s->listener == NULL) {
    vms_qmp_server_free(s);
    return NULL;
  }
  return s;
}

void
vms_qmp_server_free(VmsQmpServer *s)
{
  if (s == NULL)
    return;
  vms_listener_free(s->listener);
  g_list_free_full(s->waiting, (GDestroyNotify)vms_conn_unref);
  g_clear_pointer(&s->version, json_object_unref);
  g_mutex_clear(&s->lock);
  g_free(s);
}

static void
emit_one(VmsConn *conn, gpointer conn_user, gpointer data)
{
  ServerConn *sc = conn_user;

  if (sc != NULL && g_atomic_int_get(&sc->negotiated))
    vms_conn_send(conn, data, strlen(data));
}

void
vms_qmp_server_emit(VmsQmpServer *s, const char *event, JsonObject *data)
{
  g_autoptr(JsonObject) msg = json_object_new();
  JsonObject *ts = json_object_new();
  gint64 now = g_get_real_time();
  g_autofree char *line = NULL;

  json_object_set_string_member(msg, "event", event);
  if (data != NULL)
    json_object_set_object_member(msg, "data", data);
  json_object_set_int_member(ts, "seconds", now / G_USEC_PER_SEC);
  json_object_set_int_member(ts, "microseconds", now % G_USEC_PER_SEC);
  json_object_set_object_member(msg, "timestamp", ts);
  line = vms_qmp_object_to_line(msg);
  vms_listener_foreach(s->listener, emit_one, line);
}
