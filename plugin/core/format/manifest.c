/* vmsnap core: the snapshot manifest — encode, size-capped decode, checks
 * and the JSON view. See manifest.h for the contracts. */
#include "manifest.h"
#include "disk-record.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <json-glib/json-glib.h>

#include "error.h"
#include "util.h"
#include "vmsnap-config.h"

/* protobuf-c leaves unset proto3 strings pointing at this shared constant;
 * it must never be freed. */
static gboolean
is_static_string(const char *s)
{
  return s == NULL || s == protobuf_c_empty_string;
}

VmsManifest *
vms_manifest_new(void)
{
  VmsManifest *m = g_new0(VmsManifest, 1);
  Vmsnap__V1__Timestamp *ts = g_new0(Vmsnap__V1__Timestamp, 1);
  struct timespec now;

  vmsnap__v1__snapshot_manifest__init(m);
  vmsnap__v1__timestamp__init(ts);
  clock_gettime(CLOCK_REALTIME, &now);
  ts->seconds = now.tv_sec;
  ts->nanos = (int32_t)now.tv_nsec;
  m->created_at = ts;
  m->version = VMS_MANIFEST_VERSION;
  m->id = g_uuid_string_random();
  m->plugin_version = g_strdup(VMSNAP_VERSION);
  return m;
}

void
vms_manifest_free(VmsManifest *m)
{
  if (m != NULL)
    vmsnap__v1__snapshot_manifest__free_unpacked(m, NULL);
}

void
vms_manifest_set_string(char **field, const char *value)
{
  g_return_if_fail(field != NULL);
  if (!is_static_string(*field))
    g_free(*field);
  *field = value != NULL ? g_strdup(value) : (char *)protobuf_c_empty_string;
}

void
vms_manifest_set_bytes(ProtobufCBinaryData *field, const guint8 *data, gsize len)
{
  g_return_if_fail(field != NULL);
  g_free(field->data);
  field->data = len > 0 ? g_memdup2(data, len) : NULL;
  field->len = len;
}

void
vms_manifest_set_argv(VmsManifest *m, const char *const *argv)
{
  gsize n = argv != NULL ? g_strv_length((char **)argv) : 0;

  g_return_if_fail(m != NULL);
  /* A decoded array is not NULL-terminated: free it by its count. */
  for (gsize i = 0; i < m->n_qemu_argv; i++)
    g_free(m->qemu_argv[i]);
  g_free(m->qemu_argv);
  m->qemu_argv = NULL;
  m->n_qemu_argv = 0;
  if (n == 0)
    return;
  /* n + 1 slots keep it a valid GStrv as well as a protobuf-c array. */
  m->qemu_argv = g_new0(char *, n + 1);
  for (gsize i = 0; i < n; i++)
    m->qemu_argv[i] = g_strdup(argv[i]);
  m->n_qemu_argv = n;
}

/* The trailer: field 23 (content_sha256), wire type 2, tag varint 0xba 0x01,
 * length 32, then the digest. */
static const guint8 seal_tag[] = { 0xba, 0x01, VMS_SHA256_LEN };
#define SEAL_LEN (sizeof seal_tag + VMS_SHA256_LEN)

static void
sha256(const guint8 *data, gsize len, guint8 ret[VMS_SHA256_LEN])
{
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  gsize dlen = VMS_SHA256_LEN;

  g_checksum_update(sum, data, len);
  g_checksum_get_digest(sum, ret, &dlen);
}

GBytes *
vms_manifest_seal(const guint8 *data, gsize len)
{
  guint8 *buf = g_malloc(len + SEAL_LEN);

  memcpy(buf, data, len);
  memcpy(buf + len, seal_tag, sizeof seal_tag);
  sha256(data, len, buf + len + sizeof seal_tag);
  return g_bytes_new_take(buf, len + SEAL_LEN);
}

GBytes *
vms_manifest_encode(const VmsManifest *m)
{
  VmsManifest body;
  g_autofree guint8 *buf = NULL;
  gsize len;

  g_return_val_if_fail(m != NULL, NULL);
  /* A shallow copy without the checksum: it is appended, never packed. */
  body = *m;
  body.content_sha256 = (ProtobufCBinaryData){ 0 };
  len = vmsnap__v1__snapshot_manifest__get_packed_size(&body);
  buf = g_malloc(len > 0 ? len : 1);
  vmsnap__v1__snapshot_manifest__pack(&body, buf);
  return vms_manifest_seal(buf, len);
}

/* The checksum first: a flipped bit anywhere fails here, before protobuf
 * could read a changed value as a valid one. */
static gboolean
check_seal(const guint8 *data, gsize len, GError **error)
{
  guint8 digest[VMS_SHA256_LEN];

  if (len < SEAL_LEN || memcmp(data + len - SEAL_LEN, seal_tag, sizeof seal_tag) != 0) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                        "manifest has no checksum (its last field is not content_sha256): "
                        "corrupt, or written by a vmsnap without manifest checksums");
    return FALSE;
  }
  sha256(data, len - SEAL_LEN, digest);
  if (memcmp(digest, data + len - VMS_SHA256_LEN, VMS_SHA256_LEN) != 0) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                        "manifest is corrupt: its checksum (content_sha256) doesn't match its "
                        "content");
    return FALSE;
  }
  return TRUE;
}

/* Fields this vmsnap doesn't know (from a newer writer, or junk such as a
 * known number with the wrong wire type) are dropped, not carried: protobuf-c
 * would re-encode them verbatim, and a manifest we write must always decode. */
static void
drop_unknown_fields(ProtobufCMessage *msg)
{
  for (unsigned i = 0; i < msg->n_unknown_fields; i++)
    g_free(msg->unknown_fields[i].data);
  g_free(msg->unknown_fields);
  msg->unknown_fields = NULL;
  msg->n_unknown_fields = 0;
}

VmsManifest *
vms_manifest_decode(const guint8 *data, gsize len, GError **error)
{
  g_autoptr(VmsManifest) m = NULL;

  if (len > VMS_MANIFEST_MAX_SIZE) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest is %" G_GSIZE_FORMAT " bytes, more than the %u bytes a manifest may have",
                len, VMS_MANIFEST_MAX_SIZE);
    return NULL;
  }
  if (len == 0) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_CORRUPT, "manifest is empty");
    return NULL;
  }
  if (!check_seal(data, len, error))
    return NULL;
  /* protobuf-c checks every length and count against the remaining input
   * before it allocates, so truncated input fails cleanly here. */
  m = vmsnap__v1__snapshot_manifest__unpack(NULL, len, data);
  if (m == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest (%" G_GSIZE_FORMAT " bytes) is not a valid vmsnap.v1.SnapshotManifest "
                "(truncated or corrupt)", len);
    return NULL;
  }
  drop_unknown_fields(&m->base);
  vms_manifest_set_bytes(&m->content_sha256, NULL, 0); /* checked above; re-made by encode */
  if (m->created_at != NULL)
    drop_unknown_fields(&m->created_at->base);
  if (!vms_manifest_check_complete(m, error))
    return NULL;
  return g_steal_pointer(&m);
}

VmsManifest *
vms_manifest_read_fd(int fd, guint8 ret_sha256[VMS_SHA256_LEN], GError **error)
{
  struct stat st;
  g_autofree guint8 *buf = NULL;
  gssize n;
  VmsManifest *m;

  if (fstat(fd, &st) < 0) {
    vms_set_error_errno(error, errno, "failed to stat the manifest");
    return NULL;
  }
  if (!S_ISREG(st.st_mode)) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_CORRUPT, "manifest is not a regular file");
    return NULL;
  }
  if ((guint64)st.st_size > VMS_MANIFEST_MAX_SIZE) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest is %" G_GINT64_FORMAT " bytes, more than the %u bytes a manifest may have",
                (gint64)st.st_size, VMS_MANIFEST_MAX_SIZE);
    return NULL;
  }
  /* One byte more than fstat said, to notice a file that grew meanwhile. */
  buf = g_malloc((gsize)st.st_size + 1);
  n = vms_pread_full(fd, buf, (gsize)st.st_size + 1, 0);
  if (n < 0) {
    vms_set_error_errno(error, (int)-n, "failed to read the manifest");
    return NULL;
  }
  if (n != st.st_size) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest changed size while it was read (%" G_GINT64_FORMAT " bytes, then %"
                G_GSSIZE_FORMAT ")", (gint64)st.st_size, n);
    return NULL;
  }
  m = vms_manifest_decode(buf, (gsize)n, error);
  if (m != NULL && ret_sha256 != NULL) {
    gsize dlen = VMS_SHA256_LEN;
    g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
    g_checksum_update(sum, buf, n);
    g_checksum_get_digest(sum, ret_sha256, &dlen);
  }
  return m;
}

static gboolean
incomplete(GError **error, const char *what)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "manifest is incomplete: %s", what);
  return FALSE;
}

static gboolean
check_strings_utf8(const VmsManifest *m, GError **error)
{
  const struct { const char *name; const char *value; } fields[] = {
    { "hypervisor_version", m->hypervisor_version }, { "architecture", m->architecture },
    { "parent", m->parent }, { "machine_type", m->machine_type },
    { "plugin_version", m->plugin_version }, { "id", m->id }, { "memory_file", m->memory_file },
    { "ram_block", m->ram_block },
  };

  for (gsize i = 0; i < G_N_ELEMENTS(fields); i++) {
    if (fields[i].value != NULL && !g_utf8_validate(fields[i].value, -1, NULL)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                  "manifest field %s is not valid UTF-8", fields[i].name);
      return FALSE;
    }
  }
  for (gsize i = 0; i < m->n_qemu_argv; i++) {
    if (m->qemu_argv[i] == NULL || !g_utf8_validate(m->qemu_argv[i], -1, NULL))
      return incomplete(error, "an entry of qemu_argv is not valid UTF-8");
  }
  return TRUE;
}

/* memory_file names a file inside the snapshot directory: a plain name,
 * never a path that could leave it. */
static gboolean
check_memory_file(const char *name, GError **error)
{
  if (name == NULL || name[0] == '\0')
    return TRUE;
  if (strchr(name, '/') != NULL || name[0] == '.') {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest memory_file '%s' is not a plain file name", name);
    return FALSE;
  }
  return TRUE;
}

static gboolean
check_diff_fields(const VmsManifest *m, GError **error)
{
  gboolean is_diff = m->kind == VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  gboolean capture_diff = m->memory_capture == VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;

  if (is_diff != capture_diff) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest kind %s doesn't fit memory capture %s",
                vms_manifest_kind_name(m->kind), vms_manifest_capture_name(m->memory_capture));
    return FALSE;
  }
  if (!is_diff)
    return TRUE;
  if (m->parent == NULL || m->parent[0] == '\0')
    return incomplete(error, "a DIFF snapshot without a parent");
  if (m->parent_manifest_sha256.len != VMS_SHA256_LEN)
    return incomplete(error, "a DIFF snapshot without a 32-byte parent_manifest_sha256");
  if (m->page_map_sha256.len != VMS_SHA256_LEN)
    return incomplete(error, "a DIFF snapshot without a 32-byte page_map_sha256");
  return TRUE;
}

gboolean
vms_manifest_check_complete(const VmsManifest *m, GError **error)
{
  g_return_val_if_fail(m != NULL, FALSE);

  if (m->version == 0)
    return incomplete(error, "no version");
  if (m->memory_size_bytes == 0)
    return incomplete(error, "no memory size");
  if (m->vp_count == 0)
    return incomplete(error, "no VP count");
  if (m->page_size == 0 || (m->page_size & (m->page_size - 1)) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                "manifest page size %u is not a power of two", m->page_size);
    return FALSE;
  }
  if (m->architecture == NULL || m->architecture[0] == '\0')
    return incomplete(error, "no architecture");
  if (m->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL &&
      m->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    return incomplete(error, "no known kind (FULL or DIFF)");
  if (m->memory_capture < VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_LINK ||
      m->memory_capture > VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF)
    return incomplete(error, "no known memory capture (LINK, REFLINK, COPY or DIFF)");
  if (m->state_sha256.len != VMS_SHA256_LEN)
    return incomplete(error, "no 32-byte state_sha256");
  if (!check_diff_fields(m, error) || !check_memory_file(m->memory_file, error))
    return FALSE;
  return check_strings_utf8(m, error);
}

static gboolean
mismatch_u64(GError **error, const char *field, guint64 snap, guint64 here)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
              "snapshot %s (%" G_GUINT64_FORMAT ") doesn't match this VM (%" G_GUINT64_FORMAT ")",
              field, snap, here);
  return FALSE;
}

gboolean
vms_manifest_validate(const VmsManifest *m, const char *architecture,
                      guint64 memory_size, guint32 vp_count,
                      guint32 page_size, GError **error)
{
  g_return_val_if_fail(m != NULL && architecture != NULL, FALSE);

  if (m->version != VMS_MANIFEST_VERSION) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "unsupported manifest version %u (this vmsnap reads version %u)",
                m->version, VMS_MANIFEST_VERSION);
    return FALSE;
  }
  if (g_strcmp0(m->architecture, architecture) != 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "snapshot architecture (%s) doesn't match this VM (%s)",
                m->architecture, architecture);
    return FALSE;
  }
  if (m->memory_size_bytes != memory_size)
    return mismatch_u64(error, "memory size", m->memory_size_bytes, memory_size);
  if (m->vp_count != vp_count)
    return mismatch_u64(error, "VP count", m->vp_count, vp_count);
  if (m->page_size != page_size)
    return mismatch_u64(error, "page size", m->page_size, page_size);
  return TRUE;
}

const char *
vms_manifest_kind_name(Vmsnap__V1__SnapshotKind kind)
{
  switch (kind) {
  case VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL:
    return "FULL";
  case VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF:
    return "DIFF";
  default:
    return "UNSPECIFIED";
  }
}

const char *
vms_manifest_capture_name(Vmsnap__V1__MemoryCapture capture)
{
  switch (capture) {
  case VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_LINK:
    return "LINK";
  case VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_REFLINK:
    return "REFLINK";
  case VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_COPY:
    return "COPY";
  case VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF:
    return "DIFF";
  default:
    return "UNSPECIFIED";
  }
}

/* Hashes as lower-case hex; an empty bytes field is null. */
static void
set_hex_member(JsonObject *obj, const char *name, const ProtobufCBinaryData *b)
{
  g_autoptr(GString) hex = NULL;

  if (b->len == 0) {
    json_object_set_null_member(obj, name);
    return;
  }
  hex = g_string_sized_new(b->len * 2);
  for (gsize i = 0; i < b->len; i++)
    g_string_append_printf(hex, "%02x", b->data[i]);
  json_object_set_string_member(obj, name, hex->str);
}

static void
set_str_member(JsonObject *obj, const char *name, const char *value)
{
  json_object_set_string_member(obj, name, value != NULL ? value : "");
}

/* JSON numbers are gint64 here; sizes beyond that cannot occur in practice,
 * but are clamped rather than wrapped to negative. */
static void
set_u64_member(JsonObject *obj, const char *name, guint64 value)
{
  json_object_set_int_member(obj, name, (gint64)MIN(value, (guint64)G_MAXINT64));
}

static void
add_diff_members(JsonObject *obj, const VmsManifest *m)
{
  if (m->parent != NULL && m->parent[0] != '\0')
    json_object_set_string_member(obj, "parent", m->parent);
  else
    json_object_set_null_member(obj, "parent");
  set_hex_member(obj, "parent_manifest_sha256", &m->parent_manifest_sha256);
  set_u64_member(obj, "diff_data_bytes", m->diff_data_bytes);
  set_u64_member(obj, "diff_extents", m->diff_extents);
  set_hex_member(obj, "page_map_sha256", &m->page_map_sha256);
  set_hex_member(obj, "diff_data_sha256", &m->diff_data_sha256);
}

JsonObject *
vms_manifest_to_json(const VmsManifest *m)
{
  JsonObject *obj = json_object_new();
  JsonObject *ts = json_object_new();
  JsonArray *argv = json_array_new();

  json_object_set_int_member(obj, "version", m->version);
  json_object_set_int_member(ts, "seconds", m->created_at != NULL ? m->created_at->seconds : 0);
  json_object_set_int_member(ts, "nanos", m->created_at != NULL ? m->created_at->nanos : 0);
  json_object_set_object_member(obj, "created_at", ts);
  set_str_member(obj, "hypervisor_version", m->hypervisor_version);
  set_u64_member(obj, "memory_size_bytes", m->memory_size_bytes);
  json_object_set_int_member(obj, "vp_count", m->vp_count);
  json_object_set_int_member(obj, "page_size", m->page_size);
  set_str_member(obj, "architecture", m->architecture);
  json_object_set_string_member(obj, "kind", vms_manifest_kind_name(m->kind));
  json_object_set_string_member(obj, "memory_capture",
                                vms_manifest_capture_name(m->memory_capture));
  set_hex_member(obj, "state_sha256", &m->state_sha256);
  set_u64_member(obj, "state_size", m->state_size);
  add_diff_members(obj, m);
  set_str_member(obj, "machine_type", m->machine_type);
  set_str_member(obj, "plugin_version", m->plugin_version);
  set_str_member(obj, "id", m->id);
  for (gsize i = 0; i < m->n_qemu_argv; i++)
    json_array_add_string_element(argv, m->qemu_argv[i]);
  json_object_set_array_member(obj, "qemu_argv", argv);
  set_str_member(obj, "memory_file", m->memory_file);
  json_object_set_array_member(obj, "disks", vms_disks_to_json(m));
  set_str_member(obj, "vm_generation_id", m->vm_generation_id);
  json_object_set_int_member(obj, "target_page_size", m->target_page_size);
  set_str_member(obj, "ram_block", m->ram_block);
  return obj;
}
