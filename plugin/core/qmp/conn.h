/* vmsnap core: the connection engine both socket front ends use (the QMP
 * control socket, the monitor console) — a listener and its connections.
 *
 * What it owns, so the two front ends cannot diverge:
 *  - accepting: peers are checked (SO_PEERCRED against a VmsPeerPolicy); a
 *    refused peer gets the front end's one refusal line, then the close;
 *    at the fd limit (EMFILE/ENFILE) accepting pauses instead of spinning;
 *  - reading with back-pressure: while the front end runs a command
 *    (vms_conn_hold .. vms_conn_release) the socket is not read, so a peer
 *    that pipelines a thousand commands is slowed down, never dropped;
 *  - sending without blocking: vms_conn_send() queues bytes in the
 *    connection's output buffer and writes what the peer accepts; a peer
 *    whose unread output passes the cap is dropped (only that one);
 *  - closing, once: at EOF when the last command is answered and the output
 *    is flushed, at an error, or when the listener goes.
 *
 * Threading: everything runs on the listener's GMainContext except
 * vms_conn_send(), vms_conn_release(), vms_conn_ref/unref() and
 * vms_conn_close(), which any thread may call.
 */
#pragma once

#include <gio/gio.h>

G_BEGIN_DECLS

/* Limits (doc/protocol.md states them). */
#define VMS_CONN_OUTPUT_CAP (8u << 20)  /* unread output bytes before a peer is dropped */
#define VMS_CONN_OUTPUT_HIGH (1u << 20) /* unread output bytes before its input waits */

typedef struct _VmsConn VmsConn;
typedef struct _VmsListener VmsListener;

/* A refused peer of @uid (G_MAXUINT32 if the kernel gave none): the front
 * end logs it (the core never prints). */
typedef void (*VmsPeerRefusedFunc)(const char *path, guint32 uid, gpointer user_data);

/* Who may connect besides this process's own uid. */
typedef struct _VmsPeerPolicy VmsPeerPolicy;
struct _VmsPeerPolicy {
  guint32 *uids;   /* n_uids extra uids */
  guint n_uids;
  gint64 gid;      /* a group whose members may connect, or -1 */
  VmsPeerRefusedFunc refused; /* nullable */
  gpointer refused_data;
};

void vms_peer_policy_clear(VmsPeerPolicy *p);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsPeerPolicy, vms_peer_policy_clear)

/* Parses "UID[:UID...]" into @p->uids (appending). FALSE with an error
 * naming the bad element. */
gboolean vms_peer_policy_parse_uids(VmsPeerPolicy *p, const char *text, GError **error);
/* Parses "GID" into @p->gid. */
gboolean vms_peer_policy_parse_gid(VmsPeerPolicy *p, const char *text, GError **error);

/* TRUE if a peer with @uid, primary @gid and process @pid may connect:
 * our uid, one of @p's uids, or a member (primary or supplementary group,
 * from /proc/PID/status) of @p's gid. */
gboolean vms_peer_policy_allows(const VmsPeerPolicy *p, guint32 uid, guint32 gid, gint pid);

/* The kernel's word on the peer of @sock (SO_PEERCRED); FALSE when it
 * gives none. */
gboolean vms_socket_peer_cred(GSocket *sock, guint32 *ret_uid, guint32 *ret_gid, gint *ret_pid);

/* Gives the socket file at @path the mode @policy needs: 0600; 0660 and
 * the group for allow-gid; 0666 when other non-root uids are allowed
 * (SO_PEERCRED still decides who stays). */
gboolean vms_peer_policy_apply_mode(const VmsPeerPolicy *policy, const char *path,
                                    GError **error);

/* What a front end does with its connections. All on the context thread.
 * @conn_user is what @accepted returned for the connection. */
typedef struct {
  /* A new connection: returns its front-end state (owned by the engine,
   * freed with @free_user at the end). May send (a greeting, a prompt). */
  gpointer (*accepted)(VmsConn *conn, gpointer listener_user);
  /* Bytes the peer sent. The front end frames them and runs what it can;
   * it stops when it has called vms_conn_hold() (a command running). */
  void (*input)(VmsConn *conn, const char *data, gsize len, gpointer conn_user);
  /* The connection is not held any more (a command was answered): run
   * what the front end still has buffered, if anything. */
  void (*resume)(VmsConn *conn, gpointer conn_user);
  /* The peer sent its last byte: a front end with a partial line may take
   * it as a last command (nullable). */
  void (*eof)(VmsConn *conn, gpointer conn_user);
  void (*free_user)(gpointer conn_user);
} VmsConnClass;

/* Listens on @path (vms_unix_listen; the mode and group follow @policy:
 * 0600 unless other uids or a group are allowed) and serves connections on
 * @context. @refusal is the line a refused peer reads before the close.
 * @policy and @klass are copied / borrowed (@klass must outlive the listener). */
VmsListener *vms_listener_new(const char *path, GMainContext *context,
                              const VmsPeerPolicy *policy, const char *refusal,
                              const VmsConnClass *klass, gpointer listener_user,
                              GError **error);
/* Closes every connection, stops listening and removes the socket file.
 * The context thread, or any thread once the context no longer runs. */
void vms_listener_free(VmsListener *l);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsListener, vms_listener_free)

/* Calls @func with every open connection's front-end state (under the
 * listener's lock: @func must only queue work, e.g. vms_conn_send). Any thread. */
void vms_listener_foreach(VmsListener *l, void (*func)(VmsConn *conn, gpointer conn_user,
                                                       gpointer data), gpointer data);

/* Queues @len bytes for the peer and writes what it accepts now; never
 * blocks. A peer whose unread output passes VMS_CONN_OUTPUT_CAP is
 * dropped. Does nothing once the connection is closed. Any thread. */
void vms_conn_send(VmsConn *conn, const char *data, gsize len);

/* A command started: the engine stops reading and does not call @input
 * again until vms_conn_release(). Context thread. */
void vms_conn_hold(VmsConn *conn);
/* The command is answered: reading resumes (and @resume runs) on the
 * context. Any thread. */
void vms_conn_release(VmsConn *conn);
/* TRUE between hold and release, and while the peer has more than
 * VMS_CONN_OUTPUT_HIGH bytes unread (a pipelining peer that reads slowly
 * is slowed down, not dropped): the front end runs nothing then. */
gboolean vms_conn_held(VmsConn *conn);

/* Closes after the queued output is flushed. Any thread. */
void vms_conn_close(VmsConn *conn);

VmsConn *vms_conn_ref(VmsConn *conn);
void vms_conn_unref(VmsConn *conn);

G_END_DECLS
