/* vmsnap plugin: the disks of a save (see save-disks.h). */
#include "save-disks.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-record.h"
#include "disks.h"
#include "error.h"

typedef struct {
  char *frozen;       /* absolute path of the image being frozen */
  char *link_name;    /* disk-<ID>.<format> in the snapshot dir, or NULL (external) */
  char *overlay;      /* the new top after the freeze, or NULL */
  char *overlay_node; /* its node name once blockdev-add'ed, or NULL */
  gboolean created;   /* this save created the overlay file */
} DiskPlan;

struct _VmsSaveDisks {
  VmsQmpClient *qmp;
  int dirfd;
  char *snap_name;
  GPtrArray *devices;   /* VmsBlockDevice */
  GArray *plans;        /* DiskPlan, one per device */
  char *vmgenid;
  gboolean switched;
  gboolean kept;
};

static void
plan_clear(gpointer p)
{
  DiskPlan *plan = p;

  g_clear_pointer(&plan->frozen, g_free);
  g_clear_pointer(&plan->link_name, g_free);
  g_clear_pointer(&plan->overlay, g_free);
  g_clear_pointer(&plan->overlay_node, g_free);
}

/* Undoes the overlays of a save that did not switch: the added nodes go,
 * and the files this save created. */
static void
drop_overlays(VmsSaveDisks *sd)
{
  for (guint i = 0; sd->plans != NULL && i < sd->plans->len; i++) {
    DiskPlan *plan = &g_array_index(sd->plans, DiskPlan, i);
    if (plan->overlay_node != NULL)
      vms_disks_del_overlay(sd->qmp, plan->overlay_node);
    if (plan->created)
      (void)unlink(plan->overlay);
  }
}

void
vms_save_disks_free(VmsSaveDisks *sd)
{
  if (sd == NULL)
    return;
  if (!sd->switched)
    drop_overlays(sd);
  for (guint i = 0; sd->plans != NULL && i < sd->plans->len && !sd->kept; i++) {
    DiskPlan *plan = &g_array_index(sd->plans, DiskPlan, i);
    if (plan->link_name != NULL)
      (void)unlinkat(sd->dirfd, plan->link_name, 0);
  }
  g_clear_pointer(&sd->plans, g_array_unref);
  g_clear_pointer(&sd->devices, g_ptr_array_unref);
  g_free(sd->snap_name);
  g_free(sd->vmgenid);
  g_free(sd);
}

void
vms_save_disks_keep(VmsSaveDisks *sd)
{
  sd->kept = TRUE;
}

guint
vms_save_disks_count(VmsSaveDisks *sd)
{
  guint n = 0;

  for (guint i = 0; i < sd->devices->len; i++)
    n += ((VmsBlockDevice *)sd->devices->pdata[i])->read_only ? 0 : 1;
  return n;
}

/* <image without extension>-<snapshot name>.qcow2 beside the image. */
static char *
overlay_path(const char *image, const char *snap_name, GError **error)
{
  g_autofree char *stem = g_strdup(image);
  char *slash = strrchr(stem, '/');
  char *dot = strrchr(stem, '.');
  g_autofree char *path = NULL;

  if (dot != NULL && (slash == NULL || dot > slash + 1))
    *dot = '\0';
  path = g_strdup_printf("%s-%s.qcow2", stem, snap_name);
  if (g_file_test(path, G_FILE_TEST_EXISTS)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_EXISTS,
                "the new overlay %s for disk image %s already exists", path, image);
    return NULL;
  }
  return g_steal_pointer(&path);
}

/* Links the frozen image into the snapshot directory (EXDEV: external). */
static gboolean
plan_link(VmsSaveDisks *sd, const VmsBlockDevice *d, DiskPlan *plan, GError **error)
{
  g_autofree char *name = vms_disk_file_name(d->device, d->top.format);

  if (linkat(AT_FDCWD, plan->frozen, sd->dirfd, name, 0) == 0) {
    plan->link_name = g_steal_pointer(&name);
    return TRUE;
  }
  if (errno == EXDEV)
    return TRUE; /* referenced by absolute path */
  return vms_set_error_errno(error, errno, "disk %s: cannot hard-link %s into the snapshot as %s",
                             d->device, plan->frozen, name);
}

static gboolean
plan_disk(VmsSaveDisks *sd, const VmsBlockDevice *d, gboolean switch_overlays, DiskPlan *plan,
          GError **error)
{
  if (d->read_only)
    return TRUE; /* recorded, not frozen */
  plan->frozen = g_canonicalize_filename(d->top.file, NULL);
  if (!plan_link(sd, d, plan, error))
    return FALSE;
  if (!switch_overlays)
    return TRUE;
  /* The slow part of an overlay, while the VM still runs: the file, and
   * the node QEMU opens it as. The stop window only switches. */
  plan->overlay = overlay_path(plan->frozen, sd->snap_name, error);
  if (plan->overlay == NULL)
    return FALSE;
  if (!vms_disks_create_overlay(plan->overlay, plan->frozen, d->top.format, d->virtual_size,
                                error)) {
    g_prefix_error(error, "disk %s: ", d->device);
    return FALSE;
  }
  plan->created = TRUE;
  g_autofree char *node = g_strdup_printf("vmsnap-%08x-%u", g_random_int(), sd->plans->len);
  if (!vms_disks_add_overlay(sd->qmp, node, plan->overlay, error)) {
    g_prefix_error(error, "disk %s: blockdev-add of the overlay %s: ", d->device, plan->overlay);
    return FALSE;
  }
  plan->overlay_node = g_steal_pointer(&node);
  return TRUE;
}

VmsSaveDisks *
vms_save_disks_new(VmsQmpClient *qmp, VmsSnapWriter *writer, gboolean switch_overlays,
                   GError **error)
{
  g_autoptr(VmsSaveDisks) sd = g_new0(VmsSaveDisks, 1);

  sd->qmp = qmp;
  sd->dirfd = vms_snap_writer_get_dirfd(writer);
  sd->snap_name = g_path_get_basename(vms_snap_writer_get_path(writer));
  g_strcanon(sd->snap_name, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_.-",
             '_');
  sd->plans = g_array_new(FALSE, TRUE, sizeof(DiskPlan));
  g_array_set_clear_func(sd->plans, plan_clear);
  sd->devices = vms_disks_query(qmp, error);
  if (sd->devices == NULL)
    return NULL;
  g_array_set_size(sd->plans, sd->devices->len);
  for (guint i = 0; i < sd->devices->len; i++)
    if (!plan_disk(sd, sd->devices->pdata[i], switch_overlays,
                   &g_array_index(sd->plans, DiskPlan, i), error))
      return NULL;
  sd->vmgenid = vms_disks_query_vmgenid(qmp);
  return g_steal_pointer(&sd);
}

gboolean
vms_save_disks_freeze(VmsSaveDisks *sd, GError **error)
{
  g_autofree const char **nodes = g_new0(const char *, sd->devices->len + 1);

  for (guint i = 0; i < sd->devices->len; i++)
    nodes[i] = g_array_index(sd->plans, DiskPlan, i).overlay_node;
  if (!vms_disks_switch_overlays(sd->qmp, sd->devices, nodes, error))
    return FALSE; /* vms_save_disks_free drops the unused overlays */
  sd->switched = TRUE;
  for (guint i = 0; i < sd->devices->len; i++) {
    const DiskPlan *plan = &g_array_index(sd->plans, DiskPlan, i);
    if (plan->frozen != NULL && chmod(plan->frozen, 0400) != 0)
      g_warning("disk %s: cannot make the frozen image %s read-only: %s",
                ((VmsBlockDevice *)sd->devices->pdata[i])->device, plan->frozen,
                g_strerror(errno));
  }
  return TRUE;
}

static VmsDiskRecord *
make_record(const VmsBlockDevice *d, const DiskPlan *plan, GError **error)
{
  VmsDiskRecord *r = vms_disk_record_new();
  VmsDiskIdentity *id;

  vms_manifest_set_string(&r->device, d->device);
  vms_manifest_set_string(&r->qdev, d->qdev);
  vms_manifest_set_string(&r->node_name, d->node_name);
  vms_manifest_set_string(&r->format, d->top.format);
  r->virtual_size = d->virtual_size;
  r->read_only = d->read_only;
  r->external = !d->read_only && plan->link_name == NULL;
  vms_manifest_set_string(&r->frozen_file, plan->link_name != NULL ? plan->link_name
                                           : plan->frozen != NULL ? plan->frozen : d->top.file);
  if (d->read_only)
    return r;
  id = vms_disk_identity_new(plan->frozen, d->top.format, error);
  if (id == NULL) {
    protobuf_c_message_free_unpacked(&r->base, NULL);
    return NULL;
  }
  vms_disk_record_set_identity(r, id);
  for (guint j = 0; j < d->backing->len; j++) {
    const VmsBlockLayer *l = &g_array_index(d->backing, VmsBlockLayer, j);
    id = vms_disk_identity_new(l->file, l->format, error);
    if (id == NULL) {
      protobuf_c_message_free_unpacked(&r->base, NULL);
      return NULL;
    }
    vms_disk_record_add_backing(r, id);
  }
  return r;
}

gboolean
vms_save_disks_record(VmsSaveDisks *sd, VmsManifest *m, GError **error)
{
  for (guint i = 0; i < sd->devices->len; i++) {
    VmsDiskRecord *r = make_record(sd->devices->pdata[i], &g_array_index(sd->plans, DiskPlan, i),
                                   error);
    if (r == NULL)
      return FALSE;
    vms_manifest_add_disk(m, r);
  }
  vms_manifest_set_string(&m->vm_generation_id, sd->vmgenid);
  return TRUE;
}
