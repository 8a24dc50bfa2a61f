/* vmsnap-fixture DIR [MEMORY_FILE]: writes a committed sample FULL snapshot
 * (16 MiB of patterned guest memory hard-linked as memory.bin, a 64 KiB
 * state.bin) so the CLI can be shown and tested without a VM. MEMORY_FILE
 * defaults to DIR/memory.bin. Test and demo tool; not installed. */
#include <stdio.h>

#include "helpers.h"
#include "snapdir.h"

int
main(int argc, char **argv)
{
  g_autofree char *memory = NULL;
  g_autoptr(VmsManifest) m = NULL;

  if (argc < 2 || argc > 3) {
    fprintf(stderr, "usage: vmsnap-fixture DIR [MEMORY_FILE]\n");
    return 1;
  }
  if (g_mkdir_with_parents(argv[1], 0755) < 0) {
    fprintf(stderr, "vmsnap-fixture: cannot create %s\n", argv[1]);
    return 1;
  }
  memory = argc == 3 ? g_strdup(argv[2]) : g_build_filename(argv[1], VMS_MEMORY_FILE, NULL);
  m = vms_test_make_full_snapshot(argv[1], memory, 16u << 20, 64u << 10);
  printf("%s: committed FULL snapshot %s\n", argv[1], m->id);
  return 0;
}
