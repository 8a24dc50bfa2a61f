/* vmsnap registry: OCI references, HOST[:PORT]/REPO[:TAG|@sha256:DIGEST]
 * (doc/spec.md section 12). */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  char *host;       /* "HOST" or "HOST:PORT", as given */
  char *repository; /* "a/b/c": lower-case components, [._-] separators */
  char *tag;        /* the tag; "latest" when neither tag nor digest is given */
  char *digest;     /* "sha256:<64 hex>" or NULL */
} VmsRegRef;

/* Parses @text. Fails with VMS_ERROR_INVALID_ARGUMENT naming the reference
 * and the part that is wrong (host, port, repository, tag, digest). When a
 * digest is given, tag is NULL. */
VmsRegRef *vms_reg_ref_parse(const char *text, GError **error);
void vms_reg_ref_free(VmsRegRef *ref);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegRef, vms_reg_ref_free)

/* "tag" or "sha256:..." — what goes after /manifests/. */
const char *vms_reg_ref_reference(const VmsRegRef *ref);

/* TRUE if @digest is "sha256:" and 64 lower-case hex digits. */
gboolean vms_reg_digest_valid(const char *digest);

G_END_DECLS
