/* vmsnap registry: what push.c, push-files.c (reading the snapshot) and
 * push-disks.c (its disk images) share. */
#pragma once

#include <glib.h>

#include "artifact.h"
#include "chunks.h"
#include "engine.h"
#include "registry.h"
#include "snapdir.h"

G_BEGIN_DECLS

typedef struct {
  VmsRegClient *client;
  VmsRegEngine *engine;
  const VmsRegTransferOptions *opts;
  VmsRegStats *stats;
  GError *error;   /* the first failure; stops new work */
  guint alive;     /* uploads not yet finished */
  guint64 done;    /* memory bytes handled */
  GHashTable *seen; /* digests this push has started: each blob goes once */
  const char *label; /* what the chunks are, for errors: NULL is memory */
} Push;

/* Sends @blob (taken) unless the registry has it (HEAD first; each digest
 * once a push); its digest into @ret_digest. Completes in vms_reg_push_wait. */
void vms_reg_push_bytes(Push *p, GBytes *blob, char ret_digest[72]);

/* Pushes the non-zero chunks of @src (each checked against @cidx as it is
 * read; a mismatch names p->label), in blobs of up to VMS_REG_BLOB_CHUNKS
 * chunks; returns the index of what was sent. Failures land in p->error. */
VmsRegIndex *vms_reg_push_chunks(Push *p, const VmsChunkSource *src, const VmsChunkIndex *cidx,
                                 VmsRegTicker *t);

/* Sends @ix encoded (unless @p has failed); its length, digest into @ret_digest. */
gsize vms_reg_push_index(Push *p, const VmsRegIndex *ix, char ret_digest[72]);

/* Adds one layer of @media_type per blob of @ix to @a, in index order. */
void vms_reg_push_add_chunk_layers(VmsRegArtifact *a, const VmsRegIndex *ix,
                                   const char *media_type);

/* Runs the engine until every upload of @p has finished. */
void vms_reg_push_wait(Push *p, VmsRegTicker *t);

/* The disk images of @s (push-disks.c): each writable disk's frozen image
 * and backing files as layers of @a (doc/format.md "Registry artifacts"),
 * a diff's only up to where its chain joins its parent @parent's (NULL for
 * FULL). */
gboolean vms_reg_push_disks(Push *p, VmsSnapshot *s, VmsSnapshot *parent, VmsRegArtifact *a,
                            VmsRegTicker *t, GError **error);

/* Refuses a chain with a read-only disk (a CD-ROM: not carried), naming it. */
gboolean vms_reg_push_disks_check(GPtrArray *chain, GError **error);

/* The whole of @name in @s (state.bin, memory.map, manifest.bin,
 * memory.chunks), opened through snapdir (regular file, O_NOFOLLOW). */
GBytes *vms_reg_read_snapshot_file(VmsSnapshot *s, const char *name, GError **error);

/* @name of @s, zstd-compressed. */
GBytes *vms_reg_read_compressed(VmsSnapshot *s, const char *name, GError **error);

/* memory.chunks of @s: its bytes (*@ret_file) and digests (*@ret_idx);
 * computed over @src into a private temporary directory when the snapshot
 * has none, so push never writes into the snapshot it sends. */
gboolean vms_reg_chunk_digests(VmsSnapshot *s, const VmsChunkSource *src, VmsChunkIndex **ret_idx,
                               GBytes **ret_file, GError **error);

G_END_DECLS
