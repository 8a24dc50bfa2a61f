/* vmsnap core: the QMP wire protocol — framing, client, server, sockets.
 *
 * This file: the splitter, the listening sockets and the client; the server
 * is in qmp-server.c. Shared helpers are declared in qmp-private.h.
 */
#include "qmp.h"

#include <errno.h>
#include <glib-unix.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "qmp-private.h"
#include "util.h"

/* ======================= framing ======================= */

struct _VmsJsonSplitter {
  GString *buf;
  gsize max;
  gsize pos;        /* next byte to scan */
  gssize start;     /* start of the value being scanned, -1 between values */
  guint depth;
  gboolean in_str;
  gboolean esc;
  gboolean skipping; /* inside an oversized value: bytes are dropped */
};

VmsJsonSplitter *
vms_json_splitter_new(gsize max_message)
{
  VmsJsonSplitter *s = g_new0(VmsJsonSplitter, 1);

  s->buf = g_string_new(NULL);
  s->max = max_message;
  s->start = -1;
  return s;
}

void
vms_json_splitter_free(VmsJsonSplitter *s)
{
  if (s == NULL)
    return;
  g_string_free(s->buf, TRUE);
  g_free(s);
}

void
vms_json_splitter_feed(VmsJsonSplitter *s, const char *data, gsize len)
{
  g_string_append_len(s->buf, data, (gssize)len);
}

/* Drops the first @n buffered bytes. */
static void
splitter_consume(VmsJsonSplitter *s, gsize n)
{
  g_string_erase(s->buf, 0, (gssize)n);
  s->pos -= n;
  if (s->start >= 0)
    s->start -= (gssize)n;
}

static gboolean
is_json_space(char c)
{
  return c == ' ' || c == '\t' || c == '\r' || c == '\n';
}

/* Outside any value: skips whitespace; a run of other bytes that cannot start
 * a value is dropped and reported once. */
static gboolean
splitter_between_values(VmsJsonSplitter *s, char c, GError **error)
{
  if (is_json_space(c))
    return FALSE;
  if (c == '{' || c == '[') {
    s->depth = 1;
    s->start = (gssize)s->pos - 1;
    return FALSE;
  }
  /* One error per run of garbage: up to the end of the line or the next
   * thing that can start a value. */
  while (s->pos < s->buf->len) {
    char n = s->buf->str[s->pos];
    if (n == '\n' || n == '{' || n == '[')
      break;
    s->pos++;
  }
  splitter_consume(s, s->pos);
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "JSON parse error, expecting a JSON object (got '%c')", c);
  return TRUE;
}

gboolean
vms_json_splitter_next(VmsJsonSplitter *s, char **ret_text, GError **error)
{
  *ret_text = NULL;
  while (s->pos < s->buf->len) {
    char c = s->buf->str[s->pos++];

    if (s->depth == 0) {
      if (splitter_between_values(s, c, error))
        return TRUE;
      continue;
    }
    if (s->in_str) {
      if (s->esc)
        s->esc = FALSE;
      else if (c == '\\')
        s->esc = TRUE;
      else if (c == '"')
        s->in_str = FALSE;
    } else if (c == '"') {
      s->in_str = TRUE;
    } else if (c == '{' || c == '[') {
      s->depth++;
    } else if (c == '}' || c == ']') {
      s->depth--;
    }
    if (s->depth == 0) {
      gboolean was_skipping = s->skipping;
      if (!was_skipping)
        *ret_text = g_strndup(s->buf->str + s->start, s->pos - (gsize)s->start);
      s->skipping = FALSE;
      s->start = -1;
      splitter_consume(s, s->pos);
      if (!was_skipping)
        return TRUE;
      continue;
    }
    if (!s->skipping && s->pos - (gsize)s->start > s->max) {
      s->skipping = TRUE;
      s->start = 0;
      splitter_consume(s, s->pos);
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "JSON message too large (more than %" G_GSIZE_FORMAT " bytes)", s->max);
      return TRUE;
    }
  }
  if (s->skipping) {
    s->start = 0;
    splitter_consume(s, s->pos);
  }
  return FALSE;
}

/* ======================= sockets ======================= */

static gboolean
fill_sockaddr(const char *path, struct sockaddr_un *sa, GError **error)
{
  memset(sa, 0, sizeof(*sa));
  sa->sun_family = AF_UNIX;
  if (strlen(path) >= sizeof(sa->sun_path)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "socket path %s is too long (%zu bytes, at most %zu)", path, strlen(path),
                sizeof(sa->sun_path) - 1);
    return FALSE;
  }
  strcpy(sa->sun_path, path);
  return TRUE;
}

/* Removes a socket file at @path that nobody listens on; refuses any other
 * file and a socket that is in use. */
static gboolean
remove_stale_socket(const char *path, const struct sockaddr_un *sa, GError **error)
{
  struct stat st;
  vms_autofd probe = -1;

  if (lstat(path, &st) < 0)
    return errno == ENOENT ? TRUE : vms_set_error_errno(error, errno, "cannot stat %s", path);
  if (!S_ISSOCK(st.st_mode)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                "%s exists and is not a socket; refusing to replace it", path);
    return FALSE;
  }
  probe = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (probe < 0)
    return vms_set_error_errno(error, errno, "socket()");
  if (connect(probe, (const struct sockaddr *)sa, sizeof(*sa)) == 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_BUSY,
                "socket %s is in use by another process", path);
    return FALSE;
  }
  if (unlink(path) < 0 && errno != ENOENT)
    return vms_set_error_errno(error, errno, "cannot remove stale socket %s", path);
  return TRUE;
}

GSocket *
vms_unix_listen(const char *path, GError **error)
{
  struct sockaddr_un sa;
  vms_autofd fd = -1;
  GSocket *sock;

  if (!fill_sockaddr(path, &sa, error) || !remove_stale_socket(path, &sa, error))
    return NULL;
  fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0)
    return vms_set_error_errno(error, errno, "socket()"), NULL;
  if (bind(fd, (const struct sockaddr *)&sa, sizeof(sa)) < 0)
    return vms_set_error_errno(error, errno, "cannot bind socket %s", path), NULL;
  /* Nobody can connect before listen(), so fixing the mode here leaves no
   * window in which another user could get in, and needs no process-wide
   * umask change (QEMU's other threads run concurrently). */
  if (chmod(path, 0600) < 0 || listen(fd, 16) < 0) {
    int saved = errno;
    unlink(path);
    return vms_set_error_errno(error, saved, "cannot listen on %s", path), NULL;
  }
  sock = g_socket_new_from_fd(fd, error);
  if (sock == NULL) {
    unlink(path);
    return NULL;
  }
  g_steal_fd(&fd);
  return sock;
}

gboolean
vms_unix_peer_is_us(GSocket *conn)
{
  g_autoptr(GCredentials) cred = g_socket_get_credentials(conn, NULL);

  return cred != NULL && g_credentials_get_unix_user(cred, NULL) == getuid();
}

JsonNode *
vms_qmp_parse_object(const char *text, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new_immutable();
  g_autoptr(GError) local = NULL;
  JsonNode *root;

  if (!json_parser_load_from_data(parser, text, -1, &local)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "JSON parse error, %s",
                local->message);
    return NULL;
  }
  root = json_parser_get_root(parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root)) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                        "QMP input must be a JSON object");
    return NULL;
  }
  return json_node_ref(root);
}

JsonObject *
vms_json_get_object(JsonObject *obj, const char *name)
{
  JsonNode *n = obj != NULL ? json_object_get_member(obj, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

JsonArray *
vms_json_get_array(JsonObject *obj, const char *name)
{
  JsonNode *n = obj != NULL ? json_object_get_member(obj, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

char *
vms_qmp_object_to_line(JsonObject *obj)
{
  g_autoptr(JsonNode) node = json_node_init_object(json_node_alloc(), obj);
  g_autofree char *text = json_to_string(node, FALSE);

  return g_strconcat(text, "\r\n", NULL);
}

/* ======================= client ======================= */

#define CLIENT_MAX_MESSAGE (16u << 20)
#define CLIENT_HISTORY 256

typedef struct {
  guint64 seq;
  char *name;
  JsonObject *data;
} ClientEvent;

static void
client_event_free(gpointer p)
{
  ClientEvent *e = p;

  g_free(e->name);
  json_object_unref(e->data);
  g_free(e);
}

struct _VmsQmpClient {
  char *path;
  GMainContext *context;
  VmsQmpEventFunc on_event;
  gpointer user_data;

  GMutex connect_lock;  /* serialises connect_sync */
  GMutex write_lock;    /* one request on the wire at a time; guards fd */
  GMutex lock;          /* everything below */
  GCond cond;
  int fd;
  gboolean connected;
  gboolean dead;        /* was connected, then lost */
  GSource *source;
  VmsJsonSplitter *split;
  JsonObject *version;
  guint64 next_id;
  GHashTable *replies;  /* id -> JsonNode* reply, or NULL while pending */
  GQueue events;        /* ClientEvent, oldest first */
  guint64 seq;
};

/* A pending slot holds NULL until its reply arrives. */
static void
reply_free(gpointer p)
{
  if (p != NULL)
    json_node_unref(p);
}

VmsQmpClient *
vms_qmp_client_new(const char *path, GMainContext *context, VmsQmpEventFunc on_event,
                   gpointer user_data)
{
  VmsQmpClient *c = g_new0(VmsQmpClient, 1);

  c->path = g_strdup(path);
  c->context = g_main_context_ref(context);
  c->on_event = on_event;
  c->user_data = user_data;
  g_mutex_init(&c->connect_lock);
  g_mutex_init(&c->write_lock);
  g_mutex_init(&c->lock);
  g_cond_init(&c->cond);
  c->fd = -1;
  c->split = vms_json_splitter_new(CLIENT_MAX_MESSAGE);
  c->replies = g_hash_table_new_full(g_str_hash, g_str_equal, g_free, reply_free);
  g_queue_init(&c->events);
  return c;
}

void
vms_qmp_client_free(VmsQmpClient *c)
{
  if (c == NULL)
    return;
  if (c->source != NULL) {
    g_source_destroy(c->source);
    g_source_unref(c->source);
  }
  vms_close_fdp(&c->fd);
  g_queue_clear_full(&c->events, client_event_free);
  g_hash_table_unref(c->replies);
  if (c->version != NULL)
    json_object_unref(c->version);
  vms_json_splitter_free(c->split);
  g_main_context_unref(c->context);
  g_mutex_clear(&c->connect_lock);
  g_mutex_clear(&c->write_lock);
  g_mutex_clear(&c->lock);
  g_cond_clear(&c->cond);
  g_free(c->path);
  g_free(c);
}

/* Connects to @path, retrying on ENOENT/ECONNREFUSED until @deadline. */
static int
client_connect_retry(const char *path, gint64 deadline, GError **error)
{
  struct sockaddr_un sa;

  if (!fill_sockaddr(path, &sa, error))
    return -1;
  for (;;) {
    vms_autofd fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return vms_set_error_errno(error, errno, "socket()"), -1;
    if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0)
      return g_steal_fd(&fd);
    if ((errno != ENOENT && errno != ECONNREFUSED) || g_get_monotonic_time() >= deadline)
      return vms_set_error_errno(error, errno, "cannot connect to QEMU's QMP socket %s", path), -1;
    g_usleep(20 * 1000);
  }
}

/* Reads from the (blocking) socket until one JSON object is complete. */
static JsonNode *
client_read_one(VmsQmpClient *c, gint64 deadline, GError **error)
{
  for (;;) {
    g_autofree char *text = NULL;
    char buf[4096];
    struct pollfd p = { .fd = c->fd, .events = POLLIN };
    int left = (int)MAX(0, (deadline - g_get_monotonic_time()) / 1000);
    ssize_t n;

    if (!vms_json_splitter_next(c->split, &text, error))
      ;
    else if (text == NULL)
      return NULL;
    else
      return vms_qmp_parse_object(text, error);
    if (poll(&p, 1, left) == 0) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "timed out waiting for QEMU on %s", c->path);
      return NULL;
    }
    n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "QEMU closed the QMP socket %s", c->path);
      return NULL;
    }
    if (n > 0)
      vms_json_splitter_feed(c->split, buf, (gsize)n);
  }
}

static gboolean client_on_readable(gint fd, GIOCondition cond, gpointer user_data);

/* Greeting and capabilities negotiation, on the caller's thread. */
static gboolean
client_handshake(VmsQmpClient *c, gint64 deadline, GError **error)
{
  static const char caps[] = "{\"execute\": \"qmp_capabilities\"}\r\n";
  g_autoptr(JsonNode) greeting = client_read_one(c, deadline, error);
  g_autoptr(JsonNode) reply = NULL;
  JsonObject *qmp;

  if (greeting == NULL)
    return FALSE;
  qmp = vms_json_get_object(json_node_get_object(greeting), "QMP");
  if (qmp == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "%s sent no QMP greeting", c->path);
    return FALSE;
  }
  if (vms_json_get_object(qmp, "version") != NULL)
    c->version = json_object_ref(vms_json_get_object(qmp, "version"));
  if (vms_write_full(c->fd, caps, sizeof(caps) - 1) < 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "QEMU closed the QMP socket %s", c->path);
    return FALSE;
  }
  reply = client_read_one(c, deadline, error);
  if (reply == NULL)
    return FALSE;
  if (!json_object_has_member(json_node_get_object(reply), "return")) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "qmp_capabilities refused on %s", c->path);
    return FALSE;
  }
  return TRUE;
}

gboolean
vms_qmp_client_connect_sync(VmsQmpClient *c, guint timeout_ms, GError **error)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&c->connect_lock);
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;

  if (c->connected)
    return TRUE;
  c->fd = client_connect_retry(c->path, deadline, error);
  if (c->fd < 0)
    return FALSE;
  if (!client_handshake(c, deadline, error)) {
    vms_close_fdp(&c->fd);
    return FALSE;
  }
  g_mutex_lock(&c->lock);
  c->connected = TRUE;
  c->dead = FALSE;
  g_mutex_unlock(&c->lock);
  c->source = g_unix_fd_source_new(c->fd, G_IO_IN | G_IO_HUP | G_IO_ERR);
  g_source_set_callback(c->source, G_SOURCE_FUNC(client_on_readable), c, NULL);
  g_source_attach(c->source, c->context);
  return TRUE;
}

JsonObject *
vms_qmp_client_get_version(VmsQmpClient *c)
{
  return c->version;
}

/* Files one message from QEMU: an event into the history (and the callback),
 * a reply to its waiter. Called on the context thread without c->lock. */
static void
client_dispatch(VmsQmpClient *c, JsonObject *msg)
{
  if (json_object_has_member(msg, "event")) {
    ClientEvent *e = g_new0(ClientEvent, 1);
    JsonObject *data = vms_json_get_object(msg, "data");

    e->name = g_strdup(json_object_get_string_member_with_default(msg, "event", ""));
    e->data = data != NULL ? json_object_ref(data) : json_object_new();
    g_mutex_lock(&c->lock);
    e->seq = ++c->seq;
    g_queue_push_tail(&c->events, e);
    if (c->events.length > CLIENT_HISTORY)
      client_event_free(g_queue_pop_head(&c->events));
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
    if (c->on_event != NULL)
      c->on_event(e->name, data, c->user_data);
    return;
  }
  if (json_object_has_member(msg, "id")) {
    const char *id = json_object_get_string_member_with_default(msg, "id", "");
    g_mutex_lock(&c->lock);
    if (g_hash_table_contains(c->replies, id)) {
      g_hash_table_replace(c->replies, g_strdup(id),
                           json_node_init_object(json_node_alloc(), msg));
      g_cond_broadcast(&c->cond);
    }
    g_mutex_unlock(&c->lock);
  }
}

static gboolean
client_on_readable(gint fd, GIOCondition cond, gpointer user_data)
{
  VmsQmpClient *c = user_data;
  char buf[65536];
  ssize_t n = recv(fd, buf, sizeof(buf), MSG_DONTWAIT);

  if (n < 0 && (errno == EAGAIN || errno == EINTR))
    return G_SOURCE_CONTINUE;
  if (n <= 0) {
    g_mutex_lock(&c->lock);
    c->dead = TRUE;
    g_cond_broadcast(&c->cond);
    g_mutex_unlock(&c->lock);
    return G_SOURCE_REMOVE;
  }
  vms_json_splitter_feed(c->split, buf, (gsize)n);
  for (;;) {
    g_autofree char *text = NULL;
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) node = NULL;

    if (!vms_json_splitter_next(c->split, &text, &error))
      break;
    if (text == NULL || (node = vms_qmp_parse_object(text, &error)) == NULL) {
      g_debug("QMP from QEMU: %s", error->message);
      continue;
    }
    client_dispatch(c, json_node_get_object(node));
  }
  return G_SOURCE_CONTINUE;
}

/* Writes @line with @pass_fd attached (SCM_RIGHTS) when it is >= 0. */
static int
client_send(int fd, const char *line, int pass_fd)
{
  gsize len = strlen(line), done = 0;

  while (done < len) {
    struct iovec iov = { .iov_base = (char *)line + done, .iov_len = len - done };
    union {
      char buf[CMSG_SPACE(sizeof(int))];
      struct cmsghdr align;
    } u;
    struct msghdr msg = { .msg_iov = &iov, .msg_iovlen = 1 };
    ssize_t n;

    if (pass_fd >= 0 && done == 0) {
      struct cmsghdr *cm;
      memset(&u, 0, sizeof(u));
      msg.msg_control = u.buf;
      msg.msg_controllen = sizeof(u.buf);
      cm = CMSG_FIRSTHDR(&msg);
      cm->cmsg_level = SOL_SOCKET;
      cm->cmsg_type = SCM_RIGHTS;
      cm->cmsg_len = CMSG_LEN(sizeof(int));
      memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
    }
    n = sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0)
      return -errno;
    done += (gsize)n;
  }
  return 0;
}

/* Waits under c->lock for the reply to @id; NULL on timeout or disconnect. */
static JsonNode *
client_wait_reply(VmsQmpClient *c, const char *id, const char *command, gint64 deadline,
                  GError **error)
{
  JsonNode *reply = NULL;

  g_mutex_lock(&c->lock);
  while (!c->dead && g_hash_table_lookup(c->replies, id) == NULL) {
    if (!g_cond_wait_until(&c->cond, &c->lock, deadline))
      break;
  }
  reply = g_hash_table_lookup(c->replies, id);
  if (reply != NULL)
    json_node_ref(reply);
  g_hash_table_remove(c->replies, id);
  g_mutex_unlock(&c->lock);
  if (reply == NULL)
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "QMP %s: %s", command,
                c->dead ? "QEMU closed the QMP connection" : "timed out waiting for the reply");
  return reply;
}

JsonNode *
vms_qmp_client_execute(VmsQmpClient *c, const char *command, JsonObject *arguments,
                       int pass_fd, guint timeout_ms, GError **error)
{
  g_autoptr(JsonObject) req = json_object_new();
  g_autoptr(JsonNode) reply = NULL;
  g_autofree char *id = NULL;
  g_autofree char *line = NULL;
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
  JsonObject *obj, *err;
  int r;

  g_mutex_lock(&c->lock);
  if (!c->connected || c->dead) {
    g_mutex_unlock(&c->lock);
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "QMP %s: not connected to QEMU", command);
    return NULL;
  }
  id = g_strdup_printf("vmsnap-%" G_GUINT64_FORMAT, ++c->next_id);
  g_hash_table_insert(c->replies, g_strdup(id), NULL);
  g_mutex_unlock(&c->lock);

  json_object_set_string_member(req, "execute", command);
  if (arguments != NULL)
    json_object_set_object_member(req, "arguments", json_object_ref(arguments));
  json_object_set_string_member(req, "id", id);
  line = vms_qmp_object_to_line(req);
  g_mutex_lock(&c->write_lock);
  r = client_send(c->fd, line, pass_fd);
  g_mutex_unlock(&c->write_lock);
  if (r < 0) {
    g_mutex_lock(&c->lock);
    g_hash_table_remove(c->replies, id);
    g_mutex_unlock(&c->lock);
    return vms_set_error_errno(error, -r, "QMP %s: cannot send to QEMU", command), NULL;
  }
  reply = client_wait_reply(c, id, command, deadline, error);
  if (reply == NULL)
    return NULL;
  obj = json_node_get_object(reply);
  if (json_object_has_member(obj, "return"))
    return json_node_copy(json_object_get_member(obj, "return"));
  err = vms_json_get_object(obj, "error");
  g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "QMP %s: %s", command,
              err != NULL ? json_object_get_string_member_with_default(err, "desc", "error")
                          : "malformed reply");
  return NULL;
}

guint64
vms_qmp_client_event_seq(VmsQmpClient *c)
{
  guint64 seq;

  g_mutex_lock(&c->lock);
  seq = c->seq;
  g_mutex_unlock(&c->lock);
  return seq;
}

/* Under c->lock: the oldest matching event newer than @after_seq, or NULL. */
static ClientEvent *
client_find_event(VmsQmpClient *c, guint64 after_seq, const char *event, VmsQmpEventMatch match,
                  gpointer user_data)
{
  for (GList *l = c->events.head; l != NULL; l = l->next) {
    ClientEvent *e = l->data;
    if (e->seq > after_seq && strcmp(e->name, event) == 0 &&
        (match == NULL || match(e->name, e->data, user_data)))
      return e;
  }
  return NULL;
}

JsonObject *
vms_qmp_client_wait_event(VmsQmpClient *c, guint64 after_seq, const char *event,
                          VmsQmpEventMatch match, gpointer user_data, guint timeout_ms,
                          GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&c->lock);
  ClientEvent *e;

  while ((e = client_find_event(c, after_seq, event, match, user_data)) == NULL) {
    if (c->dead) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP,
                  "QEMU closed the QMP connection while waiting for %s", event);
      return NULL;
    }
    if (!g_cond_wait_until(&c->cond, &c->lock, deadline)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "timed out after %u ms waiting for %s",
                  timeout_ms, event);
      return NULL;
    }
  }
  return json_object_ref(e->data);
}

