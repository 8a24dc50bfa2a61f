/* vmsnap plugin: restore=DIR — the plugin side of a copy-on-write restore.
 *
 * QEMU was started with -incoming defer and the snapshot's memory mapped
 * share=off; the guest cannot run until migrate-incoming has loaded state.bin.
 * Every check happens before that, so a mismatch never runs the guest and
 * never writes to the snapshot.
 */
#pragma once

#include <glib.h>
#include "qmp.h"
#include "memfile.h"

G_BEGIN_DECLS

/* QEMU's command line, from /proc/self/cmdline (NULL if unreadable;
 * g_strfreev). */
char **vms_restore_read_cmdline(void);

/* At qemu_plugin_install (QEMU's main thread; the memory backend exists,
 * nothing has touched it): reads the manifest of @dir and checks what can
 * be checked now — the snapshot is committed, version, architecture against
 * @target_name, VP count against @smp_vcpus, state.bin size and SHA-256,
 * the memory backend on QEMU's command line. With @overlay (nullable: the
 * overlay= argument, ram-overlay.h) the snapshot's memory is @overlay and
 * the backend must be share=on (a placeholder); without it the backend must
 * map the snapshot's memory share=off. Errors name the field. */
gboolean vms_restore_precheck(const char *dir, const char *target_name, guint32 smp_vcpus,
                              const char *overlay, GError **error);

/* On a worker thread of the plugin's service, once QMP is connected and the
 * guest memory mapping @mem is known: checks memory size and page size
 * against the manifest and refuses a shared (share=on) mapping; then sets
 * x-ignore-shared (with @libvirt only that, and the end of the load is
 * polled with query-migrate: the events capability is libvirt's), passes state.bin with getfd and runs migrate-incoming
 * "fd:NAME", waits for the MIGRATION event "completed" (fails on "failed"),
 * and sends `cont` if @resume. @dir may be a DIFF snapshot when @mem maps
 * the memory.bin of its flattening (state.bin comes from @dir). On success
 * @ret_manifest_sha256 (nullable) receives the SHA-256 of the manifest.bin
 * that was restored (a diff saved later names it as its parent's). On
 * failure the caller prints one line ("vmsnap: restore: <message>") and
 * exits QEMU non-zero. */
gboolean vms_restore_run(const char *dir, gboolean resume, gboolean libvirt, VmsQmpClient *qmp,
                         const VmsMemInfo *mem, guint8 ret_manifest_sha256[32], GError **error);

G_END_DECLS
