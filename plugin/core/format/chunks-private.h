/* vmsnap core: what chunks.c and chunks-file.c share (not installed). */
#pragma once

#include "chunks.h"

G_BEGIN_DECLS

/* The source takes its fd and closes it when freed. */
void vms_chunk_source_take_fd(VmsChunkSource *src);

G_END_DECLS
