/* vmsnap tests: helpers shared by every test program (unit and integration).
 * All run on the test's main thread. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The whole content of @path; a failed read fails the test. */
GBytes *vms_test_read_bytes(const char *path);

/* The whole content of @path as a string, or NULL if it cannot be read. */
char *vms_test_read_text(const char *path);

/* Marks the running GTest case as unable to run here because of @why: a skip
 * on a developer machine, a failure under CI=true, where every test must run
 * (g_test_skip alone exits 0, and meson would count it as passed). */
void vms_test_cannot_run(const char *why);

G_END_DECLS
