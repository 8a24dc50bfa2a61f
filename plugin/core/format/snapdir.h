/* vmsnap core: snapshot directories on disk (doc/spec.md section 2).
 *
 * Writing follows a commit protocol: every file is staged under NAME.tmp,
 * fsynced and renamed; manifest.bin is written last (temp, fsync, rename,
 * fsync of the directory) and is the commit record. A directory without it
 * is an incomplete snapshot and is never restored.
 *
 * Every file inside a snapshot is opened relative to the directory fd with
 * O_NOFOLLOW|O_CLOEXEC and must be a regular file.
 *
 * Threading: objects here are not shared between threads; use one per thread.
 */
#pragma once

#include <glib.h>
#include <sys/types.h>
#include "manifest.h"

G_BEGIN_DECLS

#define VMS_MANIFEST_FILE "manifest.bin"
#define VMS_STATE_FILE "state.bin"
#define VMS_MEMORY_FILE "memory.bin"
#define VMS_DIFF_FILE "memory.diff"
#define VMS_MAP_FILE "memory.map"
#define VMS_INVALID_SUFFIX ".invalid"
/* A private mapping's raw migration stream, staged until it is stripped
 * into state.bin (state-strip.h). Only ever staged: STATE_STREAM.tmp. */
#define VMS_STATE_STREAM_FILE "state.stream"
/* memory.chunks while it is written (chunks.h). */
#define VMS_CHUNKS_TMP_FILE "memory.chunks.tmp"
/* Modes of what a save creates, whatever the umask: guest memory holds
 * secrets (doc/spec.md section 10). */
#define VMS_SNAPSHOT_DIR_MODE 0700
#define VMS_SNAPSHOT_FILE_MODE 0600
/* A chain of diffs deeper than this is refused. */
#define VMS_CHAIN_MAX_DEPTH 64

/* Opens @name inside @dirfd with openat(@flags | O_NOFOLLOW | O_CLOEXEC, @mode)
 * and checks it is a regular file (a symlink, FIFO, device or directory in
 * its place is refused with VMS_ERROR_CORRUPT naming the file). With O_CREAT,
 * a new file gets @mode. Returns the fd or -1. FIFOs are opened O_NONBLOCK-safe
 * (the check happens without blocking). */
int vms_openat_regular(int dirfd, const char *name, int flags, mode_t mode, GError **error);

/* ---- writing ---- */

typedef struct _VmsSnapWriter VmsSnapWriter;

/* Creates @dir and its missing parents (0700 whatever the umask) and opens
 * it. Refuses a directory that already holds manifest.bin (VMS_ERROR_EXISTS:
 * a committed snapshot is never overwritten). Stale NAME.tmp files of an
 * earlier failed save (every name a writer stages, including the raw
 * state stream and memory.chunks.tmp) are removed. */
VmsSnapWriter *vms_snap_writer_new(const char *dir, GError **error);

/* Frees @w. If the snapshot was not committed, removes every file this writer
 * created (staged temps, renamed files, links it made) and nothing else: a
 * memory backing file that already was DIR/memory.bin is never touched. */
void vms_snap_writer_free(VmsSnapWriter *w);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsSnapWriter, vms_snap_writer_free)

const char *vms_snap_writer_get_path(VmsSnapWriter *w);
int vms_snap_writer_get_dirfd(VmsSnapWriter *w);

/* Creates the staged file @name.tmp (O_RDWR|O_CREAT|O_TRUNC, 0600 whatever
 * the umask) and returns its fd; the caller owns the fd. -1 on failure. */
int vms_snap_writer_stage(VmsSnapWriter *w, const char *name, GError **error);

/* Finishes a staged file: fsync of @name.tmp, rename to @name. If
 * @ret_sha256/@ret_size are not NULL, the file is read back to hash it (used
 * for state.bin, which is small). */
gboolean vms_snap_writer_finish(VmsSnapWriter *w, const char *name,
                                guint8 ret_sha256[VMS_SHA256_LEN], guint64 *ret_size,
                                GError **error);

/* Places memory.bin as a hard link of @memory_path. No-op when @memory_path
 * already is DIR/memory.bin (same inode); a different existing memory.bin is
 * replaced (atomically, via a temp link and rename). Across filesystems the
 * error (VMS_ERROR_NOT_SUPPORTED) tells the user to place the memory backing
 * file inside the snapshot directory; any other error names both paths. */
gboolean vms_snap_writer_link_memory(VmsSnapWriter *w, const char *memory_path, GError **error);

/* The commit: encodes @m, writes manifest.bin.tmp, fsync, rename to
 * manifest.bin, fsync of the directory. After it the writer removes nothing. */
gboolean vms_snap_writer_commit(VmsSnapWriter *w, const VmsManifest *m, GError **error);

/* ---- reading ---- */

typedef struct {
  char *path;            /* the directory, as given */
  int dirfd;             /* O_DIRECTORY fd of it */
  VmsManifest *manifest; /* decoded, complete (vms_manifest_check_complete) */
  guint8 manifest_sha256[VMS_SHA256_LEN];
} VmsSnapshot;

/* Opens a committed snapshot: reads and decodes manifest.bin. A directory
 * without manifest.bin fails with VMS_ERROR_INCOMPLETE ("... is an incomplete
 * snapshot (no manifest.bin)"). Does not verify the other files. A pulled
 * snapshot's disk records are replaced by their host-local versions from
 * disks.local (disk-local.h); manifest_sha256 is always manifest.bin's. */
VmsSnapshot *vms_snapshot_open(const char *dir, GError **error);
void vms_snapshot_free(VmsSnapshot *s);
G_DEFINE_AUTOPTR_CLEANUP_FUNC(VmsSnapshot, vms_snapshot_free)

/* vms_openat_regular() inside the snapshot directory. */
int vms_snapshot_open_file(VmsSnapshot *s, const char *name, int flags, GError **error);

/* The memory file's name: memory.bin for FULL, memory.diff for DIFF
 * (or the manifest's memory_file if set). */
const char *vms_snapshot_memory_file(VmsSnapshot *s);

/* The parent directory of a DIFF snapshot resolved against s->path
 * (absolute if the manifest's parent is relative). NULL for FULL. */
char *vms_snapshot_parent_path(VmsSnapshot *s);

/* Checks state.bin against the manifest: size, then SHA-256. Fails with
 * VMS_ERROR_CORRUPT and a message containing "state". */
gboolean vms_snapshot_verify_state(VmsSnapshot *s, GError **error);

/* Checks everything of this snapshot alone: state.bin, the memory file's
 * size (memory_size_bytes), and for diffs memory.map's SHA-256 and that the
 * map fits the memory size. Does not follow the parent chain (see chain.h). */
gboolean vms_snapshot_verify(VmsSnapshot *s, GError **error);

/* Renames manifest.bin to manifest.bin.invalid inside @dir (used when a
 * linked snapshot's memory is about to change). */
gboolean vms_snapshot_invalidate(const char *dir, GError **error);

G_END_DECLS
