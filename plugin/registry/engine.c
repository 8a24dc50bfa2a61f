/* vmsnap registry: the transfer engine (libcurl multi + a GThreadPool). */
#include "engine.h"

#include <string.h>

typedef struct {
  VmsRegEngine *engine;
  CURL *easy;
  struct curl_slist *headers;
  GBytes *body;
  char *url;
  VmsRegResponse resp;
  gpointer job;
  VmsRegHttpDone done;
  const char *method;
  char *accept;
  gboolean retried;  /* once, with a new token */
  guint token_gen;   /* of the token it was sent with */
  gint64 start_us;
} Op;

typedef struct {
  void (*work)(gpointer job);
  gpointer job;
  VmsRegWorkDone done;
} Work;

struct _VmsRegEngine {
  VmsRegClient *client;
  CURLM *multi;
  GThreadPool *pool;
  GAsyncQueue *finished; /* Work* whose function returned */
  GQueue waiting;        /* Op* not yet added (over max_transfers) */
  guint running;         /* Op* in the multi handle */
  GHashTable *active;    /* those Op* (a set) */
  guint max_transfers;
  guint works;           /* Work* pushed, not yet finished */
  guint64 up, down;
};

static void
run_work(gpointer data, gpointer user)
{
  Work *w = data;
  VmsRegEngine *e = user;

  w->work(w->job);
  g_async_queue_push(e->finished, w);
  curl_multi_wakeup(e->multi);
}

VmsRegEngine *
vms_reg_engine_new(VmsRegClient *c, guint max_transfers, guint threads)
{
  VmsRegEngine *e = g_new0(VmsRegEngine, 1);

  e->client = c;
  e->multi = curl_multi_init();
  e->max_transfers = MAX(max_transfers, 1);
  curl_multi_setopt(e->multi, CURLMOPT_MAX_HOST_CONNECTIONS, (long)e->max_transfers);
  e->finished = g_async_queue_new();
  e->pool = g_thread_pool_new(run_work, e, (gint)MAX(threads, 1), FALSE, NULL);
  g_queue_init(&e->waiting);
  e->active = g_hash_table_new(NULL, NULL);
  return e;
}

static void
op_free(Op *op)
{
  if (op->easy != NULL)
    curl_easy_cleanup(op->easy);
  curl_slist_free_all(op->headers);
  if (op->body != NULL)
    g_bytes_unref(op->body);
  g_free(op->url);
  g_free(op->accept);
  vms_reg_response_clear(&op->resp);
  g_free(op);
}

void
vms_reg_engine_free(VmsRegEngine *e)
{
  if (e == NULL)
    return;
  /* Let the pool finish what it runs: its jobs belong to the caller. */
  g_thread_pool_free(e->pool, FALSE, TRUE);
  for (Work *w; (w = g_async_queue_try_pop(e->finished)) != NULL;)
    g_free(w);
  g_async_queue_unref(e->finished);
  for (Op *op; (op = g_queue_pop_head(&e->waiting)) != NULL;)
    op_free(op);
  /* Ops still in the multi handle end without their callbacks. */
  GHashTableIter it;
  gpointer key;
  g_hash_table_iter_init(&it, e->active);
  while (g_hash_table_iter_next(&it, &key, NULL)) {
    Op *op = key;
    curl_multi_remove_handle(e->multi, op->easy);
    op_free(op);
  }
  g_hash_table_unref(e->active);
  curl_multi_cleanup(e->multi);
  g_free(e);
}

VmsRegClient *
vms_reg_engine_client(VmsRegEngine *e)
{
  return e->client;
}

static void
start_waiting(VmsRegEngine *e)
{
  while (e->running < e->max_transfers && !g_queue_is_empty(&e->waiting)) {
    Op *op = g_queue_pop_head(&e->waiting);
    curl_multi_add_handle(e->multi, op->easy);
    g_hash_table_add(e->active, op);
    e->running++;
  }
}

void
vms_reg_engine_http(VmsRegEngine *e, const char *method, const char *path_or_url, GBytes *body,
                    const char *accept, guint64 max_body, gpointer job, VmsRegHttpDone done)
{
  Op *op = g_new0(Op, 1);

  op->engine = e;
  op->easy = curl_easy_init();
  g_assert(op->easy != NULL);
  op->body = body != NULL ? g_bytes_ref(body) : NULL;
  op->url = vms_reg_client_url(e->client, path_or_url);
  op->resp.max_body = max_body;
  op->job = job;
  op->done = done;
  op->method = method; /* a literal */
  op->accept = g_strdup(accept);
  op->token_gen = vms_reg_client_token_gen(e->client);
  op->start_us = g_get_monotonic_time();
  op->headers = vms_reg_client_setup(e->client, op->easy, method, op->url, op->body, NULL, accept,
                                     &op->resp);
  curl_easy_setopt(op->easy, CURLOPT_PRIVATE, op);
  g_queue_push_tail(&e->waiting, op);
  start_waiting(e);
}

void
vms_reg_engine_work(VmsRegEngine *e, void (*work)(gpointer job), gpointer job, VmsRegWorkDone done)
{
  Work *w = g_new0(Work, 1);

  w->work = work;
  w->job = job;
  w->done = done;
  e->works++;
  g_thread_pool_push(e->pool, w, NULL);
}

guint
vms_reg_engine_busy(VmsRegEngine *e)
{
  return e->running + g_queue_get_length(&e->waiting) + e->works;
}

/* A 401 to a Bearer session: a new token (synchronously, on this thread),
 * and the same request queued again, once. FALSE: let the caller see it. */
static gboolean
retry_with_new_token(VmsRegEngine *e, Op *op)
{
  long status = 0;
  gsize max = op->resp.max_body;
  g_autoptr(GError) error = NULL;

  curl_easy_getinfo(op->easy, CURLINFO_RESPONSE_CODE, &status);
  if (status != 401 || op->retried || !vms_reg_client_can_reauth(e->client))
    return FALSE;
  /* Sent with the token that failed: fetch one; with an older one: a newer
   * one is already there. */
  if (op->token_gen == vms_reg_client_token_gen(e->client) && !vms_reg_client_reauth(e->client, &error))
    return FALSE;
  op->retried = TRUE;
  op->token_gen = vms_reg_client_token_gen(e->client);
  vms_reg_response_clear(&op->resp);
  op->resp.max_body = max;
  curl_slist_free_all(op->headers);
  op->headers = vms_reg_client_setup(e->client, op->easy, op->method, op->url, op->body, NULL,
                                     op->accept, &op->resp);
  curl_easy_setopt(op->easy, CURLOPT_PRIVATE, op);
  g_queue_push_tail(&e->waiting, op);
  start_waiting(e);
  return TRUE;
}

static void
finish_op(VmsRegEngine *e, CURL *easy, CURLcode rc)
{
  Op *op = NULL;
  g_autoptr(GError) transport = NULL;
  curl_off_t up = 0, down = 0;

  curl_easy_getinfo(easy, CURLINFO_PRIVATE, (char **)&op);
  curl_multi_remove_handle(e->multi, easy);
  g_hash_table_remove(e->active, op);
  e->running--;
  if (rc == CURLE_OK && retry_with_new_token(e, op))
    return;
  if (rc != CURLE_OK) {
    vms_reg_client_transport_error(e->client, rc, op->url, &transport);
  } else {
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &op->resp.status);
    curl_easy_getinfo(easy, CURLINFO_SIZE_UPLOAD_T, &up);
    curl_easy_getinfo(easy, CURLINFO_SIZE_DOWNLOAD_T, &down);
    e->up += (guint64)up;
    e->down += (guint64)down;
  }
  g_debug("registry: %s %s: %ld after %.1f ms", op->method, op->url, op->resp.status,
          (double)(g_get_monotonic_time() - op->start_us) / 1000.0);
  op->done(e, op->job, &op->resp, transport);
  op_free(op);
}

void
vms_reg_engine_step(VmsRegEngine *e, guint timeout_ms)
{
  int still = 0;
  int left = 0;
  CURLMsg *msg;

  curl_multi_perform(e->multi, &still);
  while ((msg = curl_multi_info_read(e->multi, &left)) != NULL) {
    if (msg->msg == CURLMSG_DONE)
      finish_op(e, msg->easy_handle, msg->data.result);
  }
  start_waiting(e);
  for (Work *w; (w = g_async_queue_try_pop(e->finished)) != NULL; g_free(w)) {
    e->works--;
    w->done(e, w->job);
  }
  if (vms_reg_engine_busy(e) > 0)
    curl_multi_poll(e->multi, NULL, 0, (int)timeout_ms, NULL);
}

guint64
vms_reg_engine_bytes_up(VmsRegEngine *e)
{
  return e->up;
}

guint64
vms_reg_engine_bytes_down(VmsRegEngine *e)
{
  return e->down;
}

void
vms_reg_ticker_init(VmsRegTicker *t, const VmsRegTransferOptions *opts, const char *what,
                    guint64 total)
{
  memset(t, 0, sizeof *t);
  t->fn = opts->progress;
  t->user = opts->progress_user;
  t->p.what = what;
  t->p.total_bytes = total;
  t->start_us = g_get_monotonic_time();
}

void
vms_reg_ticker_tick(VmsRegTicker *t, guint64 done, guint64 wire, gboolean force)
{
  gint64 now = g_get_monotonic_time();

  /* Nothing to say before the total is known, and at most 5 lines a second. */
  if (t->fn == NULL || (!force && (t->p.total_bytes == 0 || now - t->last_us < 200000)))
    return;
  t->last_us = now;
  t->p.done_bytes = done;
  t->p.wire_bytes = wire;
  t->p.elapsed = (gdouble)(now - t->start_us) / 1e6;
  t->fn(&t->p, t->user);
}

gboolean
vms_reg_session_open(const VmsRegRef *ref, const VmsRegOptions *opts, guint *transfers,
                     VmsRegClient **ret_client, VmsRegEngine **ret_engine, GError **error)
{
  VmsRegClient *client = vms_reg_client_open(ref, opts, error);

  if (client == NULL)
    return FALSE;
  if (*transfers == 0)
    *transfers = 8;
  *ret_client = client;
  *ret_engine = vms_reg_engine_new(client, *transfers, g_get_num_processors());
  return TRUE;
}
