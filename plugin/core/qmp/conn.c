/* vmsnap core: the connection engine (conn.h) — one listener/connection
 * state machine for the control socket and the monitor console. */
#include "conn.h"

#include <errno.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "qmp.h"

/* How long accepting pauses when the process is out of file descriptors:
 * the backlog keeps the waiting peers meanwhile. */
#define ACCEPT_PAUSE_MS 200
#define READ_CHUNK 16384

struct _VmsListener {
  GMainContext *context;
  GSocket *sock;
  GSource *accept_source; /* NULL while paused at the fd limit */
  GSource *pause_source;
  char *path;
  VmsPeerPolicy policy;
  char *refusal;
  const VmsConnClass *klass;
  gpointer user;
  GMutex lock;            /* guards conns */
  GList *conns;           /* VmsConn*, one reference each */
};

struct _VmsConn {
  gint ref;
  VmsListener *listener;  /* context thread, while not finished */
  const VmsConnClass *klass;
  GMainContext *context;
  GSocket *sock;
  gpointer user;
  GSource *in_source;     /* context thread; NULL while held or after EOF */
  gboolean eof;           /* context thread */
  gint held;              /* atomic */
  gint finished;          /* atomic: the final close ran */
  GMutex lock;            /* guards everything below */
  GByteArray *out;
  GSource *out_source;
  gboolean closed;        /* nothing more is sent */
  gboolean closing;       /* close once the output is flushed */
  gboolean throttled;     /* unread output above the high mark: input waits */
};

/* ---- connections ---- */

VmsConn *
vms_conn_ref(VmsConn *conn)
{
  g_atomic_int_inc(&conn->ref);
  return conn;
}

void
vms_conn_unref(VmsConn *conn)
{
  if (!g_atomic_int_dec_and_test(&conn->ref))
    return;
  if (conn->user != NULL && conn->klass->free_user != NULL)
    conn->klass->free_user(conn->user);
  g_object_unref(conn->sock);
  g_byte_array_unref(conn->out);
  g_mutex_clear(&conn->lock);
  g_main_context_unref(conn->context);
  g_free(conn);
}

static void
destroy_source(GSource **src)
{
  if (*src == NULL)
    return;
  g_source_destroy(*src);
  g_clear_pointer(src, g_source_unref);
}

/* The end, once: stop both sources, close the socket, forget it. Context
 * thread (or the listener's free). */
static void
conn_finish(VmsConn *conn)
{
  VmsListener *l = conn->listener;

  if (!g_atomic_int_compare_and_exchange(&conn->finished, 0, 1))
    return;
  g_mutex_lock(&conn->lock);
  conn->closed = TRUE;
  destroy_source(&conn->out_source);
  g_mutex_unlock(&conn->lock);
  destroy_source(&conn->in_source);
  g_socket_close(conn->sock, NULL);
  g_mutex_lock(&l->lock);
  l->conns = g_list_remove(l->conns, conn);
  g_mutex_unlock(&l->lock);
  vms_conn_unref(conn);
}

static gboolean
finish_idle(gpointer user_data)
{
  conn_finish(user_data);
  return G_SOURCE_REMOVE;
}

static void
schedule(VmsConn *conn, GSourceFunc func)
{
  GSource *src = g_idle_source_new();

  g_source_set_callback(src, func, vms_conn_ref(conn), (GDestroyNotify)vms_conn_unref);
  g_source_attach(src, conn->context);
  g_source_unref(src);
}

/* Writes what the peer takes now. Under conn->lock. FALSE after a hard
 * error (the connection is then closed). */
static gboolean
flush_locked(VmsConn *conn)
{
  while (conn->out->len > 0) {
    g_autoptr(GError) error = NULL;
    gssize n = g_socket_send_with_blocking(conn->sock, (const char *)conn->out->data,
                                           conn->out->len, FALSE, NULL, &error);
    if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
      return TRUE;
    if (n <= 0) {
      g_debug("socket: dropping a peer: %s", error != NULL ? error->message : "closed");
      return FALSE;
    }
    g_byte_array_remove_range(conn->out, 0, (guint)n);
  }
  return TRUE;
}

/* Stops sending and lets the context thread finish the connection. */
static void
drop_locked(VmsConn *conn)
{
  conn->closed = TRUE;
  g_byte_array_set_size(conn->out, 0);
  g_socket_shutdown(conn->sock, TRUE, TRUE, NULL);
  schedule(conn, finish_idle);
}

static gboolean release_idle(gpointer user_data);

static gboolean
on_writable(GSocket *sock, GIOCondition cond, gpointer user_data)
{
  VmsConn *conn = user_data;
  gboolean ok, finish, keep, unthrottle;

  g_mutex_lock(&conn->lock);
  ok = conn->closed || flush_locked(conn);
  if (!ok)
    drop_locked(conn);
  finish = ok && conn->closing && conn->out->len == 0;
  keep = ok && conn->out->len > 0;
  unthrottle = conn->throttled && conn->out->len <= VMS_CONN_OUTPUT_HIGH;
  if (unthrottle)
    conn->throttled = FALSE;
  if (!keep)
    g_clear_pointer(&conn->out_source, g_source_unref);
  g_mutex_unlock(&conn->lock);
  if (finish)
    schedule(conn, finish_idle);
  else if (unthrottle)
    schedule(conn, release_idle);
  return keep ? G_SOURCE_CONTINUE : G_SOURCE_REMOVE;
}

void
vms_conn_send(VmsConn *conn, const char *data, gsize len)
{
  g_mutex_lock(&conn->lock);
  if (!conn->closed) {
    g_byte_array_append(conn->out, (const guint8 *)data, (guint)len);
    if (!flush_locked(conn) || conn->out->len > VMS_CONN_OUTPUT_CAP) {
      if (conn->out->len > VMS_CONN_OUTPUT_CAP)
        g_debug("socket: dropping a peer that left %u bytes unread", conn->out->len);
      drop_locked(conn);
    } else if (conn->out->len > 0) {
      conn->throttled = conn->throttled || conn->out->len > VMS_CONN_OUTPUT_HIGH;
      if (conn->out_source == NULL) {
        conn->out_source = g_socket_create_source(conn->sock, G_IO_OUT, NULL);
        g_source_set_callback(conn->out_source, G_SOURCE_FUNC(on_writable), vms_conn_ref(conn),
                              (GDestroyNotify)vms_conn_unref);
        g_source_attach(conn->out_source, conn->context);
      }
    }
  }
  g_mutex_unlock(&conn->lock);
}

void
vms_conn_close(VmsConn *conn)
{
  gboolean now;

  g_mutex_lock(&conn->lock);
  conn->closing = TRUE;
  now = conn->closed || conn->out->len == 0;
  g_mutex_unlock(&conn->lock);
  if (now)
    schedule(conn, finish_idle);
}

static gboolean on_readable(GSocket *sock, GIOCondition cond, gpointer user_data);

static void
start_reading(VmsConn *conn)
{
  if (conn->in_source != NULL || conn->eof || g_atomic_int_get(&conn->finished))
    return;
  conn->in_source = g_socket_create_source(conn->sock, G_IO_IN | G_IO_HUP | G_IO_ERR, NULL);
  g_source_set_callback(conn->in_source, G_SOURCE_FUNC(on_readable), conn, NULL);
  g_source_attach(conn->in_source, conn->context);
}

/* After input or a release: read on unless held; close a peer that sent
 * everything once nothing runs. */
static void
conn_settle(VmsConn *conn)
{
  if (g_atomic_int_get(&conn->finished))
    return;
  if (vms_conn_held(conn)) {
    destroy_source(&conn->in_source);
    return;
  }
  if (conn->eof)
    vms_conn_close(conn);
  else
    start_reading(conn);
}

static gboolean
on_readable(GSocket *sock, GIOCondition cond, gpointer user_data)
{
  VmsConn *conn = user_data;
  const VmsConnClass *k = conn->klass;
  char buf[READ_CHUNK];
  g_autoptr(GError) error = NULL;
  gssize n = g_socket_receive_with_blocking(sock, buf, sizeof(buf), FALSE, NULL, &error);

  if (n < 0 && g_error_matches(error, G_IO_ERROR, G_IO_ERROR_WOULD_BLOCK))
    return G_SOURCE_CONTINUE;
  vms_conn_ref(conn);
  if (n <= 0) {
    destroy_source(&conn->in_source);
    conn->eof = TRUE;
    if (k->eof != NULL)
      k->eof(conn, conn->user);
  } else {
    k->input(conn, buf, (gsize)n, conn->user);
  }
  conn_settle(conn);
  vms_conn_unref(conn);
  /* conn_settle removed the source if it must stop; returning CONTINUE
   * for a destroyed source is harmless. */
  return G_SOURCE_CONTINUE;
}

void
vms_conn_hold(VmsConn *conn)
{
  g_atomic_int_inc(&conn->held);
}

gboolean
vms_conn_held(VmsConn *conn)
{
  gboolean throttled;

  g_mutex_lock(&conn->lock);
  throttled = conn->throttled;
  g_mutex_unlock(&conn->lock);
  return throttled || g_atomic_int_get(&conn->held) > 0;
}

static gboolean
release_idle(gpointer user_data)
{
  VmsConn *conn = user_data;

  if (g_atomic_int_get(&conn->finished))
    return G_SOURCE_REMOVE;
  if (conn->klass->resume != NULL)
    conn->klass->resume(conn, conn->user);
  conn_settle(conn);
  return G_SOURCE_REMOVE;
}

void
vms_conn_release(VmsConn *conn)
{
  g_return_if_fail(g_atomic_int_get(&conn->held) > 0);
  g_atomic_int_add(&conn->held, -1);
  schedule(conn, release_idle);
}

/* ---- the listener ---- */

static void
refuse(VmsListener *l, GSocket *sock, guint32 uid)
{
  /* A fresh socket's buffer is empty: the short line goes out at once. */
  g_socket_send_with_blocking(sock, l->refusal, strlen(l->refusal), FALSE, NULL, NULL);
  g_socket_close(sock, NULL);
  if (l->policy.refused != NULL)
    l->policy.refused(l->path, uid, l->policy.refused_data);
}

static void
add_conn(VmsListener *l, GSocket *sock)
{
  VmsConn *conn = g_new0(VmsConn, 1);

  conn->ref = 1;
  conn->listener = l;
  conn->klass = l->klass;
  conn->context = g_main_context_ref(l->context);
  conn->sock = g_object_ref(sock);
  conn->out = g_byte_array_new();
  g_mutex_init(&conn->lock);
  g_mutex_lock(&l->lock);
  l->conns = g_list_prepend(l->conns, conn);
  g_mutex_unlock(&l->lock);
  conn->user = l->klass->accepted(conn, l->user);
  start_reading(conn);
}

static gboolean on_accept(GSocket *sock, GIOCondition cond, gpointer user_data);

static void
listen_again(VmsListener *l)
{
  l->accept_source = g_socket_create_source(l->sock, G_IO_IN, NULL);
  g_source_set_callback(l->accept_source, G_SOURCE_FUNC(on_accept), l, NULL);
  g_source_attach(l->accept_source, l->context);
}

static gboolean
on_accept_resume(gpointer user_data)
{
  VmsListener *l = user_data;

  g_clear_pointer(&l->pause_source, g_source_unref);
  listen_again(l);
  return G_SOURCE_REMOVE;
}

/* Out of file descriptors: the pending peer stays in the backlog; trying
 * again at once would only spin, so accepting pauses a little. */
static void
pause_accepting(VmsListener *l)
{
  destroy_source(&l->accept_source);
  l->pause_source = g_timeout_source_new(ACCEPT_PAUSE_MS);
  g_source_set_callback(l->pause_source, on_accept_resume, l, NULL);
  g_source_attach(l->pause_source, l->context);
}

static gboolean
on_accept(GSocket *listener, GIOCondition cond, gpointer user_data)
{
  VmsListener *l = user_data;
  g_autoptr(GError) error = NULL;
  g_autoptr(GSocket) sock = g_socket_accept(listener, NULL, &error);
  guint32 uid = G_MAXUINT32, gid = G_MAXUINT32;
  gint pid = 0;

  if (sock == NULL) {
    if (g_error_matches(error, G_IO_ERROR, G_IO_ERROR_TOO_MANY_OPEN_FILES) ||
        g_error_matches(error, G_IO_ERROR, G_IO_ERROR_NO_SPACE)) {
      g_debug("socket %s: %s; accepting again in %d ms", l->path, error->message,
              ACCEPT_PAUSE_MS);
      pause_accepting(l);
      return G_SOURCE_REMOVE;
    }
    return G_SOURCE_CONTINUE;
  }
  g_socket_set_blocking(sock, FALSE);
  if (!vms_socket_peer_cred(sock, &uid, &gid, &pid) || !vms_peer_policy_allows(&l->policy, uid, gid, pid)) {
    refuse(l, sock, uid);
    return G_SOURCE_CONTINUE;
  }
  add_conn(l, sock);
  return G_SOURCE_CONTINUE;
}

VmsListener *
vms_listener_new(const char *path, GMainContext *context, const VmsPeerPolicy *policy,
                 const char *refusal, const VmsConnClass *klass, gpointer listener_user,
                 GError **error)
{
  g_autoptr(GSocket) sock = vms_unix_listen(path, error);
  VmsListener *l;

  if (sock == NULL)
    return NULL;
  if (policy != NULL && !vms_peer_policy_apply_mode(policy, path, error)) {
    unlink(path);
    return NULL;
  }
  g_socket_set_blocking(sock, FALSE);
  l = g_new0(VmsListener, 1);
  l->context = g_main_context_ref(context);
  l->sock = g_steal_pointer(&sock);
  l->path = g_strdup(path);
  l->policy.gid = -1;
  if (policy != NULL) {
    l->policy.gid = policy->gid;
    l->policy.n_uids = policy->n_uids;
    l->policy.uids = g_memdup2(policy->uids, policy->n_uids * sizeof(guint32));
    l->policy.refused = policy->refused;
    l->policy.refused_data = policy->refused_data;
  }
  l->refusal = g_strdup(refusal);
  l->klass = klass;
  l->user = listener_user;
  g_mutex_init(&l->lock);
  listen_again(l);
  return l;
}

void
vms_listener_free(VmsListener *l)
{
  if (l == NULL)
    return;
  destroy_source(&l->accept_source);
  destroy_source(&l->pause_source);
  while (l->conns != NULL)
    conn_finish(l->conns->data);
  g_socket_close(l->sock, NULL);
  g_object_unref(l->sock);
  unlink(l->path);
  g_free(l->path);
  g_free(l->refusal);
  vms_peer_policy_clear(&l->policy);
  g_main_context_unref(l->context);
  g_mutex_clear(&l->lock);
  g_free(l);
}

void
vms_listener_foreach(VmsListener *l, void (*func)(VmsConn *, gpointer, gpointer), gpointer data)
{
  g_mutex_lock(&l->lock);
  for (GList *c = l->conns; c != NULL; c = c->next) {
    VmsConn *conn = c->data;
    func(conn, conn->user, data);
  }
  g_mutex_unlock(&l->lock);
}
