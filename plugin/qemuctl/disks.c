/* vmsnap qemuctl: the QMP steps of a disk freeze (see disks.h). */
#include "disks.h"

#include <json-glib/json-glib.h>

#include "error.h"
#include "qcow2.h"

#define QMP_TIMEOUT_MS 10000
#define TRANSACTION_TIMEOUT_MS 30000

static void
layer_clear(gpointer p)
{
  VmsBlockLayer *l = p;

  g_clear_pointer(&l->file, g_free);
  g_clear_pointer(&l->format, g_free);
}

void
vms_block_device_free(VmsBlockDevice *d)
{
  if (d == NULL)
    return;
  g_free(d->device);
  g_free(d->qdev);
  g_free(d->node_name);
  layer_clear(&d->top);
  g_clear_pointer(&d->backing, g_array_unref);
  g_free(d);
}

/* An ImageInfo's filename and format into @ret. */
static gboolean
parse_layer(JsonObject *image, const char *device, VmsBlockLayer *ret, GError **error)
{
  const char *file = json_object_get_string_member_with_default(image, "filename", NULL);
  const char *format = json_object_get_string_member_with_default(image, "format", NULL);

  if (file == NULL || format == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP,
                "query-block: disk %s has an image without filename or format", device);
    return FALSE;
  }
  ret->file = g_strdup(file);
  ret->format = g_strdup(format);
  return TRUE;
}

/* @o's object member @name, or NULL when it is absent or not an object
 * (json_object_get_object_member warns on a missing member). */
static JsonObject *
object_member(JsonObject *o, const char *name)
{
  JsonNode *n = o != NULL ? json_object_get_member(o, name) : NULL;

  return n != NULL && JSON_NODE_HOLDS_OBJECT(n) ? json_node_get_object(n) : NULL;
}

static VmsBlockDevice *
parse_device(JsonObject *info, JsonObject *inserted, GError **error)
{
  g_autoptr(VmsBlockDevice) d = g_new0(VmsBlockDevice, 1);
  const char *device = json_object_get_string_member_with_default(info, "device", "");
  const char *node = json_object_get_string_member_with_default(inserted, "node-name", NULL);
  JsonObject *image = object_member(inserted, "image");

  d->backing = g_array_new(FALSE, TRUE, sizeof(VmsBlockLayer));
  g_array_set_clear_func(d->backing, layer_clear);
  if (node == NULL || image == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_QMP,
                "query-block: disk '%s' has no node-name or image", device);
    return NULL;
  }
  d->node_name = g_strdup(node);
  d->device = g_strdup(device[0] != '\0' ? device : node);
  d->qdev = g_strdup(json_object_get_string_member_with_default(info, "qdev", ""));
  d->read_only = json_object_get_boolean_member_with_default(inserted, "ro", FALSE);
  d->virtual_size = (guint64)json_object_get_int_member_with_default(image, "virtual-size", 0);
  if (!parse_layer(image, d->device, &d->top, error))
    return NULL;
  for (JsonObject *b = object_member(image, "backing-image"); b != NULL;
       b = object_member(b, "backing-image")) {
    VmsBlockLayer layer = { 0 };
    if (!parse_layer(b, d->device, &layer, error))
      return NULL;
    g_array_append_val(d->backing, layer);
  }
  return g_steal_pointer(&d);
}

GPtrArray *
vms_disks_query(VmsQmpClient *qmp, GError **error)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "query-block", NULL, -1, QMP_TIMEOUT_MS,
                                                   error);
  g_autoptr(GPtrArray) devices = g_ptr_array_new_with_free_func(
    (GDestroyNotify)vms_block_device_free);
  JsonArray *list;

  if (ret == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_ARRAY(ret)) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_QMP, "query-block: the reply is not a list");
    return NULL;
  }
  list = json_node_get_array(ret);
  for (guint i = 0; i < json_array_get_length(list); i++) {
    JsonObject *info = json_array_get_object_element(list, i);
    JsonObject *inserted = object_member(info, "inserted");
    VmsBlockDevice *d;
    if (inserted == NULL)
      continue; /* no medium */
    d = parse_device(info, inserted, error);
    if (d == NULL)
      return NULL;
    g_ptr_array_add(devices, d);
  }
  return g_steal_pointer(&devices);
}

gboolean
vms_disks_create_overlay(const char *path, const char *backing, const char *backing_format,
                         guint64 size, GError **error)
{
  return vms_qcow2_create_overlay(path, backing, backing_format, size, error);
}

gboolean
vms_disks_add_overlay(VmsQmpClient *qmp, const char *node, const char *path, GError **error)
{
  g_autoptr(JsonObject) args = json_object_new();
  JsonObject *file = json_object_new();
  g_autoptr(JsonNode) ret = NULL;

  json_object_set_string_member(file, "driver", "file");
  json_object_set_string_member(file, "filename", path);
  json_object_set_string_member(args, "driver", "qcow2");
  json_object_set_string_member(args, "node-name", node);
  json_object_set_object_member(args, "file", file);
  json_object_set_null_member(args, "backing"); /* blockdev-snapshot attaches it */
  ret = vms_qmp_client_execute(qmp, "blockdev-add", args, -1, QMP_TIMEOUT_MS, error);
  return ret != NULL;
}

void
vms_disks_del_overlay(VmsQmpClient *qmp, const char *node)
{
  g_autoptr(JsonObject) args = json_object_new();
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GError) error = NULL;

  json_object_set_string_member(args, "node-name", node);
  ret = vms_qmp_client_execute(qmp, "blockdev-del", args, -1, QMP_TIMEOUT_MS, &error);
  if (ret == NULL)
    g_debug("blockdev-del %s: %s", node, error->message);
}

gboolean
vms_disks_switch_overlays(VmsQmpClient *qmp, GPtrArray *devices, const char *const *overlay_nodes,
                          GError **error)
{
  g_autoptr(JsonObject) args = json_object_new();
  JsonArray *actions = json_array_new();
  g_autoptr(JsonNode) ret = NULL;

  json_object_set_array_member(args, "actions", actions);
  for (guint i = 0; i < devices->len; i++) {
    const VmsBlockDevice *d = devices->pdata[i];
    JsonObject *action, *data;
    if (overlay_nodes[i] == NULL)
      continue;
    action = json_object_new();
    data = json_object_new();
    json_object_set_string_member(data, "node", d->node_name);
    json_object_set_string_member(data, "overlay", overlay_nodes[i]);
    json_object_set_string_member(action, "type", "blockdev-snapshot");
    json_object_set_object_member(action, "data", data);
    json_array_add_object_element(actions, action);
  }
  if (json_array_get_length(actions) == 0)
    return TRUE;
  ret = vms_qmp_client_execute(qmp, "transaction", args, -1, TRANSACTION_TIMEOUT_MS, error);
  if (ret == NULL) {
    g_prefix_error(error, "disk transaction (blockdev-snapshot of %u disks): ",
                   json_array_get_length(actions));
    return FALSE;
  }
  return TRUE;
}

char *
vms_disks_query_vmgenid(VmsQmpClient *qmp)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "query-vm-generation-id", NULL, -1,
                                                   QMP_TIMEOUT_MS, &error);

  if (ret == NULL || !JSON_NODE_HOLDS_OBJECT(ret))
    return NULL; /* "VM Generation ID device not found" */
  return g_strdup(json_object_get_string_member_with_default(json_node_get_object(ret), "guid",
                                                             NULL));
}
