/* vmsnap CLI: `vmsnap apply-diff BASE DIFF [--map FILE] [--json] [--engine E] [--fsync]`
 * and `vmsnap flatten DIR OUTDIR`. Thin over copy.h and chain.h. */
#include "cli.h"

#include <stdio.h>

#include "chain.h"
#include "copy.h"

int
vms_cli_apply_diff(int argc, char **argv)
{
  g_autofree char *map = NULL, *engine_name = NULL;
  gboolean json = FALSE, do_fsync = FALSE;
  const GOptionEntry entries[] = {
    { "map", 0, 0, G_OPTION_ARG_FILENAME, &map,
      "apply exactly the pages of this page map (memory.map) instead of DIFF's data extents", "FILE" },
    { "json", 0, 0, G_OPTION_ARG_NONE, &json, "print the result as JSON", NULL },
    { "engine", 0, 0, G_OPTION_ARG_STRING, &engine_name,
      "copy engine: auto (default), uring, copy_file_range or rw", "E" },
    { "fsync", 0, 0, G_OPTION_ARG_NONE, &do_fsync, "fsync BASE when done", NULL },
    { NULL },
  };
  VmsCopyOptions opts = { .engine = VMS_ENGINE_AUTO };
  VmsCopyStats stats = { 0 };
  g_autoptr(GError) error = NULL;

  if (!vms_cli_parse(&argc, &argv, entries, "BASE DIFF",
                     "Copy DIFF's data extents (or the pages of --map) onto BASE in place.\n"
                     "Both files must exist and have the same size; BASE is changed only\n"
                     "where DIFF has data. Nothing is fsynced unless --fsync is given."))
    return 1;
  if (argc != 3)
    return vms_cli_error(argc < 3 ? "missing BASE or DIFF (see --help)"
                                  : "too many arguments (see --help)");
  if (engine_name != NULL && !vms_copy_engine_from_string(engine_name, &opts.engine))
    return vms_cli_error("unknown engine '%s' (auto, uring, copy_file_range or rw)", engine_name);
  opts.fsync = do_fsync;

  gint64 start = g_get_monotonic_time();
  if (!vms_apply_diff(argv[1], argv[2], map, &opts, &stats, &error))
    return vms_cli_error("%s", error->message);
  double secs = (double)(g_get_monotonic_time() - start) / 1e6;

  if (json)
    printf("{\"bytes\": %" G_GUINT64_FORMAT ", \"extents\": %" G_GUINT64_FORMAT
           ", \"engine\": \"%s\", \"seconds\": %.6f}\n",
           stats.bytes, stats.extents, vms_copy_engine_name(stats.engine), secs);
  else
    printf("copied %" G_GUINT64_FORMAT " bytes in %" G_GUINT64_FORMAT " extents (engine %s, %.3f s)\n",
           stats.bytes, stats.extents, vms_copy_engine_name(stats.engine), secs);
  return 0;
}

int
vms_cli_flatten(int argc, char **argv)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) chain = NULL;

  if (!vms_cli_parse(&argc, &argv, NULL, "DIR OUTDIR",
                     "Write a full snapshot to OUTDIR equivalent to the diff snapshot DIR:\n"
                     "the chain's base memory is copied (reflink where possible), each diff\n"
                     "applied in order, state.bin copied, and the manifest committed last."))
    return 1;
  if (argc != 3)
    return vms_cli_error(argc < 3 ? "missing DIR or OUTDIR (see --help)"
                                  : "too many arguments (see --help)");
  if (!vms_chain_resolve(argv[1], &chain, &error) ||
      !vms_chain_flatten(argv[1], argv[2], NULL, &error))
    return vms_cli_error("%s", error->message);
  printf("flattened %s (a chain of %u snapshot%s) into %s\n", argv[1], chain->len,
         chain->len == 1 ? "" : "s", argv[2]);
  return 0;
}
