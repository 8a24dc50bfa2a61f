/* vmsnap CLI: libvirt — running virsh, and `vmsnap restore DIR --libvirt
 * NAME [--connect URI]` (libvirt.h, doc/libvirt.md).
 *
 * The clone is a new persistent domain: its XML is the saved domain's
 * (libvirt-domain.xml in the snapshot) changed by vms_libvirt_clone_xml(),
 * defined, then started. The plugin inside the clone's QEMU maps the
 * snapshot's memory over the RAM file libvirt made (overlay=) and loads its
 * state (restore=, libvirt=on); libvirt sees an ordinary domain start. */
#include "cli.h"
#include "libvirt.h"

#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <json-glib/json-glib.h>

#include "error.h"
#include "json-bounded.h"
#include "restore-disks.h"
#include "snapdir.h"

gboolean
vms_virsh(const char *uri, char **ret_out, GError **error, ...)
{
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  g_autofree char *out = NULL, *err = NULL;
  int status = 0;
  va_list ap;

  g_ptr_array_add(argv, (char *)"virsh");
  g_ptr_array_add(argv, (char *)"-q");
  if (uri != NULL) {
    g_ptr_array_add(argv, (char *)"-c");
    g_ptr_array_add(argv, (char *)uri);
  }
  va_start(ap, error);
  for (const char *a = va_arg(ap, const char *); a != NULL; a = va_arg(ap, const char *))
    g_ptr_array_add(argv, (char *)a);
  va_end(ap);
  g_ptr_array_add(argv, NULL);
  g_autofree char *cmd = g_strjoinv(" ", (char **)argv->pdata);
  if (!g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out, &err,
                    &status, error)) {
    g_prefix_error(error, "%s: ", cmd);
    return FALSE;
  }
  if (!g_spawn_check_wait_status(status, NULL)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED, "%s: %s", cmd,
                err != NULL && *g_strstrip(err) != '\0' ? err : "failed");
    return FALSE;
  }
  if (ret_out != NULL)
    *ret_out = g_steal_pointer(&out);
  return TRUE;
}

static char *
read_kept_xml(const char *dir, GError **error)
{
  g_autofree char *path = g_build_filename(dir, VMS_LIBVIRT_XML_FILE, NULL);
  char *xml = NULL;

  if (!g_file_get_contents(path, &xml, NULL, error)) {
    g_prefix_error(error, "%s was not saved with `vmsnap save --libvirt`: ", dir);
    return NULL;
  }
  return xml;
}

/* --runtime-dir, or NAME beside the original's socket directory. */
static char *
clone_runtime_dir(const char *given, const char *xml, const char *name, GError **error)
{
  if (given != NULL)
    return g_canonicalize_filename(given, NULL);
  g_autofree char *control = vms_libvirt_control_socket(xml, error);
  if (control == NULL)
    return NULL;
  g_autofree char *sockdir = g_path_get_dirname(control);
  g_autofree char *parent = g_path_get_dirname(sockdir);
  return g_build_filename(parent, name, NULL);
}

/* Makes @rdir (if missing) for the clone's QEMU: as root, owned like the
 * snapshot directory, which QEMU's user created. */
static gboolean
make_runtime_dir(const char *rdir, const char *snapshot_dir, GError **error)
{
  struct stat st;

  if (mkdir(rdir, 0700) < 0 && errno != EEXIST)
    return vms_set_error_errno(error, errno, "failed to create %s", rdir);
  if (geteuid() != 0)
    return TRUE;
  if (stat(snapshot_dir, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s", snapshot_dir);
  if (chown(rdir, st.st_uid, st.st_gid) < 0)
    return vms_set_error_errno(error, errno, "failed to chown %s", rdir);
  return TRUE;
}

/* Defines and starts @name from @xml_path; a domain that does not start is
 * undefined again, so nothing half-made stays. */
static gboolean
define_and_start(const char *uri, const char *name, const char *xml_path, GError **error)
{
  if (!vms_virsh(uri, NULL, error, "define", xml_path, NULL))
    return FALSE;
  if (vms_virsh(uri, NULL, error, "start", name, NULL))
    return TRUE;
  (void)vms_virsh(uri, NULL, NULL, "undefine", name, NULL);
  return FALSE;
}

/* The clone's disks from its overlays (@c): each paired with the image the
 * saved XML names (the record's identity path). As root the overlays go to
 * QEMU's user, like the runtime dir. */
static GArray *
clone_disks(const VmsManifest *m, const VmsCloneIdentity *c, const char *snap, GError **error)
{
  GArray *disks = g_array_new(FALSE, TRUE, sizeof(VmsLibvirtDisk));
  struct stat st;

  for (guint i = 0; i < c->disks->len; i++) {
    const VmsRelaunchDisk *d = &g_array_index(c->disks, VmsRelaunchDisk, i);
    for (size_t j = 0; j < m->n_disks; j++) {
      const Vmsnap__V1__DiskRecord *r = m->disks[j];
      if (g_str_equal(r->device, d->device) && r->identity != NULL) {
        VmsLibvirtDisk ld = { .image = r->identity->path, .overlay = d->overlay };
        g_array_append_val(disks, ld);
      }
    }
    if (geteuid() == 0 && stat(snap, &st) == 0 && access(d->overlay, F_OK) == 0 &&
        chown(d->overlay, st.st_uid, st.st_gid) < 0) {
      vms_set_error_errno(error, errno, "failed to chown %s", d->overlay);
      g_array_unref(disks);
      return NULL;
    }
  }
  return disks;
}

static void
remove_overlays(const VmsCloneIdentity *c)
{
  for (guint i = 0; c->disks != NULL && i < c->disks->len; i++)
    (void)unlink(g_array_index(c->disks, VmsRelaunchDisk, i).overlay);
}

static gboolean
write_xml(const char *path, const char *xml, GError **error)
{
  return g_file_set_contents_full(path, xml, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600, error);
}

/* Writes the clone's XML into @rdir, defines and starts it; once it runs,
 * its persistent definition boots instead of restoring (a later start must
 * not put the snapshot's memory over disks the clone has written). */
static gboolean
launch(const char *uri, const char *name, const char *rdir, const char *clone, GError **error)
{
  g_autofree char *xml_path = g_strdup_printf("%s/%s.xml", rdir, name);
  g_autofree char *boot_path = g_strdup_printf("%s/%s.boot.xml", rdir, name);
  g_autofree char *uuid = NULL, *boot = NULL;
  g_autoptr(GError) boot_error = NULL;

  if (!write_xml(xml_path, clone, error) || !define_and_start(uri, name, xml_path, error))
    return FALSE;
  if (!vms_virsh(uri, &uuid, &boot_error, "domuuid", name, NULL) ||
      (boot = vms_libvirt_booting_xml(clone, g_strstrip(uuid), &boot_error)) == NULL ||
      !write_xml(boot_path, boot, &boot_error) ||
      !vms_virsh(uri, NULL, &boot_error, "define", boot_path, NULL))
    fprintf(stderr, "vmsnap: warning: domain %s runs, but its definition for a later start was "
            "not replaced, so a `virsh start` would restore the snapshot again over its disks "
            "(`virsh define %s` does it): %s\n", name, boot_path, boot_error->message);
  return TRUE;
}

static gboolean
restore_libvirt(const char *dir, const char *memory, const char *name, const char *uri,
                const char *rdir_opt, gboolean dry_run, GError **error)
{
  g_autofree char *xml = read_kept_xml(dir, error);
  g_autoptr(VmsSnapshot) s = xml != NULL ? vms_snapshot_open(dir, error) : NULL;
  if (s == NULL || (!dry_run && !vms_snapshot_verify(s, error)))
    return FALSE;
  g_autofree char *rdir = clone_runtime_dir(rdir_opt, xml, name, error);
  if (rdir == NULL)
    return FALSE;
  g_autofree char *snap = g_canonicalize_filename(dir, NULL);
  g_autofree char *mem = g_canonicalize_filename(memory, NULL);
  g_auto(VmsCloneIdentity) ci = { 0 };
  if ((!dry_run && !make_runtime_dir(rdir, snap, error)) ||
      !vms_clone_identity_prepare(snap, s->manifest, rdir, NULL, NULL, dry_run, &ci, error))
    return FALSE;
  g_autoptr(GArray) disks = clone_disks(s->manifest, &ci, snap, error);
  VmsCloneSpec spec = { .name = name, .snapshot_dir = snap, .memory = mem, .runtime_dir = rdir,
                        .disks = disks != NULL ? (VmsLibvirtDisk *)(void *)disks->data : NULL,
                        .n_disks = disks != NULL ? disks->len : 0 };
  gboolean genid = FALSE;
  g_autofree char *clone = disks != NULL ? vms_libvirt_clone_xml(xml, &spec, &genid, error) : NULL;
  if (clone != NULL && dry_run) {
    fputs(clone, stdout);
    return TRUE;
  }
  if (clone == NULL || !launch(uri, name, rdir, clone, error)) {
    if (!dry_run)
      remove_overlays(&ci);
    return FALSE;
  }
  if (!genid)
    fprintf(stderr, "vmsnap: the domain has no <genid/>: its clones share their random number "
            "generator state (doc/libvirt.md)\n");
  fprintf(stderr, "vmsnap: domain %s runs a clone of %s; its sockets are in %s\n", name, dir, rdir);
  return TRUE;
}

int
vms_cli_restore_libvirt(const char *dir, const char *memory, const char *name,
                        const char *uri, const char *runtime_dir, gboolean dry_run)
{
  g_autoptr(GError) error = NULL;

  if (*name == '\0' || strchr(name, '/') != NULL)
    return vms_cli_error("--libvirt '%s': not a domain name", name);
  if (!restore_libvirt(dir, memory, name, uri, runtime_dir, dry_run, &error))
    return vms_cli_error("%s", error->message);
  return 0;
}

/* The file QEMU writes for the device @qdev now, from query-block @blocks. */
static const char *
current_file(JsonArray *blocks, const char *qdev)
{
  for (guint i = 0; i < json_array_get_length(blocks); i++) {
    JsonObject *b = json_array_get_object_element(blocks, i);
    JsonObject *in = json_object_get_object_member(b, "inserted");
    if (in != NULL && g_strcmp0(json_object_get_string_member_with_default(b, "qdev", ""), qdev) == 0)
      return json_object_get_string_member_with_default(in, "file", NULL);
  }
  return NULL;
}

static JsonNode *
query_block(const char *domain, const char *uri, GError **error)
{
  g_autofree char *out = NULL;

  if (!vms_virsh(uri, &out, error, "qemu-monitor-command", domain, "{\"execute\":\"query-block\"}",
                 NULL))
    return NULL;
  JsonNode *node = vms_json_parse_bounded(out, error);
  if (node == NULL || !JSON_NODE_HOLDS_OBJECT(node) ||
      json_object_get_array_member(json_node_get_object(node), "return") == NULL) {
    g_clear_pointer(&node, json_node_unref);
    if (error != NULL && *error == NULL)
      g_set_error(error, VMS_ERROR, VMS_ERROR_QMP, "query-block of %s: no list", domain);
  }
  return node;
}

gboolean
vms_libvirt_follow_disks(const char *domain, const char *uri, const char *dir, GError **error)
{
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(dir, error);
  if (s == NULL)
    return FALSE;
  g_autoptr(GArray) disks = g_array_new(FALSE, TRUE, sizeof(VmsLibvirtDisk));
  g_autoptr(JsonNode) blocks = NULL;
  for (size_t i = 0; i < s->manifest->n_disks; i++) {
    const Vmsnap__V1__DiskRecord *r = s->manifest->disks[i];
    if (r->read_only || r->identity == NULL)
      continue;
    if (blocks == NULL && (blocks = query_block(domain, uri, error)) == NULL)
      return FALSE;
    const char *now = current_file(json_object_get_array_member(json_node_get_object(blocks),
                                                                "return"), r->qdev);
    if (now != NULL && !g_str_equal(now, r->identity->path)) {
      VmsLibvirtDisk d = { .image = r->identity->path, .overlay = now };
      g_array_append_val(disks, d);
    }
  }
  if (disks->len == 0)
    return TRUE;
  g_autofree char *xml = NULL;
  if (!vms_virsh(uri, &xml, error, "dumpxml", "--inactive", domain, NULL))
    return FALSE;
  g_autofree char *next = vms_libvirt_repoint_disks(xml, (VmsLibvirtDisk *)(void *)disks->data,
                                                    disks->len, error);
  g_autofree char *path = g_build_filename(dir, "libvirt-domain.next.xml", NULL);
  gboolean ok = next != NULL &&
                g_file_set_contents_full(path, next, -1, G_FILE_SET_CONTENTS_CONSISTENT, 0600,
                                         error) &&
                vms_virsh(uri, NULL, error, "define", path, NULL);
  (void)unlink(path);
  return ok;
}
