/* vmsnap registry: push's helpers that read the snapshot (push-files.c). */
#pragma once

#include <glib.h>

#include "chunks.h"
#include "registry.h"
#include "snapdir.h"

G_BEGIN_DECLS

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
