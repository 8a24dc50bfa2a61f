/* vmsnap plugin: overlay=FILE — the snapshot's memory mapped copy-on-write
 * over QEMU's shared RAM (doc/diff.md, "The RAM overlay").
 *
 * QEMU was started with the guest RAM backend share=on from an empty
 * placeholder file, so its RAM block is shared and x-ignore-shared leaves
 * the guest RAM out of every migration stream: a diff save streams only
 * device state. At install — after QEMU has created and mapped the memory
 * backend, before the board, its ROMs or any vCPU exist — the plugin maps
 * FILE (the snapshot's memory) MAP_PRIVATE|MAP_FIXED at the very address of
 * QEMU's mapping, with the same size and madvise flags, and removes the
 * placeholder's name. From then on the guest reads the snapshot through the
 * page cache (shared by every clone), a written page becomes an anonymous
 * page of this process (what /proc/self/pagemap shows save-diff.c), and
 * QEMU still believes the block is shared.
 */
#pragma once

#include <glib.h>

G_BEGIN_DECLS

/* Replaces QEMU's share=on mapping of the guest RAM placeholder (the
 * backend on QEMU's command line) with a private mapping of @memory_path.
 * Refuses (nothing changed) a command line the overlay cannot keep correct
 * (vms_overlay_check_argv), a backend that is not share=on, a placeholder
 * that holds data or is @memory_path itself, a mapping of another size or
 * page size than the host's base page, a memory file smaller than the RAM. QEMU's main
 * thread, at install only. */
gboolean vms_ram_overlay_install(const char *memory_path, GError **error);

G_END_DECLS
