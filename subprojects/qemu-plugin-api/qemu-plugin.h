/* The QEMU TCG plugin API, versions 1 and 2 — only the part vmsnap uses.
 * Written from QEMU's include/qemu/qemu-plugin.h (GPL-2.0-or-later API
 * declarations; the ABI is what matters: these are the types and symbols
 * that qemu-system-* exports to plugins). Debian ships no qemu-plugin.h, so
 * meson uses this file unless it finds a system one (doc/usage.md, "Building
 * for a QEMU").
 *
 * VMSNAP_QEMU_PLUGIN_API (set by meson, option qemu_plugin_api) picks the
 * version these declarations describe:
 *   1  QEMU 7.2 to 8.2 (QEMU_PLUGIN_VERSION 1, minimum 0)
 *   2  QEMU 9.0 and later while their minimum stays 2 (9.0 removed the
 *      qemu_plugin_n_vcpus/n_max_vcpus functions and raised the minimum)
 * Everything vmsnap calls — qemu_info_t, the vCPU init/exit/idle/resume and
 * atexit registrations and their callback types — is the same in both.
 *
 * Every function here is resolved at load time from the QEMU binary itself.
 */
#ifndef QEMU_QEMU_PLUGIN_H
#define QEMU_QEMU_PLUGIN_H

#include <stdbool.h>
#include <stdint.h>

#ifndef VMSNAP_QEMU_PLUGIN_API
#define VMSNAP_QEMU_PLUGIN_API 1
#endif
#if VMSNAP_QEMU_PLUGIN_API != 1 && VMSNAP_QEMU_PLUGIN_API != 2
#error "VMSNAP_QEMU_PLUGIN_API must be 1 or 2"
#endif

#if defined(_WIN32) || defined(__CYGWIN__)
#define QEMU_PLUGIN_EXPORT __declspec(dllexport)
#else
#define QEMU_PLUGIN_EXPORT __attribute__((visibility("default")))
#endif

/* A unique identifier of a loaded plugin, given to qemu_plugin_install. */
typedef uint64_t qemu_plugin_id_t;

/* The plugin exports the API version it was built against. QEMU accepts
 * QEMU_PLUGIN_MIN_VERSION <= version <= QEMU_PLUGIN_VERSION (its own):
 * 7.2-8.2 accept 0-1, 9.0 accepts 2 only, 10.2 accepts 2-5. */
extern QEMU_PLUGIN_EXPORT int qemu_plugin_version;

#define QEMU_PLUGIN_VERSION VMSNAP_QEMU_PLUGIN_API

/* Information about the QEMU that loads the plugin. @info is only live
 * during qemu_plugin_install: copy anything you keep. Unchanged from 7.2
 * to 10.2. */
typedef struct qemu_info_t {
  const char *target_name; /* e.g. "x86_64", "aarch64" */
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

/* vCPU lifecycle callbacks; they run on the vCPU's thread. QEMU calls init
 * and exit only under TCG; idle and resume also under KVM on 7.2, and on
 * 10.x only for vCPUs that ran init (so never under KVM). */
void qemu_plugin_register_vcpu_init_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_register_vcpu_exit_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_register_vcpu_idle_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);
void qemu_plugin_register_vcpu_resume_cb(qemu_plugin_id_t id, qemu_plugin_vcpu_simple_cb_t cb);

/* Called when QEMU exits (from its atexit handler). */
void qemu_plugin_register_atexit_cb(qemu_plugin_id_t id, qemu_plugin_udata_cb_t cb,
                                    void *userdata);

#if VMSNAP_QEMU_PLUGIN_API == 1
/* API 1 only (removed in 9.0, the reason for API 2); vmsnap does not call
 * them — it reads qemu_info_t — but they are part of what version 1 means. */
int qemu_plugin_n_vcpus(void);
int qemu_plugin_n_max_vcpus(void);
#endif

#endif /* QEMU_QEMU_PLUGIN_H */
