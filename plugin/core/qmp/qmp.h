/* vmsnap core: the QMP wire protocol (json-glib), both directions.
 *
 *  - VmsJsonSplitter: cuts a byte stream into top-level JSON values
 *    (QMP peers need not send newlines), bounded in size, resynchronising
 *    after garbage so one bad message never kills a connection.
 *  - VmsQmpClient: the plugin's connection to QEMU's own QMP socket.
 *  - VmsQmpServer: the plugin's control socket, speaking QMP to management
 *    layers (greeting, qmp_capabilities, execute/arguments/id, events).
 *  - vms_unix_listen(): a listening unix socket with mode 0600; conn.h
 *    serves connections on it for both socket front ends.
 *
 * Hypervisor-independent: nothing here knows QEMU's plugin API.
 */
#pragma once

#include <gio/gio.h>
#include <json-glib/json-glib.h>

#include "json-bounded.h"

G_BEGIN_DECLS

/* ---- framing ---- */

typedef struct _VmsJsonSplitter VmsJsonSplitter;

/* A splitter for messages of at most @max_message bytes. */
VmsJsonSplitter *vms_json_splitter_new(gsize max_message);
void vms_json_splitter_free(VmsJsonSplitter *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsJsonSplitter, vms_json_splitter_free)

/* Appends @len bytes of input. */
void vms_json_splitter_feed(VmsJsonSplitter *s, const char *data, gsize len);

/* Takes the next complete top-level value out of the buffer.
 * Returns TRUE and sets *@ret_text (caller frees) when a value is complete;
 * returns TRUE with *@ret_text NULL and @error set when a message was
 * oversized, held a NUL byte, or was not JSON framing (the bad bytes are
 * dropped, the caller
 * replies with an error and carries on); returns FALSE when more input is
 * needed. */
gboolean vms_json_splitter_next(VmsJsonSplitter *s, char **ret_text, GError **error);

/* ---- client (plugin -> QEMU) ---- */

typedef struct _VmsQmpClient VmsQmpClient;

/* Called on @context's thread for each event QEMU sends. @data may be NULL.
 * Only valid during the call. */
typedef void (*VmsQmpEventFunc)(const char *event, JsonObject *data, gpointer user_data);

/* A client for the QMP socket at @path. Connecting and reading happen on
 * @context (the plugin's service thread), where @on_event is called.
 * Nothing is connected until vms_qmp_client_connect_sync(). */
VmsQmpClient *vms_qmp_client_new(const char *path, GMainContext *context,
                                 VmsQmpEventFunc on_event, gpointer user_data);
/* Any thread. Off @context's thread it waits for an @on_event call in
 * progress to return; once it returns @on_event is not called again. */
void vms_qmp_client_free(VmsQmpClient *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsQmpClient, vms_qmp_client_free)

/* Connects (retrying while the socket does not exist or refuses, up to
 * @timeout_ms: QEMU creates it during start-up), reads the greeting, sends
 * qmp_capabilities. Safe to call again when already connected (no-op).
 * Any thread except @context's. */
gboolean vms_qmp_client_connect_sync(VmsQmpClient *c, guint timeout_ms, GError **error);

/* TRUE once the server closed the connection (QEMU is going away). Any thread. */
gboolean vms_qmp_client_is_closed(VmsQmpClient *c);

/* The greeting's "QMP"."version" object, or NULL before connecting. Owned by @c. */
JsonObject *vms_qmp_client_get_version(VmsQmpClient *c);

/* Executes @command with @arguments (nullable; not consumed). If @pass_fd
 * >= 0 it is sent with the command as SCM_RIGHTS (for `getfd`). Blocks up to
 * @timeout_ms for the reply. Returns the "return" member (caller owns) or
 * NULL with VMS_ERROR_QMP and QEMU's "desc" in the message.
 * Thread-safe; MUST NOT be called on @context's thread (it would wait for
 * itself). */
JsonNode *vms_qmp_client_execute(VmsQmpClient *c, const char *command, JsonObject *arguments,
                                 int pass_fd, guint timeout_ms, GError **error);

/* Events are also kept in a short history so a thread can wait for one
 * without racing: take vms_qmp_client_event_seq() before issuing the
 * command that causes the event, then wait for a match newer than it.
 * @match (nullable) is called under the client's lock with each candidate. */
typedef gboolean (*VmsQmpEventMatch)(const char *event, JsonObject *data, gpointer user_data);
guint64 vms_qmp_client_event_seq(VmsQmpClient *c);
/* Returns a copy of the matching event's data (an empty object if it had
 * none), or NULL with an error on timeout or disconnect. Not on @context's thread. */
JsonObject *vms_qmp_client_wait_event(VmsQmpClient *c, guint64 after_seq, const char *event,
                                      VmsQmpEventMatch match, gpointer user_data,
                                      guint timeout_ms, GError **error);

/* vms_qmp_client_wait_event that also gives the event's QEMU "timestamp"
 * (wall clock, microseconds since the epoch; 0 if QEMU sent none) in
 * *@ret_timestamp_us (nullable): when something happened in QEMU, not when
 * this process noticed. */
JsonObject *vms_qmp_client_wait_event_at(VmsQmpClient *c, guint64 after_seq, const char *event,
                                         VmsQmpEventMatch match, gpointer user_data,
                                         guint timeout_ms, gint64 *ret_timestamp_us,
                                         GError **error);

/* ---- dispatch: what both socket front ends call ---- */

/* How a command answers: exactly one of @ret (consumed) and @error is set.
 * An @error of VMS_ERROR_COMMAND_NOT_FOUND becomes QMP's CommandNotFound
 * class, any other GenericError. Any thread, exactly once per command. */
typedef void (*VmsReplyFunc)(JsonNode *ret, const GError *error, gpointer reply_data);

/* Runs @command with @args (not consumed; an empty object when the client
 * sent none) and calls @reply(…, @reply_data) exactly once, now or later,
 * from any thread. Called on the front end's context. The control socket
 * and the monitor console take the same function. */
typedef void (*VmsDispatchFunc)(const char *command, JsonObject *args, VmsReplyFunc reply,
                                gpointer reply_data, gpointer user_data);

/* ---- server (management layers -> plugin) ---- */

typedef struct _VmsQmpServer VmsQmpServer;
typedef struct _VmsPeerPolicy VmsPeerPolicy;

/* Limits of the control socket (doc/protocol.md). */
#define VMS_QMP_MAX_MESSAGE (1u << 20) /* bytes of one JSON message */

/* Listens on @path (see vms_unix_listen; @policy, nullable, says who else
 * may connect) and serves QMP on @context: greeting with @version (not
 * consumed), qmp_capabilities, then every command through @dispatch. One
 * connection's commands run one at a time, in order. A NULL @version
 * defers every greeting (and reading) until vms_qmp_server_set_version(). */
VmsQmpServer *vms_qmp_server_new(const char *path, GMainContext *context, JsonObject *version,
                                 const VmsPeerPolicy *policy, VmsDispatchFunc dispatch,
                                 gpointer user_data, GError **error);
/* Closes every connection and removes the socket file. */
void vms_qmp_server_free(VmsQmpServer *s);

/* Sets the greeting's version (not consumed) and greets the clients that
 * waited for it. Once; any thread. */
void vms_qmp_server_set_version(VmsQmpServer *s, JsonObject *version);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsQmpServer, vms_qmp_server_free)

/* Sends {"event", "data", "timestamp"} to every negotiated client.
 * Thread-safe; @data is consumed (nullable). */
void vms_qmp_server_emit(VmsQmpServer *s, const char *event, JsonObject *data);

/* ---- JSON text ---- */

/* @node as compact JSON, numbers in one format everywhere (integers as
 * such, doubles in the shortest form that reads back the same, non-finite
 * as null). Caller frees. */
char *vms_json_to_text(JsonNode *node);


/* ---- listening sockets ---- */

/* Creates a listening unix socket at @path (an existing socket file there is
 * replaced; any other file is refused), mode 0600. Returns the GSocket. */
GSocket *vms_unix_listen(const char *path, GError **error);


G_END_DECLS
