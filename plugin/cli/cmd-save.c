/* vmsnap CLI: placeholder until its issue lands. */
#include "cli.h"

int
vms_cli_save(int argc, char **argv)
{
  return vms_cli_error("%s: not built yet", argv[0]);
}

