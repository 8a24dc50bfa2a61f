/* vmsnap core: the snapshot manifest (proto/vmsnap.proto, vmsnap.v1.SnapshotManifest).
 *
 * Ownership: every VmsManifest is allocated with malloc-compatible memory
 * (glib's g_malloc is malloc), so one free function serves both decoded and
 * hand-built manifests: vms_manifest_free() (protobuf-c's free_unpacked with
 * the default allocator). Set string and bytes fields only through the
 * setters below so that rule holds.
 */
#pragma once

#include <glib.h>
#include "vmsnap.pb-c.h"

G_BEGIN_DECLS

typedef Vmsnap__V1__SnapshotManifest VmsManifest;

#define VMS_MANIFEST_VERSION 1u
/* A manifest.bin larger than this is refused before it is read. */
#define VMS_MANIFEST_MAX_SIZE (16u * 1024u * 1024u)
#define VMS_SHA256_LEN 32u

/* A new manifest with version = VMS_MANIFEST_VERSION, created_at = now,
 * a fresh random UUID in `id`, plugin_version = VMSNAP_VERSION. Never NULL. */
VmsManifest *vms_manifest_new(void);

/* Frees @m and everything it owns. NULL is allowed. */
void vms_manifest_free(VmsManifest *m);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsManifest, vms_manifest_free)

/* Replaces the string at *@field (a char* member of a VmsManifest) with a copy of @value. */
void vms_manifest_set_string(char **field, const char *value);
/* Replaces a bytes member with a copy of @len bytes. */
void vms_manifest_set_bytes(ProtobufCBinaryData *field, const guint8 *data, gsize len);
/* Replaces qemu_argv with a copy of the NULL-terminated @argv. */
void vms_manifest_set_argv(VmsManifest *m, const char *const *argv);

/* Serialises @m, sealed (vms_manifest_seal): the protobuf encoding of every
 * field but content_sha256, then content_sha256 as the last field.
 * Deterministic: the same manifest always gives the same bytes. */
GBytes *vms_manifest_encode(const VmsManifest *m);

/* @data (a protobuf encoding without field 23) with the checksum field
 * appended: tag of field 23, length 32, SHA-256 of @data. Tests and the
 * fuzzer use it to seal hand-made encodings. */
GBytes *vms_manifest_seal(const guint8 *data, gsize len);

/* Decodes @len bytes. Refuses more than VMS_MANIFEST_MAX_SIZE; then input
 * whose last field is not a content_sha256 matching the SHA-256 of the
 * bytes before it (any flipped bit fails here: "checksum"); then input that
 * is not a valid protobuf, and a message that lacks what every manifest
 * needs (see vms_manifest_check_complete). Returns NULL with
 * VMS_ERROR_CORRUPT. The decoded content_sha256 is cleared. */
VmsManifest *vms_manifest_decode(const guint8 *data, gsize len, GError **error);

/* Reads and decodes a whole manifest from @fd (a regular file, read from
 * offset 0). The size is checked with fstat before anything is read. On
 * success, if @ret_sha256 is not NULL it receives the SHA-256 of the bytes. */
VmsManifest *vms_manifest_read_fd(int fd, guint8 ret_sha256[VMS_SHA256_LEN], GError **error);

/* Checks that @m carries every field a committed snapshot must have:
 * memory size, vCPU count, page size (a power of two), architecture, kind,
 * memory capture, a 32-byte state_sha256, and for DIFF a parent, a 32-byte
 * parent_manifest_sha256 and page_map_sha256. The version is NOT checked here
 * (an unknown version must decode so that the error can name it). */
gboolean vms_manifest_check_complete(const VmsManifest *m, GError **error);

/* Validates @m against this VM. Fails with VMS_ERROR_MISMATCH and a message
 * naming the field and both values, checked in this order: "version",
 * "architecture", "memory size", "VP count", "page size". E.g.
 * "snapshot VP count (2) doesn't match this VM (4)". */
gboolean vms_manifest_validate(const VmsManifest *m, const char *architecture,
                               guint64 memory_size, guint32 vp_count,
                               guint32 page_size, GError **error);

/* The manifest as a JSON object (field names as in the .proto, hashes as
 * lower-case hex, enums as "FULL"/"DIFF" and "LINK"/"REFLINK"/"COPY"/"DIFF",
 * created_at as {seconds, nanos}). Used by `vmsnap info --json` and
 * `snapshot-info`. Caller owns the returned object. */
typedef struct _JsonObject JsonObject;
JsonObject *vms_manifest_to_json(const VmsManifest *m);

/* Short names of the enums, as in the JSON above ("FULL", "LINK", ...). */
const char *vms_manifest_kind_name(Vmsnap__V1__SnapshotKind kind);
const char *vms_manifest_capture_name(Vmsnap__V1__MemoryCapture capture);

G_END_DECLS
