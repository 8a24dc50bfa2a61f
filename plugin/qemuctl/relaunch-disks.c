/* vmsnap qemuctl: the disk and vmgenid rewrite of a restore's command line
 * (see relaunch.h, vms_relaunch_disks). -drive and -device are rewritten in
 * the dotted key=value syntax; -blockdev in that syntax and in JSON (what
 * management layers such as libvirt generate), key paths like
 * "file.filename" naming nested members in both. */
#include "relaunch.h"

#include <string.h>
#include <json-glib/json-glib.h>

#include "error.h"
#include "json-bounded.h"

/* The JSON object of a -blockdev value in JSON syntax, or NULL (dotted
 * syntax, or not an object: QEMU accepted the line, so it parses). */
static JsonNode *
blockdev_json(const char *value)
{
  JsonNode *n;

  if (value[0] != '{' || (n = vms_json_parse_bounded(value, NULL)) == NULL)
    return NULL;
  if (!JSON_NODE_HOLDS_OBJECT(n))
    return json_node_unref(n), NULL;
  return n;
}

/* The object holding the last part of dotted @key under @o (created with
 * @create), and that part in *@ret_leaf; NULL where a member on the way is
 * not an object. */
static JsonObject *
json_key_parent(JsonObject *o, const char *key, gboolean create, const char **ret_leaf)
{
  const char *dot;

  while ((dot = strchr(key, '.')) != NULL) {
    g_autofree char *part = g_strndup(key, (gsize)(dot - key));
    JsonNode *m = json_object_get_member(o, part);
    if (m == NULL && create) {
      json_object_set_object_member(o, part, json_object_new());
      m = json_object_get_member(o, part);
    }
    if (m == NULL || !JSON_NODE_HOLDS_OBJECT(m))
      return NULL;
    o = json_node_get_object(m);
    key = dot + 1;
  }
  *ret_leaf = key;
  return o;
}

/* A -blockdev option @key (dotted path) as a string; NULL when absent or
 * not a string (a nested object, say). */
static char *
blockdev_get(const char *value, const char *key)
{
  g_autoptr(JsonNode) n = blockdev_json(value);
  const char *leaf = NULL;
  JsonObject *o;
  JsonNode *m;

  if (n == NULL)
    return value[0] == '{' ? NULL : vms_qemu_opt_get(value, key, NULL);
  o = json_key_parent(json_node_get_object(n), key, FALSE, &leaf);
  m = o != NULL ? json_object_get_member(o, leaf) : NULL;
  return m != NULL && JSON_NODE_HOLDS_VALUE(m) && json_node_get_value_type(m) == G_TYPE_STRING
             ? g_strdup(json_node_get_string(m)) : NULL;
}

/* @value with option @key (dotted path) set to the string @v, in @value's
 * own syntax. */
static char *
blockdev_set(const char *value, const char *key, const char *v)
{
  g_autoptr(JsonNode) n = blockdev_json(value);
  const char *leaf = NULL;
  JsonObject *o;

  if (n == NULL)
    return vms_qemu_opt_set(value, key, v);
  o = json_key_parent(json_node_get_object(n), key, TRUE, &leaf);
  if (o == NULL)
    return g_strdup(value);
  json_object_set_string_member(o, leaf, v);
  return json_to_string(n, FALSE);
}

static gboolean
is_opt(GPtrArray *argv, guint i, const char *name)
{
  const char *a = argv->pdata[i];

  if (a[0] != '-')
    return FALSE;
  a += a[1] == '-' ? 2 : 1;
  return strcmp(a, name) == 0 && i + 1 < argv->len;
}

static void
replace(GPtrArray *argv, guint i, char *value)
{
  g_free(argv->pdata[i]);
  argv->pdata[i] = value;
}

/* -drive id=DEVICE: file=OVERLAY,format=qcow2. */
static gboolean
rewrite_drive(GPtrArray *argv, guint i, const VmsRelaunchDisk *d)
{
  g_autofree char *id = vms_qemu_opt_get(argv->pdata[i], "id", NULL);
  g_autofree char *with_file = NULL;

  if (g_strcmp0(id, d->device) != 0)
    return FALSE;
  with_file = vms_qemu_opt_set(argv->pdata[i], "file", d->overlay);
  replace(argv, i, vms_qemu_opt_set(with_file, "format", "qcow2"));
  return TRUE;
}

/* Index of the value of the -blockdev whose node-name is @node, or 0. */
static guint
find_blockdev(GPtrArray *argv, const char *node)
{
  for (guint i = 1; i + 1 < argv->len; i++) {
    g_autofree char *name = NULL;
    if (!is_opt(argv, i, "blockdev"))
      continue;
    name = blockdev_get(argv->pdata[i + 1], "node-name");
    if (g_strcmp0(name, node) == 0)
      return i + 1;
  }
  return 0;
}

/* -blockdev node-name=DEVICE (the format node): driver=qcow2, and the
 * protocol node under it (file=NODE, or inline file.filename=) opens
 * OVERLAY. Either syntax; a JSON format node keeps its other members. */
static gboolean
rewrite_blockdev(GPtrArray *argv, guint i, const VmsRelaunchDisk *d, GError **error)
{
  const char *value = argv->pdata[i];
  g_autofree char *name = blockdev_get(value, "node-name");
  g_autofree char *file = NULL;
  g_autofree char *inline_file = NULL;

  if (g_strcmp0(name, d->device) != 0)
    return FALSE;
  file = blockdev_get(value, "file");
  inline_file = blockdev_get(value, "file.filename");
  if (inline_file != NULL) {
    g_autofree char *v = blockdev_set(value, "file.filename", d->overlay);
    replace(argv, i, blockdev_set(v, "driver", "qcow2"));
    return TRUE;
  }
  guint f = file != NULL ? find_blockdev(argv, file) : 0;
  if (f == 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "disk %s: -blockdev node-name=%s has no file node to point at the clone's overlay",
                d->device, d->device);
    return FALSE;
  }
  replace(argv, f, blockdev_set(argv->pdata[f], "filename", d->overlay));
  replace(argv, i, blockdev_set(argv->pdata[i], "driver", "qcow2"));
  return TRUE;
}

static gboolean
rewrite_disk(GPtrArray *argv, const VmsRelaunchDisk *d, GError **error)
{
  for (guint i = 1; i + 1 < argv->len; i++) {
    if (is_opt(argv, i, "drive") && rewrite_drive(argv, i + 1, d))
      return TRUE;
    if (is_opt(argv, i, "blockdev")) {
      g_autoptr(GError) local = NULL;
      if (rewrite_blockdev(argv, i + 1, d, &local))
        return TRUE;
      if (local != NULL) {
        g_propagate_error(error, g_steal_pointer(&local));
        return FALSE;
      }
    }
  }
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "disk %s: the recorded command line has no -drive id=%s or -blockdev node-name=%s "
              "(a disk added at run time cannot be restored from the command line)",
              d->device, d->device, d->device);
  return FALSE;
}

static gboolean
rewrite_vmgenid(GPtrArray *argv, const char *guid, GError **error)
{
  for (guint i = 1; i + 1 < argv->len; i++) {
    g_autofree char *driver = NULL;
    if (!is_opt(argv, i, "device"))
      continue;
    driver = vms_qemu_opt_get(argv->pdata[i + 1], "driver", "driver");
    if (g_strcmp0(driver, "vmgenid") == 0) {
      replace(argv, i + 1, vms_qemu_opt_set(argv->pdata[i + 1], "guid", guid));
      return TRUE;
    }
  }
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "vmgenid: the recorded command line has no -device vmgenid to give guid=%s", guid);
  return FALSE;
}

gboolean
vms_relaunch_disks(GPtrArray *argv, const VmsRelaunchOptions *opts, GError **error)
{
  for (gsize i = 0; i < opts->n_disks; i++)
    if (!rewrite_disk(argv, &opts->disks[i], error))
      return FALSE;
  return opts->vmgenid == NULL || rewrite_vmgenid(argv, opts->vmgenid, error);
}
