/* vmsnap registry: what pull.c and pull-chunks.c share. */
#pragma once

#include "artifact.h"
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

/* Fetches every chunk of @ix that the staged memory file @fd lacks
 * (@resume: the file may hold chunks of an earlier run, checked by digest
 * first), verifying and writing each on the pool threads. */
gboolean vms_reg_pull_chunks(Pull *p, int fd, const VmsRegIndex *ix, guint32 page, gboolean resume,
                             VmsRegTicker *t, GError **error);
