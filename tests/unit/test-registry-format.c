/* Unit tests: the registry client's pure parts (plugin/registry) — OCI
 * references, auth challenges, the docker auth file, the chunk index and
 * the OCI manifest. The transfers themselves are tested against a real
 * docker-registry in tests/integration/test-registry.c. */
#include <string.h>

#include "artifact.h"
#include "auth.h"
#include "blob.h"
#include "error.h"
#include "helpers.h"
#include "reference.h"

static void
test_references(void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsRegRef) a = vms_reg_ref_parse("127.0.0.1:5000/vm/web:base", &error);
  g_autoptr(VmsRegRef) b = vms_reg_ref_parse("reg.example/a/b-c/d_e", &error);
  const char *digest = "sha256:0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
  g_autofree char *by_digest = g_strdup_printf("reg.example/x@%s", digest);
  g_autoptr(VmsRegRef) c = vms_reg_ref_parse(by_digest, &error);

  g_assert_no_error(error);
  g_assert_cmpstr(a->host, ==, "127.0.0.1:5000");
  g_assert_cmpstr(a->repository, ==, "vm/web");
  g_assert_cmpstr(vms_reg_ref_reference(a), ==, "base");
  g_assert_cmpstr(b->repository, ==, "a/b-c/d_e");
  g_assert_cmpstr(b->tag, ==, "latest");
  g_assert_null(c->tag);
  g_assert_cmpstr(vms_reg_ref_reference(c), ==, digest);

  const struct { const char *ref, *part; } bad[] = {
    { "noslash", "no repository" },
    { "host:0/repo", "port" },
    { "host:99999/repo", "port" },
    { "host/UPPER", "repository" },
    { "host/a//b", "repository" },
    { "host/a-", "repository" },
    { "host/repo:-tag", "tag" },
    { "host/repo@sha256:abc", "digest" },
    { "ho st/repo", "host" },
  };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autoptr(GError) e = NULL;
    g_autoptr(VmsRegRef) r = vms_reg_ref_parse(bad[i].ref, &e);
    g_assert_null(r);
    g_assert_error(e, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT);
    g_assert_nonnull(strstr(e->message, bad[i].ref));
    g_assert_nonnull(strstr(e->message, bad[i].part));
  }
}

static void
test_challenges(void)
{
  g_autoptr(VmsRegChallenge) b = vms_reg_challenge_parse(
      "Bearer realm=\"https://auth.example/token\",service=\"registry.example\","
      "scope=\"repository:a/b:pull,push\"");
  g_autoptr(VmsRegChallenge) basic = vms_reg_challenge_parse("Basic realm=\"x\"");
  g_autoptr(GError) error = NULL;

  g_assert_cmpstr(b->scheme, ==, "bearer");
  g_assert_cmpstr(b->realm, ==, "https://auth.example/token");
  g_assert_cmpstr(b->service, ==, "registry.example");
  g_assert_cmpstr(b->scope, ==, "repository:a/b:pull,push"); /* a comma inside quotes */
  g_assert_cmpstr(basic->scheme, ==, "basic");
  g_assert_null(vms_reg_challenge_parse(""));

  g_autofree char *t1 = vms_reg_token_from_json("{\"token\":\"abc\"}", 15, "R", &error);
  g_autofree char *t2 = vms_reg_token_from_json("{\"access_token\":\"def\"}", 22, "R", &error);
  g_assert_cmpstr(t1, ==, "abc");
  g_assert_cmpstr(t2, ==, "def");
  g_autofree char *t3 = vms_reg_token_from_json("{}", 2, "https://realm", &error);
  g_assert_null(t3);
  g_assert_nonnull(strstr(error->message, "https://realm"));
}

static void
test_auth_file(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(dir, "auth.json", NULL);
  g_autofree char *b64 = g_base64_encode((const guchar *)"alice:s3:cret", 13);
  g_autofree char *json = g_strdup_printf(
      "{\"auths\": {\"https://reg.example:5000/v1/\": {\"auth\": \"%s\"},"
      " \"other.example\": {\"username\": \"bob\", \"password\": \"pw\"},"
      " \"broken.example\": {\"auth\": \"bm9jb2xvbg==\"}}}", b64);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsRegCred) a = NULL, o = NULL, none = NULL, bad = NULL;

  g_assert_true(g_file_set_contents(path, json, -1, &error));
  g_setenv("REGISTRY_AUTH_FILE", path, TRUE);
  g_assert_true(vms_reg_cred_lookup("reg.example:5000", &a, &error));
  g_assert_cmpstr(a->user, ==, "alice");
  g_assert_cmpstr(a->password, ==, "s3:cret"); /* only the first colon splits */
  g_assert_cmpstr(a->source, ==, path);
  g_assert_true(vms_reg_cred_lookup("other.example", &o, &error));
  g_assert_cmpstr(o->user, ==, "bob");
  g_assert_true(vms_reg_cred_lookup("missing.example", &none, &error));
  g_assert_null(none);
  g_assert_false(vms_reg_cred_lookup("broken.example", &bad, &error));
  g_assert_nonnull(strstr(error->message, "user:password"));
  g_clear_error(&error);
  g_assert_true(g_file_set_contents(path, "{not json", -1, &error));
  g_assert_false(vms_reg_cred_lookup("reg.example:5000", &bad, &error));
  g_assert_nonnull(strstr(error->message, path));
  g_unsetenv("REGISTRY_AUTH_FILE");
  vms_test_rmtree(dir);
}

static VmsRegIndex *
sample_index(void)
{
  VmsRegIndex *ix = g_new0(VmsRegIndex, 1);
  VmsRegChunk c = { .offset = 0, .length = 2u << 20, .blob_size = 1234 };

  ix->chunk_size = 1u << 20;
  ix->memory_size = 64u << 20;
  ix->chunks = g_array_new(FALSE, FALSE, sizeof(VmsRegChunk));
  memset(c.raw_sha256, 0x11, 32);
  memset(c.blob_sha256, 0x22, 32);
  g_array_append_val(ix->chunks, c);
  c.offset = 8u << 20;
  c.length = 8u << 20;
  c.blob_sha256[0] = 0x33;
  g_array_append_val(ix->chunks, c);
  return ix;
}

static void
test_index(void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsRegIndex) ix = sample_index();
  g_autoptr(GBytes) enc = vms_reg_index_encode(ix);
  g_autoptr(VmsRegIndex) back = vms_reg_index_decode(enc, &error);

  g_assert_no_error(error);
  g_assert_cmpuint(back->chunks->len, ==, 2);
  g_assert_cmpmem(back->chunks->data, 2 * sizeof(VmsRegChunk), ix->chunks->data, 2 * sizeof(VmsRegChunk));
  /* Truncated, a count that lies, an unaligned or overlapping chunk, one
   * past the memory: all refused before use. */
  gsize len = g_bytes_get_size(enc);
  g_autofree guint8 *buf = g_memdup2(g_bytes_get_data(enc, NULL), len);
  const struct { gsize off; guint8 val; } flips[] = { { 24, 9 }, { 32, 1 }, { 32 + 80 + 2, 0 }, { 32 + 80 + 3, 0xff } };
  for (gsize i = 0; i < G_N_ELEMENTS(flips); i++) {
    g_autoptr(GError) e = NULL;
    guint8 saved = buf[flips[i].off];
    buf[flips[i].off] = flips[i].val;
    g_autoptr(GBytes) b = g_bytes_new(buf, len);
    g_autoptr(VmsRegIndex) r = vms_reg_index_decode(b, &e);
    g_assert_null(r);
    g_assert_error(e, VMS_ERROR, VMS_ERROR_CORRUPT);
    buf[flips[i].off] = saved;
  }
  g_autoptr(GBytes) shorter = g_bytes_new(buf, len - 1);
  g_autoptr(VmsRegIndex) r2 = vms_reg_index_decode(shorter, &error);
  g_assert_null(r2);
}

static void
test_manifest_json(void)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsRegArtifact) a = vms_reg_artifact_new();
  g_autoptr(VmsRegIndex) ix = sample_index();
  char d[72];

  a->config.media_type = g_strdup(VMS_REG_MT_CONFIG);
  vms_reg_digest_of("m", 1, a->config.digest);
  a->config.size = 1;
  a->kind = g_strdup("DIFF");
  a->parent_config = g_strdup(a->config.digest);
  vms_reg_artifact_add(a, VMS_REG_MT_STATE, a->config.digest, 10, "state.bin");
  for (guint i = 0; i < ix->chunks->len; i++) {
    const VmsRegChunk *c = &g_array_index(ix->chunks, VmsRegChunk, i);
    vms_reg_digest_format(c->blob_sha256, d);
    vms_reg_artifact_add(a, VMS_REG_MT_CHUNK, d, c->blob_size, NULL);
  }
  g_autoptr(GBytes) json = vms_reg_artifact_to_json(a);
  g_autoptr(GBytes) again = vms_reg_artifact_to_json(a);
  g_assert_true(g_bytes_equal(json, again)); /* deterministic: a stable digest */
  g_autoptr(VmsRegArtifact) b = vms_reg_artifact_from_json(json, "test", &error);
  g_assert_no_error(error);
  g_assert_cmpuint(b->layers->len, ==, 3);
  g_assert_cmpstr(b->kind, ==, "DIFF");
  g_assert_cmpstr(b->parent_config, ==, a->config.digest);
  g_assert_null(b->parent_manifest);
  g_assert_cmpstr(vms_reg_artifact_find(b, VMS_REG_MT_STATE)->title, ==, "state.bin");
  g_assert_true(vms_reg_index_matches(ix, b, "test", &error));
  g_array_remove_index(ix->chunks, 1);
  g_assert_false(vms_reg_index_matches(ix, b, "test", &error));
  g_clear_error(&error);

  const char *bad[] = { "[]", "{\"schemaVersion\":2}",
                        "{\"schemaVersion\":2,\"artifactType\":\"application/vnd.oci.image.config.v1+json\"}" };
  for (gsize i = 0; i < G_N_ELEMENTS(bad); i++) {
    g_autoptr(GError) e = NULL;
    g_autoptr(GBytes) bj = g_bytes_new_static(bad[i], strlen(bad[i]));
    g_autoptr(VmsRegArtifact) r = vms_reg_artifact_from_json(bj, "host/repo:tag", &e);
    g_assert_null(r);
    g_assert_nonnull(strstr(e->message, "host/repo:tag"));
  }
}

static void
test_blobs(void)
{
  g_autoptr(GError) error = NULL;
  guint8 data[8192];
  guint8 out[8192];
  guint8 sha[32];
  char d[72];

  for (gsize i = 0; i < sizeof data; i++)
    data[i] = (guint8)(i % 7);
  g_autoptr(GBytes) z1 = vms_reg_compress(data, sizeof data);
  g_autoptr(GBytes) z2 = vms_reg_compress(data, sizeof data);
  g_assert_true(g_bytes_equal(z1, z2)); /* content-addressed: same bytes, same blob */
  g_assert_true(vms_reg_decompress(g_bytes_get_data(z1, NULL), g_bytes_get_size(z1), out,
                                   sizeof out, "blob", &error));
  g_assert_cmpmem(out, sizeof out, data, sizeof data);
  g_assert_false(vms_reg_decompress(g_bytes_get_data(z1, NULL), g_bytes_get_size(z1), out, 100,
                                    "blob X", &error));
  g_assert_nonnull(strstr(error->message, "blob X"));
  vms_reg_digest_of("abc", 3, d);
  g_assert_cmpstr(d, ==, "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  g_assert_true(vms_reg_digest_parse(d, sha));
  g_assert_false(vms_reg_digest_parse("sha256:xyz", sha));
  g_assert_true(vms_reg_is_zero((guint8[4]){ 0 }, 4));
  g_assert_false(vms_reg_is_zero(data + 1, 10));
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/registry/references", test_references);
  g_test_add_func("/registry/challenges", test_challenges);
  g_test_add_func("/registry/auth-file", test_auth_file);
  g_test_add_func("/registry/chunk-index", test_index);
  g_test_add_func("/registry/manifest-json", test_manifest_json);
  g_test_add_func("/registry/blobs", test_blobs);
  return g_test_run();
}
