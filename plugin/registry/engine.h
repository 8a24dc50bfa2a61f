/* vmsnap registry: several transfers at once — a libcurl multi handle for
 * the HTTP requests and a thread pool for the CPU work between them
 * (hashing, zstd, file I/O).
 *
 * Everything but the work functions runs on the thread that calls
 * vms_reg_engine_step(); the completion callbacks run there too, so the
 * push and pull state machines need no locks. A work function runs on a
 * pool thread and touches only its own job.
 */
#pragma once

#include <glib.h>

#include "client.h"

G_BEGIN_DECLS

typedef struct _VmsRegEngine VmsRegEngine;

/* Called on the main thread when a request ends. @resp is owned by the
 * engine and cleared after the call; @transport is set (and owned by the
 * engine) when no HTTP answer came. */
typedef void (*VmsRegHttpDone)(VmsRegEngine *e, gpointer job, VmsRegResponse *resp,
                               GError *transport);
/* Called on the main thread when a work function has returned. */
typedef void (*VmsRegWorkDone)(VmsRegEngine *e, gpointer job);

/* @max_transfers HTTP requests in flight at most; @threads pool threads. */
VmsRegEngine *vms_reg_engine_new(VmsRegClient *c, guint max_transfers, guint threads);

/* What push and pull start with: a client on @ref's registry (checked to be
 * there) and an engine with *@transfers at once (0 becomes the default, 8,
 * written back) and a hashing/zstd thread per core. Fills both or neither. */
gboolean vms_reg_session_open(const VmsRegRef *ref, const VmsRegOptions *opts, guint *transfers,
                              VmsRegClient **ret_client, VmsRegEngine **ret_engine,
                              GError **error);
void vms_reg_engine_free(VmsRegEngine *e);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegEngine, vms_reg_engine_free)

VmsRegClient *vms_reg_engine_client(VmsRegEngine *e);

/* Queues a request (see vms_reg_client_setup for the arguments; @body is
 * referenced until the request ends). @max_body limits a GET's body. */
void vms_reg_engine_http(VmsRegEngine *e, const char *method, const char *path_or_url,
                         GBytes *body, const char *accept, guint64 max_body, gpointer job,
                         VmsRegHttpDone done);

/* Runs @work(@job) on a pool thread, then @done(@e, @job) on the main thread. */
void vms_reg_engine_work(VmsRegEngine *e, void (*work)(gpointer job), gpointer job,
                         VmsRegWorkDone done);

/* Requests and works started and not yet completed. */
guint vms_reg_engine_busy(VmsRegEngine *e);

/* Moves transfers along for at most @timeout_ms and runs the callbacks of
 * what completed. */
void vms_reg_engine_step(VmsRegEngine *e, guint timeout_ms);

/* Bytes sent and received by requests that completed (bodies only). */
guint64 vms_reg_engine_bytes_up(VmsRegEngine *e);
guint64 vms_reg_engine_bytes_down(VmsRegEngine *e);

G_END_DECLS

/* ---- progress, shared by push and pull ---- */

#include "registry.h"

typedef struct {
  VmsRegProgress p;
  VmsRegProgressFunc fn;
  gpointer user;
  gint64 start_us;
  gint64 last_us;
} VmsRegTicker;

/* Starts a progress report for @what over @total bytes. */
void vms_reg_ticker_init(VmsRegTicker *t, const VmsRegTransferOptions *opts, const char *what,
                         guint64 total);
/* Reports @done and @wire bytes, at most 5 times a second unless @force. */
void vms_reg_ticker_tick(VmsRegTicker *t, guint64 done, guint64 wire, gboolean force);
