/* vmsnap plugin: the disk checks of a restore (see disk-guard.h). */
#include "disk-guard.h"

#include <sys/stat.h>

#include "disk-record.h"
#include "disks.h"
#include "error.h"

/* The frozen record of @m whose image is the file @st, or NULL. */
static const VmsDiskRecord *
frozen_record_of(const VmsManifest *m, const struct stat *st)
{
  for (gsize i = 0; i < m->n_disks; i++) {
    const VmsDiskIdentity *id = m->disks[i]->identity;
    if (!m->disks[i]->read_only && id != NULL && id->device == (guint64)st->st_dev &&
        id->inode == (guint64)st->st_ino)
      return m->disks[i];
  }
  return NULL;
}

gboolean
vms_disk_guard_check(VmsSnapshot *s, VmsQmpClient *qmp, GError **error)
{
  g_autoptr(GPtrArray) devices = NULL;

  if (s->manifest->n_disks == 0)
    return TRUE;
  if (!vms_snapshot_verify_disks(s->path, s->manifest, error))
    return FALSE;
  devices = vms_disks_query(qmp, error);
  if (devices == NULL)
    return FALSE;
  for (guint i = 0; i < devices->len; i++) {
    const VmsBlockDevice *d = devices->pdata[i];
    const VmsDiskRecord *r;
    struct stat st;
    if (d->read_only || stat(d->top.file, &st) != 0)
      continue;
    r = frozen_record_of(s->manifest, &st);
    if (r != NULL) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                  "disk %s: QEMU has the snapshot's frozen image %s (disk %s) open writable; "
                  "give the clone its own overlay (qemu-img create -f qcow2 -b %s -F %s "
                  "OVERLAY; vmsnap restore does this)",
                  d->device, d->top.file, r->device, d->top.file, r->format);
      return FALSE;
    }
  }
  return TRUE;
}
