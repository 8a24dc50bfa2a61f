/* vmsnap core: chunk digests of guest memory (doc/spec.md section 10,
 * doc/format.md "memory.chunks").
 *
 * A snapshot's memory is hashed in fixed-size chunks (VMS_CHUNK_SIZE, 1 MiB):
 *
 * - FULL: the chunk stream is memory.bin itself, bytes [0, memory_size).
 * - DIFF: the chunk stream is the diff's data: the pages of its page map
 *   (memory.map), concatenated in map order. A diff's chunks therefore cost
 *   what the diff holds, not the guest's size.
 *
 * Chunk i covers stream bytes [i * chunk_size, min((i + 1) * chunk_size,
 * data_size)); only the last chunk may be shorter. Each chunk's digest is
 * the SHA-256 of its bytes (holes read as zeros). An all-zero chunk is the
 * one whose digest equals the SHA-256 of that many zero bytes
 * (vms_chunk_index_is_zero): nothing else marks it, so any reader can tell.
 *
 * The digests live in memory.chunks beside manifest.bin, written after the
 * commit (outside the save's downtime). The file binds to the manifest: it
 * carries the SHA-256 of manifest.bin's bytes, and a file whose binding,
 * sizes or own trailing SHA-256 is wrong is refused. A snapshot without
 * memory.chunks has no digests (VMS_ERROR_NO_DIGESTS): it is reported as
 * such, never as verified.
 *
 * Hashing uses libcrypto's SHA-256 (SHA-NI where the CPU has it: ~1.4 GB/s
 * here, GChecksum ~0.23 GB/s). Chunks that lie in a hole of the file
 * (SEEK_DATA) or read as all zeros are not hashed: their digest is the
 * precomputed zero digest.
 *
 * Threading: no global state; every function may run on any thread. A VmsChunkIndex is not shared between threads while one
 * of them changes it.
 */
#pragma once

#include <glib.h>
#include "snapdir.h"

G_BEGIN_DECLS

#define VMS_CHUNKS_FILE "memory.chunks"
/* The chunk size every writer uses. Readers accept any power of two from
 * 64 KiB to 64 MiB recorded in the file. */
#define VMS_CHUNK_SIZE (1u << 20)
#define VMS_CHUNK_SIZE_MIN (1u << 16)
#define VMS_CHUNK_SIZE_MAX (1u << 26)

typedef struct {
  guint32 chunk_size;                  /* bytes per chunk (the last may be shorter) */
  guint64 data_size;                   /* bytes of the chunk stream */
  guint64 count;                       /* ceil(data_size / chunk_size) */
  guint8 manifest_sha256[VMS_SHA256_LEN]; /* binding: SHA-256 of manifest.bin */
  guint8 (*digests)[VMS_SHA256_LEN];   /* count digests, chunk order */
  /* private: the zero digests of a full chunk and of the last chunk */
  guint8 zero_full[VMS_SHA256_LEN];
  guint8 zero_last[VMS_SHA256_LEN];
} VmsChunkIndex;

/* Where a chunk stream comes from: an open memory file and, for a diff, its
 * page map (the stream is the map's extents, in order). Opaque; built by
 * vms_chunk_source_new or vms_snapshot_chunk_source. */
typedef struct _VmsChunkSource VmsChunkSource;

/* A source over @fd (borrowed: the caller keeps it open while the source
 * lives, and closes it). @extents (nullable, copied) is a diff's page list;
 * NULL makes the stream [0, @file_size) of @fd. Extents must lie inside
 * @file_size (else VMS_ERROR_CORRUPT). */
VmsChunkSource *vms_chunk_source_new(int fd, const GArray *extents, guint64 file_size,
                                     GError **error);
void vms_chunk_source_free(VmsChunkSource *src);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsChunkSource, vms_chunk_source_free)

/* Bytes of the stream: the file size, or the extents' total. */
guint64 vms_chunk_source_size(const VmsChunkSource *src);

/* A new index of ceil(@data_size / @chunk_size) digests, each the zero
 * digest (an index of an all-zero stream), no binding. @chunk_size must be
 * a power of two in [VMS_CHUNK_SIZE_MIN, VMS_CHUNK_SIZE_MAX]. */
VmsChunkIndex *vms_chunk_index_new(guint32 chunk_size, guint64 data_size);
void vms_chunk_index_free(VmsChunkIndex *idx);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsChunkIndex, vms_chunk_index_free)

/* Length of chunk @i (chunk_size, or less for the last). @i < count. */
guint32 vms_chunk_index_length(const VmsChunkIndex *idx, guint64 i);

/* TRUE if chunk @i is all zeros (its digest is the zero digest of its
 * length). The registry stores such chunks as absent. */
gboolean vms_chunk_index_is_zero(const VmsChunkIndex *idx, guint64 i);

/* SHA-256 of @len bytes. */
void vms_chunk_digest(const void *data, gsize len, guint8 ret_sha256[VMS_SHA256_LEN]);

/* Computes every digest of @src into a new index (no binding yet).
 * Reads the file once, in order. */
gboolean vms_chunks_compute(const VmsChunkSource *src, guint32 chunk_size,
                            VmsChunkIndex **ret_idx, GError **error);

/* Reads chunk @i's bytes of @src into @buf (at least its length; see
 * vms_chunk_index_length), gathering a diff's pages from their file offsets. */
gboolean vms_chunk_read(const VmsChunkSource *src, const VmsChunkIndex *idx, guint64 i,
                        guint8 *buf, GError **error);

/* The reverse, for pull: writes chunk @i's bytes from @buf to @dst_fd at the
 * file offsets @src's layout gives them (@src's own fd is not used, so a
 * source built over the target file, or over any fd with the same layout,
 * serves). The caller checks the digest first (vms_chunk_digest). A zero
 * chunk may be skipped by the caller when @dst_fd is a new sparse file.
 * Does not fsync. */
gboolean vms_chunk_write(const VmsChunkSource *src, const VmsChunkIndex *idx, guint64 i,
                         int dst_fd, const guint8 *buf, GError **error);

/* Checks chunks [@first, @first + @n) of @src against @idx. A mismatch fails
 * with VMS_ERROR_CORRUPT naming @what (the file), the chunk, its bytes in the
 * stream and, for a diff, the file offset where it starts. @n is clipped
 * to the count. */
gboolean vms_chunks_verify_range(const VmsChunkSource *src, const VmsChunkIndex *idx,
                                 const char *what, guint64 first, guint64 n, GError **error);

/* Writes @idx as @dirfd/memory.chunks, bound to @manifest_sha256: staged as
 * memory.chunks.tmp (O_NOFOLLOW, 0600), fsync, rename, fsync of the
 * directory. An existing memory.chunks is replaced. */
gboolean vms_chunks_write_at(int dirfd, const VmsChunkIndex *idx,
                             const guint8 manifest_sha256[VMS_SHA256_LEN], GError **error);

/* Reads and checks @dirfd/memory.chunks: magic, flags, its trailing SHA-256,
 * the binding to @manifest_sha256, that its data size is @expect_data_size
 * and its count fits. A missing file fails with VMS_ERROR_NO_DIGESTS; any
 * other defect with VMS_ERROR_CORRUPT naming the file. */
gboolean vms_chunks_read_at(int dirfd, const guint8 manifest_sha256[VMS_SHA256_LEN],
                            guint64 expect_data_size, VmsChunkIndex **ret_idx, GError **error);

/* ---- a committed snapshot's chunks ---- */

/* Opens @s's memory file (read-only; the source owns and closes that fd)
 * and, for a DIFF, reads its page map (checked against page_map_sha256).
 * The file must be memory_size_bytes long. Errors name the file. */
VmsChunkSource *vms_snapshot_chunk_source(VmsSnapshot *s, GError **error);

/* vms_chunks_read_at for @s (bound to s->manifest_sha256). */
gboolean vms_snapshot_read_chunks(VmsSnapshot *s, VmsChunkIndex **ret_idx, GError **error);

/* Computes @s's digests and writes memory.chunks (after the commit). */
gboolean vms_snapshot_write_chunks(VmsSnapshot *s, GError **error);

/* Checks every chunk of @s's memory against memory.chunks. No digests:
 * VMS_ERROR_NO_DIGESTS ("... has no memory digests ..."). */
gboolean vms_snapshot_verify_chunks(VmsSnapshot *s, GError **error);

G_END_DECLS
