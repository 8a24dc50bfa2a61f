/* vmsnap CLI: what push and pull share (cmd-push.c). */
#pragma once

#include "registry.h"

/* The progress line on stderr: bytes handled of the total, rate, bytes on
 * the wire, ETA. */
void vms_cli_registry_progress(const VmsRegProgress *p, gpointer user);
/* Fills @o from the command line; progress only when stderr is a terminal.
 * Ignores SIGPIPE for the rest of the process. */
void vms_cli_registry_options(VmsRegTransferOptions *o, gboolean insecure, int transfers);
