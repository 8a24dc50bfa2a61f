/* vmsnap registry: the OCI manifest of a snapshot and its chunk index. */
#include "artifact.h"

#include <json-glib/json-glib.h>
#include <string.h>

#include "blob.h"
#include "error.h"
#include "json-bounded.h"
#include "reference.h"

#define INDEX_MAGIC "VMSNCIX1"
#define INDEX_HEADER 32u
#define INDEX_ENTRY 80u

static void
desc_clear(gpointer p)
{
  VmsRegDesc *d = p;

  g_free(d->media_type);
  g_free(d->title);
}

VmsRegArtifact *
vms_reg_artifact_new(void)
{
  VmsRegArtifact *a = g_new0(VmsRegArtifact, 1);

  a->layers = g_array_new(FALSE, TRUE, sizeof(VmsRegDesc));
  g_array_set_clear_func(a->layers, desc_clear);
  return a;
}

void
vms_reg_artifact_free(VmsRegArtifact *a)
{
  if (a == NULL)
    return;
  desc_clear(&a->config);
  g_array_unref(a->layers);
  g_free(a->kind);
  g_free(a->parent_config);
  g_free(a->parent_manifest);
  g_free(a);
}

void
vms_reg_artifact_add(VmsRegArtifact *a, const char *media_type, const char *digest,
                     guint64 size, const char *title)
{
  VmsRegDesc d = { .media_type = g_strdup(media_type), .size = size, .title = g_strdup(title) };

  g_strlcpy(d.digest, digest, sizeof d.digest);
  g_array_append_val(a->layers, d);
}

const VmsRegDesc *
vms_reg_artifact_find(const VmsRegArtifact *a, const char *media_type)
{
  for (guint i = 0; i < a->layers->len; i++) {
    const VmsRegDesc *d = &g_array_index(a->layers, VmsRegDesc, i);
    if (strcmp(d->media_type, media_type) == 0)
      return d;
  }
  return NULL;
}

static void
add_desc(JsonBuilder *b, const VmsRegDesc *d)
{
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "mediaType");
  json_builder_add_string_value(b, d->media_type);
  json_builder_set_member_name(b, "digest");
  json_builder_add_string_value(b, d->digest);
  json_builder_set_member_name(b, "size");
  json_builder_add_int_value(b, (gint64)d->size);
  if (d->title != NULL) {
    json_builder_set_member_name(b, "annotations");
    json_builder_begin_object(b);
    json_builder_set_member_name(b, VMS_REG_ANN_TITLE);
    json_builder_add_string_value(b, d->title);
    json_builder_end_object(b);
  }
  json_builder_end_object(b);
}

static void
add_annotation(JsonBuilder *b, const char *key, const char *value)
{
  if (value == NULL)
    return;
  json_builder_set_member_name(b, key);
  json_builder_add_string_value(b, value);
}

GBytes *
vms_reg_json_bytes(JsonBuilder *b)
{
  g_autoptr(JsonGenerator) gen = json_generator_new();
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  gsize len = 0;
  char *text;

  json_generator_set_root(gen, root);
  text = json_generator_to_data(gen, &len);
  return g_bytes_new_take(text, len);
}

JsonObject *
vms_reg_json_object(JsonParser *parser, GBytes *json)
{
  gsize len;
  const char *data = g_bytes_get_data(json, &len);

  if (!vms_json_check_depth(data, len, VMS_JSON_MAX_DEPTH, NULL) ||
      !json_parser_load_from_data(parser, data, (gssize)len, NULL) ||
      !JSON_NODE_HOLDS_OBJECT(json_parser_get_root(parser)))
    return NULL;
  return json_node_get_object(json_parser_get_root(parser));
}

GBytes *
vms_reg_artifact_to_json(const VmsRegArtifact *a)
{
  g_autoptr(JsonBuilder) b = json_builder_new();

  json_builder_begin_object(b);
  json_builder_set_member_name(b, "schemaVersion");
  json_builder_add_int_value(b, 2);
  json_builder_set_member_name(b, "mediaType");
  json_builder_add_string_value(b, VMS_REG_MT_MANIFEST);
  json_builder_set_member_name(b, "artifactType");
  json_builder_add_string_value(b, VMS_REG_MT_ARTIFACT);
  json_builder_set_member_name(b, "config");
  add_desc(b, &a->config);
  json_builder_set_member_name(b, "layers");
  json_builder_begin_array(b);
  for (guint i = 0; i < a->layers->len; i++)
    add_desc(b, &g_array_index(a->layers, VmsRegDesc, i));
  json_builder_end_array(b);
  json_builder_set_member_name(b, "annotations");
  json_builder_begin_object(b);
  add_annotation(b, VMS_REG_ANN_KIND, a->kind);
  add_annotation(b, VMS_REG_ANN_PARENT_CONFIG, a->parent_config);
  add_annotation(b, VMS_REG_ANN_PARENT_MANIFEST, a->parent_manifest);
  json_builder_end_object(b);
  json_builder_end_object(b);
  return vms_reg_json_bytes(b);
}

/* The member @key of @o if it is an object (array), else NULL. */
static JsonObject *
member_object(JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member(o, key);

  return n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static JsonArray *
member_array(JsonObject *o, const char *key)
{
  JsonNode *n = json_object_get_member(o, key);

  return n != NULL && JSON_NODE_HOLDS_ARRAY(n) ? json_node_get_array(n) : NULL;
}

static gboolean
corrupt(GError **error, const char *what, const char *detail)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s is not a vmsnap snapshot artifact: %s",
              what, detail);
  return FALSE;
}

static gboolean
parse_desc(JsonNode *n, VmsRegDesc *d, const char *what, GError **error)
{
  JsonObject *o;
  JsonObject *ann;
  const char *mt, *digest;
  gint64 size;

  if (n == NULL || !JSON_NODE_HOLDS_OBJECT(n))
    return corrupt(error, what, "a descriptor is not an object");
  o = json_node_get_object(n);
  mt = json_object_get_string_member_with_default(o, "mediaType", NULL);
  digest = json_object_get_string_member_with_default(o, "digest", NULL);
  size = json_object_get_int_member_with_default(o, "size", -1);
  if (mt == NULL || !vms_reg_digest_valid(digest) || size < 0)
    return corrupt(error, what, "a descriptor lacks mediaType, a sha256 digest or a size");
  d->media_type = g_strdup(mt);
  g_strlcpy(d->digest, digest, sizeof d->digest);
  d->size = (guint64)size;
  ann = member_object(o, "annotations");
  if (ann != NULL)
    d->title = g_strdup(json_object_get_string_member_with_default(ann, VMS_REG_ANN_TITLE, NULL));
  return TRUE;
}

static char *
dup_digest_annotation(JsonObject *ann, const char *key)
{
  const char *v = ann != NULL ? json_object_get_string_member_with_default(ann, key, NULL) : NULL;

  return vms_reg_digest_valid(v) ? g_strdup(v) : NULL;
}

VmsRegArtifact *
vms_reg_artifact_from_json(GBytes *json, const char *what, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(VmsRegArtifact) a = vms_reg_artifact_new();
  JsonObject *o = vms_reg_json_object(parser, json), *ann;
  JsonArray *layers;

  if (o == NULL)
    return corrupt(error, what, "its manifest is not a JSON object"), NULL;
  if (json_object_get_int_member_with_default(o, "schemaVersion", 0) != 2 ||
      g_strcmp0(json_object_get_string_member_with_default(o, "artifactType", NULL),
                VMS_REG_MT_ARTIFACT) != 0)
    return corrupt(error, what, "artifactType is not " VMS_REG_MT_ARTIFACT), NULL;
  if (!parse_desc(json_object_get_member(o, "config"), &a->config, what, error))
    return NULL;
  if (strcmp(a->config.media_type, VMS_REG_MT_CONFIG) != 0)
    return corrupt(error, what, "the config is not " VMS_REG_MT_CONFIG), NULL;
  layers = member_array(o, "layers");
  if (layers == NULL || json_array_get_length(layers) > VMS_REG_MAX_LAYERS)
    return corrupt(error, what, "no layers, or too many"), NULL;
  for (guint i = 0; i < json_array_get_length(layers); i++) {
    VmsRegDesc d = { 0 };
    if (!parse_desc(json_array_get_element(layers, i), &d, what, error)) {
      desc_clear(&d);
      return NULL;
    }
    g_array_append_val(a->layers, d);
  }
  ann = member_object(o, "annotations");
  a->kind = g_strdup(ann != NULL ? json_object_get_string_member_with_default(ann, VMS_REG_ANN_KIND, NULL) : NULL);
  a->parent_config = dup_digest_annotation(ann, VMS_REG_ANN_PARENT_CONFIG);
  a->parent_manifest = dup_digest_annotation(ann, VMS_REG_ANN_PARENT_MANIFEST);
  return g_steal_pointer(&a);
}

/* ---- chunk index ---- */

void
vms_reg_index_free(VmsRegIndex *ix)
{
  if (ix == NULL)
    return;
  if (ix->chunks != NULL)
    g_array_unref(ix->chunks);
  g_free(ix);
}

GBytes *
vms_reg_index_encode(const VmsRegIndex *ix)
{
  gsize n = ix->chunks->len;
  gsize len = INDEX_HEADER + INDEX_ENTRY * n;
  guint8 *buf = g_malloc0(len);
  guint32 u32;
  guint64 u64;

  memcpy(buf, INDEX_MAGIC, 8);
  u32 = GUINT32_TO_LE(ix->chunk_size);
  memcpy(buf + 8, &u32, 4);
  u64 = GUINT64_TO_LE(ix->memory_size);
  memcpy(buf + 16, &u64, 8);
  u64 = GUINT64_TO_LE((guint64)n);
  memcpy(buf + 24, &u64, 8);
  for (gsize i = 0; i < n; i++) {
    const VmsRegChunk *c = &g_array_index(ix->chunks, VmsRegChunk, i);
    guint8 *e = buf + INDEX_HEADER + INDEX_ENTRY * i;
    u64 = GUINT64_TO_LE(c->offset);
    memcpy(e, &u64, 8);
    u32 = GUINT32_TO_LE(c->length);
    memcpy(e + 8, &u32, 4);
    u32 = GUINT32_TO_LE(c->blob_size);
    memcpy(e + 12, &u32, 4);
    memcpy(e + 16, c->raw_sha256, 32);
    memcpy(e + 48, c->blob_sha256, 32);
  }
  return g_bytes_new_take(buf, len);
}

static gboolean
index_bad(GError **error, const char *detail, guint64 value)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "chunk index: %s (%" G_GUINT64_FORMAT ")",
              detail, value);
  return FALSE;
}

static gboolean
read_entries(const guint8 *data, guint64 count, VmsRegIndex *ix, GError **error)
{
  guint64 next = 0;

  for (guint64 i = 0; i < count; i++) {
    const guint8 *e = data + INDEX_HEADER + INDEX_ENTRY * i;
    VmsRegChunk c;
    guint64 u64;
    guint32 u32;
    memcpy(&u64, e, 8);
    c.offset = GUINT64_FROM_LE(u64);
    memcpy(&u32, e + 8, 4);
    c.length = GUINT32_FROM_LE(u32);
    memcpy(&u32, e + 12, 4);
    c.blob_size = GUINT32_FROM_LE(u32);
    memcpy(c.raw_sha256, e + 16, 32);
    memcpy(c.blob_sha256, e + 48, 32);
    if (c.offset < next || c.offset % ix->chunk_size != 0)
      return index_bad(error, "a chunk offset is unsorted or unaligned", c.offset);
    if (c.length == 0 || c.length > (guint64)ix->chunk_size * VMS_REG_BLOB_CHUNKS ||
        c.offset + c.length > ix->memory_size)
      return index_bad(error, "a chunk runs past the memory size or the chunk size", c.offset);
    next = c.offset + c.length;
    g_array_append_val(ix->chunks, c);
  }
  return TRUE;
}

VmsRegIndex *
vms_reg_index_decode(GBytes *bytes, GError **error)
{
  g_autoptr(VmsRegIndex) ix = g_new0(VmsRegIndex, 1);
  gsize len;
  const guint8 *data = g_bytes_get_data(bytes, &len);
  guint32 u32;
  guint64 count;

  if (len < INDEX_HEADER || memcmp(data, INDEX_MAGIC, 8) != 0)
    return index_bad(error, "no VMSNCIX1 header; length", len), NULL;
  memcpy(&u32, data + 8, 4);
  ix->chunk_size = GUINT32_FROM_LE(u32);
  memcpy(&u32, data + 12, 4);
  if (u32 != 0)
    return index_bad(error, "unknown flags", GUINT32_FROM_LE(u32)), NULL;
  memcpy(&ix->memory_size, data + 16, 8);
  ix->memory_size = GUINT64_FROM_LE(ix->memory_size);
  memcpy(&count, data + 24, 8);
  count = GUINT64_FROM_LE(count);
  if (ix->chunk_size == 0 || (ix->chunk_size & (ix->chunk_size - 1)) != 0)
    return index_bad(error, "chunk size is not a power of two", ix->chunk_size), NULL;
  if (count > VMS_REG_MAX_LAYERS || len != INDEX_HEADER + INDEX_ENTRY * count)
    return index_bad(error, "count does not match the length", count), NULL;
  ix->chunks = g_array_sized_new(FALSE, FALSE, sizeof(VmsRegChunk), (guint)count);
  if (!read_entries(data, count, ix, error))
    return NULL;
  return g_steal_pointer(&ix);
}

void
vms_reg_group_digest(const guint8 (*digests)[32], guint64 first, guint n, guint8 out[32])
{
  vms_reg_sha256(digests[first], (gsize)n * 32, out);
}

gboolean
vms_reg_index_matches(const VmsRegIndex *ix, const VmsRegArtifact *a, const char *what,
                      GError **error)
{
  guint k = 0;

  for (guint i = 0; i < a->layers->len; i++) {
    const VmsRegDesc *d = &g_array_index(a->layers, VmsRegDesc, i);
    char want[72];
    if (strcmp(d->media_type, VMS_REG_MT_CHUNK) != 0)
      continue;
    if (k >= ix->chunks->len)
      return corrupt(error, what, "more chunk layers than chunk index entries");
    const VmsRegChunk *c = &g_array_index(ix->chunks, VmsRegChunk, k++);
    vms_reg_digest_format(c->blob_sha256, want);
    if (strcmp(want, d->digest) != 0 || d->size != c->blob_size)
      return corrupt(error, what, "a chunk layer differs from its chunk index entry");
  }
  if (k != ix->chunks->len)
    return corrupt(error, what, "fewer chunk layers than chunk index entries");
  return TRUE;
}
