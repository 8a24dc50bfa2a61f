/* vmsnap registry: push and pull of snapshots (doc/spec.md section 12).
 *
 * vms_reg_push() sends a snapshot, and every ancestor of a diff the
 * registry lacks, as OCI artifacts (artifact.h); vms_reg_pull() brings one
 * back, with its chain if the target lacks it. Both run several transfers
 * at once, skip what the other side already holds, verify every blob's
 * digest, and resume after an interruption (push: the blobs already sent
 * are found by HEAD; pull: the chunks already staged are found by digest).
 * Library code: errors in GError, progress through a callback.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  const char *what;      /* e.g. "push base", "pull DIR" */
  guint64 total_bytes;   /* memory bytes to look at */
  guint64 done_bytes;    /* of those, handled so far */
  guint64 wire_bytes;    /* bytes sent (push) or received (pull) so far */
  gdouble elapsed;       /* seconds since the transfer began */
} VmsRegProgress;

typedef void (*VmsRegProgressFunc)(const VmsRegProgress *p, gpointer user);

typedef struct {
  gboolean insecure;       /* plain HTTP */
  guint transfers;         /* requests in flight; 0: 8 */
  const char *mount_from;  /* push: a repository of the same registry to mount blobs from */
  VmsRegProgressFunc progress; /* nullable; called on the caller's thread */
  gpointer progress_user;
} VmsRegTransferOptions;

typedef struct {
  guint blobs_sent;        /* uploaded */
  guint blobs_present;     /* push: already in the registry; pull: already in the target */
  guint blobs_mounted;     /* push: mounted from mount_from */
  guint blobs_fetched;     /* pull: downloaded */
  guint chunks_zero;       /* all-zero chunks, never stored */
  guint snapshots;         /* artifacts pushed or pulled (a chain counts each member) */
  guint64 bytes_sent;      /* HTTP bodies sent: blobs and manifests */
  guint64 bytes_received;  /* HTTP bodies received */
  guint disk_files;        /* disk image files carried (push: sent or present; pull: written) */
  guint disk_blobs_sent;   /* disk blobs: push uploaded, pull fetched (also in the totals) */
  guint disk_blobs_present;/* disk blobs: push found in the registry, pull found staged */
  guint64 disk_bytes;      /* disk blob bytes: push sent, pull received */
  guint disk_files_linked; /* pull: image files hard-linked from a snapshot beside DIR */
  char digest[72];         /* the OCI manifest digest of the snapshot */
} VmsRegStats;

/* Pushes the committed snapshot @dir to @ref (HOST[:PORT]/REPO[:TAG]). A
 * diff's ancestors are pushed first unless the registry has them (found by
 * their alias tag sha256-<hex of manifest.bin>). Every artifact is also
 * tagged with that alias. @ret_stats (nullable) receives the counts. */
gboolean vms_reg_push(const char *dir, const char *ref, const VmsRegTransferOptions *opts,
                      VmsRegStats *ret_stats, GError **error);

/* Pulls @ref into @dir, which must not hold a committed snapshot (unless it
 * is this very snapshot: then nothing moves). A diff's parent is looked for
 * where the manifest's parent path points (relative to @dir); if it is not
 * there it is pulled there first, and if the registry lacks it the error
 * names it. Files are staged as NAME.pull-<id> and manifest.bin is
 * committed last (snapdir), so a failure leaves nothing that looks
 * committed; a second run reuses the chunks already staged. */
gboolean vms_reg_pull(const char *ref, const char *dir, const VmsRegTransferOptions *opts,
                      VmsRegStats *ret_stats, GError **error);

G_END_DECLS
