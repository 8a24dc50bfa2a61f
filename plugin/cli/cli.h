/* vmsnap CLI: one entry point per command, each in its own file.
 *
 * Every entry takes the arguments after the command name (argv[0] is the
 * command name) and returns the process exit status: 0 on success, 1 on
 * failure after printing "vmsnap: error: ..." to stderr (vms_cli_error).
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

int vms_cli_info(int argc, char **argv);       /* cmd-info.c */
int vms_cli_verify(int argc, char **argv);     /* cmd-info.c */
int vms_cli_apply_diff(int argc, char **argv); /* cmd-diff.c */
int vms_cli_flatten(int argc, char **argv);    /* cmd-diff.c */
int vms_cli_save(int argc, char **argv);       /* cmd-save.c */
int vms_cli_restore(int argc, char **argv);    /* cmd-restore.c */
int vms_cli_push(int argc, char **argv);       /* cmd-push.c */
int vms_cli_pull(int argc, char **argv);       /* cmd-pull.c */

/* Prints "vmsnap: error: <message>" to stderr and returns 1. */
int vms_cli_error(const char *format, ...) G_GNUC_PRINTF(1, 2);

/* Parses @argv with @entries; prints the error and returns FALSE on a usage
 * error, prints help and exits 0 for --help. @parameter_string describes the
 * positional arguments, @summary the command. Leaves positionals in @argv. */
gboolean vms_cli_parse(int *argc, char ***argv, const GOptionEntry *entries,
                       const char *parameter_string, const char *summary);

G_END_DECLS
