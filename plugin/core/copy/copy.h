/* vmsnap core: copy engines over extent lists, apply_diff, write_diff and
 * sparse copies. Source and destination use the same offsets.
 *
 * Engines: io_uring (batched, bounded buffer pool), copy_file_range per
 * extent, and pread/pwrite through a 1 MiB buffer. AUTO picks per situation
 * as doc/copy-engines.md explains; an engine that cannot run here (io_uring
 * ENOSYS/EPERM, copy_file_range EXDEV/EINVAL/EOPNOTSUPP) falls back to the
 * next one and says so once (g_debug). Results are byte-identical.
 *
 * Threading: every function may run on any thread; none keeps global state
 * except the "said once" flags. AUTO may copy cached data on helper threads
 * (one per core, at most 4; never when a progress function is given); they
 * are joined before the function returns.
 *
 * Test-only environment hooks of the io_uring engine, read once per process:
 * VMSNAP_TEST_URING_FAIL=1 (ring setup fails: tests the fallback) and
 * VMSNAP_TEST_URING_MAX_IO=N (requests capped at N bytes: every chunk
 * completes short). See doc/copy-engines.md.
 */
#pragma once

#include <glib.h>
#include "extents.h"

G_BEGIN_DECLS

typedef enum {
  VMS_ENGINE_AUTO = 0,
  VMS_ENGINE_URING,
  VMS_ENGINE_COPY_FILE_RANGE,
  VMS_ENGINE_READ_WRITE,
} VmsCopyEngine;

const char *vms_copy_engine_name(VmsCopyEngine engine);
/* "auto", "uring", "copy_file_range", "rw"; FALSE for anything else. */
gboolean vms_copy_engine_from_string(const char *name, VmsCopyEngine *ret_engine);

/* Called from the copying thread, at most every ~100 ms and once at the end. */
typedef void (*VmsProgressFunc)(guint64 done, guint64 total, gpointer user_data);

typedef struct {
  VmsCopyEngine engine;     /* AUTO unless a test or benchmark forces one */
  gboolean fsync;           /* fsync the destination at the end */
  VmsProgressFunc progress; /* nullable */
  gpointer progress_data;
} VmsCopyOptions;

typedef struct {
  guint64 bytes;            /* data bytes copied */
  guint64 extents;          /* extents copied */
  VmsCopyEngine engine;     /* the engine that did the work */
} VmsCopyStats;

/* Where data comes from: a file (fd >= 0) or a mapped memory range (mem). */
typedef struct {
  int fd;               /* -1 when mem is used */
  const guint8 *mem;    /* NULL when fd is used */
  guint64 size;         /* size of the source (file size or mapping length) */
} VmsCopySource;

/* Copies every extent of @list from @src to @dst_fd at the same offsets.
 * Extents must lie inside src->size. @opts and @ret_stats are nullable. */
gboolean vms_copy_extents(const VmsCopySource *src, int dst_fd, const GArray *list,
                          const VmsCopyOptions *opts, VmsCopyStats *ret_stats, GError **error);

/* apply_diff (doc/spec.md section 6): both files must exist; @base_path opened
 * read-write, @diff_path read-only; a base with more than one hard link is
 * refused (VMS_ERROR_INVALID_ARGUMENT naming the link count: writing it
 * would change the other links); sizes must match (else an error with both
 * sizes); the extents come from @map_path (a memory.map) when given, else
 * from the diff's SEEK_DATA/SEEK_HOLE; no fsync unless opts->fsync. */
gboolean vms_apply_diff(const char *base_path, const char *diff_path, const char *map_path,
                        const VmsCopyOptions *opts, VmsCopyStats *ret_stats, GError **error);

/* The same over open fds; @list NULL means SEEK_DATA over @diff_fd. */
gboolean vms_apply_diff_fd(int base_fd, int diff_fd, const GArray *list,
                           const VmsCopyOptions *opts, VmsCopyStats *ret_stats, GError **error);

/* write_diff: makes @diff_fd a sparse file of src->size holding exactly the
 * extents of @list (holes elsewhere), and writes the page map to @map_fd.
 * Nullable outputs: @ret_data_sha256 (SHA-256 of the data in map order; costs
 * a pass over the data, so callers on the downtime path pass NULL and use
 * vms_hash_extents later), @ret_map_sha256. */
gboolean vms_write_diff(const VmsCopySource *src, const GArray *list, int diff_fd, int map_fd,
                        guint32 page_size, const VmsCopyOptions *opts,
                        guint8 ret_data_sha256[32], guint8 ret_map_sha256[32],
                        VmsCopyStats *ret_stats, GError **error);

/* SHA-256 of the bytes of @list read from @fd, in list order. */
gboolean vms_hash_extents(int fd, const GArray *list, guint8 ret_sha256[32], GError **error);

/* A full independent copy of @src into the empty file @dst_fd: reflink
 * (FICLONE) when src is a file and the filesystem can; else ftruncate to
 * src->size and copy only the data extents (SEEK_DATA for a file; for a
 * memory range, every page that is not all zeros). @ret_reflinked nullable.
 * A memory range is read in full to find its zero pages: on a shared
 * mapping of a tmpfs file that allocates the file's holes, so pass the file
 * (src->fd) for a shared mapping. A reflink reports 0 bytes copied. */
gboolean vms_sparse_copy(const VmsCopySource *src, int dst_fd, const VmsCopyOptions *opts,
                         gboolean *ret_reflinked, VmsCopyStats *ret_stats, GError **error);

G_END_DECLS
