/* vmsnap plugin: the one command table, shared by the control socket (QMP)
 * and the monitor console.
 *
 * Each command checks its arguments the same way for both front ends
 * (unknown, missing and mistyped arguments are refused with the argument
 * named) and answers with a JSON value or an error; the front ends only
 * format.
 */
#pragma once

#include <json-glib/json-glib.h>
#include "service.h"

G_BEGIN_DECLS

/* The command table's VmsDispatchFunc, for both front ends: runs @command
 * with @args (not consumed) and calls @reply exactly once, now or later
 * (snapshot-save answers from its worker). @user_data is the VmsService.
 * Service thread. */
void vms_commands_dispatch(const char *command, JsonObject *args, VmsReplyFunc reply,
                           gpointer reply_data, gpointer user_data);

G_END_DECLS
