/* vmsnap qemuctl: when a restore may use the RAM overlay (overlay.h). */
#include "overlay.h"
#include "json-bounded.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "relaunch.h"
#include "state-strip.h"
#include "util.h"

/* Device, netdev and object types the overlay cannot keep correct (a
 * prefix of the type), with the reason. */
static const struct {
  const char *type;
  const char *why;
} refused_types[] = {
  { "vhost-user", "its back end maps the guest RAM block's file descriptor, which is the empty "
                  "placeholder, not the guest memory" },
  { "vhost-vdpa", "the device is given the guest RAM through the RAM block" },
  { "vfio", "a device that DMAs into guest RAM pins it through the RAM block" },
  { "x-remote", "multi-process QEMU passes the RAM block's file descriptor to another process" },
  { "x-pci-proxy", "multi-process QEMU passes the RAM block's file descriptor to another process" },
  { "virtio-mem", "it plugs and discards guest RAM through the RAM block" },
};

/* The type of a -device/-netdev/-chardev/-object value (caller frees). */
static char *
option_type(const char *opt, const char *value)
{
  if (value[0] == '{') {
    g_autoptr(JsonNode) node = vms_json_parse_bounded(value, NULL);
    JsonObject *o = node != NULL && JSON_NODE_HOLDS_OBJECT(node) ? json_node_get_object(node) : NULL;
    const char *key = g_str_equal(opt, "-object") ? "qom-type" : g_str_equal(opt, "-device") ? "driver" : "type";
    return o != NULL ? g_strdup(json_object_get_string_member_with_default(o, key, "")) : g_strdup("");
  }
  const char *key = g_str_equal(opt, "-object") ? "qom-type"
                  : g_str_equal(opt, "-device") ? "driver"
                  : g_str_equal(opt, "-chardev") ? "backend" : "type";
  char *type = vms_qemu_opt_get(value, key, key);
  return type != NULL ? type : g_strdup("");
}

static gboolean
refuse(GError **error, const char *opt, const char *value, const char *why)
{
  g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED, "the RAM overlay cannot run with %s %s: %s",
              opt, value != NULL ? value : "", why);
  return FALSE;
}

/* A memory backend that touches every page before the plugin runs. */
static gboolean
check_backend(const char *value, GError **error)
{
  static const char *const keys[] = { "prealloc", "pmem" };

  for (gsize k = 0; k < G_N_ELEMENTS(keys); k++) {
    g_autofree char *v = value[0] == '{' ? NULL : vms_qemu_opt_get(value, keys[k], NULL);
    gboolean json_on = value[0] == '{' && strstr(value, keys[k]) != NULL;
    if (json_on || (v != NULL && (g_str_equal(v, "on") || g_str_equal(v, "true"))))
      return refuse(error, "-object", value, k == 0 ? "preallocation would touch every page "
                    "of the placeholder before the plugin maps the snapshot" :
                    "persistent memory is synced through the RAM block's file descriptor");
  }
  return TRUE;
}

static gboolean
check_option(const char *opt, const char *value, GError **error)
{
  g_autofree char *type = option_type(opt, value);

  for (gsize k = 0; k < G_N_ELEMENTS(refused_types); k++)
    if (g_str_has_prefix(type, refused_types[k].type))
      return refuse(error, opt, value, refused_types[k].why);
  if (g_str_equal(opt, "-object") && g_str_has_prefix(type, "memory-backend"))
    return check_backend(value, error);
  return TRUE;
}

gboolean
vms_overlay_check_argv(const char *const *argv, GError **error)
{
  static const char *const typed[] = { "-device", "-netdev", "-chardev", "-object", "-nic" };

  for (guint i = 0; argv[i] != NULL; i++) {
    const char *opt = argv[i][0] == '-' && argv[i][1] == '-' ? argv[i] + 1 : argv[i];
    if (g_str_equal(opt, "-mem-path") || g_str_equal(opt, "-mem-prealloc"))
      return refuse(error, opt, NULL, "guest RAM would not come from one "
                    "memory-backend-file, or every page of it would be touched before the "
                    "plugin maps the snapshot");
    if (argv[i + 1] != NULL && g_strv_contains(typed, opt) && !check_option(opt, argv[i + 1], error))
      return FALSE;
  }
  return TRUE;
}

gboolean
vms_overlay_check_state(int state_fd, const VmsStripGuest *guest, GError **error)
{
  g_autoptr(GError) local = NULL;
  guint64 dropped = 0;
  vms_autofd sink = open("/dev/null", O_WRONLY | O_CLOEXEC);

  if (sink < 0)
    return vms_set_error_errno(error, errno, "failed to open /dev/null");
  if (!vms_state_strip_ram(state_fd, sink, guest, &dropped, &local)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "the RAM overlay needs a state.bin without guest RAM pages, and this one could "
                "not be read as such: %s", local->message);
    return FALSE;
  }
  if (dropped > 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "the RAM overlay needs a state.bin without guest RAM pages, and this one holds "
                "%" G_GUINT64_FORMAT " (QEMU would refuse to load pages of RAM it skips)",
                dropped);
    return FALSE;
  }
  return TRUE;
}
