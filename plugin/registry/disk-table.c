/* vmsnap registry: the disk table of a snapshot artifact (disk-table.h). */
#include "disk-table.h"

#include <json-glib/json-glib.h>
#include <string.h>

#include "artifact.h"
#include "chunks.h"
#include "error.h"
#include "reference.h"

static void
file_clear(gpointer p)
{
  g_free(((VmsRegDiskFile *)p)->format);
}

static void
entry_clear(gpointer p)
{
  VmsRegDiskEntry *e = p;

  g_free(e->device);
  if (e->files != NULL)
    g_array_unref(e->files);
}

VmsRegDiskTable *
vms_reg_disk_table_new(guint32 chunk_size)
{
  VmsRegDiskTable *t = g_new0(VmsRegDiskTable, 1);

  t->chunk_size = chunk_size;
  t->disks = g_array_new(FALSE, TRUE, sizeof(VmsRegDiskEntry));
  g_array_set_clear_func(t->disks, entry_clear);
  return t;
}

void
vms_reg_disk_table_free(VmsRegDiskTable *t)
{
  if (t == NULL)
    return;
  g_array_unref(t->disks);
  g_free(t);
}

VmsRegDiskEntry *
vms_reg_disk_table_add(VmsRegDiskTable *t, const char *device)
{
  VmsRegDiskEntry e = { .device = g_strdup(device), .parent_file = -1 };

  e.files = g_array_new(FALSE, TRUE, sizeof(VmsRegDiskFile));
  g_array_set_clear_func(e.files, file_clear);
  g_array_append_val(t->disks, e);
  return &g_array_index(t->disks, VmsRegDiskEntry, t->disks->len - 1);
}

void
vms_reg_disk_entry_add_file(VmsRegDiskEntry *e, const char *format, guint64 size,
                            const char *digests, const char *index)
{
  VmsRegDiskFile f = { .format = g_strdup(format), .size = size };

  g_strlcpy(f.digests, digests, sizeof f.digests);
  g_strlcpy(f.index, index, sizeof f.index);
  g_array_append_val(e->files, f);
}

guint64
vms_reg_disk_chunk_count(guint64 size, guint32 chunk_size)
{
  return size / chunk_size + (size % chunk_size != 0);
}

static void
set_string(JsonBuilder *b, const char *key, const char *value)
{
  json_builder_set_member_name(b, key);
  json_builder_add_string_value(b, value);
}

static void
add_file(JsonBuilder *b, const VmsRegDiskFile *f)
{
  json_builder_begin_object(b);
  set_string(b, "format", f->format);
  json_builder_set_member_name(b, "size");
  json_builder_add_int_value(b, (gint64)f->size);
  set_string(b, "digests", f->digests);
  set_string(b, "index", f->index);
  json_builder_end_object(b);
}

GBytes *
vms_reg_disk_table_to_json(const VmsRegDiskTable *t)
{
  g_autoptr(JsonBuilder) b = json_builder_new();

  json_builder_begin_object(b);
  json_builder_set_member_name(b, "chunk_size");
  json_builder_add_int_value(b, t->chunk_size);
  json_builder_set_member_name(b, "disks");
  json_builder_begin_array(b);
  for (guint i = 0; i < t->disks->len; i++) {
    const VmsRegDiskEntry *e = &g_array_index(t->disks, VmsRegDiskEntry, i);
    json_builder_begin_object(b);
    set_string(b, "device", e->device);
    json_builder_set_member_name(b, "files");
    json_builder_begin_array(b);
    for (guint j = 0; j < e->files->len; j++)
      add_file(b, &g_array_index(e->files, VmsRegDiskFile, j));
    json_builder_end_array(b);
    if (e->parent_file >= 0) {
      json_builder_set_member_name(b, "parent_file");
      json_builder_add_int_value(b, e->parent_file);
    }
    json_builder_end_object(b);
  }
  json_builder_end_array(b);
  json_builder_end_object(b);
  return vms_reg_json_bytes(b);
}

static gboolean
table_bad(GError **error, const char *what, const char *detail)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "%s: its disk table is not valid: %s", what,
              detail);
  return FALSE;
}

static gboolean
format_ok(const char *f)
{
  if (f == NULL || f[0] == '\0' || strlen(f) > 16)
    return FALSE;
  for (; *f != '\0'; f++)
    if (!g_ascii_islower(*f) && !g_ascii_isdigit(*f))
      return FALSE;
  return TRUE;
}

static gboolean
parse_file(JsonNode *n, VmsRegDiskEntry *e, const char *what, GError **error)
{
  JsonObject *o = n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
  const char *format, *digests, *index;
  gint64 size;

  if (o == NULL)
    return table_bad(error, what, "a file is not an object");
  format = json_object_get_string_member_with_default(o, "format", NULL);
  digests = json_object_get_string_member_with_default(o, "digests", NULL);
  index = json_object_get_string_member_with_default(o, "index", NULL);
  size = json_object_get_int_member_with_default(o, "size", -1);
  if (!format_ok(format) || size < 0 || !vms_reg_digest_valid(digests) ||
      !vms_reg_digest_valid(index))
    return table_bad(error, what, "a file lacks a format, a size or its layer digests");
  vms_reg_disk_entry_add_file(e, format, (guint64)size, digests, index);
  return TRUE;
}

static gboolean
parse_entry(JsonNode *n, VmsRegDiskTable *t, const char *what, GError **error)
{
  JsonObject *o = n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
  JsonNode *files = o != NULL ? json_object_get_member(o, "files") : NULL;
  const char *device = o != NULL ? json_object_get_string_member_with_default(o, "device", NULL) : NULL;
  VmsRegDiskEntry *e;
  JsonArray *a;

  if (device == NULL || device[0] == '\0' || files == NULL || !JSON_NODE_HOLDS_ARRAY(files))
    return table_bad(error, what, "a disk lacks its device or files");
  e = vms_reg_disk_table_add(t, device);
  a = json_node_get_array(files);
  if (json_array_get_length(a) > 64)
    return table_bad(error, what, "a disk chain longer than 64 files");
  for (guint j = 0; j < json_array_get_length(a); j++)
    if (!parse_file(json_array_get_element(a, j), e, what, error))
      return FALSE;
  if (json_object_has_member(o, "parent_file")) {
    gint64 k = json_object_get_int_member_with_default(o, "parent_file", -1);
    if (k < 0 || k > 64)
      return table_bad(error, what, "parent_file out of range");
    e->parent_file = (gint)k;
  }
  return TRUE;
}

VmsRegDiskTable *
vms_reg_disk_table_from_json(GBytes *json, const char *what, GError **error)
{
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(VmsRegDiskTable) t = NULL;
  JsonObject *o = vms_reg_json_object(parser, json);
  JsonNode *disks;
  gint64 cs;

  if (o == NULL)
    return table_bad(error, what, "not a JSON object"), NULL;
  cs = json_object_get_int_member_with_default(o, "chunk_size", 0);
  if (cs < VMS_CHUNK_SIZE_MIN || cs > VMS_CHUNK_SIZE_MAX || (cs & (cs - 1)) != 0)
    return table_bad(error, what, "chunk_size is not a power of two in range"), NULL;
  disks = json_object_get_member(o, "disks");
  if (disks == NULL || !JSON_NODE_HOLDS_ARRAY(disks))
    return table_bad(error, what, "no disks array"), NULL;
  t = vms_reg_disk_table_new((guint32)cs);
  for (guint i = 0; i < json_array_get_length(json_node_get_array(disks)); i++)
    if (!parse_entry(json_array_get_element(json_node_get_array(disks), i), t, what, error))
      return NULL;
  return g_steal_pointer(&t);
}
