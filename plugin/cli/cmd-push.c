/* vmsnap push DIR REF: a snapshot (and the ancestors the registry lacks)
 * to an OCI registry (doc/spec.md section 12, doc/usage.md). */
#include "cli.h"

#include <signal.h>
#include <stdio.h>
#include <unistd.h>

#include "cmd-registry.h"

void
vms_cli_registry_progress(const VmsRegProgress *p, gpointer user)
{
  double mib = 1024.0 * 1024.0;
  double rate = p->elapsed > 0 ? (double)p->done_bytes / p->elapsed : 0;
  double eta = rate > 0 && p->total_bytes > p->done_bytes ? (double)(p->total_bytes - p->done_bytes) / rate : 0;

  fprintf(stderr, "\r%s: %.1f / %.1f MiB, %.1f MiB/s, %.1f MiB on the wire, ETA %.0f s   ",
          p->what, p->done_bytes / mib, p->total_bytes / mib, rate / mib, p->wire_bytes / mib, eta);
  if (p->done_bytes >= p->total_bytes) /* the last report of this snapshot */
    fputc('\n', stderr);
  fflush(stderr);
}

void
vms_cli_registry_options(VmsRegTransferOptions *o, gboolean insecure, int transfers)
{
  /* A registry that closes a TLS connection mid-write must be an error,
   * not a SIGPIPE (libcurl runs with CURLOPT_NOSIGNAL). */
  signal(SIGPIPE, SIG_IGN);
  o->insecure = insecure;
  o->transfers = transfers > 0 ? (guint)transfers : 0;
  if (isatty(STDERR_FILENO))
    o->progress = vms_cli_registry_progress;
}

int
vms_cli_push(int argc, char **argv)
{
  gboolean insecure = FALSE;
  int transfers = 0;
  g_autofree char *mount_from = NULL;
  const GOptionEntry entries[] = {
    { "insecure", 0, 0, G_OPTION_ARG_NONE, &insecure, "plain HTTP to the registry", NULL },
    { "transfers", 0, 0, G_OPTION_ARG_INT, &transfers, "requests in flight (default 8)", "N" },
    { "mount-from", 0, 0, G_OPTION_ARG_STRING, &mount_from,
      "mount blobs the registry holds in REPO instead of uploading them", "REPO" },
    { NULL },
  };
  VmsRegTransferOptions o = { 0 };
  VmsRegStats st = { 0 };
  g_autoptr(GError) error = NULL;

  if (!vms_cli_parse(&argc, &argv, entries, "DIR HOST[:PORT]/REPO[:TAG]",
                     "Push a snapshot to an OCI registry."))
    return 1;
  if (argc != 3)
    return vms_cli_error("push needs DIR and REF (see --help)");
  vms_cli_registry_options(&o, insecure, transfers);
  o.mount_from = mount_from;
  if (!vms_reg_push(argv[1], argv[2], &o, &st, &error))
    return vms_cli_error("push %s to %s: %s", argv[1], argv[2], error->message);
  printf("pushed %s %s: %u snapshot(s), %u blobs uploaded, %u already present, %u mounted, "
         "%u zero chunks skipped, %" G_GUINT64_FORMAT " bytes sent; disks: %u image file(s), "
         "%u disk blobs uploaded, %u disk blobs already present, %" G_GUINT64_FORMAT
         " disk bytes sent\n",
         argv[2], st.digest, st.snapshots, st.blobs_sent, st.blobs_present, st.blobs_mounted,
         st.chunks_zero, st.bytes_sent, st.disk_files, st.disk_blobs_sent, st.disk_blobs_present,
         st.disk_bytes);
  return 0;
}
