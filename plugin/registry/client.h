/* vmsnap registry: one session with a registry repository over libcurl.
 *
 * vms_reg_client_open() checks the registry is there (GET /v2/) and
 * authenticates: anonymous, Basic, or the Bearer token flow (token from
 * the challenge's realm, for scope repository:REPO:pull[,push], with the
 * Basic credential if there is one). Every error names the registry, what
 * was asked, the HTTP status, and on 401/403 which credential was tried.
 *
 * Threading: a client is used from one thread (the engine's main loop).
 */
#pragma once

#include <curl/curl.h>
#include <glib.h>

#include "reference.h"

G_BEGIN_DECLS

typedef struct _VmsRegClient VmsRegClient;

typedef struct {
  gboolean insecure; /* plain HTTP instead of HTTPS */
  gboolean push;     /* ask for push access too */
  const char *mount_from; /* nullable: a repository the token must also let us pull */
} VmsRegOptions;

VmsRegClient *vms_reg_client_open(const VmsRegRef *ref, const VmsRegOptions *opts, GError **error);
void vms_reg_client_free(VmsRegClient *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegClient, vms_reg_client_free)

/* "HOST/REPO", for messages. */
const char *vms_reg_client_name(VmsRegClient *c);
const char *vms_reg_client_repository(VmsRegClient *c);

typedef struct {
  long status;
  GByteArray *body;   /* response body (not for HEAD) */
  guint64 max_body;   /* 0: unlimited; a longer body fails the transfer */
  char *location;
  char *content_type;
  char *digest;       /* Docker-Content-Digest */
  char *www_authenticate;
} VmsRegResponse;

void vms_reg_response_clear(VmsRegResponse *r);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsRegResponse, vms_reg_response_clear)

/* Absolute URL of @path_or_url: "/v2/REPO/..." paths and relative Location
 * values resolve against the registry. Caller frees. */
char *vms_reg_client_url(VmsRegClient *c, const char *path_or_url);

/* Prepares @easy for one request: @method ("GET", "HEAD", "PUT", "POST",
 * "PATCH"), @url (absolute), @body (nullable; kept alive by the caller
 * until the transfer ends), @content_type, @accept (nullable). Responses go
 * to @resp. Returns the header list to free after the transfer. */
struct curl_slist *vms_reg_client_setup(VmsRegClient *c, CURL *easy, const char *method,
                                        const char *url, GBytes *body, const char *content_type,
                                        const char *accept, VmsRegResponse *resp);

/* Runs one request synchronously. FALSE only if no HTTP answer came (the
 * registry is not there; or a new token could not be had): the message
 * names the registry and the URL. A 401 to a Bearer session is answered
 * once with a new token and the request made again. */
gboolean vms_reg_client_request(VmsRegClient *c, const char *method, const char *path_or_url,
                                GBytes *body, const char *content_type, const char *accept,
                                VmsRegResponse *resp, GError **error);

/* TRUE if the session authenticates with a Bearer token (which can be
 * fetched again when the registry refuses it). */
gboolean vms_reg_client_can_reauth(VmsRegClient *c);
/* Which token requests set up now carry (incremented by each new one), so
 * several requests refused at once fetch one new token, not one each. */
guint vms_reg_client_token_gen(VmsRegClient *c);
/* Fetches a new token for the same scope; later requests use it. */
gboolean vms_reg_client_reauth(VmsRegClient *c, GError **error);

/* The error for a transfer that got no HTTP answer (curl code @code). */
gboolean vms_reg_client_transport_error(VmsRegClient *c, CURLcode code, const char *url,
                                        GError **error);

/* The error for an unexpected status of @what ("blob sha256:..", "manifest
 * latest", ...): 401/403 name the credential tried, 404 says not found,
 * others quote the registry's error message. Always returns FALSE. */
gboolean vms_reg_client_status_error(VmsRegClient *c, const VmsRegResponse *resp,
                                     const char *what, GError **error);

G_END_DECLS
