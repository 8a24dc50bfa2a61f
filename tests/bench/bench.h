/* vmsnap benchmark: what bench-apply.c and bench-refs.c share. */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

typedef struct {
  double seconds;
  guint64 bytes;
  guint64 extents;
  const char *engine;   /* our engine that did the work; NULL for the references */
} BenchResult;

/* The reference loops (bench-refs.c): apply @diff_path onto @base_path the
 * way forkd and Firecracker's rebase-snap do. FALSE on any failure. */
gboolean bench_ref_forkd(const char *base_path, const char *diff_path, BenchResult *ret);
gboolean bench_ref_firecracker(const char *base_path, const char *diff_path, BenchResult *ret);

G_END_DECLS
