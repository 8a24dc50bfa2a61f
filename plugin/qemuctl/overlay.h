/* vmsnap qemuctl: when a restore may use the RAM overlay (doc/diff.md,
 * "The RAM overlay").
 *
 * The overlay: QEMU maps the guest RAM backend share=on from an empty
 * placeholder file, so QEMU's RAM block is shared and named and
 * x-ignore-shared leaves it out of every migration stream; at install the
 * plugin replaces that mapping, at the same address, by a private
 * copy-on-write mapping of the snapshot's memory file (plugin/qemu/
 * ram-overlay.c). The guest sees the snapshot, clones share its page cache,
 * and /proc/self/pagemap still tells written pages apart — but QEMU's RAM
 * block fd is the placeholder's, so any QEMU feature that hands that fd to
 * someone else, or needs the pages QEMU did not stream, cannot work. These
 * checks refuse those configurations; the CLI falls back to the private
 * (share=off) restore when one fails, the plugin refuses to start.
 */
#pragma once

#include <glib.h>
#include "state-strip.h"

G_BEGIN_DECLS

/* The placeholder's name in a restore's runtime directory. */
#define VMS_OVERLAY_PLACEHOLDER "guest-ram.placeholder"

/* Fails (VMS_ERROR_NOT_SUPPORTED, naming the option and why) when any
 * element of @argv (NULL-terminated: QEMU's command line or a part) has something the overlay cannot
 * keep correct: vhost-user devices (their back end maps the RAM block's
 * fd), vfio or remote devices, virtio-mem, preallocated or pmem memory, a
 * -mem-path. */
gboolean vms_overlay_check_argv(const char *const *argv, GError **error);

/* Fails (VMS_ERROR_NOT_SUPPORTED) unless the migration stream in @state_fd
 * holds no page of the guest RAM block (@guest: its size, and the block
 * name and target page size the manifest recorded): QEMU refuses to
 * load pages of a block x-ignore-shared leaves out ("should not be
 * migrated"), so only a stripped state.bin, or one saved from shared or
 * overlay RAM, restores over the overlay. Reads the stream (state.bin is
 * small unless it carries the RAM). Any thread. */
gboolean vms_overlay_check_state(int state_fd, const VmsStripGuest *guest, GError **error);

G_END_DECLS
