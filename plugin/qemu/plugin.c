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
parse_one(VmsPluginOptions *opts, char *key, char *value, gboolean *resume_seen, GError **error)
{
  char **slot = NULL;

  if (strcmp(key, "resume") == 0) {
    if (*resume_seen)
      return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                         "argument resume= given twice"), FALSE;
    *resume_seen = TRUE;
    return parse_bool(key, value, &opts->resume, error);
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
                       "resume, overlay, vcpu-events)", key), FALSE;
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
  gboolean resume_seen = FALSE, events_seen = FALSE;

  opts->resume = TRUE;
  *ret_events = VMS_VCPU_EVENTS_AUTO;
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
    } else if (!parse_one(opts, kv[0], kv[1], &resume_seen, error)) {
      return FALSE;
    }
  }
  if (opts->qmp == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "missing argument qmp=PATH (a QMP socket QEMU serves for the plugin)"),
           FALSE;
  if (resume_seen && opts->restore == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "argument resume= only applies with restore=DIR"), FALSE;
  if (opts->overlay != NULL && opts->restore == NULL)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                       "argument overlay= only applies with restore=DIR"), FALSE;
  return TRUE;
}

static void
on_atexit(qemu_plugin_id_t id, void *userdata)
{
  if (plugin_service != NULL)
    vms_service_at_exit(plugin_service);
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
  /* The memory backend exists by now; the board, ROMs and vCPUs do not. */
  if (opts.restore != NULL &&
      (!vms_restore_precheck(opts.restore, info->target_name, (guint32)info->system.smp_vcpus,
                             opts.overlay, &error) ||
       (opts.overlay != NULL && !vms_ram_overlay_install(opts.overlay, &error)))) {
    fprintf(stderr, "vmsnap: restore: %s\n", error->message);
    fflush(stderr);
    exit(1);
  }
  vms_vcpus_register(id, (guint)info->system.smp_vcpus, vcpu_events);
  plugin_service = vms_service_start(&opts, info->target_name, &error);
  if (plugin_service == NULL) {
    fprintf(stderr, "vmsnap: %s\n", error->message);
    return -1;
  }
  qemu_plugin_register_atexit_cb(id, on_atexit, NULL);
  return 0;
}
