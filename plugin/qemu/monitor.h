/* vmsnap plugin: the monitor console (doc/spec.md section 5) — a line-oriented
 * text console for people on a unix socket. Prompt "(vmsnap) ", one command
 * per line, plain-word answers. Every command goes through commands.c, so
 * semantics and errors are those of the control socket.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include "service.h"

G_BEGIN_DECLS

/* Listens on @path (mode 0600, peers of our uid only) and serves on the
 * service's context. QEMU's main thread, from vms_service_start. */
VmsMonitor *vms_monitor_new(const char *path, VmsService *svc, GError **error);

/* Turns a console line into a command name and arguments, as the control
 * socket would receive them. Words may be quoted as in a shell. Returns FALSE
 * with an error for an unknown or malformed line; sets *@ret_help for "help".
 * Pure function (for tests and fuzzing). */
gboolean vms_monitor_parse_line(const char *line, char **ret_command, JsonObject **ret_args,
                                gboolean *ret_help, GError **error);

/* The plain-word answer of @command's result @ret. Caller frees. */
char *vms_monitor_format(const char *command, JsonNode *ret);

G_END_DECLS
