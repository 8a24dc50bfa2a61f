/* vmsnap core: the QMP client — the plugin's connection to QEMU's QMP.
 *
 * Threading: the handshake runs on the caller's thread; afterwards reading
 * happens on the client's GMainContext, and execute/wait_event block other
 * threads on a GCond until the reply or event has been filed. Writes are
 * serialised by write_lock so a getfd's SCM_RIGHTS travels with its own
 * command.
 *
 * Lifetime: the reading source holds a reference of its own, so a client
 * freed on one thread while its context thread is inside client_on_readable
 * stays allocated until that call returns (the last reference tears it
 * down). vms_qmp_client_free() marks the client closing under c->lock,
 * waits for a dispatch already past that check, and only then returns, so
 * @on_event is never called after free.
 */
#include "qmp.h"

#include <errno.h>
#include <glib-unix.h>
#include <poll.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "error.h"
#include "qmp-private.h"
#include "util.h"

#define CLIENT_MAX_MESSAGE (16u << 20)
#define CLIENT_HISTORY 256

typedef struct {
  guint64 seq;
  char *name;
  JsonObject *data;
  gint64 timestamp_us; /* QEMU's "timestamp" (wall clock), 0 if absent */
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
  gatomicrefcount refs; /* the owner's and the reading source's */
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
  gboolean closing;     /* vms_qmp_client_free() has begun: read nothing more */
  guint dispatching;    /* client_on_readable calls past the closing check */
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

  g_atomic_ref_count_init(&c->refs);
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

static VmsQmpClient *
client_ref(VmsQmpClient *c)
{
  g_atomic_ref_count_inc(&c->refs);
  return c;
}

/* Drops one reference; the last one releases everything. */
static void
client_unref(gpointer p)
{
  VmsQmpClient *c = p;

  if (!g_atomic_ref_count_dec(&c->refs))
    return;
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

void
vms_qmp_client_free(VmsQmpClient *c)
{
  if (c == NULL)
    return;
  g_mutex_lock(&c->lock);
  c->closing = TRUE;
  /* From the context thread itself (an @on_event that frees) the dispatch
   * in progress is our caller: waiting would never end. */
  if (!g_main_context_is_owner(c->context))
    while (c->dispatching > 0)
      g_cond_wait(&c->cond, &c->lock);
  g_mutex_unlock(&c->lock);
  if (c->source != NULL) {
    g_source_destroy(c->source);
    g_source_unref(c->source);
    c->source = NULL;
  }
  client_unref(c);
}

/* Connects to @path, retrying on ENOENT/ECONNREFUSED until @deadline. */
static int
client_connect_retry(const char *path, gint64 deadline, GError **error)
{
  struct sockaddr_un sa;

  if (!vms_qmp_fill_sockaddr(path, &sa, error))
    return -1;
  for (;;) {
    vms_autofd fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0)
      return vms_set_error_errno(error, errno, "socket()"), -1;
    if (connect(fd, (const struct sockaddr *)&sa, sizeof(sa)) == 0)
      return g_steal_fd(&fd);
    if ((errno != ENOENT && errno != ECONNREFUSED) || g_get_monotonic_time() >= deadline)
      return vms_set_error_errno(error, errno, "cannot connect to the QMP socket %s", path), -1;
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

    if (vms_json_splitter_next(c->split, &text, error))
      return text != NULL ? vms_qmp_parse_object(text, error) : NULL;
    if (poll(&p, 1, left) == 0) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "timed out waiting for the QMP server on %s", c->path);
      return NULL;
    }
    n = recv(c->fd, buf, sizeof(buf), MSG_DONTWAIT);
    if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "the QMP server closed %s", c->path);
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
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "the QMP server closed %s", c->path);
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
  g_source_set_callback(c->source, G_SOURCE_FUNC(client_on_readable), client_ref(c),
                        client_unref);
  g_source_attach(c->source, c->context);
  return TRUE;
}

JsonObject *
vms_qmp_client_get_version(VmsQmpClient *c)
{
  return c->version;
}

/* The event's {"seconds", "microseconds"} as microseconds since the epoch. */
static gint64
event_timestamp_us(JsonObject *msg)
{
  JsonObject *ts = vms_json_get_object(msg, "timestamp");

  if (ts == NULL)
    return 0;
  return json_object_get_int_member_with_default(ts, "seconds", 0) * G_USEC_PER_SEC +
         json_object_get_int_member_with_default(ts, "microseconds", 0);
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
    e->timestamp_us = event_timestamp_us(msg);
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

/* Reads what QEMU sent and files each complete message. */
static gboolean
client_read(VmsQmpClient *c, int fd)
{
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

static gboolean
client_on_readable(gint fd, GIOCondition cond, gpointer user_data)
{
  VmsQmpClient *c = user_data;
  gboolean again;

  g_mutex_lock(&c->lock);
  if (c->closing) {
    g_mutex_unlock(&c->lock);
    return G_SOURCE_REMOVE;
  }
  c->dispatching++;
  g_mutex_unlock(&c->lock);
  again = client_read(c, fd);
  g_mutex_lock(&c->lock);
  c->dispatching--;
  g_cond_broadcast(&c->cond);
  g_mutex_unlock(&c->lock);
  return again;
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
                c->dead ? "the QMP server closed the connection" : "timed out waiting for the reply");
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
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "QMP %s: not connected", command);
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
    return vms_set_error_errno(error, -r, "QMP %s: cannot send", command), NULL;
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
vms_qmp_client_wait_event_at(VmsQmpClient *c, guint64 after_seq, const char *event,
                             VmsQmpEventMatch match, gpointer user_data, guint timeout_ms,
                             gint64 *ret_timestamp_us, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)timeout_ms * 1000;
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&c->lock);
  ClientEvent *e;

  while ((e = client_find_event(c, after_seq, event, match, user_data)) == NULL) {
    if (c->dead) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP,
                  "the QMP server closed the connection while waiting for %s", event);
      return NULL;
    }
    if (!g_cond_wait_until(&c->cond, &c->lock, deadline)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "timed out after %u ms waiting for %s",
                  timeout_ms, event);
      return NULL;
    }
  }
  if (ret_timestamp_us != NULL)
    *ret_timestamp_us = e->timestamp_us;
  return json_object_ref(e->data);
}

JsonObject *
vms_qmp_client_wait_event(VmsQmpClient *c, guint64 after_seq, const char *event,
                          VmsQmpEventMatch match, gpointer user_data, guint timeout_ms,
                          GError **error)
{
  return vms_qmp_client_wait_event_at(c, after_seq, event, match, user_data, timeout_ms, NULL,
                                      error);
}

gboolean
vms_qmp_client_is_closed(VmsQmpClient *c)
{
  g_autoptr(GMutexLocker) locker = g_mutex_locker_new(&c->lock);

  return c->dead;
}
