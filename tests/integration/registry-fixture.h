/* vmsnap integration tests: Debian's docker-registry (the CNCF distribution
 * server) on 127.0.0.1 with a private storage directory, for the push/pull
 * tests (test-registry*.c). Test-thread only; helpers assert. */
#pragma once

#include "harness.h"
#include "manifest.h"

G_BEGIN_DECLS

typedef struct {
  char *dir;        /* scratch: config, storage, htpasswd, auth files */
  char *store;      /* the registry's storage root */
  char *host;       /* "127.0.0.1:PORT" */
  char *auth_file;  /* a docker config.json for vmsnap ($REGISTRY_AUTH_FILE) */
  GSubprocess *proc;
} VmsTestRegistry;

/* Starts a registry in @dir (which must exist). With @user, htpasswd basic
 * auth for @user/@password is required, and auth_file holds @user with
 * @file_password (to test wrong credentials). Waits until /v2/ answers.
 * Fails the test (vms_test_cannot_run) if docker-registry is missing. */
VmsTestRegistry *vms_test_registry_start(const char *dir, const char *user, const char *password,
                                         const char *file_password);
/* The same with the registry's token auth: tokens from @realm for
 * @service by @issuer, signed by the key of @cert (PEM); the auth file
 * holds @user with @file_password. */
VmsTestRegistry *vms_test_registry_start_token(const char *dir, const char *realm,
                                               const char *service, const char *issuer,
                                               const char *cert, const char *user,
                                               const char *file_password);
/* Stops it (SIGTERM, then SIGKILL) and waits for it. Idempotent. */
void vms_test_registry_stop(VmsTestRegistry *r);
void vms_test_registry_free(VmsTestRegistry *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsTestRegistry, vms_test_registry_free)

/* "127.0.0.1:PORT/@repo_tag". Caller frees. */
char *vms_test_registry_ref(VmsTestRegistry *r, const char *repo_tag);
/* Bytes of every blob the registry stores (its blobs/ tree). */
guint64 vms_test_registry_stored_bytes(VmsTestRegistry *r);
/* The path of blob @digest ("sha256:...") in the storage. Caller frees. */
char *vms_test_registry_blob_path(VmsTestRegistry *r, const char *digest);

/* Runs `vmsnap ARGS...` (@args NULL-terminated, no argv[0]) with
 * REGISTRY_AUTH_FILE=@r->auth_file; returns the exit status, output in
 * *@ret_out / *@ret_err (nullable). */
int vms_test_registry_cliv(VmsTestRegistry *r, const char *const *args, char **ret_out,
                           char **ret_err);

/* TRUE if @name is a program in PATH. */
gboolean vms_test_have_program(const char *name);

/* The number after @key in @text ("... 3 blobs uploaded ..." with key
 * " blobs uploaded" gives 3), asserted present. */
guint64 vms_test_number_before(const char *text, const char *key);

/* Fills a diff page (@n: its number in the diff). */
typedef void (*VmsTestFillPage)(guint8 *page, gsize len, guint64 n, gpointer user);

/* Writes a committed DIFF snapshot of @parent_dir into @dir, with memory.chunks:
 * @pages 4 KiB pages, every @stride-th page of the memory, filled by @fill;
 * the manifest names the parent @parent_name (as given, e.g. "../base"). */
void vms_test_make_diff_pages(const char *dir, const char *parent_dir, const char *parent_name,
                              guint pages, guint stride, VmsTestFillPage fill, gpointer user);

G_END_DECLS
