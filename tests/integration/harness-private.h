/* vmsnap integration tests: state shared by the harness-*.c files only. */
#pragma once

#include <glib.h>
#include <gio/gio.h>

/* GSubprocess*, not owned: every live QEMU, killed by the atexit safety net. */
extern GPtrArray *vms_harness_live_procs;
/* char*: per-test directories, removed at a normal exit. */
extern GPtrArray *vms_harness_temp_dirs;

/* The value of environment variable @name, or @fallback when unset or empty. */
const char *vms_harness_env_or(const char *name, const char *fallback);

/* Returns @ok; when it is FALSE, first prints "harness: @fn: <message>" to
 * stderr, so a test that asserts only the boolean still shows why. */
gboolean vms_harness_said(gboolean ok, GError **error, const char *fn);

/* What a sanitized build needs to run QEMU: with VMSNAP_TEST_QEMU_PRELOAD
 * set (meson sets it to the ASan runtime under -Db_sanitize=address; an
 * ASan plugin loads into QEMU only if the runtime comes first), spawned
 * processes get a PATH whose first directory holds qemu-system-* wrappers
 * that preload it (with leak checks off: QEMU's own leaks at exit are not
 * ours), so `vmsnap restore` execs a preloaded QEMU too while its qemu-img
 * children run plain. No-op without the variable. */
void vms_harness_sanitizer_env(GSubprocessLauncher *launcher);
/* @argv0 itself, or the wrapper's path for a bare qemu-system-* name. */
const char *vms_harness_sanitizer_program(const char *argv0);
