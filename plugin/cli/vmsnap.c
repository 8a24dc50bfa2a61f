/* vmsnap: the command-line tool. A thin dispatcher over plugin/core; each
 * command lives in its own cmd-*.c file. */
#include "cli.h"

#include <locale.h>
#include <stdio.h>
#include <string.h>
#include <json-glib/json-glib.h>

#include "vmsnap-config.h"

typedef struct {
  const char *name;
  int (*run)(int argc, char **argv);
  const char *summary;
} Command;

static const Command commands[] = {
  { "info", vms_cli_info, "print a snapshot's manifest" },
  { "verify", vms_cli_verify, "check a snapshot's files and its parent chain" },
  { "apply-diff", vms_cli_apply_diff, "copy a diff's data extents onto a base file in place" },
  { "flatten", vms_cli_flatten, "turn a diff snapshot and its chain into a full snapshot" },
  { "save", vms_cli_save, "ask a running VM's plugin for a snapshot" },
  { "monitor", vms_cli_monitor, "talk to a running VM's plugin through its monitor console" },
  { "restore", vms_cli_restore, "start QEMU from a snapshot" },
  { "push", vms_cli_push, "send a snapshot to an OCI registry" },
  { "pull", vms_cli_pull, "fetch a snapshot from an OCI registry" },
};

/* --json anywhere among a command's options: errors are JSON too. */
static gboolean json_errors;

int
vms_cli_error(const char *format, ...)
{
  va_list ap;
  g_autofree char *msg = NULL;

  va_start(ap, format);
  msg = g_strdup_vprintf(format, ap);
  va_end(ap);
  if (!json_errors) {
    fprintf(stderr, "vmsnap: error: %s\n", msg);
    return 1;
  }
  /* The shape of a QMP error, as the control socket answers. */
  g_autoptr(JsonBuilder) b = json_builder_new();
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "error");
  json_builder_begin_object(b);
  json_builder_set_member_name(b, "class");
  json_builder_add_string_value(b, "GenericError");
  json_builder_set_member_name(b, "desc");
  json_builder_add_string_value(b, msg);
  json_builder_end_object(b);
  json_builder_end_object(b);
  g_autoptr(JsonNode) root = json_builder_get_root(b);
  g_autofree char *text = json_to_string(root, FALSE);
  fprintf(stderr, "%s\n", text);
  return 1;
}

gboolean
vms_cli_parse(int *argc, char ***argv, const GOptionEntry *entries,
              const char *parameter_string, const char *summary)
{
  g_autoptr(GOptionContext) ctx = g_option_context_new(parameter_string);
  g_autoptr(GError) error = NULL;

  g_option_context_set_summary(ctx, summary);
  if (entries != NULL)
    g_option_context_add_main_entries(ctx, entries, NULL);
  if (!g_option_context_parse(ctx, argc, argv, &error)) {
    vms_cli_error("%s (see --help)", error->message);
    return FALSE;
  }
  return TRUE;
}

static const Command *
find_command(const char *name)
{
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    if (strcmp(name, commands[i].name) == 0)
      return &commands[i];
  return NULL;
}

static gboolean
wants_json(int argc, char **argv)
{
  for (int i = 2; i < argc && strcmp(argv[i], "--") != 0; i++)
    if (strcmp(argv[i], "--json") == 0)
      return TRUE;
  return FALSE;
}

static int
run_command(const Command *c, int argc, char **argv)
{
  g_autofree char *prgname = g_strdup_printf("vmsnap %s", c->name);
  g_set_prgname(prgname); /* glib copies it */
  return c->run(argc, argv);
}

static void
usage(FILE *out)
{
  fprintf(out, "Usage: vmsnap COMMAND [OPTIONS]\n\nCommands:\n");
  for (gsize i = 0; i < G_N_ELEMENTS(commands); i++)
    fprintf(out, "  %-11s %s\n", commands[i].name, commands[i].summary);
  fprintf(out, "\nRun 'vmsnap help COMMAND' (or 'vmsnap COMMAND --help') for a command's "
          "options; man vmsnap for all of them.\n");
}

int
main(int argc, char **argv)
{
  setlocale(LC_ALL, "");
  if (argc < 2) {
    usage(stderr);
    return 1;
  }
  json_errors = wants_json(argc, argv);
  if (strcmp(argv[1], "help") == 0 && argc > 2) {
    const Command *c = find_command(argv[2]);
    char *help_argv[] = { argv[2], (char *)"--help", NULL };
    if (c == NULL || argc > 3)
      return vms_cli_error(c == NULL ? "help: unknown command '%s' (see 'vmsnap help')"
                                     : "help: one command at a time (%s ...)", argv[2]);
    return run_command(c, 2, help_argv);
  }
  if (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "help") == 0) {
    usage(stdout);
    return 0;
  }
  if (strcmp(argv[1], "--version") == 0) {
    printf("vmsnap %s\n", VMSNAP_VERSION);
    return 0;
  }
  const Command *c = find_command(argv[1]);
  if (c != NULL)
    return run_command(c, argc - 1, argv + 1);
  vms_cli_error("unknown command '%s' (see 'vmsnap --help')", argv[1]);
  return 1;
}
