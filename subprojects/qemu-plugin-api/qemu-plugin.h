/* The QEMU TCG plugin API, version 1, as QEMU 7.2 ships it — only the part
 * vmsnap uses. Written from QEMU's include/qemu/qemu-plugin.h (GPL-2.0-or-later
 * API declarations; the ABI is what matters: these are the types and symbols
 * that qemu-system-* exports to plugins). Debian ships no qemu-plugin.h, so
 * meson uses this file unless -Dplugin_api=system finds one.
 *
 * Every function here is resolved at load time from the QEMU binary itself.
 */
#ifndef QEMU_QEMU_PLUGIN_H
#define QEMU_QEMU_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>

#if defined(_WIN32) || defined(__CYGWIN__)
#define QEMU_PLUGIN_EXPORT __declspec(dllexport)
#else
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* A unique identifier of a loaded plugin, given to qemu_plugin_install. */
typedef uint64_t qemu_plugin_id_t;

/* The plugin exports the API version it was built against. QEMU 7.2 accepts
 * QEMU_PLUGIN_MIN_VERSION (0) <= version <= QEMU_PLUGIN_VERSION (1). */
extern QEMU_PLUGIN_EXPORT int qemu_plugin_version;

#define QEMU_PLUGIN_VERSION 1

/* Information about the QEMU that loads the plugin. @info is only live
 * during qemu_plugin_install: copy anything you keep. */
typedef struct qemu_info_t {
  const char *target_name; /* e.g. "x86_64" */
  struct {
    int min;
    int cur;
  } version;
  bool system_emulation;
  union {
    struct {
      int smp_vcpus;
      int max_vcpus;
    } system;
  };
} qemu_info_t;

/* Called once, on QEMU's main thread, when the plugin is loaded; @argv holds
 * one "key=value" string per plugin argument. Non-zero makes QEMU refuse the
 * plugin and exit. */
QEMU_PLUGIN_EXPORT int qemu_plugin_install(qemu_plugin_id_t id, const qemu_info_t *info,
                                           int argc, char **argv);

typedef void (*qemu_plugin_simple_cb_t)(qemu_plugin_id_t id);
typedef void (*qemu_plugin_udata_cb_t)(qemu_plugin_id_t id, void *userdata);
typedef void (*qemu_plugin_vcpu_simple_cb_t)(qemu_plugin_id_t id, unsigned int vcpu_index);

/* vCPU lifecycle callbacks; they run on the vCPU's thread. */
void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_register_vcpu_exit_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_register_vcpu_idle_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_register_vcpu_resume_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);

/* Called when QEMU exits (from its atexit handler). */
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);

#endif /* QEMU_QEMU_PLUGIN_H */
