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

/* How a command answers: exactly one of @ret (consumed) and @error is set.
 * May be called on any thread (snapshot-save answers from its worker). */
typedef void (*VmsReplyFunc)(JsonNode *ret, const GError *error, gpointer user_data);

/* Runs @command with @args (not consumed) and calls @reply exactly once,
 * now or later. Service thread. */
void vms_commands_dispatch(VmsService *svc, const char *command, JsonObject *args,
                           VmsReplyFunc reply, gpointer user_data);

/* The control socket's VmsQmpCommandFunc (@user_data is the VmsService). */
void vms_commands_qmp_dispatch(VmsQmpRequest *req, const char *command, JsonObject *args,
                               gpointer user_data);

/* The names of the commands, NULL-terminated, for help texts. */
const char *const *vms_commands_names(void);

G_END_DECLS
