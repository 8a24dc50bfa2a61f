/* vmsnap registry: what happens to a blob's bytes — SHA-256 digests,
 * zstd compression, zero detection. Thread-safe: each thread keeps its own
 * zstd contexts. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* zstd level of every blob: fast enough to keep up with a local network on
 * one core (doc/design.md); the same level always gives the same bytes, so
 * a chunk's digest is stable and deduplicates. */
#define VMS_REG_ZSTD_LEVEL 1

/* SHA-256 of @len bytes (OpenSSL, SHA-NI where the CPU has it). */
void vms_reg_sha256(const void *data, gsize len, guint8 out[32]);
/* "sha256:<hex>" of @len bytes into @out (72 bytes). */
void vms_reg_digest_of(const void *data, gsize len, char out[72]);
/* "sha256:<hex>" of a raw 32-byte digest into @out (72 bytes). */
void vms_reg_digest_format(const guint8 sha[32], char out[72]);
/* Parses "sha256:<hex>" into 32 bytes. FALSE if malformed. */
gboolean vms_reg_digest_parse(const char *digest, guint8 out[32]);

/* TRUE if all @len bytes are zero. */
gboolean vms_reg_is_zero(const void *data, gsize len);

/* zstd-compresses @len bytes at VMS_REG_ZSTD_LEVEL. Never NULL. */
GBytes *vms_reg_compress(const void *data, gsize len);

/* Decompresses @in into @out, which must come out exactly @out_len bytes
 * long. Fails with VMS_ERROR_CORRUPT naming @what. */
gboolean vms_reg_decompress(const void *in, gsize in_len, void *out, gsize out_len,
                            const char *what, GError **error);

G_END_DECLS
