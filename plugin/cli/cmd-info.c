/* vmsnap CLI: placeholder until its issue lands. */
#include "cli.h"

int
vms_cli_info(int argc, char **argv)
{
  return vms_cli_error("%s: not built yet", argv[0]);
}

int
vms_cli_verify(int argc, char **argv)
{
  return vms_cli_error("%s: not built yet", argv[0]);
}

