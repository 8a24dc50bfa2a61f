/* vmsnap unit tests: fixtures shared by the test-*.c executables and the
 * vmsnap-fixture tool. Test code: failures abort via g_assert. */
#pragma once

#include "common.h"

#include <glib.h>
#include "manifest.h"

G_BEGIN_DECLS

/* A new empty directory under @base (NULL: g_get_tmp_dir()). Caller frees
 * the string and removes the tree with vms_test_rmtree(). */
char *vms_test_tmpdir(const char *base);

/* rm -rf @path (never follows symlinks). NULL is allowed. */
void vms_test_rmtree(const char *path);

/* Writes @len bytes to @path (created or truncated), filled from @seed so
 * different seeds give different content. */
void vms_test_write_pattern(const char *path, gsize len, guint8 seed);

/* A complete FULL/LINK manifest: x86_64, @memory_size bytes, 2 vCPUs, 4096-byte
 * pages, a zero state_sha256 (callers that write state.bin set the real one). */
VmsManifest *vms_test_manifest_full(guint64 memory_size);

/* Writes a committed FULL snapshot to @dir: a @state_len-byte state.bin and
 * memory.bin hard-linked from @memory_path (created with @memory_size bytes
 * if it doesn't exist). Returns the manifest that was committed. */
VmsManifest *vms_test_make_full_snapshot(const char *dir, const char *memory_path,
                                         guint64 memory_size, gsize state_len);

/* Writes a committed DIFF snapshot to @dir: memory.diff of @memory_size
 * bytes (>= 128 KiB) with two 4 KiB pages of data, the second at
 * VMS_TEST_DIFF_DATA_OFFSET, its memory.map, a small state.bin, and
 * parent/@parent_sha256 as given. Returns the manifest that was committed. */
#define VMS_TEST_DIFF_DATA_OFFSET 65536u
VmsManifest *vms_test_make_diff_snapshot(const char *dir, const char *parent,
                                         const guint8 parent_sha256[32], guint64 memory_size);

/* Writes the memory digests (memory.chunks) of the committed snapshot @dir,
 * as a save does after its commit. The make_* helpers above call it. */
void vms_test_add_digests(const char *dir);

/* What one run of the built `vmsnap` (path in $VMSNAP_BIN, set by meson)
 * gave: exit status, stdout, stderr. */
typedef struct {
  int status;
  char *out;
  char *err;
} VmsTestRun;

void vms_test_run_clear(VmsTestRun *r);
G_DEFINE_AUTO_CLEANUP_CLEAR_FUNC(VmsTestRun, vms_test_run_clear)

/* Runs `vmsnap ARGS...` (NULL-terminated) and fills @r. Aborts the test if
 * VMSNAP_BIN is unset or the program did not exit normally. */
void vms_test_run_vmsnap(VmsTestRun *r, ...) G_GNUC_NULL_TERMINATED;

/* Asserts @r failed as the CLI contract says (exit 1, stderr starting with
 * "vmsnap: error: ") with @substring in the message. */
void vms_test_expect_cli_error(const VmsTestRun *r, const char *substring);

G_END_DECLS
