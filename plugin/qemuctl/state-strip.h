/* vmsnap plugin: guest RAM out of state.bin for VMs restored with share=off.
 *
 * QEMU 7.2's x-ignore-shared leaves out only RAM blocks mapped share=on. A
 * VM restored as doc/spec.md section 7 says (the snapshot's memory mapped
 * share=off) therefore writes every non-zero page of its guest RAM into the
 * migration stream of its next save, and a restore of that state.bin writes
 * them all into its private mapping — so every page counts as written since
 * that restore and the next diff in a chain holds the whole RAM. The memory
 * file (memory.bin, or the diff chain) already holds those pages, so the
 * stream does not need them: this rewrites it without the page records of
 * the guest RAM block, keeping everything else (the block list, other RAM
 * blocks such as VGA memory and ROMs, every device section) byte for byte.
 *
 * The stream format is QEMU's (migration/savevm.c, migration/ram.c, stream
 * version 3). Anything this reader does not know — another iterative
 * section, compressed or XBZRLE pages, an unknown configuration subsection
 * — makes it give up without writing, so the caller keeps the stream as
 * QEMU wrote it.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* The guest RAM whose page records come out. */
typedef struct {
  guint64 ram_size;          /* the RAM block's used length: the guest RAM size */
  const char *ram_block;     /* nullable: its RAM block name (the machine's
                              * memory-backend id); NULL: the one block of
                              * ram_size bytes (ambiguous on aarch64 virt, whose
                              * two flash blocks are 64 MiB each) */
  guint32 target_page_size;  /* QEMU's target page size (query-migrate); 0: unknown */
} VmsStripGuest;

/* Reads the migration stream in @src_fd (from offset 0, to its end) and
 * writes it to @dst_fd (an empty file, from offset 0) without the page
 * records (PAGE and ZERO) of @guest's RAM block. The target page size is
 * the one the stream's configuration names (QEMU writes it when it is
 * above the target's minimum, as on aarch64), else @guest's
 * target_page_size; when both are given they must agree. No target is
 * special. *@ret_dropped receives the number of page records left out.
 * Fails with VMS_ERROR_NOT_SUPPORTED (nothing written) on a stream it does
 * not understand, VMS_ERROR_IO on I/O errors. Any thread. */
gboolean vms_state_strip_ram(int src_fd, int dst_fd, const VmsStripGuest *guest,
                             guint64 *ret_dropped, GError **error);

typedef struct _VmsSnapWriter VmsSnapWriter;

/* For snapshot-save of a VM whose guest memory is a private mapping, once
 * the guest may run again: QEMU's raw stream was written to the staged
 * file @stream_name.tmp of @w (not finished: hashing or fsyncing ~RAM-size
 * bytes would be downtime). Writes state.bin as that stream without the
 * guest RAM (vms_state_strip_ram with @guest), or, for a stream that is not
 * understood, as the stream itself;
 * finishes state.bin (fsync, rename) and puts its SHA-256 and size into
 * @ret_sha256 and *@ret_size; removes the raw stream. FALSE only on I/O
 * errors. The save's worker thread. */
gboolean vms_state_strip_staged(VmsSnapWriter *w, const char *stream_name,
                                const VmsStripGuest *guest, guint8 ret_sha256[32],
                                guint64 *ret_size, GError **error);

G_END_DECLS
