/* vmsnap integration tests: what the disk tests share (test-disks.c,
 * test-disks-chain.c) — Linux guests with a root disk and the history
 * writer, clones made with `vmsnap restore`, and the checks of a disk after
 * shutdown. Test-thread only; helpers assert instead of returning errors. */
#pragma once

#include "harness-linux.h"

G_BEGIN_DECLS

#define DISK_MAX_VMS 6

typedef struct {
  char *dir;                 /* per-test scratch */
  const VmsLinuxGuest *guest; /* NULL: the test could not run (already reported) */
  VmsVm *vms[DISK_MAX_VMS];  /* reaped at teardown */
} DiskFixture;

void disk_setup(DiskFixture *f, gconstpointer data);
void disk_teardown(DiskFixture *f, gconstpointer data);

/* Boots the Linux guest in @f->dir/@name with the plugin, a root disk (a
 * fresh raw copy of root.ext4 in that directory, drive id "root") and, if
 * @vmgenid, -device vmgenid. Waits for the agent. Stored in @f->vms[@slot]. */
VmsVm *disk_boot(DiskFixture *f, guint slot, const char *name, gboolean vmgenid);
/* The same in two halves: configure (add disks in between), then start. */
VmsVm *disk_prepare(DiskFixture *f, guint slot, const char *name, gboolean vmgenid);
void disk_start(VmsVm *vm);

/* Starts the writer with tag @tag and waits until the history has @lines lines. */
void disk_start_writer(VmsVm *vm, const char *tag, guint lines);
/* Lines in the guest's /data/history now. */
guint disk_history_lines(VmsVm *vm);
/* Sets the writer's tag and waits until @more lines carry it. */
void disk_tag_and_wait(VmsVm *vm, const char *tag, guint more);

/* snapshot-save on @vm's control socket; asserts success; reply (caller unrefs). */
JsonObject *disk_save(VmsVm *vm, const char *snap, const char *memory, const char *then);
/* snapshot-save expected to fail; returns the error message (caller frees). */
char *disk_save_fails(VmsVm *vm, const char *snap, const char *memory, const char *then);

/* Restores @snap with `vmsnap restore --runtime-dir @f->dir/@name
 * --disk-dir @f->dir/@name [@extra...]` into @f->vms[@slot]; connects QMP. */
VmsVm *disk_clone(DiskFixture *f, guint slot, const char *name, const char *snap,
                  const char *const *extra);

/* query-block's "inserted" object of @vm's drive @device (caller unrefs). */
JsonObject *disk_inserted(VmsVm *vm, const char *device);
/* The top image of @vm's drive @device, or of drive "root" (caller frees). */
char *disk_top_image_of(VmsVm *vm, const char *device);
char *disk_top_image(VmsVm *vm);

/* Halts @vm cleanly; then checks the image @image (any format): e2fsck -fn
 * passes on a raw copy, and returns /data/history from it (caller frees). */
char *disk_halt_and_check(VmsVm *vm, const char *image, const char *scratch);

/* Checks a history: lines "N TAG" numbered 1.. without a gap or a foreign
 * byte, and TAGs in runs in the order of @tags (NULL-terminated; a run may
 * be empty, none may come back). The first run has at least @min_first
 * lines; returns its length. */
guint disk_assert_history_runs(const char *history, const char *const *tags, guint min_first);
/* disk_assert_history_runs() with the runs @first_tag, @then_tag (nullable). */
guint disk_assert_history(const char *history, const char *first_tag, guint min_first,
                          const char *then_tag);

/* Adds "-drive file=@path,format=raw,if=none,id=@id[,readonly=on]" and its
 * virtio-blk device to @vm after creating @path (@mib MiB, sparse). */
void disk_add_blank(VmsVm *vm, const char *id, const char *path, guint mib, gboolean readonly);


G_END_DECLS
