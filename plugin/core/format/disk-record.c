/* vmsnap core: the disks of a snapshot (see disk-record.h). */
#include "disk-record.h"

#include <errno.h>
#include <string.h>
#include <sys/stat.h>

#include "error.h"

VmsDiskIdentity *
vms_disk_identity_new(const char *path, const char *format, GError **error)
{
  g_autofree char *abs = g_canonicalize_filename(path, NULL);
  VmsDiskIdentity *id;
  struct stat st;

  if (stat(abs, &st) != 0) {
    vms_set_error_errno(error, errno, "cannot stat disk image %s", abs);
    return NULL;
  }
  id = g_new0(VmsDiskIdentity, 1);
  vmsnap__v1__disk_file_identity__init(id);
  vms_manifest_set_string(&id->path, abs);
  vms_manifest_set_string(&id->format, format);
  id->device = (guint64)st.st_dev;
  id->inode = (guint64)st.st_ino;
  id->size = (guint64)st.st_size;
  id->mtime_ns = (gint64)st.st_mtim.tv_sec * G_GINT64_CONSTANT(1000000000) + st.st_mtim.tv_nsec;
  return id;
}

gboolean
vms_disk_identity_check(const VmsDiskIdentity *id, const char *device, const char *path,
                        GError **error)
{
  g_autoptr(VmsDiskIdentity) now = NULL;
  g_autoptr(GError) local = NULL;

  if (path == NULL)
    path = id->path;
  now = vms_disk_identity_new(path, id->format, &local);
  if (now == NULL) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH, "disk %s: image %s is gone: %s", device,
                path, local->message);
    return FALSE;
  }
  if (now->device != id->device || now->inode != id->inode) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "disk %s: image %s was replaced (device/inode %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT
                ", saved %" G_GUINT64_FORMAT "/%" G_GUINT64_FORMAT ")",
                device, path, now->device, now->inode, id->device, id->inode);
    return FALSE;
  }
  if (now->size != id->size || now->mtime_ns != id->mtime_ns) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "disk %s: frozen image %s changed since the snapshot (size %" G_GUINT64_FORMAT
                ", saved %" G_GUINT64_FORMAT "; mtime %" G_GINT64_FORMAT " ns, saved %" G_GINT64_FORMAT ")",
                device, path, now->size, id->size, now->mtime_ns, id->mtime_ns);
    return FALSE;
  }
  return TRUE;
}

VmsDiskRecord *
vms_disk_record_new(void)
{
  VmsDiskRecord *d = g_new0(VmsDiskRecord, 1);

  vmsnap__v1__disk_record__init(d);
  return d;
}

void
vms_manifest_add_disk(VmsManifest *m, VmsDiskRecord *d)
{
  m->disks = g_renew(VmsDiskRecord *, m->disks, m->n_disks + 1);
  m->disks[m->n_disks++] = d;
}

void
vms_disk_record_add_backing(VmsDiskRecord *d, VmsDiskIdentity *id)
{
  d->backing = g_renew(VmsDiskIdentity *, d->backing, d->n_backing + 1);
  d->backing[d->n_backing++] = id;
}

void
vms_disk_record_set_identity(VmsDiskRecord *d, VmsDiskIdentity *id)
{
  if (d->identity != NULL)
    protobuf_c_message_free_unpacked(&d->identity->base, NULL);
  d->identity = id;
}

char *
vms_disk_file_name(const char *device, const char *format)
{
  g_autofree char *safe = g_strdup(device);

  for (char *p = safe; *p != '\0'; p++)
    if (!g_ascii_isalnum(*p) && strchr("_.-", *p) == NULL)
      *p = '_';
  return g_strdup_printf("disk-%s.%s", safe, format);
}

char *
vms_disk_frozen_path(const char *dir, const VmsDiskRecord *d)
{
  if (g_path_is_absolute(d->frozen_file))
    return g_strdup(d->frozen_file);
  return g_build_filename(dir, d->frozen_file, NULL);
}

char *
vms_disk_chain_path(const char *dir, const VmsDiskRecord *d, guint j)
{
  return j == 0 ? vms_disk_frozen_path(dir, d) : g_strdup(d->backing[j - 1]->path);
}

gboolean
vms_disk_identity_same(const VmsDiskIdentity *a, const VmsDiskIdentity *b)
{
  return a != NULL && b != NULL && a->device == b->device && a->inode == b->inode &&
         a->size == b->size && a->mtime_ns == b->mtime_ns;
}

VmsDiskIdentity *
vms_disk_identity_copy(const VmsDiskIdentity *id)
{
  VmsDiskIdentity *c = g_new0(VmsDiskIdentity, 1);

  vmsnap__v1__disk_file_identity__init(c);
  vms_manifest_set_string(&c->path, id->path);
  vms_manifest_set_string(&c->format, id->format);
  c->device = id->device;
  c->inode = id->inode;
  c->size = id->size;
  c->mtime_ns = id->mtime_ns;
  return c;
}

gboolean
vms_snapshot_verify_disks(const char *dir, const VmsManifest *m, GError **error)
{
  for (gsize i = 0; i < m->n_disks; i++) {
    const VmsDiskRecord *d = m->disks[i];
    g_autofree char *frozen = NULL;

    if (d->read_only)
      continue;
    if (d->identity == NULL || d->frozen_file[0] == '\0') {
      g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT,
                  "disk %s: the manifest records no frozen image", d->device);
      return FALSE;
    }
    frozen = vms_disk_frozen_path(dir, d);
    if (!vms_disk_identity_check(d->identity, d->device, frozen, error))
      return FALSE;
    for (gsize j = 0; j < d->n_backing; j++)
      if (!vms_disk_identity_check(d->backing[j], d->device, NULL, error))
        return FALSE;
  }
  return TRUE;
}

void
vms_disks_refer_to(VmsManifest *m, const char *dir)
{
  g_autofree char *abs_dir = g_canonicalize_filename(dir, NULL);

  for (gsize i = 0; i < m->n_disks; i++) {
    VmsDiskRecord *d = m->disks[i];
    g_autofree char *path = NULL;
    if (d->read_only || g_path_is_absolute(d->frozen_file))
      continue;
    path = g_build_filename(abs_dir, d->frozen_file, NULL);
    vms_manifest_set_string(&d->frozen_file, path);
  }
}

guint
vms_manifest_frozen_disk_count(const VmsManifest *m)
{
  guint n = 0;

  for (gsize i = 0; i < m->n_disks; i++)
    n += m->disks[i]->read_only ? 0 : 1;
  return n;
}

static JsonObject *
identity_to_json(const VmsDiskIdentity *id)
{
  JsonObject *o = json_object_new();

  json_object_set_string_member(o, "path", id->path);
  json_object_set_string_member(o, "format", id->format);
  json_object_set_int_member(o, "device", (gint64)id->device);
  json_object_set_int_member(o, "inode", (gint64)id->inode);
  json_object_set_int_member(o, "size", (gint64)id->size);
  json_object_set_int_member(o, "mtime_ns", id->mtime_ns);
  return o;
}

static JsonObject *
record_to_json(const VmsDiskRecord *d)
{
  JsonObject *o = json_object_new();
  JsonArray *backing = json_array_new();

  json_object_set_string_member(o, "device", d->device);
  json_object_set_string_member(o, "qdev", d->qdev);
  json_object_set_string_member(o, "node_name", d->node_name);
  json_object_set_string_member(o, "format", d->format);
  json_object_set_int_member(o, "virtual_size", (gint64)d->virtual_size);
  json_object_set_boolean_member(o, "read_only", d->read_only);
  json_object_set_string_member(o, "frozen_file", d->frozen_file);
  json_object_set_boolean_member(o, "external", d->external);
  if (d->identity != NULL)
    json_object_set_object_member(o, "identity", identity_to_json(d->identity));
  for (gsize j = 0; j < d->n_backing; j++)
    json_array_add_object_element(backing, identity_to_json(d->backing[j]));
  json_object_set_array_member(o, "backing", backing);
  return o;
}

JsonArray *
vms_disks_to_json(const VmsManifest *m)
{
  JsonArray *a = json_array_new();

  for (gsize i = 0; i < m->n_disks; i++)
    json_array_add_object_element(a, record_to_json(m->disks[i]));
  return a;
}
