/* vmsnap integration tests: a token server for the registry's token auth
 * (the distribution token spec's Bearer flow), so push/pull are tested
 * against docker-registry with `auth: token` as against Docker Hub or GHCR.
 * It answers GET /token?service=..&scope=.. with an RS256 JWT signed by a
 * throw-away key whose self-signed certificate the registry trusts, for
 * the user and password it was given (Basic auth), else 401. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _VmsTestTokenServer VmsTestTokenServer;

/* Makes the key and certificate in @dir (openssl), listens on 127.0.0.1. */
VmsTestTokenServer *vms_test_token_server_start(const char *dir, const char *user,
                                                const char *password);
void vms_test_token_server_free(VmsTestTokenServer *t);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsTestTokenServer, vms_test_token_server_free)

/* "http://127.0.0.1:PORT/token" */
const char *vms_test_token_server_realm(VmsTestTokenServer *t);
/* The certificate (PEM) the registry must trust: its rootcertbundle. */
const char *vms_test_token_server_cert(VmsTestTokenServer *t);
/* Tokens answered so far. */
guint vms_test_token_server_issued(VmsTestTokenServer *t);

/* The next @n tokens grant only pull, whatever was asked: the registry
 * refuses their pushes with 401, as it does an expired token. */
void vms_test_token_server_pull_only(VmsTestTokenServer *t, guint n);

#define VMS_TEST_TOKEN_SERVICE "vmsnap-test-registry"
#define VMS_TEST_TOKEN_ISSUER "vmsnap-test-issuer"

G_END_DECLS
