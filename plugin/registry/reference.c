/* vmsnap registry: OCI reference parsing (grammar of the OCI distribution
 * spec: repository components [a-z0-9]+([._-][a-z0-9]+)*, tags
 * [A-Za-z0-9_][A-Za-z0-9._-]{0,127}). */
#include "reference.h"

#include <string.h>

#include "error.h"

static gboolean
bad(GError **error, const char *text, const char *what)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "invalid registry reference '%s': %s (expected HOST[:PORT]/REPO[:TAG|@sha256:DIGEST])",
              text, what);
  return FALSE;
}

static gboolean
alnum_lower(char c)
{
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

static gboolean
repository_valid(const char *repo)
{
  g_auto(GStrv) parts = g_strsplit(repo, "/", -1);

  if (strlen(repo) == 0 || strlen(repo) >= 256)
    return FALSE;
  for (gsize i = 0; parts[i] != NULL; i++) {
    const char *p = parts[i];
    gboolean prev_sep = TRUE;
    for (; *p; p++) {
      gboolean sep = (*p == '.' || *p == '_' || *p == '-');
      if (!sep && !alnum_lower(*p))
        return FALSE;
      if (sep && prev_sep)
        return FALSE;
      prev_sep = sep;
    }
    if (prev_sep) /* empty component or trailing separator */
      return FALSE;
  }
  return TRUE;
}

static gboolean
tag_valid(const char *tag)
{
  gsize n = strlen(tag);

  if (n == 0 || n > 128 || !(g_ascii_isalnum(tag[0]) || tag[0] == '_'))
    return FALSE;
  for (gsize i = 1; i < n; i++)
    if (!(g_ascii_isalnum(tag[i]) || tag[i] == '_' || tag[i] == '.' || tag[i] == '-'))
      return FALSE;
  return TRUE;
}

gboolean
vms_reg_digest_valid(const char *digest)
{
  if (digest == NULL || !g_str_has_prefix(digest, "sha256:") || strlen(digest) != 7 + 64)
    return FALSE;
  for (const char *p = digest + 7; *p; p++)
    if (!((*p >= '0' && *p <= '9') || (*p >= 'a' && *p <= 'f')))
      return FALSE;
  return TRUE;
}

static gboolean
host_valid(const char *host, GError **error, const char *text)
{
  const char *colon = strrchr(host, ':');

  if (host[0] == '\0' || host[0] == ':')
    return bad(error, text, "no host");
  for (const char *p = host; *p && p != colon; p++)
    if (!(g_ascii_isalnum(*p) || *p == '.' || *p == '-'))
      return bad(error, text, "the host has a character that is not allowed");
  if (colon != NULL) {
    guint64 port = 0;
    if (!g_ascii_string_to_unsigned(colon + 1, 10, 1, 65535, &port, NULL))
      return bad(error, text, "the port is not a number from 1 to 65535");
  }
  return TRUE;
}

VmsRegRef *
vms_reg_ref_parse(const char *text, GError **error)
{
  g_autoptr(VmsRegRef) ref = g_new0(VmsRegRef, 1);
  const char *slash;
  g_autofree char *rest = NULL;
  char *at, *colon;

  g_return_val_if_fail(text != NULL, NULL);
  slash = strchr(text, '/');
  if (slash == NULL) {
    bad(error, text, "no repository after the host");
    return NULL;
  }
  ref->host = g_strndup(text, slash - text);
  if (!host_valid(ref->host, error, text))
    return NULL;
  rest = g_strdup(slash + 1);
  at = strchr(rest, '@');
  if (at != NULL) {
    *at = '\0';
    if (!vms_reg_digest_valid(at + 1)) {
      bad(error, text, "the digest is not sha256: followed by 64 lower-case hex digits");
      return NULL;
    }
    ref->digest = g_strdup(at + 1);
  } else {
    colon = strrchr(rest, ':');
    if (colon != NULL && strchr(colon, '/') == NULL) {
      *colon = '\0';
      if (!tag_valid(colon + 1)) {
        bad(error, text, "the tag is not [A-Za-z0-9_][A-Za-z0-9._-]{0,127}");
        return NULL;
      }
      ref->tag = g_strdup(colon + 1);
    } else {
      ref->tag = g_strdup("latest");
    }
  }
  if (!repository_valid(rest)) {
    bad(error, text, "the repository must be lower-case components separated by '/'");
    return NULL;
  }
  ref->repository = g_strdup(rest);
  return g_steal_pointer(&ref);
}

void
vms_reg_ref_free(VmsRegRef *ref)
{
  if (ref == NULL)
    return;
  g_free(ref->host);
  g_free(ref->repository);
  g_free(ref->tag);
  g_free(ref->digest);
  g_free(ref);
}

const char *
vms_reg_ref_reference(const VmsRegRef *ref)
{
  return ref->digest != NULL ? ref->digest : ref->tag;
}
