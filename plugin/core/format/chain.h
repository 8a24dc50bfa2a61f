/* vmsnap core: diff chains — resolve, verify and flatten.
 *
 * A diff's parent may itself be a diff. Resolving walks parents to the full
 * snapshot, checking each parent_manifest_sha256, refusing cycles and chains
 * deeper than VMS_CHAIN_MAX_DEPTH.
 */
#pragma once

#include <glib.h>
#include "snapdir.h"
#include "copy.h"

G_BEGIN_DECLS

/* Resolves the chain of @dir: a GPtrArray of VmsSnapshot* (owning), the full
 * base first and @dir's snapshot last. A missing parent, a parent whose
 * manifest SHA-256 differs from the child's record, a cycle, a depth over 64,
 * or a memory size that changes along the chain fail with a message naming
 * "parent" and the directory. */
gboolean vms_chain_resolve(const char *dir, GPtrArray **ret_chain, GError **error);

/* vms_chain_resolve plus vms_snapshot_verify and every chunk digest
 * (vms_snapshot_verify_chunks) of every member. A member without digests
 * fails with VMS_ERROR_NO_DIGESTS naming it. */
gboolean vms_chain_verify(const char *dir, GError **error);

/* The same for the diffs of @dir's chain only (what a restore from an
 * existing flattening checks), and the base too when @with_base. */
gboolean vms_chain_verify_diffs(const char *dir, gboolean with_base, GError **error);

/* Writes a FULL snapshot to @outdir equivalent to @dir, after checking every
 * chunk digest of every member (a member without digests is refused with
 * VMS_ERROR_NO_DIGESTS): the base's memory is
 * copied (reflink where possible, else sparse), each diff applied in order
 * through its page map, state.bin copied from @dir, and a manifest that is
 * @dir's with kind FULL, capture COPY (or REFLINK) and no parent; then the
 * flattening's own memory.chunks. Built in a private directory beside
 * @outdir and renamed onto it: if @outdir already holds a flattening of
 * @dir (another flatten made it, maybe at the same time), that is success;
 * any other snapshot there is refused (VMS_ERROR_EXISTS). */
gboolean vms_chain_flatten(const char *dir, const char *outdir, const VmsCopyOptions *opts,
                           GError **error);

/* TRUE if @flat is what vms_chain_flatten made of the diff @diff: a FULL
 * snapshot whose manifest carries @diff's created_at, state_sha256 and
 * memory size (flatten copies them; a new save never repeats created_at
 * with the same state). Used to accept @flat's memory.bin as @diff's
 * memory on restore. */
gboolean vms_chain_is_flattening(const VmsSnapshot *diff, const VmsSnapshot *flat);

G_END_DECLS
