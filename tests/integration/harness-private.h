/* vmsnap integration tests: state shared by the harness-*.c files only. */
#pragma once

#include <glib.h>

/* GSubprocess*, not owned: every live QEMU, killed by the atexit safety net. */
extern GPtrArray *vms_harness_live_procs;
/* char*: per-test directories, removed at a normal exit. */
extern GPtrArray *vms_harness_temp_dirs;

/* The value of environment variable @name, or @fallback when unset or empty. */
const char *vms_harness_env_or(const char *name, const char *fallback);
