/* vmsnap CLI: one entry point per command, each in its own file.
 *
 * Every entry takes the arguments after the command name (argv[0] is the
 * command name) and returns the process exit status: 0 on success, 1 on
 * failure after printing "vmsnap: error: ..." to stderr (vms_cli_error).
 */
#pragma once

#include <glib.h>

#include "snapdir.h"

G_BEGIN_DECLS

int vms_cli_info(int argc, char **argv);       /* cmd-info.c */
int vms_cli_verify(int argc, char **argv);     /* cmd-info.c */
int vms_cli_apply_diff(int argc, char **argv); /* cmd-diff.c */
int vms_cli_flatten(int argc, char **argv);    /* cmd-diff.c */
int vms_cli_save(int argc, char **argv);       /* cmd-save.c */
int vms_cli_monitor(int argc, char **argv);    /* cmd-monitor.c */
int vms_cli_restore(int argc, char **argv);    /* cmd-restore.c */
int vms_cli_push(int argc, char **argv);       /* cmd-push.c */
int vms_cli_pull(int argc, char **argv);       /* cmd-pull.c */


/* restore-ram.c: the RAM overlay placeholder path (in @rdir) for a restore
 * whose state.bin is @state_snap's and whose command line is @m's
 * qemu_argv plus @extra (NULL-terminated; nullable),
 * or NULL for the private mapping: @mode "private", or "auto"/NULL when the
 * overlay cannot be used (a line on stderr says why). @mode "overlay" fails
 * instead of falling back; an unknown @mode fails. */
char *vms_cli_restore_placeholder(const char *mode, VmsSnapshot *state_snap,
                                  const VmsManifest *m, const char *const *extra,
                                  const char *rdir, GError **error);

/* Prints "vmsnap: error: <message>" to stderr and returns 1. */
int vms_cli_error(const char *format, ...) G_GNUC_PRINTF(1, 2);

/* Parses @argv with @entries; prints the error and returns FALSE on a usage
 * error, prints help and exits 0 for --help. @parameter_string describes the
 * positional arguments, @summary the command. Leaves positionals in @argv. */
gboolean vms_cli_parse(int *argc, char ***argv, const GOptionEntry *entries,
                       const char *parameter_string, const char *summary);

G_END_DECLS
