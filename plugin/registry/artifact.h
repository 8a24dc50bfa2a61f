/* vmsnap registry: a snapshot as one OCI artifact (doc/format.md,
 * "Registry artifacts").
 *
 * An OCI image manifest with artifactType application/vnd.vmsnap.snapshot.v1;
 * config = manifest.bin as is; layers in this order: state.bin, memory.map
 * (diffs), memory.chunks (the chunk digests of doc/spec.md section 10), the
 * chunk index, then one layer per non-zero chunk of the memory's chunk
 * stream, in index order. A diff names its parent by the digest of the parent's
 * manifest.bin and of the parent's OCI manifest (annotations).
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>

G_BEGIN_DECLS

#define VMS_REG_MT_MANIFEST "application/vnd.oci.image.manifest.v1+json"
#define VMS_REG_MT_ARTIFACT "application/vnd.vmsnap.snapshot.v1"
#define VMS_REG_MT_CONFIG "application/vnd.vmsnap.manifest.v1+protobuf"
#define VMS_REG_MT_STATE "application/vnd.vmsnap.state.v1+zstd"
#define VMS_REG_MT_PAGEMAP "application/vnd.vmsnap.page-map.v1+zstd"
#define VMS_REG_MT_DIGESTS "application/vnd.vmsnap.chunk-digests.v1"
#define VMS_REG_MT_INDEX "application/vnd.vmsnap.chunk-index.v1"
#define VMS_REG_MT_CHUNK "application/vnd.vmsnap.memory-chunk.v1+zstd"

#define VMS_REG_ANN_KIND "org.vmsnap.kind"
#define VMS_REG_ANN_PARENT_CONFIG "org.vmsnap.parent.config"
#define VMS_REG_ANN_PARENT_MANIFEST "org.vmsnap.parent.manifest"
#define VMS_REG_ANN_TITLE "org.opencontainers.image.title"

/* A memory blob holds up to this many consecutive non-zero chunks of the
 * chunk stream (chunks.h), from one aligned window of that many chunks:
 * 8 MiB blobs, so a push or pull costs the registry an eighth of the
 * requests that 1 MiB blobs would (doc/format.md, doc/performance.md),
 * while every 1 MiB chunk is still checked against memory.chunks. */
#define VMS_REG_BLOB_CHUNKS 8u
/* An artifact with more layers than this is refused (a 256 GiB guest). */
#define VMS_REG_MAX_LAYERS 65536u

typedef struct {
  char *media_type;
  char digest[72];
  guint64 size;
  char *title; /* org.opencontainers.image.title or NULL */
} VmsRegDesc;

typedef struct {
  VmsRegDesc config;
  GArray *layers;        /* VmsRegDesc, owned (vms_reg_desc_clear) */
  char *kind;            /* "FULL" / "DIFF" */
  char *parent_config;   /* DIFF: sha256 of the parent's manifest.bin, else NULL */
  char *parent_manifest; /* DIFF: digest of the parent's OCI manifest, else NULL */
} VmsRegArtifact;

VmsRegArtifact *vms_reg_artifact_new(void);
void vms_reg_artifact_free(VmsRegArtifact *a);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegArtifact, vms_reg_artifact_free)

/* Appends a layer descriptor (copies the strings). */
void vms_reg_artifact_add(VmsRegArtifact *a, const char *media_type, const char *digest,
                          guint64 size, const char *title);
/* The first layer of @media_type, or NULL. */
const VmsRegDesc *vms_reg_artifact_find(const VmsRegArtifact *a, const char *media_type);

/* The OCI manifest JSON. Deterministic: the same artifact gives the same bytes. */
GBytes *vms_reg_artifact_to_json(const VmsRegArtifact *a);
/* Parses and checks an OCI manifest: schemaVersion 2, our artifactType and
 * config media type, valid digests, at most VMS_REG_MAX_LAYERS layers.
 * Fails with VMS_ERROR_CORRUPT naming @what (the reference). */
VmsRegArtifact *vms_reg_artifact_from_json(GBytes *json, const char *what, GError **error);

/* The JSON of @b's root (json-glib's generator, not pretty): the same
 * builder calls give the same bytes. */
GBytes *vms_reg_json_bytes(JsonBuilder *b);
/* @json parsed by @parser (which owns the result) if it is a JSON object
 * of bounded depth, else NULL. */
JsonObject *vms_reg_json_object(JsonParser *parser, GBytes *json);

/* ---- the chunk index (binary, little-endian; doc/format.md) ---- */

typedef struct {
  guint64 offset;     /* in the chunk stream (chunks.h), a multiple of chunk_size */
  guint32 length;     /* raw bytes: whole chunks (the stream's last may be short) */
  guint32 blob_size;  /* compressed bytes */
  guint8 raw_sha256[32];  /* vms_reg_group_digest of the chunks it holds */
  guint8 blob_sha256[32];
} VmsRegChunk;

typedef struct {
  guint32 chunk_size;
  guint64 memory_size; /* bytes of the chunk stream: memory size, or a diff's data bytes */
  GArray *chunks; /* VmsRegChunk, sorted by offset, only non-zero chunks */
} VmsRegIndex;

void vms_reg_index_free(VmsRegIndex *ix);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegIndex, vms_reg_index_free)

GBytes *vms_reg_index_encode(const VmsRegIndex *ix);
/* Decodes and checks: magic, flags 0, count against the size, every chunk
 * inside memory_size, aligned, sorted, length <= chunk_size. */
VmsRegIndex *vms_reg_index_decode(GBytes *data, GError **error);

/* SHA-256 over the memory.chunks digests of chunks [@first, @first + @n):
 * what a blob's raw content must hash to, chunk by chunk. */
void vms_reg_group_digest(const guint8 (*digests)[32], guint64 first, guint n, guint8 out[32]);

/* TRUE if the chunk layers of @a (media type VMS_REG_MT_CHUNK, in order)
 * are exactly @ix's blobs with their sizes; else fails naming @what. */
gboolean vms_reg_index_matches(const VmsRegIndex *ix, const VmsRegArtifact *a, const char *what,
                               GError **error);

G_END_DECLS
