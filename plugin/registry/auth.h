/* vmsnap registry: credentials and authentication challenges.
 *
 * Credentials come from $REGISTRY_AUTH_FILE if set, else
 * ~/.docker/config.json: {"auths": {"HOST[:PORT]": {"auth": base64(user:pass)}}}
 * ("username"/"password" members are accepted too; keys may carry an
 * http:// or https:// prefix and a trailing path). Credential helpers
 * (credsStore, credHelpers) are not run.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *user;
  char *password;
  char *source; /* the file it came from, for error messages */
} VmsRegCred;

void vms_reg_cred_free(VmsRegCred *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegCred, vms_reg_cred_free)

/* The auth file that applies: $REGISTRY_AUTH_FILE, else
 * $HOME/.docker/config.json. Caller frees. */
char *vms_reg_auth_file_path(void);

/* Looks @host up in the auth file. A missing file or no entry for @host
 * gives *@ret_cred = NULL and TRUE; a file that is not JSON, or an entry
 * whose "auth" is not base64 of "user:password", fails naming the file. */
gboolean vms_reg_cred_lookup(const char *host, VmsRegCred **ret_cred, GError **error);

/* One WWW-Authenticate challenge: scheme lower-cased ("basic", "bearer"),
 * realm/service/scope as given (NULL when absent). */
typedef struct {
  char *scheme;
  char *realm;
  char *service;
  char *scope;
} VmsRegChallenge;

void vms_reg_challenge_free(VmsRegChallenge *c);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegChallenge, vms_reg_challenge_free)

/* Parses a WWW-Authenticate value: SCHEME k="v",k=v,... NULL if empty. */
VmsRegChallenge *vms_reg_challenge_parse(const char *header);

/* Extracts the token from a token server's JSON answer ("token", else
 * "access_token"). NULL with an error naming @realm otherwise. */
char *vms_reg_token_from_json(const char *json, gsize len, const char *realm, GError **error);

G_END_DECLS
