/* vmsnap qemuctl: moving a clone's sockets and chardev files into a runtime
 * directory of its own, so clones run beside the original. Used by the
 * command-line rewrite (relaunch) and by the libvirt XML rewrite. One
 * thread at a time per relocator. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct _VmsRelocator VmsRelocator;

/* Paths move into @runtime_dir (copied), keeping their base names, with a
 * "2-", "3-" ... prefix where two old paths share one. */
VmsRelocator *vms_relocator_new(const char *runtime_dir);
void vms_relocator_free(VmsRelocator *r);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRelocator, vms_relocator_free)

/* The new path of @old_path; the same old path always gets the same new
 * one (the plugin's qmp= and the -chardev serving it stay one socket).
 * Owned by @r. */
const char *vms_relocator_path(VmsRelocator *r, const char *old_path);

/* @plugin_arg (a -plugin value) with its qmp=, control= and monitor= paths
 * moved. Caller frees. */
char *vms_relocate_plugin_sockets(VmsRelocator *r, const char *plugin_arg);

/* @chardev_arg (a -chardev value) with the path of a socket or file backend
 * moved; other backends unchanged. Caller frees. */
char *vms_relocate_chardev(VmsRelocator *r, const char *chardev_arg);

G_END_DECLS
