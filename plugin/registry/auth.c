/* vmsnap registry: credentials from the docker auth file, and parsing of
 * the registry's authentication challenge (Basic, or the Bearer token flow
 * of the distribution token spec). */
#include "auth.h"

#include <json-glib/json-glib.h>
#include <string.h>

#include "error.h"
#include "json-bounded.h"

void
vms_reg_cred_free(VmsRegCred *c)
{
  if (c == NULL)
    return;
  g_free(c->user);
  if (c->password != NULL)
    explicit_bzero(c->password, strlen(c->password));
  g_free(c->password);
  g_free(c->source);
  g_free(c);
}

char *
vms_reg_auth_file_path(void)
{
  const char *env = g_getenv("REGISTRY_AUTH_FILE");

  if (env != NULL && env[0] != '\0')
    return g_strdup(env);
  return g_build_filename(g_get_home_dir(), ".docker", "config.json", NULL);
}

/* "https://host:5000/v1/" -> "host:5000" */
static char *
key_host(const char *key)
{
  const char *p = key;
  const char *end;

  if (g_str_has_prefix(p, "https://"))
    p += 8;
  else if (g_str_has_prefix(p, "http://"))
    p += 7;
  end = strchr(p, '/');
  return end != NULL ? g_strndup(p, end - p) : g_strdup(p);
}

static gboolean
cred_from_entry(JsonObject *entry, const char *path, const char *host, VmsRegCred **ret,
                GError **error)
{
  g_autoptr(VmsRegCred) c = g_new0(VmsRegCred, 1);
  const char *auth = json_object_get_string_member_with_default(entry, "auth", NULL);

  c->source = g_strdup(path);
  if (auth != NULL && auth[0] != '\0') {
    gsize n = 0;
    g_autofree guchar *raw = g_base64_decode(auth, &n);
    g_autofree char *text = g_strndup((const char *)raw, n);
    char *colon = strchr(text, ':');
    if (colon == NULL) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "%s: the \"auth\" of %s is not base64 of user:password", path, host);
      return FALSE;
    }
    *colon = '\0';
    c->user = g_strdup(text);
    c->password = g_strdup(colon + 1);
    explicit_bzero(text, n);
  } else {
    c->user = g_strdup(json_object_get_string_member_with_default(entry, "username", ""));
    c->password = g_strdup(json_object_get_string_member_with_default(entry, "password", ""));
    if (c->user[0] == '\0') /* an entry without credentials (identitytoken etc.) */
      return TRUE;
  }
  *ret = g_steal_pointer(&c);
  return TRUE;
}

gboolean
vms_reg_cred_lookup(const char *host, VmsRegCred **ret_cred, GError **error)
{
  g_autofree char *path = vms_reg_auth_file_path();
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GError) local = NULL;
  JsonNode *root;
  JsonObject *auths;

  *ret_cred = NULL;
  if (!g_file_test(path, G_FILE_TEST_EXISTS))
    return TRUE;
  g_autofree char *text = NULL;
  gsize text_len = 0;
  if (!g_file_get_contents(path, &text, &text_len, &local) ||
      !vms_json_check_depth(text, text_len, VMS_JSON_MAX_DEPTH, &local) ||
      !json_parser_load_from_data(parser, text, (gssize)text_len, &local)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "registry auth file %s is not valid JSON: %s", path, local->message);
    return FALSE;
  }
  root = json_parser_get_root(parser);
  if (root == NULL || !JSON_NODE_HOLDS_OBJECT(root))
    return TRUE;
  JsonNode *an = json_object_get_member(json_node_get_object(root), "auths");
  if (an == NULL || !JSON_NODE_HOLDS_OBJECT(an))
    return TRUE;
  auths = json_node_get_object(an);
  g_autoptr(GList) keys = json_object_get_members(auths);
  for (GList *l = keys; l != NULL; l = l->next) {
    g_autofree char *h = key_host(l->data);
    JsonNode *n = json_object_get_member(auths, l->data);
    if (strcmp(h, host) != 0 || !JSON_NODE_HOLDS_OBJECT(n))
      continue;
    return cred_from_entry(json_node_get_object(n), path, host, ret_cred, error);
  }
  return TRUE;
}

void
vms_reg_challenge_free(VmsRegChallenge *c)
{
  if (c == NULL)
    return;
  g_free(c->scheme);
  g_free(c->realm);
  g_free(c->service);
  g_free(c->scope);
  g_free(c);
}

/* Reads one k=v or k="v" pair at *@p; advances past a following comma. */
static gboolean
next_param(const char **p, char **ret_key, char **ret_value)
{
  const char *s = *p;
  const char *eq;
  GString *v = g_string_new(NULL);

  while (*s == ' ' || *s == ',')
    s++;
  eq = strchr(s, '=');
  if (*s == '\0' || eq == NULL) {
    g_string_free(v, TRUE);
    return FALSE;
  }
  *ret_key = g_ascii_strdown(s, eq - s);
  s = eq + 1;
  if (*s == '"') {
    for (s++; *s && *s != '"'; s++) {
      if (*s == '\\' && s[1])
        s++;
      g_string_append_c(v, *s);
    }
    if (*s == '"')
      s++;
  } else {
    for (; *s && *s != ','; s++)
      g_string_append_c(v, *s);
  }
  *ret_value = g_string_free(v, FALSE);
  *p = s;
  return TRUE;
}

VmsRegChallenge *
vms_reg_challenge_parse(const char *header)
{
  g_autoptr(VmsRegChallenge) c = g_new0(VmsRegChallenge, 1);
  const char *p;
  const char *sp;
  char *key, *value;

  while (header != NULL && *header == ' ')
    header++;
  if (header == NULL || *header == '\0')
    return NULL;
  sp = strchr(header, ' ');
  c->scheme = g_ascii_strdown(header, sp != NULL ? sp - header : -1);
  p = sp != NULL ? sp : "";
  while (next_param(&p, &key, &value)) {
    char **slot = strcmp(key, "realm") == 0     ? &c->realm
                  : strcmp(key, "service") == 0 ? &c->service
                  : strcmp(key, "scope") == 0   ? &c->scope
                                                : NULL;
    if (slot != NULL) {
      g_free(*slot);
      *slot = value;
    } else {
      g_free(value);
    }
    g_free(key);
  }
  return g_steal_pointer(&c);
}

char *
vms_reg_token_from_json(const char *json, gsize len, const char *realm, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new();
  JsonNode *root;
  const char *tok = NULL;

  if (vms_json_check_depth(json, len, VMS_JSON_MAX_DEPTH, NULL) &&
      json_parser_load_from_data(parser, json, (gssize)len, NULL)) {
    root = json_parser_get_root(parser);
    if (root != NULL && JSON_NODE_HOLDS_OBJECT(root)) {
      JsonObject *o = json_node_get_object(root);
      tok = json_object_get_string_member_with_default(o, "token", NULL);
      if (tok == NULL || tok[0] == '\0')
        tok = json_object_get_string_member_with_default(o, "access_token", NULL);
    }
  }
  if (tok == NULL || tok[0] == '\0') {
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED,
                "token server %s answered without a token", realm);
    return NULL;
  }
  return g_strdup(tok);
}
