/* vmsnap plugin: the monitor console (doc/spec.md section 5) — a line-oriented
 * text console for people on a unix socket. Prompt "(vmsnap) ", one command
 * per line, plain-word answers. Every command goes through commands.c, so
 * semantics and errors are those of the control socket.
 */
#pragma once

#include <glib.h>
#include <json-glib/json-glib.h>
#include "conn.h"
#include "qmp.h"

G_BEGIN_DECLS

typedef struct _VmsMonitor VmsMonitor;

/* Listens on @path (mode 0600 unless @policy, nullable, lets others in)
 * and serves on @context; every command goes to @dispatch (the same
 * function the control socket takes). QEMU's main thread, from
 * vms_service_start. */
VmsMonitor *vms_monitor_new(const char *path, GMainContext *context, const VmsPeerPolicy *policy,
                            VmsDispatchFunc dispatch, gpointer user_data, GError **error);
/* Closes every console and removes the socket file. */
void vms_monitor_free(VmsMonitor *mon);

/* A console line, parsed. */
typedef struct {
  char *command;     /* the control-socket command to run, or NULL */
  JsonObject *args;  /* its arguments (with command) */
  char *text;        /* with no command: what to print (help; "" for an empty line) */
  gboolean quit;     /* `quit`: close this console */
} VmsMonitorLine;

void vms_monitor_line_clear(VmsMonitorLine *l);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsMonitorLine, vms_monitor_line_clear)

/* Turns a console line into a command of the table and its arguments, as
 * the control socket would receive them, or into text to print (help,
 * help CMD, a bare info). Words may be quoted as in a shell. FALSE with an
 * error for an unknown or malformed line (the error may quote the line:
 * print it through vms_monitor_escape). Pure function (tests, fuzzing). */
gboolean vms_monitor_parse_line(const char *line, VmsMonitorLine *ret, GError **error);

/* The plain-word answer of @command's result @ret. Safe to print: control
 * bytes are escaped. Caller frees. */
char *vms_monitor_format(const char *command, JsonNode *ret);

/* @text with every control byte (ESC, CR, BEL, ...; not newline) and
 * invalid UTF-8 shown as \xNN, so no peer-supplied text can drive the
 * terminal. Caller frees. */
char *vms_monitor_escape(const char *text);

/* Completions of the word that ends @line (the console's Tab): every
 * command, `info` subcommand, save option and value that starts with it,
 * and for a DIR argument the entries of the plugin's file system
 * (directories end in '/'). NULL-terminated; caller frees. */
char **vms_monitor_complete(const char *line);

G_END_DECLS
