/* vmsnap plugin: the QMP conversations snapshot-save needs — facts about
 * this QEMU for the manifest, and saving device state into an fd. Worker
 * threads only (every call blocks on QMP). */
#pragma once

#include <glib.h>
#include "qmp.h"

G_BEGIN_DECLS

/* Set by `vmsnap restore` in the environment of the QEMU it execs: the
 * number of arguments it appended at the end of the command line for that
 * run only ("-S", "-incoming", "defer" and the EXTRA QEMU ARGS after "--").
 * A save leaves them out of the recorded command line. */
#define VMS_RESTORE_APPENDED_ENV "VMSNAP_RESTORE_APPENDED"

typedef struct {
  char *hypervisor_version; /* "QEMU 7.2.x (Debian ...)" from query-version */
  char *machine_type;       /* "pc-i440fx-7.2", from qom-get /machine type */
  char **argv;              /* QEMU's command line, from /proc/self/cmdline, without what
                             * `vmsnap restore` appended (VMS_RESTORE_APPENDED_ENV) */
} VmsSaveFacts;

void vms_save_facts_clear(VmsSaveFacts *facts);

/* Fills @ret_facts and *@ret_running (query-status). */
gboolean vms_save_query_facts(VmsQmpClient *qmp, VmsSaveFacts *ret_facts, gboolean *ret_running,
                              GError **error);

/* Runs @command without arguments and ignores its return value. */
gboolean vms_save_qmp_simple(VmsQmpClient *qmp, const char *command, GError **error);

/* QEMU's target page size (4096 on x86_64 and aarch64 here), as
 * query-migrate reports it in "ram" "page-size" once a migration has run
 * (it says nothing before the first); 0 when it does not say. */
guint32 vms_save_query_target_page_size(VmsQmpClient *qmp);

/* The migration settings a save or a restore changes. QEMU keeps them
 * afterwards, and a later real migration by a management layer would
 * inherit them, so both put back exactly what they found. */
typedef struct {
  gboolean ignore_shared; /* capability x-ignore-shared */
  gboolean events;        /* capability events: QEMU sends MIGRATION events (libvirt needs it) */
  gint64 max_bandwidth;   /* parameter max-bandwidth, bytes/s */
  gint64 downtime_limit;  /* parameter downtime-limit, ms */
  gboolean leave_events;  /* apply does not set `events` (under libvirt, which owns it) */
} VmsMigrationSettings;

/* Reads the settings above (query-migrate-capabilities/-parameters). */
gboolean vms_migration_settings_query(VmsQmpClient *qmp, VmsMigrationSettings *ret_settings,
                                      GError **error);
/* Sets all of them (migrate-set-capabilities, migrate-set-parameters). */
gboolean vms_migration_settings_apply(VmsQmpClient *qmp, const VmsMigrationSettings *s,
                                      GError **error);

/* Why the last migration failed: query-migrate's error-desc (QEMU's own
 * words, e.g. the ENOSPC of a full filesystem), or "QEMU gave no reason".
 * Caller frees. */
char *vms_migration_error_desc(VmsQmpClient *qmp);
/* The id of the machine's memory-backend (qom-get /machine memory-backend,
 * which 7.2 answers with its path "/objects/ID"), which is also its RAM
 * block's name in the migration stream; NULL when the
 * machine names none (-numa memdev=, plain -m) or QMP fails. Caller frees. */
char *vms_save_query_ram_block(VmsQmpClient *qmp);

/* Saves the VM's device state into @fd (not consumed): capabilities
 * x-ignore-shared and events on and max-bandwidth unthrottled, getfd with a
 * unique name, migrate "fd:NAME", then waits for the MIGRATION event
 * "completed" (fails on "failed" or "cancelled", naming it) and for QEMU to
 * leave finish-migrate. The capabilities and max-bandwidth QEMU had before
 * are put back afterwards, also on failure. The VM must be stopped. */
gboolean vms_save_migrate_to_fd(VmsQmpClient *qmp, int fd, GError **error);

/* Saves the device state of a RUNNING VM into @fd (not consumed) with a
 * live (precopy) migration, for guest RAM that x-ignore-shared cannot skip
 * (a private share=off mapping): QEMU writes the RAM while the guest runs
 * and stops the VM itself for the last round only (downtime-limit 5 ms).
 * If the migration has not finished within @converge_ms the VM is stopped
 * here and the migration finishes stopped. On success the VM is stopped
 * (postmigrate) and *@ret_stop_wall_us is when it stopped (QEMU's STOP
 * event timestamp, wall clock). On failure QEMU resumes a VM it stopped;
 * the caller continues one stopped here. Settings are put back as for
 * vms_save_migrate_to_fd. */
gboolean vms_save_migrate_live_to_fd(VmsQmpClient *qmp, int fd, guint converge_ms,
                                     gint64 *ret_stop_wall_us, GError **error);

G_END_DECLS
