/* vmsnap registry: digests and compression of blobs. */
#include "blob.h"

#include <openssl/evp.h>
#include <string.h>
#include <zstd.h>

#include "error.h"
#include "util.h"

void
vms_reg_sha256(const void *data, gsize len, guint8 out[32])
{
  unsigned int n = 32;

  EVP_Digest(data, len, out, &n, EVP_sha256(), NULL);
}

void
vms_reg_digest_format(const guint8 sha[32], char out[72])
{
  memcpy(out, "sha256:", 7);
  vms_sha256_hex(sha, out + 7);
}

void
vms_reg_digest_of(const void *data, gsize len, char out[72])
{
  guint8 sha[32];

  vms_reg_sha256(data, len, sha);
  vms_reg_digest_format(sha, out);
}

gboolean
vms_reg_digest_parse(const char *digest, guint8 out[32])
{
  if (digest == NULL || !g_str_has_prefix(digest, "sha256:") || strlen(digest) != 71)
    return FALSE;
  for (int i = 0; i < 32; i++) {
    int hi = g_ascii_xdigit_value(digest[7 + 2 * i]);
    int lo = g_ascii_xdigit_value(digest[8 + 2 * i]);
    if (hi < 0 || lo < 0)
      return FALSE;
    out[i] = (guint8)(hi << 4 | lo);
  }
  return TRUE;
}

gboolean
vms_reg_is_zero(const void *data, gsize len)
{
  const guint8 *p = data;

  /* Compare the buffer with itself shifted: memcmp is vectorised. */
  if (len == 0)
    return TRUE;
  return p[0] == 0 && memcmp(p, p + 1, len - 1) == 0;
}

static void
free_cctx(gpointer p)
{
  ZSTD_freeCCtx(p);
}

static void
free_dctx(gpointer p)
{
  ZSTD_freeDCtx(p);
}

static GPrivate cctx_key = G_PRIVATE_INIT(free_cctx);
static GPrivate dctx_key = G_PRIVATE_INIT(free_dctx);

GBytes *
vms_reg_compress(const void *data, gsize len)
{
  ZSTD_CCtx *cctx = g_private_get(&cctx_key);
  gsize bound = ZSTD_compressBound(len);
  guint8 *out = g_malloc(bound);
  size_t n;

  if (cctx == NULL) {
    cctx = ZSTD_createCCtx();
    g_assert(cctx != NULL);
    g_private_set(&cctx_key, cctx);
  }
  n = ZSTD_compressCCtx(cctx, out, bound, data, len, VMS_REG_ZSTD_LEVEL);
  g_assert(!ZSTD_isError(n)); /* only fails for a too small buffer */
  return g_bytes_new_take(g_realloc(out, MAX(n, 1)), n);
}

gboolean
vms_reg_decompress(const void *in, gsize in_len, void *out, gsize out_len, const char *what,
                   GError **error)
{
  ZSTD_DCtx *dctx = g_private_get(&dctx_key);
  unsigned long long content = ZSTD_getFrameContentSize(in, in_len);
  size_t n;

  if (content != out_len) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "%s: the zstd frame does not hold %" G_GSIZE_FORMAT " bytes", what, out_len);
    return FALSE;
  }
  if (dctx == NULL) {
    dctx = ZSTD_createDCtx();
    g_assert(dctx != NULL);
    g_private_set(&dctx_key, dctx);
  }
  n = ZSTD_decompressDCtx(dctx, out, out_len, in, in_len);
  if (ZSTD_isError(n) || n != out_len) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s: zstd data is corrupt (%s)", what,
                ZSTD_isError(n) ? ZSTD_getErrorName(n) : "short");
    return FALSE;
  }
  return TRUE;
}
