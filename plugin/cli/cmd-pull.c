/* vmsnap pull REF DIR: a snapshot (and its chain, where the target lacks
 * it) from an OCI registry (doc/spec.md section 12, doc/usage.md). */
#include "cli.h"

#include <stdio.h>

#include "cmd-registry.h"

int
vms_cli_pull(int argc, char **argv)
{
  gboolean insecure = FALSE;
  int transfers = 0;
  const GOptionEntry entries[] = {
    { "insecure", 0, 0, G_OPTION_ARG_NONE, &insecure, "plain HTTP to the registry", NULL },
    { "transfers", 0, 0, G_OPTION_ARG_INT, &transfers, "requests in flight (default 8)", "N" },
    { NULL },
  };
  VmsRegTransferOptions o = { 0 };
  VmsRegStats st = { 0 };
  g_autoptr(GError) error = NULL;

  if (!vms_cli_parse(&argc, &argv, entries, "HOST[:PORT]/REPO[:TAG|@DIGEST] DIR",
                     "Pull a snapshot from an OCI registry."))
    return 1;
  if (argc != 3)
    return vms_cli_error("pull needs REF and DIR (see --help)");
  vms_cli_registry_options(&o, insecure, transfers);
  if (!vms_reg_pull(argv[1], argv[2], &o, &st, &error))
    return vms_cli_error("pull %s into %s: %s", argv[1], argv[2], error->message);
  printf("pulled %s into %s: %u snapshot(s), %u blobs fetched, %u blobs already there, "
         "%" G_GUINT64_FORMAT " bytes received; disks: %u image file(s), %u linked from beside "
         "it, %u disk blobs fetched, %u disk blobs already there, %" G_GUINT64_FORMAT
         " disk bytes received\n",
         argv[1], argv[2], st.snapshots, st.blobs_fetched, st.blobs_present, st.bytes_received,
         st.disk_files, st.disk_files_linked, st.disk_blobs_sent, st.disk_blobs_present,
         st.disk_bytes);
  return 0;
}
