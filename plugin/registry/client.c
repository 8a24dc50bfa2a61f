/* vmsnap registry: the registry session — URLs, authentication, one-shot
 * requests and the errors every request can end in. */
#include "client.h"

#include <json-glib/json-glib.h>
#include <string.h>

#include "auth.h"
#include "error.h"
#include "json-bounded.h"

struct _VmsRegClient {
  char *origin;   /* "http(s)://HOST[:PORT]" */
  char *host;
  char *repository;
  char *name;     /* "HOST/REPO" */
  char *auth;     /* "Authorization: ..." or NULL */
  VmsRegCred *cred;
  char *auth_file;
  char *mount_from; /* or NULL */
  VmsRegChallenge *bearer; /* the Bearer challenge answered, to fetch a new token */
  gboolean push;
  guint token_gen;  /* incremented with every new token */
  CURL *easy;     /* for synchronous requests */
};

static gsize curl_ready;

void
vms_reg_response_clear(VmsRegResponse *r)
{
  if (r->body != NULL)
    g_byte_array_unref(r->body);
  g_free(r->location);
  g_free(r->content_type);
  g_free(r->digest);
  g_free(r->www_authenticate);
  memset(r, 0, sizeof *r);
}

const char *
vms_reg_client_name(VmsRegClient *c)
{
  return c->name;
}

const char *
vms_reg_client_repository(VmsRegClient *c)
{
  return c->repository;
}

char *
vms_reg_client_url(VmsRegClient *c, const char *path_or_url)
{
  if (g_str_has_prefix(path_or_url, "http://") || g_str_has_prefix(path_or_url, "https://"))
    return g_strdup(path_or_url);
  return g_strconcat(c->origin, path_or_url[0] == '/' ? "" : "/", path_or_url, NULL);
}

static size_t
on_body(char *data, size_t size, size_t n, void *user)
{
  VmsRegResponse *r = user;

  if (r->body == NULL) /* a blob's size is known: one allocation */
    r->body = r->max_body != 0 && r->max_body <= (64u << 20) ? g_byte_array_sized_new((guint)r->max_body)
                                                             : g_byte_array_new();
  if (r->max_body != 0 && r->body->len + size * n > r->max_body)
    return 0; /* fails the transfer with CURLE_WRITE_ERROR */
  g_byte_array_append(r->body, (const guint8 *)data, (guint)(size * n));
  return size * n;
}

static void
take_header(char **slot, const char *line, gsize len, const char *name)
{
  gsize nl = strlen(name);

  if (len <= nl || g_ascii_strncasecmp(line, name, nl) != 0)
    return;
  g_free(*slot);
  *slot = g_strstrip(g_strndup(line + nl, len - nl));
}

static size_t
on_header(char *data, size_t size, size_t n, void *user)
{
  VmsRegResponse *r = user;
  gsize len = size * n;

  if (len >= 5 && g_ascii_strncasecmp(data, "HTTP/", 5) == 0) {
    /* A new response (after a redirect or 100 Continue) starts clean. */
    g_clear_pointer(&r->location, g_free);
    g_clear_pointer(&r->www_authenticate, g_free);
  }
  take_header(&r->location, data, len, "Location:");
  take_header(&r->content_type, data, len, "Content-Type:");
  take_header(&r->digest, data, len, "Docker-Content-Digest:");
  take_header(&r->www_authenticate, data, len, "WWW-Authenticate:");
  return len;
}

struct curl_slist *
vms_reg_client_setup(VmsRegClient *c, CURL *e, const char *method, const char *url, GBytes *body,
                     const char *content_type, const char *accept, VmsRegResponse *resp)
{
  struct curl_slist *h = curl_slist_append(NULL, "Expect:");

  curl_easy_reset(e);
  curl_easy_setopt(e, CURLOPT_URL, url);
  curl_easy_setopt(e, CURLOPT_NOSIGNAL, 1L);
  curl_easy_setopt(e, CURLOPT_CONNECTTIMEOUT, 10L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_LIMIT, 1L);
  curl_easy_setopt(e, CURLOPT_LOW_SPEED_TIME, 60L);
  curl_easy_setopt(e, CURLOPT_FOLLOWLOCATION, strcmp(method, "GET") == 0 ? 1L : 0L);
  curl_easy_setopt(e, CURLOPT_WRITEFUNCTION, on_body);
  curl_easy_setopt(e, CURLOPT_WRITEDATA, resp);
  curl_easy_setopt(e, CURLOPT_HEADERFUNCTION, on_header);
  curl_easy_setopt(e, CURLOPT_HEADERDATA, resp);
  if (strcmp(method, "HEAD") == 0) {
    curl_easy_setopt(e, CURLOPT_NOBODY, 1L);
  } else if (strcmp(method, "GET") != 0) {
    gsize len = 0;
    const void *data = body != NULL ? g_bytes_get_data(body, &len) : "";
    curl_easy_setopt(e, CURLOPT_CUSTOMREQUEST, method);
    curl_easy_setopt(e, CURLOPT_POSTFIELDS, data != NULL ? data : "");
    curl_easy_setopt(e, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
  }
  if (content_type != NULL) {
    g_autofree char *ct = g_strconcat("Content-Type: ", content_type, NULL);
    h = curl_slist_append(h, ct);
  } else if (strcmp(method, "GET") != 0 && strcmp(method, "HEAD") != 0) {
    h = curl_slist_append(h, "Content-Type: application/octet-stream");
  }
  if (accept != NULL) {
    g_autofree char *ac = g_strconcat("Accept: ", accept, NULL);
    h = curl_slist_append(h, ac);
  }
  if (c->auth != NULL && g_str_has_prefix(url, c->origin))
    h = curl_slist_append(h, c->auth);
  curl_easy_setopt(e, CURLOPT_HTTPHEADER, h);
  return h;
}

gboolean
vms_reg_client_transport_error(VmsRegClient *c, CURLcode code, const char *url, GError **error)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_IO, "registry %s is not reachable (%s): %s%s",
              c->host, url, curl_easy_strerror(code),
              code == CURLE_COULDNT_CONNECT  ? "; is the registry running?"
              : code == CURLE_SSL_CONNECT_ERROR ? "; a plain-HTTP registry needs --insecure"
                                                 : "");
  return FALSE;
}

static gboolean request_once(VmsRegClient *c, const char *method, const char *path_or_url,
                             GBytes *body, const char *content_type, const char *accept,
                             VmsRegResponse *resp, GError **error);

gboolean
vms_reg_client_request(VmsRegClient *c, const char *method, const char *path_or_url,
                       GBytes *body, const char *content_type, const char *accept,
                       VmsRegResponse *resp, GError **error)
{
  gsize max = resp->max_body;

  if (!request_once(c, method, path_or_url, body, content_type, accept, resp, error))
    return FALSE;
  /* An expired or too narrow token: one new token, one more try. */
  if (resp->status == 401 && vms_reg_client_can_reauth(c) && g_str_has_prefix(path_or_url, "/v2/")) {
    if (!vms_reg_client_reauth(c, error))
      return FALSE;
    vms_reg_response_clear(resp);
    resp->max_body = max;
    return request_once(c, method, path_or_url, body, content_type, accept, resp, error);
  }
  return TRUE;
}

static gboolean
request_once(VmsRegClient *c, const char *method, const char *path_or_url, GBytes *body,
             const char *content_type, const char *accept, VmsRegResponse *resp, GError **error)
{
  g_autofree char *url = vms_reg_client_url(c, path_or_url);
  struct curl_slist *h = vms_reg_client_setup(c, c->easy, method, url, body, content_type,
                                              accept, resp);
  gint64 t0 = g_get_monotonic_time();
  CURLcode rc = curl_easy_perform(c->easy);

  curl_slist_free_all(h);
  if (rc != CURLE_OK)
    return vms_reg_client_transport_error(c, rc, url, error);
  curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &resp->status);
  g_debug("registry: %s %s: %ld after %.1f ms", method, url, resp->status,
          (double)(g_get_monotonic_time() - t0) / 1000.0);
  return TRUE;
}

/* The registry's own words: errors[0].message (and code), if it sent JSON. */
static char *
registry_message(const VmsRegResponse *r)
{
  g_autoptr(JsonParser) p = json_parser_new();
  JsonNode *root;
  JsonArray *errs;

  if (r->body == NULL || r->body->len == 0 ||
      !vms_json_check_depth((const char *)r->body->data, r->body->len, VMS_JSON_MAX_DEPTH, NULL) ||
      !json_parser_load_from_data(p, (const char *)r->body->data, r->body->len, NULL))
    return g_strdup("");
  root = json_parser_get_root(p);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root))
    return g_strdup("");
  JsonNode *en = json_object_get_member(json_node_get_object(root), "errors");
  errs = en != NULL && JSON_NODE_HOLDS_ARRAY(en) ? json_node_get_array(en) : NULL;
  if (errs == NULL || json_array_get_length(errs) == 0 ||
      !JSON_NODE_HOLDS_OBJECT(json_array_get_element(errs, 0)))
    return g_strdup("");
  JsonObject *e = json_array_get_object_element(errs, 0);
  return g_strdup_printf(": %s (%s)", json_object_get_string_member_with_default(e, "message", "?"),
                         json_object_get_string_member_with_default(e, "code", "?"));
}

static char *
credential_text(VmsRegClient *c)
{
  if (c->cred == NULL)
    return g_strdup_printf("no credentials (%s has none for %s)", c->auth_file, c->host);
  return g_strdup_printf("user '%s' from %s", c->cred->user, c->cred->source);
}

gboolean
vms_reg_client_status_error(VmsRegClient *c, const VmsRegResponse *resp, const char *what,
                            GError **error)
{
  g_autofree char *msg = registry_message(resp);
  g_autofree char *cred = credential_text(c);

  if (resp->status == 401)
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED,
                "registry %s refused %s with 401 Unauthorized; tried %s%s", c->name, what, cred, msg);
  else if (resp->status == 403)
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED,
                "registry %s denied %s with 403 Forbidden; tried %s%s", c->name, what, cred, msg);
  else if (resp->status == 404)
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED, "%s not found in %s (404)%s", what, c->name, msg);
  else
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED, "registry %s answered %ld to %s%s", c->name,
                resp->status, what, msg);
  return FALSE;
}

static char *
basic_header(const VmsRegCred *cred)
{
  g_autofree char *up = g_strconcat(cred->user, ":", cred->password, NULL);
  g_autofree char *b64 = g_base64_encode((const guchar *)up, strlen(up));

  explicit_bzero(up, strlen(up));
  return g_strconcat("Authorization: Basic ", b64, NULL);
}

/* GET of the token realm, with the Basic credential if there is one (the
 * realm may be another host, so c->auth is not sent there). */
static gboolean
token_request(VmsRegClient *c, const char *url, VmsRegResponse *r, GError **error)
{
  struct curl_slist *h = vms_reg_client_setup(c, c->easy, "GET", url, NULL, NULL,
                                              "application/json", r);
  g_autofree char *basic = c->cred != NULL ? basic_header(c->cred) : NULL;
  CURLcode rc;

  if (basic != NULL) {
    h = curl_slist_append(h, basic);
    curl_easy_setopt(c->easy, CURLOPT_HTTPHEADER, h);
  }
  rc = curl_easy_perform(c->easy);
  curl_slist_free_all(h);
  if (rc != CURLE_OK)
    return vms_reg_client_transport_error(c, rc, url, error);
  curl_easy_getinfo(c->easy, CURLINFO_RESPONSE_CODE, &r->status);
  return TRUE;
}

/* The Bearer flow: a token from the challenge's realm for our scope. */
static gboolean
fetch_token(VmsRegClient *c, const VmsRegChallenge *ch, gboolean push, GError **error)
{
  g_autofree char *scope = g_strdup_printf("repository:%s:%s", c->repository,
                                           push ? "pull,push" : "pull");
  g_autofree char *esc_scope = g_uri_escape_string(scope, NULL, FALSE);
  g_autofree char *esc_service =
      g_uri_escape_string(ch->service != NULL ? ch->service : "", NULL, FALSE);
  g_autofree char *from = c->mount_from != NULL ? g_strdup_printf("repository:%s:pull", c->mount_from) : NULL;
  g_autofree char *esc_from = from != NULL ? g_uri_escape_string(from, NULL, FALSE) : NULL;
  /* A cross-repository mount needs pull access to the source as well. */
  g_autofree char *url = g_strdup_printf("%s%sservice=%s&scope=%s%s%s", ch->realm,
                                         strchr(ch->realm, '?') ? "&" : "?", esc_service, esc_scope,
                                         esc_from != NULL ? "&scope=" : "", esc_from != NULL ? esc_from : "");
  g_auto(VmsRegResponse) r = { 0 };
  g_autofree char *token = NULL;

  if (!token_request(c, url, &r, error))
    return FALSE;
  if (r.status != 200) {
    g_autofree char *what = g_strdup_printf("a token for %s from %s", scope, ch->realm);
    return vms_reg_client_status_error(c, &r, what, error);
  }
  token = vms_reg_token_from_json(r.body != NULL ? (const char *)r.body->data : "",
                                  r.body != NULL ? r.body->len : 0, ch->realm, error);
  if (token == NULL)
    return FALSE;
  g_free(c->auth);
  c->auth = g_strconcat("Authorization: Bearer ", token, NULL);
  c->token_gen++;
  return TRUE;
}

/* GET /v2/ and answer its challenge once. */
static gboolean
authenticate(VmsRegClient *c, gboolean push, GError **error)
{
  g_auto(VmsRegResponse) r = { 0 };
  g_autoptr(VmsRegChallenge) ch = NULL;

  if (!vms_reg_client_request(c, "GET", "/v2/", NULL, NULL, NULL, &r, error))
    return FALSE;
  if (r.status == 200)
    return TRUE;
  if (r.status != 401)
    return vms_reg_client_status_error(c, &r, "the API version check (GET /v2/)", error);
  ch = vms_reg_challenge_parse(r.www_authenticate);
  if (ch != NULL && strcmp(ch->scheme, "bearer") == 0 && ch->realm != NULL) {
    if (!fetch_token(c, ch, push, error))
      return FALSE;
    c->bearer = g_steal_pointer(&ch);
  } else if (c->cred != NULL) {
    c->auth = basic_header(c->cred);
  } else {
    return vms_reg_client_status_error(c, &r, "access", error);
  }
  vms_reg_response_clear(&r);
  if (!vms_reg_client_request(c, "GET", "/v2/", NULL, NULL, NULL, &r, error))
    return FALSE;
  if (r.status != 200)
    return vms_reg_client_status_error(c, &r, "access", error);
  return TRUE;
}

VmsRegClient *
vms_reg_client_open(const VmsRegRef *ref, const VmsRegOptions *opts, GError **error)
{
  g_autoptr(VmsRegClient) c = g_new0(VmsRegClient, 1);

  if (g_once_init_enter(&curl_ready)) {
    curl_global_init(CURL_GLOBAL_DEFAULT);
    g_once_init_leave(&curl_ready, 1);
  }
  c->host = g_strdup(ref->host);
  c->repository = g_strdup(ref->repository);
  c->name = g_strdup_printf("%s/%s", ref->host, ref->repository);
  c->origin = g_strconcat(opts->insecure ? "http://" : "https://", ref->host, NULL);
  c->auth_file = vms_reg_auth_file_path();
  c->mount_from = g_strdup(opts->mount_from);
  c->push = opts->push;
  c->easy = curl_easy_init();
  if (c->easy == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED, "libcurl could not start a transfer");
    return NULL;
  }
  if (!vms_reg_cred_lookup(ref->host, &c->cred, error))
    return NULL;
  if (!authenticate(c, opts->push, error))
    return NULL;
  return g_steal_pointer(&c);
}

void
vms_reg_client_free(VmsRegClient *c)
{
  if (c == NULL)
    return;
  if (c->easy != NULL)
    curl_easy_cleanup(c->easy);
  g_free(c->origin);
  g_free(c->host);
  g_free(c->repository);
  g_free(c->name);
  if (c->auth != NULL)
    explicit_bzero(c->auth, strlen(c->auth));
  g_free(c->auth);
  vms_reg_cred_free(c->cred);
  g_free(c->auth_file);
  g_free(c->mount_from);
  vms_reg_challenge_free(c->bearer);
  g_free(c);
}

gboolean
vms_reg_client_can_reauth(VmsRegClient *c)
{
  return c->bearer != NULL;
}

guint
vms_reg_client_token_gen(VmsRegClient *c)
{
  return c->token_gen;
}

gboolean
vms_reg_client_reauth(VmsRegClient *c, GError **error)
{
  g_debug("registry: %s: a new token from %s", c->name, c->bearer->realm);
  return fetch_token(c, c->bearer, c->push, error);
}
