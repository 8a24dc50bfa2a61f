/* vmsnap integration tests: the token server (token-server.h). One thread
 * accepts connections and answers one request per connection. */
#include "token-server.h"

#include <gio/gio.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/x509.h>
#include <stdio.h>
#include <string.h>

#include "common.h"
#include "registry-fixture.h"

struct _VmsTestTokenServer {
  GSocketListener *listener;
  GCancellable *cancel;
  GThread *thread;
  EVP_PKEY *key;
  char *x5c;      /* base64 DER of the certificate */
  char *cert;     /* its PEM path */
  char *realm;
  char *basic;    /* expected "Basic ..." */
  gint issued;
  gint pull_only; /* tokens still to be issued with pull access only */
};

static char *
b64url(const void *data, gsize len)
{
  char *s = g_base64_encode(data, len);

  g_strdelimit(s, "+", '-');
  g_strdelimit(s, "/", '_');
  for (char *e = s + strlen(s); e > s && e[-1] == '='; e--)
    e[-1] = '\0';
  return s;
}

/* Scopes "repository:NAME:ACTIONS" (each asked for) -> the access claim. */
static char *
access_claim(GPtrArray *scopes, gboolean pull_only)
{
  g_autoptr(GString) out = g_string_new("[");

  for (guint k = 0; k < scopes->len; k++) {
    g_auto(GStrv) parts = g_strsplit(g_ptr_array_index(scopes, k), ":", 3);
    g_autoptr(GString) acts = g_string_new(NULL);
    if (g_strv_length(parts) != 3)
      continue;
    g_auto(GStrv) a = g_strsplit(pull_only ? "pull" : parts[2], ",", -1);
    for (gsize i = 0; a[i] != NULL; i++)
      g_string_append_printf(acts, "%s\"%s\"", i ? "," : "", a[i]);
    g_string_append_printf(out, "%s{\"type\":\"%s\",\"name\":\"%s\",\"actions\":[%s]}",
                           out->len > 1 ? "," : "", parts[0], parts[1], acts->str);
  }
  g_string_append_c(out, ']');
  return g_string_free(g_steal_pointer(&out), FALSE);
}

static char *
make_token(VmsTestTokenServer *t, GPtrArray *scope)
{
  gint64 now = g_get_real_time() / G_USEC_PER_SEC;
  g_autofree char *head = g_strdup_printf("{\"typ\":\"JWT\",\"alg\":\"RS256\",\"x5c\":[\"%s\"]}", t->x5c);
  gboolean pull_only = g_atomic_int_get(&t->pull_only) > 0;
  if (pull_only)
    g_atomic_int_add(&t->pull_only, -1);
  g_autofree char *access = access_claim(scope, pull_only);
  g_autofree char *claims = g_strdup_printf(
      "{\"iss\":\"%s\",\"sub\":\"alice\",\"aud\":\"%s\",\"exp\":%" G_GINT64_FORMAT
      ",\"nbf\":%" G_GINT64_FORMAT ",\"iat\":%" G_GINT64_FORMAT ",\"jti\":\"%u\",\"access\":%s}",
      VMS_TEST_TOKEN_ISSUER, VMS_TEST_TOKEN_SERVICE, now + 600, now - 60, now, g_random_int(), access);
  g_autofree char *h64 = b64url(head, strlen(head));
  g_autofree char *c64 = b64url(claims, strlen(claims));
  g_autofree char *input = g_strconcat(h64, ".", c64, NULL);
  EVP_MD_CTX *ctx = EVP_MD_CTX_new();
  guint8 sig[1024];
  size_t siglen = sizeof sig;

  g_assert_true(EVP_DigestSignInit(ctx, NULL, EVP_sha256(), NULL, t->key) == 1);
  g_assert_true(EVP_DigestSign(ctx, sig, &siglen, (const guint8 *)input, strlen(input)) == 1);
  EVP_MD_CTX_free(ctx);
  g_autofree char *s64 = b64url(sig, siglen);
  return g_strconcat(input, ".", s64, NULL);
}

/* Every value of query parameter @key in @target, unescaped. */
static GPtrArray *
query_params(const char *target, const char *key)
{
  const char *q = strchr(target, '?');
  g_auto(GStrv) kv = q != NULL ? g_strsplit(q + 1, "&", -1) : NULL;
  GPtrArray *out = g_ptr_array_new_with_free_func(g_free);

  for (gsize i = 0; kv != NULL && kv[i] != NULL; i++) {
    if (g_str_has_prefix(kv[i], key) && kv[i][strlen(key)] == '=')
      g_ptr_array_add(out, g_uri_unescape_string(kv[i] + strlen(key) + 1, NULL));
  }
  return out;
}

static void
answer(VmsTestTokenServer *t, GSocketConnection *conn)
{
  GInputStream *in = g_io_stream_get_input_stream(G_IO_STREAM(conn));
  GOutputStream *out = g_io_stream_get_output_stream(G_IO_STREAM(conn));
  char buf[8192];
  gsize got = 0;
  gssize n;

  while (got < sizeof buf - 1 && (n = g_input_stream_read(in, buf + got, sizeof buf - 1 - got, NULL, NULL)) > 0) {
    got += (gsize)n;
    buf[got] = '\0';
    if (strstr(buf, "\r\n\r\n") != NULL)
      break;
  }
  buf[got] = '\0';
  g_autofree char *target = g_strndup(buf + 4, strcspn(buf + 4, " "));
  gboolean authorized = strstr(buf, t->basic) != NULL;
  g_autoptr(GPtrArray) scope = query_params(target, "scope");
  g_autofree char *token = authorized ? make_token(t, scope) : NULL;
  g_autofree char *body = token != NULL ? g_strdup_printf("{\"token\":\"%s\",\"expires_in\":600}", token)
                                        : g_strdup("{\"errors\":[{\"code\":\"UNAUTHORIZED\",\"message\":\"bad credentials\"}]}");
  g_autofree char *resp = g_strdup_printf("HTTP/1.1 %s\r\nContent-Type: application/json\r\n"
                                          "Content-Length: %zu\r\nConnection: close\r\n\r\n%s",
                                          token != NULL ? "200 OK" : "401 Unauthorized", strlen(body), body);
  if (token != NULL)
    g_atomic_int_inc(&t->issued);
  g_output_stream_write_all(out, resp, strlen(resp), NULL, NULL, NULL);
  g_io_stream_close(G_IO_STREAM(conn), NULL, NULL);
}

static gpointer
serve(gpointer data)
{
  VmsTestTokenServer *t = data;

  for (;;) {
    g_autoptr(GSocketConnection) c = g_socket_listener_accept(t->listener, NULL, t->cancel, NULL);
    if (c == NULL)
      return NULL; /* cancelled */
    answer(t, c);
  }
}

static void
make_key(VmsTestTokenServer *t, const char *dir)
{
  g_autofree char *key = g_build_filename(dir, "token.key", NULL);
  g_autofree char *cmd = g_strdup_printf(
      "openssl req -x509 -newkey rsa:2048 -nodes -keyout '%s' -out '%s' -days 2 -subj /CN=vmsnap-test",
      key, t->cert);
  int status = -1;
  FILE *f;

  if (!vms_test_have_program("openssl"))
    vms_test_cannot_run("openssl is not installed");
  g_autofree char *err = NULL;
  g_assert_true(g_spawn_command_line_sync(cmd, NULL, &err, &status, NULL));
  g_assert_cmpint(status, ==, 0);
  f = fopen(key, "r");
  t->key = PEM_read_PrivateKey(f, NULL, NULL, NULL);
  fclose(f);
  f = fopen(t->cert, "r");
  X509 *x = PEM_read_X509(f, NULL, NULL, NULL);
  fclose(f);
  g_assert_nonnull(t->key);
  g_assert_nonnull(x);
  unsigned char *der = NULL;
  int len = i2d_X509(x, &der);
  t->x5c = g_base64_encode(der, (gsize)len);
  OPENSSL_free(der);
  X509_free(x);
}

VmsTestTokenServer *
vms_test_token_server_start(const char *dir, const char *user, const char *password)
{
  VmsTestTokenServer *t = g_new0(VmsTestTokenServer, 1);
  g_autoptr(GInetAddress) lo = g_inet_address_new_loopback(G_SOCKET_FAMILY_IPV4);
  g_autoptr(GSocketAddress) any = g_inet_socket_address_new(lo, 0);
  g_autoptr(GSocketAddress) bound = NULL;
  g_autoptr(GError) error = NULL;
  g_autofree char *up = g_strconcat(user, ":", password, NULL);
  g_autofree char *b64 = g_base64_encode((const guchar *)up, strlen(up));

  t->cert = g_build_filename(dir, "token.crt", NULL);
  make_key(t, dir);
  t->basic = g_strconcat("Authorization: Basic ", b64, NULL);
  t->listener = g_socket_listener_new();
  t->cancel = g_cancellable_new();
  g_assert_true(g_socket_listener_add_address(t->listener, any, G_SOCKET_TYPE_STREAM,
                                              G_SOCKET_PROTOCOL_TCP, NULL, &bound, &error));
  g_assert_no_error(error);
  t->realm = g_strdup_printf("http://127.0.0.1:%u/token",
                             g_inet_socket_address_get_port(G_INET_SOCKET_ADDRESS(bound)));
  t->thread = g_thread_new("token-server", serve, t);
  return t;
}

void
vms_test_token_server_free(VmsTestTokenServer *t)
{
  if (t == NULL)
    return;
  g_cancellable_cancel(t->cancel);
  g_thread_join(t->thread);
  g_socket_listener_close(t->listener);
  g_object_unref(t->listener);
  g_object_unref(t->cancel);
  EVP_PKEY_free(t->key);
  g_free(t->x5c);
  g_free(t->cert);
  g_free(t->realm);
  g_free(t->basic);
  g_free(t);
}

const char *
vms_test_token_server_realm(VmsTestTokenServer *t)
{
  return t->realm;
}

const char *
vms_test_token_server_cert(VmsTestTokenServer *t)
{
  return t->cert;
}

guint
vms_test_token_server_issued(VmsTestTokenServer *t)
{
  return (guint)g_atomic_int_get(&t->issued);
}

void
vms_test_token_server_pull_only(VmsTestTokenServer *t, guint n)
{
  g_atomic_int_set(&t->pull_only, (gint)n);
}
