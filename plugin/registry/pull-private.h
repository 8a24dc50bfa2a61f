/* vmsnap registry: what pull.c and pull-chunks.c share. */
#pragma once

#include "artifact.h"
#include "chunks.h"
#include "engine.h"
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
} VmsRegTarget;

/* Fetches every chunk of @ix that @target lacks (@resume: the staged file
 * may hold chunks of an earlier run, checked by digest first), verifying
 * and writing each on the pool threads. */
gboolean vms_reg_pull_chunks(Pull *p, const VmsRegTarget *target, const VmsRegIndex *ix,
                             gboolean resume, VmsRegTicker *t, GError **error);
