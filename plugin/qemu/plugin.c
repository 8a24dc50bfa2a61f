/* vmsnap plugin: the entry point QEMU calls — argument parsing and the start
 * of the service. The only exported symbols of libvmsnap.so are
 * qemu_plugin_install and qemu_plugin_version (everything else is built
 * with hidden visibility). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "qemu-plugin.h"

#include "error.h"
#include "ram-overlay.h"
#include "ram-private.h"
#include "restore.h"
#include "service.h"
#include "vcpus.h"

/* The API version meson chose (-Dqemu_plugin_api); QEMU refuses a module
 * outside its own [minimum, current] range. */
G_STATIC_ASSERT(VMSNAP_QEMU_PLUGIN_API <= QEMU_PLUGIN_VERSION);
QEMU_PLUGIN_EXPORT int qemu_plugin_version = VMSNAP_QEMU_PLUGIN_API;

/* Kept for the atexit callback; the service lives as long as QEMU. */
static VmsService *plugin_service;

static gboolean
parse_bool(const char *key, const char *value, gboolean *ret, GError **error)
{
  if (strcmp(value, "on") == 0 || strcmp(value, "true") == 0 || strcmp(value, "yes") == 0)
    return *ret = TRUE, TRUE;
  if (strcmp(value, "off") == 0 || strcmp(value, "false") == 0 || strcmp(value, "no") == 0)
    return *ret = FALSE, TRUE;
  g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
              "bad argument %s=%s: expected on or off", key, value);
  return FALSE;
}

/* Stores one key=value. Path values must be non-empty; a key given twice is
 * refused rather than silently overriding the first. */
static gboolean
parse_flag(const char *key, const char *value, gboolean *seen, gboolean *ret, GError **error)
{
  if (*seen)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "argument %s= given twice", key), FALSE;
  *seen = TRUE;
  return parse_bool(key, value, ret, error);
}

/* @seen: resume= and libvirt= given already. */
static gboolean
parse_one(VmsPluginOptions *opts, char *key, char *value, gboolean seen[2], GError **error)
{
  char **slot = NULL;

  if (strcmp(key, "resume") == 0)
    return parse_flag(key, value, &seen[0], &opts->resume, error);
  if (strcmp(key, "libvirt") == 0)
    return parse_flag(key, value, &seen[1], &opts->libvirt, error);
  if (strcmp(key, "allow-uids") == 0)
    return vms_peer_policy_parse_uids(&opts->access, value, error) ||
           (g_prefix_error(error, "bad argument allow-uids=%s: ", value), FALSE);
  if (strcmp(key, "allow-gid") == 0) {
    if (opts->access.gid >= 0)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                         "argument allow-gid= given twice"), FALSE;
    return vms_peer_policy_parse_gid(&opts->access, value, error) ||
           (g_prefix_error(error, "bad argument allow-gid=%s: ", value), FALSE);
  }
  if (strcmp(key, "qmp") == 0) slot = &opts->qmp;
  else if (strcmp(key, "control") == 0) slot = &opts->control;
  else if (strcmp(key, "monitor") == 0) slot = &opts->monitor;
  else if (strcmp(key, "mem") == 0) slot = &opts->mem;
  else if (strcmp(key, "restore") == 0) slot = &opts->restore;
  else if (strcmp(key, "overlay") == 0) slot = &opts->overlay;
  if (slot == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "unknown argument %s= (known: qmp, control, monitor, mem, restore, "
                       "resume, overlay, vcpu-events, libvirt, allow-uids, allow-gid)", key), FALSE;
  if (*value == '\0')
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "bad argument %s=: the value is empty", key), FALSE;
  if (*slot != NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "argument %s= given twice", key), FALSE;
  *slot = g_strdup(value);
  return TRUE;
}

/* vcpu-events= is the vCPU module's (vcpus.h); the rest is the service's. */
static gboolean
parse_args(int argc, char **argv, VmsPluginOptions *opts, VmsVcpuEvents *ret_events,
           GError **error)
{
  gboolean seen[2] = { FALSE, FALSE }, events_seen = FALSE;

  opts->resume = TRUE;
  *ret_events = VMS_VCPU_EVENTS_AUTO;
  opts->access.gid = -1;
  for (int i = 0; i < argc; i++) {
    g_auto(GStrv) kv = g_strsplit(argv[i], "=", 2);

    if (kv[0] == NULL || kv[1] == NULL)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                         "bad argument '%s': expected KEY=VALUE", argv[i]), FALSE;
    if (strcmp(kv[0], "vcpu-events") == 0) {
      if (events_seen)
        return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                           "argument vcpu-events= given twice"), FALSE;
      events_seen = TRUE;
      if (!vms_vcpu_events_parse(kv[1], ret_events, error))
        return FALSE;
    } else if (!parse_one(opts, kv[0], kv[1], seen, error)) {
      return FALSE;
    }
  }
  if (opts->qmp == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "missing argument qmp=PATH (a QMP socket QEMU serves for the plugin)"),
           FALSE;
  if (seen[0] && opts->restore == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "argument resume= only applies with restore=DIR"), FALSE;
  if (opts->overlay != NULL && opts->restore == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "argument overlay= only applies with restore=DIR"), FALSE;
  return TRUE;
}

/* A clone domain of `vmsnap restore --libvirt` carries one -incoming defer
 * of its own (doc/libvirt.md); libvirt adds another when it restores or
 * migrates the domain (`virsh restore` of a `virsh save` file), and then
 * the state comes from libvirt, not from the snapshot. */
static gboolean
libvirt_restores_itself(void)
{
  g_auto(GStrv) argv = vms_restore_read_cmdline();
  guint incoming = 0;

  for (guint i = 0; argv != NULL && argv[i] != NULL; i++)
    incoming += g_str_equal(argv[i], "-incoming") || g_str_equal(argv[i], "--incoming");
  return incoming > 1;
}

/* doc/spec.md section 11: a refused peer is named on QEMU's stderr. */
static void
on_peer_refused(const char *path, guint32 uid, gpointer user_data)
{
  if (uid == G_MAXUINT32)
    fprintf(stderr, "vmsnap: %s: refused a peer whose uid the kernel did not give\n", path);
  else
    fprintf(stderr, "vmsnap: %s: refused a peer of uid %u (allow-uids= and allow-gid= let "
            "other users in)\n", path, uid);
}

static void
on_atexit(qemu_plugin_id_t id, void *userdata)
{
  if (plugin_service != NULL)
    vms_service_at_exit(plugin_service);
}

/* restore=: the snapshot checked against QEMU's command line, then its
 * memory either mapped as the overlay or, share=off, kept from QEMU's
 * writable descriptor of it (ram-private.h). */
static gboolean
install_restore_memory(const VmsPluginOptions *opts, const qemu_info_t *info, GError **error)
{
  guint reopened = 0;

  if (!vms_restore_precheck(opts->restore, info->target_name, (guint32)info->system.smp_vcpus,
                            opts->overlay, error))
    return FALSE;
  if (opts->overlay != NULL)
    return vms_ram_overlay_install(opts->overlay, error);
  if (!vms_ram_private_guard(&reopened, error))
    return FALSE;
  g_debug("restore: %u writable descriptor(s) of the snapshot's memory reopened read-only",
          reopened);
  return TRUE;
}

QEMU_PLUGIN_EXPORT int
qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info, int argc, char **argv)
{
  g_auto(VmsPluginOptions) opts = { 0 };
  g_autoptr(GError) error = NULL;
  VmsVcpuEvents vcpu_events;

  if (!info->system_emulation) {
    fprintf(stderr, "vmsnap: only system emulation (qemu-system-*) is supported\n");
    return -1;
  }
  if (!parse_args(argc, argv, &opts, &vcpu_events, &error)) {
    fprintf(stderr, "vmsnap: %s\n", error->message);
    return -1;
  }
  if (opts.restore != NULL && opts.libvirt && libvirt_restores_itself()) {
    fprintf(stderr, "vmsnap: restore=%s skipped: libvirt gave its own -incoming (it is restoring "
            "this domain from its own saved state)\n", opts.restore);
    g_clear_pointer(&opts.restore, g_free);
    g_clear_pointer(&opts.overlay, g_free);
  }
  /* The memory backend exists by now; the board, ROMs and vCPUs do not. */
  if (opts.restore != NULL && !install_restore_memory(&opts, info, &error)) {
    fprintf(stderr, "vmsnap: restore: %s\n", error->message);
    fflush(stderr);
    exit(1);
  }
  opts.access.refused = on_peer_refused;
  vms_vcpus_register(id, (guint)info->system.smp_vcpus, vcpu_events);
  plugin_service = vms_service_start(&opts, info->target_name, &error);
  if (plugin_service == NULL) {
    fprintf(stderr, "vmsnap: %s\n", error->message);
    return -1;
  }
  qemu_plugin_register_atexit_cb(id, on_atexit, NULL);
  return 0;
}
