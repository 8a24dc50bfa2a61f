/* vmsnap integration tests: the fixture the restore test programs share
 * (test-restore.c, test-restore-refusals.c). Test-thread only; every
 * helper asserts instead of returning errors. */
#pragma once

#include "harness.h"

G_BEGIN_DECLS

typedef struct {
  char *dir;      /* per-test scratch, removed at teardown */
  VmsVm *vms[4];  /* reaped at teardown */
} Fixture;

void setup(Fixture *f, gconstpointer data);
void teardown(Fixture *f, gconstpointer data);

/* The little-endian 8 bytes at @addr of a memory file (guest-physical
 * address == file offset below 3 GiB). */
guint64 file_u64(const char *path, guint64 addr);

/* snapshot-save through @vm's control socket (once the plugin is ready);
 * asserts success and returns the reply (caller frees). */
JsonObject *save(VmsVm *vm, const char *snap, const char *memory, const char *then);

/* Boots a source VM with @smp vCPUs in @root/src (with -device @extra_device if not NULL),
 * lets it count, has it fill scratch pages 100..107 with 90, and saves
 * @memory with then=quit into @root/snap. Returns that directory; the
 * guest's counter and boot id at the save, read from the snapshot's memory. */
char *make_snapshot_with(const char *root, const char *memory, guint smp,
                         const char *extra_device, guint64 *ret_counter, guint64 *ret_boot_id);
char *make_snapshot(const char *root, const char *memory, guint64 *ret_counter,
                    guint64 *ret_boot_id);

/* The program's base link snapshot, made on first use; its counter and
 * boot id at the save; removed by base_snapshot_cleanup() at the end. */
const char *base_snapshot(void);
guint64 base_counter(void);
guint64 base_boot_id(void);
void base_snapshot_cleanup(void);

/* A VM configured (not started) to restore @snap, its files in @root/@name. */
VmsVm *restored_vm(const char *root, const char *name, const char *snap);

/* The restored guest runs on from @counter with boot id @boot_id: it did
 * not boot again, its pattern and scratch pages 100..107 are intact, and it
 * obeys commands. */
void assert_continues(VmsVm *vm, guint64 counter, guint64 boot_id);

/* vms_test_dir_digest() of @snap, asserted. Caller frees. */
char *digest(const char *snap);


/* A byte-for-byte copy of the base snapshot in @f->dir/@name. */
char *copy_base(Fixture *f, const char *name);

G_END_DECLS
