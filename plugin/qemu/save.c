/* vmsnap plugin: snapshot-save (doc/spec.md section 4).
 *
 * Steps, each named in errors: prepare (memory, directory, facts about this
 * QEMU) -> stop -> state (migration with x-ignore-shared into state.bin;
 * live, with QEMU stopping the VM for the last round, when the guest RAM is
 * a private mapping that the migration cannot skip) -> disks (freeze and
 * switch to overlays: save-disks.c) ->
 * memory (link, copy, or diff: save-diff.c) -> then=resume lets the guest run -> strip
 * (a private mapping's guest RAM out of state.bin: state-strip.c) -> commit
 * (manifest.bin last) -> then=pause arms invalidation for link snapshots ->
 * digests (memory.chunks, bound to the committed manifest: chunks.h).
 * Only stop..then is downtime; everything that need not hold the guest is
 * outside it.
 */
#include "save.h"

#include <fcntl.h>
#include <time.h>
#include <string.h>

#include "chunks.h"
#include "copy.h"
#include "error.h"
#include "manifest.h"
#include "save-diff.h"
#include "save-disks.h"
#include "save-guard.h"
#include "save-qemu.h"
#include "snapdir.h"
#include "state-strip.h"
#include "util.h"
#include "vcpus.h"

#define PROGRESS_INTERVAL_US (250 * 1000)
#define QUIESCE_TIMEOUT_MS 5000

typedef struct {
  VmsService *svc;
  const char *dir;
  VmsSaveMemory memory;
  VmsSaveThen then;
  VmsMemInfo mem;
  VmsSaveFacts facts;
  VmsSnapWriter *writer;
  VmsSaveDiff *diff;       /* memory=diff only */
  VmsSaveDisks *disks;     /* save-disks.h */
  gboolean was_running;
  gboolean stopped_by_us;
  gboolean holding;        /* from the stop to our own cont or the commit */
  guint64 stop_seq;        /* QMP event sequence just before the VM stopped */
  gboolean resumed;        /* someone else resumed the VM meanwhile (save-guard.h) */
  gint64 t_start, t_stop, t_down_end;
  guint8 state_sha256[VMS_SHA256_LEN];
  guint64 state_size;
  guint64 memory_written;
  Vmsnap__V1__MemoryCapture capture;
  gint64 last_progress;
  gint64 digests_us;       /* time the memory digests took, after the commit */
  gboolean digests;        /* memory.chunks was written */
  gboolean stream_known;   /* the two below were asked for */
  char *ram_block;         /* the guest RAM's block name in state.bin; NULL: QEMU names none */
  guint32 target_page_size; /* QEMU's, from the migration into state.bin; 0: unknown */
} SaveCtx;

static void
save_ctx_clear(SaveCtx *ctx)
{
  vms_meminfo_clear(&ctx->mem);
  vms_save_facts_clear(&ctx->facts);
  g_clear_pointer(&ctx->diff, vms_save_diff_free);
  g_clear_pointer(&ctx->disks, vms_save_disks_free);
  g_clear_pointer(&ctx->writer, vms_snap_writer_free);
  g_clear_pointer(&ctx->ram_block, g_free);
}

/* What reading state.bin takes, from QEMU, once the migration into it is
 * done (query-migrate reports the page size only after one): for the strip
 * and for the manifest. After the downtime where the guest resumes. */
static void
learn_stream_facts(SaveCtx *ctx)
{
  if (ctx->stream_known)
    return;
  ctx->stream_known = TRUE;
  ctx->ram_block = vms_save_query_ram_block(vms_service_get_qmp(ctx->svc));
  ctx->target_page_size = vms_save_query_target_page_size(vms_service_get_qmp(ctx->svc));
}

gboolean
vms_save_check(VmsService *svc, VmsSaveMemory memory, VmsSaveThen then, GError **error)
{
  g_auto(VmsMemInfo) mem = { 0 };

  if (!vms_service_get_memory(svc, &mem, error))
    return FALSE;
  if (memory == VMS_SAVE_MEMORY_LINK && then == VMS_SAVE_THEN_RESUME) {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                        "memory=link with then=resume is refused: the running guest would "
                        "change the snapshot's memory; use then=pause, then=quit or memory=copy");
    return FALSE;
  }
  if (memory == VMS_SAVE_MEMORY_LINK && !mem.shared) {
    g_set_error(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                "memory=link is refused: guest memory is a private (share=off) mapping of %s, "
                "so the guest's newest pages are not in the file; use memory=copy", mem.path);
    return FALSE;
  }
  if (memory == VMS_SAVE_MEMORY_DIFF)
    return vms_save_diff_check(svc, &mem, error);
  return TRUE;
}

static gboolean
step_prepare(SaveCtx *ctx, GError **error)
{
  if (!vms_service_get_memory(ctx->svc, &ctx->mem, error) ||
      !vms_save_query_facts(vms_service_get_qmp(ctx->svc), &ctx->facts, &ctx->was_running, error))
    return FALSE;
  ctx->writer = vms_snap_writer_new(ctx->dir, error);
  if (ctx->writer == NULL)
    return FALSE;
  ctx->disks = vms_save_disks_new(vms_service_get_qmp(ctx->svc), ctx->writer, ctx->then != VMS_SAVE_THEN_QUIT,
                                  error);
  if (ctx->disks == NULL)
    return FALSE;
  if (ctx->memory == VMS_SAVE_MEMORY_DIFF)
    ctx->diff = vms_save_diff_new(ctx->svc, vms_snap_writer_get_path(ctx->writer), &ctx->mem,
                                  error);
  if (ctx->diff != NULL && ctx->was_running) /* a large diff is written while it runs */
    vms_save_diff_precopy(ctx->diff, ctx->writer, &ctx->mem, NULL);
  return ctx->memory != VMS_SAVE_MEMORY_DIFF || ctx->diff != NULL;
}

/* A running VM whose guest RAM is a private (share=off) mapping has that
 * RAM in QEMU's migration stream (x-ignore-shared skips only shared RAM):
 * writing it while the VM is stopped would cost seconds per GiB. Such a
 * save migrates live instead, and QEMU stops the VM for the last round. */
static gboolean
migrates_live(SaveCtx *ctx)
{
  return ctx->was_running && !ctx->mem.shared;
}

/* How long a live migration may run before the VM is stopped anyway:
 * 2 s plus 2 s per GiB, several times what streaming the RAM takes here.
 * VMSNAP_TEST_CONVERGE_MS (test only) overrides it, so tests can take the
 * path of a guest that dirties memory faster than it streams. */
static guint
live_converge_ms(SaveCtx *ctx)
{
  const char *test = g_getenv("VMSNAP_TEST_CONVERGE_MS");

  if (test != NULL)
    return (guint)g_ascii_strtoull(test, NULL, 10);
  return 2000u + (guint)(ctx->mem.size >> 30) * 2000u;
}

static gboolean
step_stop(SaveCtx *ctx, GError **error)
{
  if (migrates_live(ctx))
    return TRUE; /* step_state's migration stops the VM */
  ctx->t_stop = g_get_monotonic_time();
  ctx->stop_seq = vms_qmp_client_event_seq(vms_service_get_qmp(ctx->svc));
  ctx->holding = TRUE;
  if (ctx->was_running) {
    if (!vms_save_qmp_simple(vms_service_get_qmp(ctx->svc), "stop", error))
      return FALSE;
    ctx->stopped_by_us = TRUE;
  }
  return vms_vcpus_wait_quiescent(QUIESCE_TIMEOUT_MS, error);
}

/* A private mapping's raw stream holds the guest RAM; it stays staged under
 * this name until step_strip turns it into state.bin after the downtime. */
#define RAW_STREAM_NAME VMS_STATE_STREAM_FILE

static gboolean
step_state(SaveCtx *ctx, GError **error)
{
  vms_autofd fd = vms_snap_writer_stage(ctx->writer,
                                        ctx->mem.shared ? VMS_STATE_FILE : RAW_STREAM_NAME, error);

  if (fd < 0)
    return FALSE;
  if (migrates_live(ctx)) {
    gint64 stop_wall_us = 0;

    /* From here on a failure must leave the VM running again. */
    ctx->stopped_by_us = TRUE;
    if (!vms_save_migrate_live_to_fd(vms_service_get_qmp(ctx->svc), fd, live_converge_ms(ctx), &stop_wall_us,
                                     error))
      return FALSE;
    ctx->t_stop = g_get_monotonic_time();
    ctx->stop_seq = vms_qmp_client_event_seq(vms_service_get_qmp(ctx->svc));
    ctx->holding = TRUE;
    if (stop_wall_us > 0) /* when QEMU stopped the VM, not when we heard of it */
      ctx->t_stop -= MAX(0, g_get_real_time() - stop_wall_us);
    if (!vms_vcpus_wait_quiescent(QUIESCE_TIMEOUT_MS, error))
      return FALSE;
  } else if (!vms_save_migrate_to_fd(vms_service_get_qmp(ctx->svc), fd, error)) {
    return FALSE;
  }
  vms_close_fdp(&fd);
  if (!ctx->mem.shared)
    return TRUE; /* step_strip finishes state.bin */
  return vms_snap_writer_finish(ctx->writer, VMS_STATE_FILE, ctx->state_sha256, &ctx->state_size,
                                error);
}

/* After the state step the VM is stopped (postmigrate) in every path, at
 * the instant the state was taken: the disks freeze at that instant too. */
static gboolean
step_disks(SaveCtx *ctx, GError **error)
{
  return vms_save_disks_freeze(ctx->disks, error);
}

static void
on_copy_progress(guint64 done, guint64 total, gpointer user_data)
{
  SaveCtx *ctx = user_data;
  gint64 now = g_get_monotonic_time();
  JsonObject *data;

  if (done < total && now - ctx->last_progress < PROGRESS_INTERVAL_US)
    return;
  ctx->last_progress = now;
  data = json_object_new();
  json_object_set_string_member(data, "dir", ctx->dir);
  json_object_set_int_member(data, "done", (gint64)done);
  json_object_set_int_member(data, "total", (gint64)total);
  json_object_set_boolean_member(data, "running", vms_service_is_running(ctx->svc));
  vms_service_emit(ctx->svc, "VMSNAP_SNAPSHOT_PROGRESS", data);
}

/* memory=copy: from the file when the mapping is shared (the file is what
 * the guest sees; reflink possible), from the mapping when it is private. */
static gboolean
capture_copy(SaveCtx *ctx, GError **error)
{
  vms_autofd dst = vms_snap_writer_stage(ctx->writer, VMS_MEMORY_FILE, error);
  vms_autofd src_fd = -1;
  VmsCopySource src = { .fd = -1, .size = ctx->mem.size };
  VmsCopyOptions opts = { .progress = on_copy_progress, .progress_data = ctx };
  VmsCopyStats stats = { 0 };
  gboolean reflinked = FALSE;

  if (dst < 0)
    return FALSE;
  if (ctx->mem.shared) {
    src_fd = open(ctx->mem.path, O_RDONLY | O_CLOEXEC);
    if (src_fd < 0)
      return vms_set_error_errno(error, errno, "cannot open guest memory %s", ctx->mem.path);
    src.fd = src_fd;
  } else {
    src.mem = ctx->mem.addr;
  }
  ctx->last_progress = g_get_monotonic_time();
  if (!vms_sparse_copy(&src, dst, &opts, &reflinked, &stats, error))
    return FALSE;
  ctx->capture = reflinked ? VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_REFLINK
                           : VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_COPY;
  ctx->memory_written = reflinked ? 0 : stats.bytes;
  return TRUE;
}

/* memory=diff: the pages written since the restore, from the mapping. */
static gboolean
capture_diff(SaveCtx *ctx, GError **error)
{
  VmsCopyOptions opts = { .progress = on_copy_progress, .progress_data = ctx };

  ctx->capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;
  ctx->last_progress = g_get_monotonic_time();
  return vms_save_diff_capture(ctx->diff, ctx->writer, &ctx->mem, &opts, &ctx->memory_written,
                               error);
}

static gboolean
step_memory(SaveCtx *ctx, GError **error)
{
  if (ctx->memory == VMS_SAVE_MEMORY_LINK) {
    ctx->capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_LINK;
    return vms_snap_writer_link_memory(ctx->writer, ctx->mem.path, error);
  }
  if (ctx->memory == VMS_SAVE_MEMORY_DIFF)
    return capture_diff(ctx, error);
  return capture_copy(ctx, error);
}

/* Nobody else resumed the VM since the save stopped it (save-guard.h). */
static gboolean
still_held(SaveCtx *ctx, GError **error)
{
  if (!ctx->holding || vms_save_guard_not_resumed(vms_service_get_qmp(ctx->svc), ctx->stop_seq, error))
    return TRUE;
  if (g_error_matches(*error, VMS_ERROR, VMS_ERROR_RESUMED)) {
    ctx->resumed = TRUE;
    ctx->stopped_by_us = FALSE; /* it runs: nothing of ours to undo */
  }
  return FALSE;
}

/* then=resume: the guest may run once every byte it could change is
 * captured; the fsync of memory.bin and the commit happen after. */
static gboolean
step_resume(SaveCtx *ctx, GError **error)
{
  if (ctx->then != VMS_SAVE_THEN_RESUME)
    return TRUE;
  if (!still_held(ctx, error) || !vms_save_qmp_simple(vms_service_get_qmp(ctx->svc), "cont", error))
    return FALSE;
  ctx->stopped_by_us = FALSE;
  ctx->holding = FALSE;
  ctx->t_down_end = g_get_monotonic_time();
  return TRUE;
}

/* A VM restored with share=off keeps its guest RAM in QEMU's stream; the
 * memory file has every page, so state.bin need not (state-strip.h). */
static gboolean
step_strip(SaveCtx *ctx, GError **error)
{
  if (ctx->mem.shared)
    return TRUE;
  learn_stream_facts(ctx);
  /* The stream's own page size, else QEMU's from the migration just done. */
  VmsStripGuest guest = { .ram_size = ctx->mem.size, .ram_block = ctx->ram_block,
                          .target_page_size = ctx->target_page_size };

  return vms_state_strip_staged(ctx->writer, RAW_STREAM_NAME, &guest, ctx->state_sha256,
                                &ctx->state_size, error);
}

static gboolean
step_commit(SaveCtx *ctx, GError **error)
{
  g_autoptr(VmsManifest) m = vms_manifest_new();

  if (ctx->capture != VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_LINK && ctx->diff == NULL &&
      !vms_snap_writer_finish(ctx->writer, VMS_MEMORY_FILE, NULL, NULL, error))
    return FALSE;
  m->memory_size_bytes = ctx->mem.size;
  m->vp_count = vms_vcpus_count();
  m->page_size = ctx->mem.page_size;
  vms_manifest_set_string(&m->architecture, vms_service_get_target(ctx->svc));
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL;
  m->memory_capture = ctx->capture;
  vms_manifest_set_bytes(&m->state_sha256, ctx->state_sha256, VMS_SHA256_LEN);
  m->state_size = ctx->state_size;
  vms_manifest_set_string(&m->hypervisor_version, ctx->facts.hypervisor_version);
  vms_manifest_set_string(&m->machine_type, ctx->facts.machine_type);
  vms_manifest_set_argv(m, (const char *const *)ctx->facts.argv);
  vms_manifest_set_string(&m->memory_file, VMS_MEMORY_FILE);
  learn_stream_facts(ctx);
  m->target_page_size = ctx->target_page_size;
  if (ctx->ram_block != NULL)
    vms_manifest_set_string(&m->ram_block, ctx->ram_block);
  if (ctx->diff != NULL && !vms_save_diff_finish(ctx->diff, ctx->writer, m, error))
    return FALSE;
  if (!vms_save_disks_record(ctx->disks, m, error) || !still_held(ctx, error) ||
      !vms_snap_writer_commit(ctx->writer, m, error))
    return FALSE;
  ctx->holding = FALSE;
  vms_save_disks_keep(ctx->disks);
  if (ctx->t_down_end == 0)
    ctx->t_down_end = g_get_monotonic_time();
  return TRUE;
}

static JsonObject *
save_result(SaveCtx *ctx)
{
  JsonObject *ret = json_object_new();
  gint64 now = g_get_monotonic_time();

  json_object_set_string_member(ret, "dir", ctx->dir);
  json_object_set_string_member(ret, "kind", ctx->diff != NULL ? "DIFF" : "FULL");
  json_object_set_string_member(ret, "memory-capture", vms_manifest_capture_name(ctx->capture));
  json_object_set_int_member(ret, "state-bytes", (gint64)ctx->state_size);
  json_object_set_int_member(ret, "memory-bytes-written", (gint64)ctx->memory_written);
  json_object_set_int_member(ret, "disks", vms_save_disks_count(ctx->disks));
  json_object_set_double_member(ret, "downtime-ms", (double)(ctx->t_down_end - ctx->t_stop) / 1000.0);
  json_object_set_double_member(ret, "total-ms", (double)(now - ctx->t_start) / 1000.0);
  json_object_set_boolean_member(ret, "memory-digests", ctx->digests);
  json_object_set_double_member(ret, "digests-ms", (double)ctx->digests_us / 1000.0);
  return ret;
}

/* Puts the VM back as it was before the save and reports the failure. */
static void
save_failed(SaveCtx *ctx, const char *step, GError **error)
{
  g_autoptr(GError) cont_error = NULL;
  JsonObject *data = json_object_new();

  if (ctx->stopped_by_us && !vms_save_qmp_simple(vms_service_get_qmp(ctx->svc), "cont", &cont_error))
    g_prefix_error(error, "(and the VM could not be continued: %s) ", cont_error->message);
  /* Resumed behind our back: then=pause still means the caller wants it
   * paused when the command returns. */
  if (ctx->resumed && ctx->then == VMS_SAVE_THEN_PAUSE) {
    if (vms_save_qmp_simple(vms_service_get_qmp(ctx->svc), "stop", &cont_error))
      g_prefix_error(error, "(the VM is paused again, as then=pause asks) ");
    else
      g_prefix_error(error, "(and the VM could not be paused again: %s) ", cont_error->message);
  }
  g_clear_pointer(&ctx->disks, vms_save_disks_free); /* its links, before the directory goes */
  g_clear_pointer(&ctx->writer, vms_snap_writer_free);
  if (vms_qmp_client_is_closed(vms_service_get_qmp(ctx->svc)))
    g_prefix_error(error, "QEMU is going away (it closed its QMP connection to the plugin), so "
                          "nothing was committed; a later save into %s removes what this one "
                          "staged: ", ctx->dir);
  g_prefix_error(error, "snapshot-save %s failed at step '%s': ", ctx->dir, step);
  json_object_set_string_member(data, "dir", ctx->dir);
  json_object_set_string_member(data, "desc", (*error)->message);
  vms_service_emit(ctx->svc, "VMSNAP_SNAPSHOT_FAILED", data);
}

/* After the commit (outside the downtime; with then=pause the VM is still
 * paused, so a linked memory.bin cannot change meanwhile): the chunk
 * digests of the memory. A failure here leaves a committed snapshot
 * without digests, which verify reports as such; the save still succeeded. */
static void
save_digests(SaveCtx *ctx)
{
  g_autoptr(GError) error = NULL;
  gint64 t0 = g_get_monotonic_time();
  g_autoptr(VmsSnapshot) s = NULL;

  vms_save_test_hook("digests");
  s = vms_snapshot_open(vms_snap_writer_get_path(ctx->writer), &error);

  ctx->digests = s != NULL && vms_snapshot_write_chunks(s, &error);
  ctx->digests_us = g_get_monotonic_time() - t0;
  if (!ctx->digests)
    g_warning("snapshot-save %s: committed without memory digests: %s", ctx->dir, error->message);
}

typedef gboolean (*SaveStep)(SaveCtx *ctx, GError **error);

static const struct {
  const char *name;
  SaveStep run;
} save_steps[] = {
  { "prepare", step_prepare }, { "stop", step_stop },     { "state", step_state },
  { "disks", step_disks },     { "memory", step_memory },   { "resume", step_resume }, { "strip", step_strip },
  { "commit", step_commit },
};

static gint64
thread_cpu_us(void)
{
  struct timespec ts;
  return clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) == 0
             ? (gint64)ts.tv_sec * G_USEC_PER_SEC + ts.tv_nsec / 1000 : 0;
}

/* Runs the steps in order; the time each took goes to the debug log
 * (G_MESSAGES_DEBUG=vmsnap in QEMU's environment). NULL names the step
 * that failed. */
static const char *
run_steps(SaveCtx *ctx, GError **error)
{
  GString *times = g_string_new(NULL);
  const char *failed = NULL;

  for (gsize i = 0; i < G_N_ELEMENTS(save_steps) && failed == NULL; i++) {
    gint64 t0 = g_get_monotonic_time(), c0 = thread_cpu_us();
    vms_save_test_hook(save_steps[i].name);
    /* snapshot-cancel is checked between steps (vms_service_save_step) */
    if (!vms_service_save_step(ctx->svc, save_steps[i].name, error) ||
        !save_steps[i].run(ctx, error))
      failed = save_steps[i].name;
    /* The worker's own CPU time too: on a loaded machine it says what the
     * step costs, the wall time what it took. */
    g_string_append_printf(times, " %s %.2f (cpu %.2f)", save_steps[i].name,
                           (double)(g_get_monotonic_time() - t0) / 1000.0,
                           (double)(thread_cpu_us() - c0) / 1000.0);
  }
  g_debug("snapshot-save %s: step times (ms):%s", ctx->dir, times->str);
  g_string_free(times, TRUE);
  return failed;
}

JsonObject *
vms_save_run(VmsService *svc, const char *dir, VmsSaveMemory memory, VmsSaveThen then,
             GError **error)
{
  SaveCtx ctx = { .svc = svc, .dir = dir, .memory = memory, .then = then,
                  .t_start = g_get_monotonic_time() };
  const char *failed;
  JsonObject *ret;

  if (dir == NULL || dir[0] == '\0') {
    g_set_error_literal(error, VMS_ERROR, VMS_ERROR_INVALID_ARGUMENT,
                        "snapshot-save: dir is empty; give the snapshot directory");
    return NULL;
  }
  failed = run_steps(&ctx, error);
  if (failed != NULL) {
    save_failed(&ctx, failed, error);
    save_ctx_clear(&ctx);
    return NULL;
  }
  if (memory == VMS_SAVE_MEMORY_LINK && then == VMS_SAVE_THEN_PAUSE)
    vms_service_arm_invalidation(svc, vms_snap_writer_get_path(ctx.writer));
  save_digests(&ctx);
  ret = save_result(&ctx);
  vms_service_emit(svc, "VMSNAP_SNAPSHOT_COMPLETED", json_object_ref(ret));
  save_ctx_clear(&ctx);
  return ret;
}

void
vms_save_quit(VmsService *svc)
{
  g_autoptr(GError) error = NULL;

  if (!vms_save_qmp_simple(vms_service_get_qmp(svc), "quit", &error))
    g_debug("quit: %s", error->message);
}
