/* vmsnap registry: what pull.c, pull-chunks.c, pull-disks.c and pull-qcow2.c share. */
#pragma once

#include "artifact.h"
#include "chunks.h"
#include "engine.h"
#include "manifest.h"
#include "registry.h"

typedef struct {
  VmsRegClient *client;
  VmsRegEngine *engine;
  const VmsRegTransferOptions *opts;
  VmsRegStats *stats;
  const char *ref;  /* for messages */
  GError *error;
  guint alive;
  guint64 done;
} Pull;

/* Records @e (taken) as the pull's failure unless one is recorded. */
void vms_reg_pull_fail(Pull *p, GError *e);

/* Where a pull writes memory: the staged memory file @fd, its chunk
 * stream @src (over @fd, with a diff's page map) and digests @cidx
 * (memory.chunks, bound to the pulled manifest.bin). */
typedef struct {
  int fd;
  const VmsChunkSource *src;
  const VmsChunkIndex *cidx;
  gboolean sparse;   /* FULL: stream offset == file offset; zero pages left as holes */
  guint32 page;
  const char *what;  /* what is written, for errors: NULL is "memory" */
} VmsRegTarget;

/* Fetches every chunk of @ix that @target lacks (@resume: the staged file
 * may hold chunks of an earlier run, checked by digest first), verifying
 * and writing each on the pool threads. */
gboolean vms_reg_pull_chunks(Pull *p, const VmsRegTarget *target, const VmsRegIndex *ix,
                             gboolean resume, VmsRegTicker *t, GError **error);

/* GET of blob @digest (at most @max bytes), verified against its digest;
 * errors name @what and the blob (pull.c). */
GBytes *vms_reg_pull_blob(Pull *p, const char *digest, guint64 max, const char *what,
                          GError **error);

/* TRUE if the blobs of @ix hold exactly the non-zero chunks of @cidx, each
 * blob whole chunks of one window whose group digest is made of @cidx's
 * digests, and @ix has @cidx's chunk and stream sizes (pull.c). */
gboolean vms_reg_pull_index_covers(const VmsRegIndex *ix, const VmsChunkIndex *cidx);

/* ---- disks (pull-disks.c) ---- */

typedef struct _VmsRegPullDisks VmsRegPullDisks;
void vms_reg_pull_disks_free(VmsRegPullDisks *pd);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsRegPullDisks, vms_reg_pull_disks_free)

/* Stages the disk images of the artifact @a (manifest @m, manifest.bin's
 * digest @config_digest, "sha256:...") in the staging directory @sdfd of @dir: every file
 * the artifact carries, each chunk verified, written sparse, a resumed
 * pull's staged chunks kept; each qcow2 pointed at its backing file as it
 * will be on this host (its pulled file, or the parent's). A diff's files
 * that join its parent's come from the parent, which must be at its parent
 * path already. Errors name the disk and the blob. */
VmsRegPullDisks *vms_reg_pull_disks_stage(Pull *p, int sdfd, const char *dir,
                                          const VmsRegArtifact *a, const VmsManifest *m,
                                          const char *config_digest, GError **error);

/* Moves the staged images into @dirfd (mode 0400, like frozen images) and
 * writes disks.local with their identities on this host (disk-local.h).
 * Before pull.c's place_files (which removes the then empty staging
 * directory) and manifest.bin's commit. */
gboolean vms_reg_pull_disks_place(VmsRegPullDisks *pd, int sdfd, int dirfd, GError **error);

/* Looks beside @dir (in the directories of its parent directory) for a
 * pulled image whose disks.local says it was written from the chunk-digest
 * layer @content and is @size bytes; hard-links it as @sdfd/@name if it is
 * a regular file of this user whose every chunk matches @cidx (replacing
 * what @name held). TRUE if so; FALSE, @name untouched, if none serves
 * (pull-reuse.c). */
gboolean vms_reg_pull_reuse(const char *dir, const char *content, guint64 size,
                            const VmsChunkIndex *cidx, int sdfd, const char *name);

/* Points the qcow2 image @fd at @backing (absolute) of format @format, as
 * `qemu-img rebase -u` does; errors name @what (pull-qcow2.c). */
gboolean vms_reg_qcow2_rebase(int fd, const char *backing, const char *format, const char *what,
                              GError **error);
