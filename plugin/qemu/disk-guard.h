/* vmsnap plugin: the disk checks of a restore (doc/spec.md section 8) for a
 * QEMU started by hand with restore=DIR: just before state.bin loads, the
 * snapshot's frozen images must be unchanged, and QEMU must not have any of
 * them open writable (a clone writes its own overlay). Start-up worker. */
#pragma once

#include <glib.h>

#include "qmp.h"
#include "snapdir.h"

G_BEGIN_DECLS

/* Fails with VMS_ERROR_MISMATCH naming "disk <device>" and the image. */
gboolean vms_disk_guard_check(VmsSnapshot *s, VmsQmpClient *qmp, GError **error);

G_END_DECLS
