/* vmsnap qemuctl: the disk and vmgenid rewrite of a restore's command line
 * (see relaunch.h, vms_relaunch_disks). Only the dotted key=value syntax of
 * -drive, -blockdev and -device is rewritten; a JSON -blockdev that names a
 * disk is refused by name rather than left pointing at the frozen image. */
#include "relaunch.h"

#include <string.h>

#include "error.h"

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
    name = vms_qemu_opt_get(argv->pdata[i + 1], "node-name", NULL);
    if (g_strcmp0(name, node) == 0)
      return i + 1;
  }
  return 0;
}

/* -blockdev node-name=DEVICE (the format node): driver=qcow2, and the
 * protocol node under it (file=NODE, or inline file.filename=) opens OVERLAY. */
static gboolean
rewrite_blockdev(GPtrArray *argv, guint i, const VmsRelaunchDisk *d, GError **error)
{
  const char *value = argv->pdata[i];
  g_autofree char *name = value[0] == '{' ? NULL : vms_qemu_opt_get(value, "node-name", NULL);
  g_autofree char *file = NULL;
  g_autofree char *inline_file = NULL;

  if (value[0] == '{' && strstr(value, d->device) != NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "disk %s: a -blockdev in JSON syntax cannot be rewritten to the clone's overlay "
                "yet; use the key=value syntax", d->device);
    return FALSE;
  }
  if (g_strcmp0(name, d->device) != 0)
    return FALSE;
  file = vms_qemu_opt_get(value, "file", NULL);
  inline_file = vms_qemu_opt_get(value, "file.filename", NULL);
  if (inline_file != NULL) {
    g_autofree char *v = vms_qemu_opt_set(value, "file.filename", d->overlay);
    replace(argv, i, vms_qemu_opt_set(v, "driver", "qcow2"));
    return TRUE;
  }
  guint f = file != NULL ? find_blockdev(argv, file) : 0;
  if (f == 0) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "disk %s: -blockdev node-name=%s has no file node to point at the clone's overlay",
                d->device, d->device);
    return FALSE;
  }
  replace(argv, f, vms_qemu_opt_set(argv->pdata[f], "filename", d->overlay));
  replace(argv, i, vms_qemu_opt_set(argv->pdata[i], "driver", "qcow2"));
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
