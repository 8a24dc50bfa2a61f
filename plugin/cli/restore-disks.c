/* vmsnap CLI: the clone's own disks and vmgenid (see restore-disks.h). */
#include "restore-disks.h"

#include <errno.h>
#include <unistd.h>

#include "disk-record.h"
#include "error.h"
#include "qcow2.h"

void
vms_clone_identity_clear(VmsCloneIdentity *c)
{
  g_clear_pointer(&c->disks, g_array_unref);
  g_clear_pointer(&c->strings, g_ptr_array_unref);
  g_clear_pointer(&c->vmgenid, g_free);
}

static const char *
keep(VmsCloneIdentity *c, char *s)
{
  g_ptr_array_add(c->strings, s);
  return s;
}

/* The clone's overlay: an empty qcow2 over the frozen image (qcow2.h). */
static gboolean
create_overlay(const VmsDiskRecord *d, const char *frozen, const char *overlay, GError **error)
{
  if (vms_qcow2_create_overlay(overlay, frozen, d->format, d->virtual_size, error))
    return TRUE;
  g_prefix_error(error, "disk %s: ", d->device);
  return FALSE;
}

static char *
overlay_path(const VmsDiskRecord *d, const char *runtime_dir, const char *disk_dir)
{
  g_autofree char *name = vms_disk_file_name(d->device, "qcow2");
  g_autofree char *base = NULL;

  if (disk_dir == NULL)
    return g_build_filename(runtime_dir, name, NULL);
  base = g_path_get_basename(runtime_dir);
  g_autofree char *unique = g_strdup_printf("%s-%s", base, name);
  g_autofree char *abs = g_canonicalize_filename(disk_dir, NULL);
  return g_build_filename(abs, unique, NULL);
}

static gboolean
plan_overlays(VmsCloneIdentity *c, const char *snap_dir, const VmsManifest *m,
              const char *runtime_dir, const char *disk_dir, gboolean dry_run, GError **error)
{
  for (gsize i = 0; i < m->n_disks; i++) {
    const VmsDiskRecord *d = m->disks[i];
    if (d->read_only)
      continue;
    g_autofree char *rel = vms_disk_frozen_path(snap_dir, d);
    g_autofree char *frozen = g_canonicalize_filename(rel, NULL);
    VmsRelaunchDisk rd = {
      .device = d->device,
      .node_name = d->node_name,
      .overlay = keep(c, overlay_path(d, runtime_dir, disk_dir)),
    };
    if (g_file_test(rd.overlay, G_FILE_TEST_EXISTS)) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                  "disk %s: the clone's overlay %s already exists", d->device, rd.overlay);
      return FALSE;
    }
    if (!dry_run && !create_overlay(d, frozen, rd.overlay, error))
      return FALSE;
    g_array_append_val(c->disks, rd);
  }
  return TRUE;
}

static gboolean
plan_vmgenid(VmsCloneIdentity *c, const VmsManifest *m, const char *vmgenid_opt, GError **error)
{
  if (m->vm_generation_id == NULL || m->vm_generation_id[0] == '\0') {
    if (vmgenid_opt != NULL) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                  "--vm-generation-id %s: the snapshot's VM has no vmgenid device", vmgenid_opt);
      return FALSE;
    }
    return TRUE;
  }
  if (vmgenid_opt == NULL)
    c->vmgenid = g_uuid_string_random();
  else if (g_str_equal(vmgenid_opt, "saved"))
    c->vmgenid = g_strdup(m->vm_generation_id);
  else if (g_uuid_string_is_valid(vmgenid_opt))
    c->vmgenid = g_strdup(vmgenid_opt);
  else {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "--vm-generation-id %s is neither a GUID nor \"saved\"", vmgenid_opt);
    return FALSE;
  }
  return TRUE;
}

gboolean
vms_clone_identity_prepare(const char *snap_dir, const VmsManifest *m, const char *runtime_dir,
                           const char *disk_dir, const char *vmgenid_opt, gboolean dry_run,
                           VmsCloneIdentity *ret, GError **error)
{
  g_auto(VmsCloneIdentity) c = { 0 };

  c.disks = g_array_new(FALSE, TRUE, sizeof(VmsRelaunchDisk));
  c.strings = g_ptr_array_new_with_free_func(g_free);
  if (disk_dir != NULL && !g_file_test(disk_dir, G_FILE_TEST_IS_DIR)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT, "--disk-dir %s is not a directory",
                disk_dir);
    return FALSE;
  }
  if (!plan_vmgenid(&c, m, vmgenid_opt, error))
    return FALSE;
  if (!plan_overlays(&c, snap_dir, m, runtime_dir, disk_dir, dry_run, error)) {
    for (guint i = 0; !dry_run && i < c.disks->len; i++)
      (void)unlink(g_array_index(c.disks, VmsRelaunchDisk, i).overlay);
    return FALSE;
  }
  *ret = c;
  c = (VmsCloneIdentity){ 0 };
  return TRUE;
}

void
vms_clone_identity_apply(const VmsCloneIdentity *c, VmsRelaunchOptions *opts)
{
  opts->disks = (const VmsRelaunchDisk *)c->disks->data;
  opts->n_disks = c->disks->len;
  opts->vmgenid = c->vmgenid;
}
