/* vmsnap plugin: restore=DIR (restore.h).
 *
 * Two phases. At install, before the guest can run (QEMU has created its
 * memory backend by then; a backend larger than memory.bin is refused by
 * QEMU itself even earlier): the snapshot must be committed, FULL, of this
 * version, architecture and vCPU count, with an intact state.bin and a
 * memory.bin of the recorded size; QEMU's own command line must map that
 * memory.bin with the recorded size and share=off, and have -incoming
 * defer. A DIFF snapshot is restored from the memory.bin of its
 * flattening (vms_chain_is_flattening: `vmsnap restore` makes DIR.flat)
 * with state.bin from the diff itself, so restored-from, and the parent of
 * the VM's next diff, is the diff (doc/diff.md). Later, on the service's worker, the mapping QEMU really made is
 * checked (size, page size, private, the very file), then state.bin is
 * loaded with migrate-incoming over a passed fd.
 *
 * Everything in the snapshot is opened read-only; nothing is written.
 */
#include "restore.h"
#include "disk-guard.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "chain.h"
#include "error.h"
#include "relaunch.h"
#include "save-guard.h"
#include "save-qemu.h"
#include "snapdir.h"
#include "util.h"

#define RESTORE_FDNAME "vmsnap-restore"
#define QMP_TIMEOUT_MS 30000u
#define MIGRATION_TIMEOUT_MS 300000u

char **
vms_restore_read_cmdline(void)
{
  g_autofree char *text = NULL;
  gsize len = 0;

  if (!g_file_get_contents("/proc/self/cmdline", &text, &len, NULL) || len == 0)
    return NULL;
  g_autoptr(GPtrArray) argv = g_ptr_array_new_with_free_func(g_free);
  for (gsize off = 0; off < len; off += strlen(text + off) + 1)
    g_ptr_array_add(argv, g_strdup(text + off));
  g_ptr_array_add(argv, NULL);
  return (char **)g_ptr_array_free(g_steal_pointer(&argv), FALSE);
}

static gboolean
same_file(const char *a, const char *b)
{
  struct stat sa, sb;
  return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The memory file @s must be restored from, given that this VM maps
 * @mapped: @s's memory.bin; for a DIFF, @mapped itself if it is the
 * memory.bin of a flattening of @s. */
static char *
snapshot_memory_path(VmsSnapshot *s, const char *mapped, GError **error)
{
  if (s->manifest->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF)
    return g_build_filename(s->path, vms_snapshot_memory_file(s), NULL);
  g_autofree char *flat_dir = g_path_get_dirname(mapped);
  g_autofree char *base = g_path_get_basename(mapped);
  g_autoptr(VmsSnapshot) flat = vms_snapshot_open(flat_dir, NULL);
  if (flat == NULL || !g_str_equal(base, VMS_MEMORY_FILE) || !vms_chain_is_flattening(s, flat)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "memory: this VM maps %s, which is not the memory.bin of a flattening of the "
                "diff snapshot %s (`vmsnap restore` flattens it into %s.flat and maps that)",
                mapped, s->path, s->path);
    return NULL;
  }
  return g_strdup(mapped);
}

/* Checks the memory backend on QEMU's command line: it maps the snapshot's
 * memory share=off, or, with @overlay, it is a share=on placeholder and
 * @overlay is the snapshot's memory. A command line we cannot read or
 * without a memory-backend-file is left to the mapping check of
 * vms_restore_run(). */
static gboolean
check_cmdline_memory(VmsSnapshot *s, const char *overlay, GError **error)
{
  g_auto(GStrv) argv = vms_restore_read_cmdline();
  g_autofree char *mem_path = NULL;
  g_autofree char *snap_mem = NULL;
  guint64 size = 0;
  gboolean share = FALSE;

  if (argv == NULL ||
      !vms_relaunch_find_memory((const char *const *)argv, &mem_path, &size, &share, NULL))
    return TRUE;
  const char *mapped = overlay != NULL ? overlay : mem_path;
  snap_mem = snapshot_memory_path(s, mapped, error);
  if (snap_mem == NULL)
    return FALSE;
  if (!same_file(mapped, snap_mem)) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "memory: this VM maps %s, not the snapshot's memory %s (restore maps the "
                "snapshot's memory.bin with share=off; `vmsnap restore` builds the command line)",
                mapped, snap_mem);
    return FALSE;
  }
  if (size != s->manifest->memory_size_bytes) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "snapshot memory size (%" G_GUINT64_FORMAT ") doesn't match this VM (%" G_GUINT64_FORMAT ")",
                s->manifest->memory_size_bytes, size);
    return FALSE;
  }
  if (overlay != NULL && !share) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "overlay=%s needs the guest RAM backend share=on with an empty placeholder "
                "mem-path (%s is share=off)", overlay, mem_path);
    return FALSE;
  }
  if (overlay == NULL && share) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "memory share=on: the snapshot's memory %s must be mapped with share=off (the "
                "guest would change the snapshot)", snap_mem);
    return FALSE;
  }
  return TRUE;
}

/* A FULL snapshot, or a DIFF whose memory comes from its flattening. */
static VmsSnapshot *
open_full_snapshot(const char *dir, GError **error)
{
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(dir, error);

  if (s == NULL)
    return NULL;
  if (s->manifest->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL &&
      s->manifest->kind != VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "kind: %s is a %s snapshot; restore needs a full one or a diff",
                dir, vms_manifest_kind_name(s->manifest->kind));
    return NULL;
  }
  return g_steal_pointer(&s);
}

/* Without -incoming defer QEMU would boot the guest from the snapshot's
 * memory before the plugin could load its state. */
static gboolean
check_incoming_defer(GError **error)
{
  g_auto(GStrv) argv = vms_restore_read_cmdline();

  for (guint i = 0; argv != NULL && argv[i] != NULL && argv[i + 1] != NULL; i++) {
    if ((g_str_equal(argv[i], "-incoming") || g_str_equal(argv[i], "--incoming")) &&
        g_str_equal(argv[i + 1], "defer"))
      return TRUE;
  }
  if (argv == NULL)
    return TRUE; /* cannot tell; migrate-incoming will fail if it is missing */
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "restore= needs QEMU's -incoming defer (without it the guest would boot instead)");
  return FALSE;
}

gboolean
vms_restore_precheck(const char *dir, const char *target_name, guint32 smp_vcpus,
                     const char *overlay, GError **error)
{
  g_autoptr(VmsSnapshot) s = open_full_snapshot(dir, error);

  if (s == NULL)
    return FALSE;
  /* Memory size and page size are checked against the mapping later; here
   * against the manifest itself, so the order of the other checks holds. */
  if (!vms_manifest_validate(s->manifest, target_name, s->manifest->memory_size_bytes, smp_vcpus,
                             s->manifest->page_size, error))
    return FALSE;
  if (!vms_snapshot_verify(s, error))
    return FALSE;
  return check_cmdline_memory(s, overlay, error) && check_incoming_defer(error);
}

/* The mapping QEMU made must be the snapshot's memory file, private, with
 * the recorded size and page size. */
static gboolean
check_mapping(VmsSnapshot *s, const VmsMemInfo *mem, GError **error)
{
  const VmsManifest *m = s->manifest;
  g_autofree char *snap_mem = NULL;
  struct stat st;

  if (!vms_manifest_validate(m, m->architecture, mem->size, m->vp_count, mem->page_size, error))
    return FALSE;
  snap_mem = snapshot_memory_path(s, mem->path, error);
  if (snap_mem == NULL)
    return FALSE;
  if (stat(snap_mem, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat %s", snap_mem);
  if (st.st_dev != mem->dev || st.st_ino != mem->ino) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "memory: the guest memory is %s, not the snapshot's memory %s", mem->path, snap_mem);
    return FALSE;
  }
  if (mem->shared) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_MISMATCH,
                "memory share=on: the snapshot's memory %s is mapped shared; map it with share=off "
                "(the guest would change the snapshot)", snap_mem);
    return FALSE;
  }
  return TRUE;
}

/* resume=off only holds if QEMU was told not to start the guest by itself
 * when the incoming migration completes. */
static gboolean
check_autostart(gboolean resume, GError **error)
{
  g_auto(GStrv) argv = vms_restore_read_cmdline();

  if (resume || argv == NULL || g_strv_contains((const char *const *)argv, "-S"))
    return TRUE;
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "resume=off needs QEMU's -S option (without it QEMU starts the guest as soon as "
              "the state is loaded)");
  return FALSE;
}

/* vms_qmp_client_execute's error already names the command ("QMP cont: ..."). */
static gboolean
qmp_do(VmsQmpClient *qmp, const char *command, JsonObject *args, int fd, GError **error)
{
  g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, command, args, fd, QMP_TIMEOUT_MS, error);

  return ret != NULL;
}

static gboolean
is_migration_end(const char *status)
{
  return g_str_equal(status, "completed") || g_str_equal(status, "failed") ||
         g_str_equal(status, "cancelled");
}

static gboolean
match_migration_end(const char *event, JsonObject *data, gpointer user_data)
{
  return is_migration_end(data != NULL ? json_object_get_string_member_with_default(data, "status", "")
                                        : "");
}

/* Polls query-migrate until the incoming migration ends; its status. */
static char *
poll_migration_end(VmsQmpClient *qmp, GError **error)
{
  gint64 deadline = g_get_monotonic_time() + (gint64)MIGRATION_TIMEOUT_MS * 1000;

  for (;;) {
    g_autoptr(JsonNode) ret = vms_qmp_client_execute(qmp, "query-migrate", NULL, -1,
                                                     QMP_TIMEOUT_MS, error);
    if (ret == NULL)
      return NULL;
    const char *status = JSON_NODE_HOLDS_OBJECT(ret)
        ? json_object_get_string_member_with_default(json_node_get_object(ret), "status", "")
        : "";
    if (is_migration_end(status))
      return g_strdup(status);
    if (g_get_monotonic_time() >= deadline) {
      g_set_error(error, VMS_ERROR, VMS_ERROR_FAILED, "still '%s' after %u ms", status,
                  MIGRATION_TIMEOUT_MS);
      return NULL;
    }
    g_usleep(5 * 1000);
  }
}

/* The status that ended the incoming migration started after event @seq:
 * from the MIGRATION event, or polled when the events capability is
 * libvirt's (@libvirt: libvirt may turn it on only after the load began). */
static char *
wait_migration_end(VmsQmpClient *qmp, guint64 seq, gboolean libvirt, GError **error)
{
  if (libvirt)
    return poll_migration_end(qmp, error);
  g_autoptr(JsonObject) ev = vms_qmp_client_wait_event(qmp, seq, "MIGRATION", match_migration_end,
                                                       NULL, MIGRATION_TIMEOUT_MS, error);
  return ev != NULL ? g_strdup(json_object_get_string_member_with_default(ev, "status", "")) : NULL;
}

/* getfd, migrate-incoming, wait for the end (@libvirt: see wait_migration_end). */
static gboolean
load_stream(VmsSnapshot *s, VmsQmpClient *qmp, gboolean libvirt, GError **error)
{
  vms_autofd fd = vms_snapshot_open_file(s, VMS_STATE_FILE, O_RDONLY, error);
  if (fd < 0)
    return FALSE;
  g_autoptr(JsonObject) getfd_args = json_object_new();
  json_object_set_string_member(getfd_args, "fdname", RESTORE_FDNAME);
  if (!qmp_do(qmp, "getfd", getfd_args, fd, error))
    return FALSE;

  guint64 seq = vms_qmp_client_event_seq(qmp);
  g_autoptr(JsonObject) in_args = json_object_new();
  json_object_set_string_member(in_args, "uri", "fd:" RESTORE_FDNAME);
  if (!qmp_do(qmp, "migrate-incoming", in_args, -1, error))
    return FALSE;
  g_autofree char *status = wait_migration_end(qmp, seq, libvirt, error);
  if (status == NULL) {
    g_prefix_error(error, "state: waiting for QEMU to load %s/%s: ", s->path, VMS_STATE_FILE);
    return FALSE;
  }
  if (!g_str_equal(status, "completed")) {
    g_autofree char *why = vms_migration_error_desc(qmp);
    g_set_error(error, VMS_ERROR, VMS_ERROR_CORRUPT, "state: QEMU could not load %s/%s: %s",
                s->path, VMS_STATE_FILE, why);
    return FALSE;
  }
  return TRUE;
}

/* x-ignore-shared and events on for loading state.bin, then exactly the
 * capabilities and parameters QEMU had before, also on failure: a later
 * migration by a management layer must not inherit x-ignore-shared (it
 * would leave shared guest RAM behind), and libvirt relies on `events`
 * staying on if it set it. With @libvirt, `events` is not touched at all:
 * libvirt may turn it on only after the load began. */
static gboolean
load_state(VmsSnapshot *s, VmsQmpClient *qmp, gboolean libvirt, GError **error)
{
  VmsMigrationSettings prior, load;
  g_autoptr(GError) put_back = NULL;
  gboolean ok;

  vms_save_test_hook("restore");
  if (!vms_migration_settings_query(qmp, &prior, error))
    return FALSE;
  prior.leave_events = libvirt;
  load = prior;
  load.ignore_shared = TRUE;
  load.events = TRUE;
  ok = vms_migration_settings_apply(qmp, &load, error) && load_stream(s, qmp, libvirt, error);
  if (!vms_migration_settings_apply(qmp, &prior, &put_back) && ok) {
    g_propagate_prefixed_error(error, g_steal_pointer(&put_back),
                               "cannot put back QEMU's migration settings: ");
    ok = FALSE;
  }
  return ok;
}

gboolean
vms_restore_run(const char *dir, gboolean resume, gboolean libvirt, VmsQmpClient *qmp,
                const VmsMemInfo *mem, guint8 ret_manifest_sha256[32], GError **error)
{
  g_autoptr(VmsSnapshot) s = open_full_snapshot(dir, error);

  if (s == NULL || !check_mapping(s, mem, error) || !check_autostart(resume, error) ||
      !vms_disk_guard_check(s, qmp, error))
    return FALSE;
  /* Again, just before loading it: state.bin may have changed since install. */
  if (!vms_snapshot_verify_state(s, error))
    return FALSE;
  if (!load_state(s, qmp, libvirt, error))
    return FALSE;
  if (resume && !qmp_do(qmp, "cont", NULL, -1, error))
    return FALSE;
  if (ret_manifest_sha256 != NULL)
    memcpy(ret_manifest_sha256, s->manifest_sha256, VMS_SHA256_LEN);
  return TRUE;
}
