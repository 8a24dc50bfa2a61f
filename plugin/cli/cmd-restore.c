/* vmsnap CLI: placeholder until its issue lands. */
#include "cli.h"

int
vms_cli_restore(int argc, char **argv)
{
  return vms_cli_error("%s: not built yet", argv[0]);
}

