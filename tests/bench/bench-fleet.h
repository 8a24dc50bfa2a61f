/* vmsnap benchmark: fleet costs — what bench-fleet.c's parts share. */
#pragma once

#include "harness.h"

G_BEGIN_DECLS

#define FLEET_MAX_REPS 9

typedef enum { FLEET_OVERLAY, FLEET_PRIVATE } FleetMode;

extern guint fleet_reps;
extern gboolean fleet_with_private; /* the diff bench also runs today's path */

/* Exits with "bench-fleet: @what: ..." unless @ok and no @error. */
void fleet_check(gboolean ok, GError *error, const char *what);
JsonObject *fleet_save(VmsVm *vm, const char *dir, const char *memory, const char *then);
void fleet_guest_cmd(VmsVm *vm, const char *cmd);
void fleet_qmp(VmsTestQmp *q, const char *command, const char *args);
char *fleet_make_base(const char *root, guint mib, const char *native, guint *ret_pages,
                      guint64 *ret_counter);
/* A VM (not started) in @root/@name restoring @snap with @mode, paused
 * (resume=off, -S) if asked. */
VmsVm *fleet_clone_new(const char *root, const char *name, guint mib, const char *snap,
                       FleetMode mode, gboolean paused);

/* The guest counter, read from QEMU's own memory. */
typedef struct {
  int fd;          /* /proc/PID/mem */
  guint64 addr;    /* guest RAM in QEMU */
} FleetPeek;
gboolean fleet_peek_open(VmsVm *vm, const char *mem_file, guint mib, FleetPeek *p);
guint64 fleet_peek_counter(const FleetPeek *p);

/* bench-fleet-diff.c */
void fleet_diff_header(gboolean hog);
void fleet_bench_diff(const char *root, const char *base, guint mib, double pct);
void fleet_diff_footer(gboolean hog);

/* bench-fleet-clones.c */
void fleet_bench_density(const char *root, const char *base, const char *native, guint mib,
                         guint pages, GArray *counts);
void fleet_bench_parallel(const char *root, const char *base, guint mib, guint64 counter, guint n);
void fleet_bench_warm(const char *root, GPtrArray *bases, GArray *sizes, GArray *counters);

G_END_DECLS
