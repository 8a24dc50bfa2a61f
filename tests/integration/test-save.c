/* snapshot-save end to end: link and copy captures, the manifest's fields,
 * invalidation of a link snapshot when the VM is continued, failures that
 * leave the VM running and no manifest, one save at a time, then=quit, and
 * the `vmsnap save` CLI. */
#include "plugin-fixture.h"

#include <string.h>
#include <sys/stat.h>

#include "manifest.h"
#include "snapdir.h"
#include "util.h"

static void
setup(Fixture *f, gconstpointer data)
{
  plugin_vm_setup(f, "save");
  json_object_unref(vms_test_query_ready(f->ctl));
}

static JsonNode *
save(Fixture *f, const char *dir, const char *memory, const char *then, GError **error)
{
  return vms_test_qmp_executef(f->ctl, "snapshot-save", error,
                               "{\"dir\": \"%s\", \"memory\": \"%s\", \"then\": \"%s\"}", dir,
                               memory, then);
}

static const char *
run_status(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, "query-status", NULL, &error);
  static char status[32];

  g_assert_no_error(error);
  g_strlcpy(status, json_object_get_string_member(json_node_get_object(ret), "status"),
            sizeof(status));
  return status;
}

static void
assert_no_manifest(const char *dir)
{
  g_autofree char *m = g_build_filename(dir, "manifest.bin", NULL);

  g_assert_false(g_file_test(m, G_FILE_TEST_EXISTS));
}

static void
assert_guest_runs(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  guint64 c = 0;

  g_assert_cmpstr(run_status(vm), ==, "running");
  g_assert_true(vms_vm_read_counter(vm, &c, &error));
  g_assert_true(vms_vm_wait_counter_above(vm, c + 1000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
}

/* A save puts back QEMU's migration settings: a later real migration must
 * not inherit x-ignore-shared (it would leave the guest RAM behind) or an
 * unthrottled bandwidth. These are QEMU 7.2's defaults. */
static void
assert_migration_settings_untouched(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) caps = vms_test_qmp_execute(vm->qmp, "query-migrate-capabilities", NULL,
                                                  &error);
  g_autoptr(JsonNode) params = NULL;
  JsonArray *list;

  g_assert_no_error(error);
  list = json_node_get_array(caps);
  for (guint i = 0; i < json_array_get_length(list); i++) {
    JsonObject *c = json_array_get_object_element(list, i);
    const char *name = json_object_get_string_member(c, "capability");
    if (g_str_equal(name, "x-ignore-shared") || g_str_equal(name, "events"))
      g_assert_false(json_object_get_boolean_member(c, "state"));
  }
  params = vms_test_qmp_execute(vm->qmp, "query-migrate-parameters", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpint(json_object_get_int_member(json_node_get_object(params), "max-bandwidth"), ==,
                  128 << 20);
}

static void
test_link(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-link", NULL);
  g_autofree char *mem_bin = g_build_filename(snap, "memory.bin", NULL);
  g_autofree char *state = g_build_filename(snap, "state.bin", NULL);
  g_autofree char *state_sha = NULL;
  g_autoptr(JsonNode) ret = save(f, snap, "link", "pause", &error);
  g_autoptr(VmsSnapshot) s = NULL;
  JsonObject *r;
  struct stat a, b;
  char hex[65];

  g_assert_no_error(error);
  r = json_node_get_object(ret);
  g_assert_cmpstr(json_object_get_string_member(r, "dir"), ==, snap);
  g_assert_cmpstr(json_object_get_string_member(r, "kind"), ==, "FULL");
  g_assert_cmpstr(json_object_get_string_member(r, "memory-capture"), ==, "LINK");
  g_assert_cmpint(json_object_get_int_member(r, "memory-bytes-written"), ==, 0);
  g_assert_cmpint(json_object_get_int_member(r, "state-bytes"), >, 0);
  g_assert_true(json_object_has_member(r, "downtime-ms"));
  g_assert_true(json_object_has_member(r, "total-ms"));
  g_test_message("link: downtime %.1f ms, total %.1f ms",
                 json_object_get_double_member(r, "downtime-ms"),
                 json_object_get_double_member(r, "total-ms"));
  g_assert_cmpstr(run_status(f->vm), !=, "running");

  s = vms_snapshot_open(snap, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(s->manifest->vp_count, ==, 2);
  g_assert_cmpuint(s->manifest->memory_size_bytes, ==, (guint64)MEM_MIB << 20);
  g_assert_cmpuint(s->manifest->page_size, ==, 4096);
  g_assert_cmpstr(s->manifest->architecture, ==, "x86_64");
  g_assert_true(g_str_has_prefix(s->manifest->hypervisor_version, "QEMU 7."));
  g_assert_true(g_str_has_prefix(s->manifest->machine_type, "pc-i440fx"));
  g_assert_cmpuint(s->manifest->n_qemu_argv, >, 5);
  g_assert_cmpint(s->manifest->memory_capture, ==, VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_LINK);
  g_assert_cmpint(stat(mem_bin, &a), ==, 0);
  g_assert_cmpint(stat(f->vm->mem_path, &b), ==, 0);
  g_assert_cmpuint(a.st_ino, ==, b.st_ino);
  state_sha = vms_test_file_sha256(state, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(s->manifest->state_sha256.len, ==, 32);
  vms_sha256_hex(s->manifest->state_sha256.data, hex);
  g_assert_cmpstr(hex, ==, state_sha);
  g_assert_true(vms_snapshot_verify(s, &error));
  g_assert_no_error(error);
  assert_migration_settings_untouched(f->vm);
}

/* Link + pause, then someone continues the VM through QEMU's own QMP: the
 * snapshot stops being one. */
static void
test_link_invalidated(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-inval", NULL);
  g_autofree char *invalid = g_build_filename(snap, "manifest.bin.invalid", NULL);
  g_autoptr(JsonNode) ret = save(f, snap, "link", "pause", &error);
  g_autoptr(JsonNode) cont = NULL;
  g_autoptr(JsonObject) ev = NULL;

  g_assert_no_error(error);
  cont = vms_test_qmp_execute(f->vm->qmp, "cont", NULL, &error);
  g_assert_no_error(error);
  ev = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_INVALIDATED", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(ev, "data"), "dir"),
                  ==, snap);
  g_assert_nonnull(json_object_get_string_member(json_object_get_object_member(ev, "data"),
                                                 "reason"));
  assert_no_manifest(snap);
  g_assert_true(g_file_test(invalid, G_FILE_TEST_IS_REGULAR));
  assert_guest_runs(f->vm);
}

static void
test_link_resume_refused(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-lr", NULL);
  g_autoptr(JsonNode) ret = save(f, snap, "link", "resume", &error);

  g_assert_null(ret);
  g_assert_nonnull(strstr(error->message, "then=resume"));
  g_assert_false(g_file_test(snap, G_FILE_TEST_EXISTS));
  assert_guest_runs(f->vm);
}

/* Copy + resume: the guest keeps running and memory.bin is an independent
 * file that holds the memory as it was at the stop. */
/* The events of a copy save that succeeded: VMSNAP_SNAPSHOT_PROGRESS for
 * @dir, never going backwards, ending at done == total == the bytes the
 * copy wrote (@written, the reply's memory-bytes-written); then
 * VMSNAP_SNAPSHOT_COMPLETED for @dir. */
static void
assert_copy_events(Fixture *f, const char *dir, gint64 written)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) completed = NULL;
  gint64 last = -1, total = -1;
  guint count = 0;

  do {
    g_autoptr(JsonObject) ev = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_PROGRESS",
                                                       VMS_TEST_TIMEOUT_MS, &error);
    JsonObject *d;

    g_assert_no_error(error);
    d = json_object_get_object_member(ev, "data");
    g_assert_cmpstr(json_object_get_string_member(d, "dir"), ==, dir);
    g_assert_cmpint(json_object_get_int_member(d, "done"), >=, last);
    last = json_object_get_int_member(d, "done");
    total = json_object_get_int_member(d, "total");
    g_assert_cmpint(last, <=, total);
    g_assert_true(json_object_has_member(ev, "timestamp"));
    count++;
  } while (last != total);
  g_assert_cmpint(total, ==, written);
  g_test_message("%u progress event(s) for a copy of %" G_GINT64_FORMAT " bytes", count, total);
  completed = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_COMPLETED", VMS_TEST_TIMEOUT_MS,
                                      &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_object_get_object_member(completed, "data"),
                                                "dir"), ==, dir);
}

static void
test_copy_resume(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-copy", NULL);
  g_autofree char *mem_bin = g_build_filename(snap, "memory.bin", NULL);
  g_autofree char *reply = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(GMappedFile) mf = NULL;
  const guint8 *m;
  guint64 saved_counter, now = 0;
  struct stat a, b;

  /* a page the guest writes before the save, and one after */
  reply = vms_vm_guest_command(f->vm, "W 1 1 90", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(reply, ==, "ok W 1 1 90");
  ret = save(f, snap, "copy", "resume", &error);
  g_assert_no_error(error);
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(ret), "memory-capture"), ==,
                  "COPY");
  g_assert_cmpint(json_object_get_int_member(json_node_get_object(ret), "memory-bytes-written"),
                  >, 4 << 20);
  assert_copy_events(f, snap,
                     json_object_get_int_member(json_node_get_object(ret), "memory-bytes-written"));
  assert_guest_runs(f->vm);
  g_clear_pointer(&reply, g_free);
  reply = vms_vm_guest_command(f->vm, "W 2 1 165", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(reply, ==, "ok W 2 1 165");

  g_assert_cmpint(stat(mem_bin, &a), ==, 0);
  g_assert_cmpint(stat(f->vm->mem_path, &b), ==, 0);
  g_assert_cmpuint(a.st_ino, !=, b.st_ino);
  g_assert_cmpuint(a.st_size, ==, (guint64)MEM_MIB << 20);
  mf = g_mapped_file_new(mem_bin, FALSE, &error);
  g_assert_no_error(error);
  m = (const guint8 *)g_mapped_file_get_contents(mf);
  memcpy(&saved_counter, m + VMS_GUEST_COUNTER_ADDR, sizeof(saved_counter));
  g_assert_true(vms_vm_read_counter(f->vm, &now, &error));
  g_assert_cmpuint(saved_counter, >, 0);
  g_assert_cmpuint(saved_counter, <, now);
  g_assert_cmpuint(m[VMS_GUEST_SCRATCH_ADDR + 1 * 4096], ==, 0x5a);
  g_assert_cmpuint(m[VMS_GUEST_SCRATCH_ADDR + 2 * 4096], !=, 0xa5);
  for (guint32 off = 0; off < VMS_GUEST_PATTERN_SIZE; off += 4096) {
    guint32 w;
    memcpy(&w, m + VMS_GUEST_PATTERN_ADDR + off, 4);
    g_assert_cmphex(GUINT32_FROM_LE(w), ==, VMS_GUEST_PATTERN_WORD(VMS_GUEST_PATTERN_ADDR + off));
  }
}

static void
test_fail_unwritable(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *file = g_build_filename(f->dir, "a-file", NULL);
  g_autofree char *snap = g_build_filename(file, "snap", NULL);
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonObject) ev = NULL;

  /* a parent that is a regular file: no directory can be made (even as root) */
  g_assert_true(g_file_set_contents(file, "x", 1, NULL));
  ret = save(f, snap, "copy", "pause", &error);
  g_assert_null(ret);
  g_test_message("%s", error->message);
  g_assert_nonnull(strstr(error->message, snap));
  ev = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_FAILED", VMS_TEST_TIMEOUT_MS, NULL);
  g_assert_nonnull(ev);
  assert_guest_runs(f->vm);
}

/* The snapshot directory on another filesystem than the memory file: the
 * link fails after the VM was stopped and state.bin written; the VM must be
 * running again and nothing committed. */
static void
test_fail_cross_fs(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tmpl = g_strdup("/var/tmp/vmsnap-xfs-XXXXXX");
  g_autofree char *snap = NULL;
  g_autofree char *state = NULL;
  g_autoptr(JsonNode) ret = NULL;
  g_autoptr(JsonObject) ev = NULL;
  struct stat a, b;

  g_assert_nonnull(g_mkdtemp(tmpl));
  g_assert_cmpint(stat(tmpl, &a), ==, 0);
  g_assert_cmpint(stat(f->vm->mem_path, &b), ==, 0);
  if (a.st_dev == b.st_dev) {
    vms_test_rm_rf(tmpl);
    vms_test_cannot_run("/var/tmp and the memory file are on the same filesystem");
    return;
  }
  snap = g_build_filename(tmpl, "snap", NULL);
  state = g_build_filename(snap, "state.bin", NULL);
  ret = save(f, snap, "link", "pause", &error);
  g_assert_null(ret);
  g_test_message("%s", error->message);
  g_assert_nonnull(strstr(error->message, "memory"));
  g_assert_nonnull(strstr(error->message, "inside the snapshot directory"));
  g_clear_error(&error);
  ev = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_FAILED", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  assert_no_manifest(snap);
  g_assert_false(g_file_test(state, G_FILE_TEST_EXISTS));
  assert_guest_runs(f->vm);
  assert_migration_settings_untouched(f->vm);
  vms_test_rm_rf(tmpl);
}

/* Sends snapshot-save (copy, then=resume) of @dir with @id on @q, unanswered. */
static void
send_save(VmsTestQmp *q, const char *dir, int id)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *cmd = g_strdup_printf(
      "{\"execute\": \"snapshot-save\", \"arguments\": {\"dir\": \"%s\", \"memory\": \"copy\", "
      "\"then\": \"resume\"}, \"id\": %d}", dir, id);

  g_assert_true(vms_test_qmp_send_raw(q, cmd, &error));
  g_assert_no_error(error);
}

/* Two clients ask for a snapshot at the same moment: the second is refused
 * while the first runs. (One connection's commands run in order, so the
 * race needs two.) A save can finish before the second request arrives;
 * the pair is tried again then, a few times. */
static void
test_busy(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) other = vms_test_qmp_connect(f->vm->control_path, VMS_TEST_TIMEOUT_MS,
                                                     &error);
  gboolean refused = FALSE;

  g_assert_no_error(error);
  for (int attempt = 0; attempt < 5 && !refused; attempt++) {
    g_autofree char *a = g_strdup_printf("%s/snap-a%d", f->dir, attempt);
    g_autofree char *b = g_strdup_printf("%s/snap-b%d", f->dir, attempt);
    g_autoptr(JsonObject) r1 = NULL, r2 = NULL;

    send_save(f->ctl, a, 1);
    send_save(other, b, 2);
    r1 = vms_test_qmp_read_reply(f->ctl, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_no_error(error);
    r2 = vms_test_qmp_read_reply(other, VMS_TEST_TIMEOUT_MS, &error);
    g_assert_no_error(error);
    g_assert_true(json_object_has_member(r1, "return"));
    if (json_object_has_member(r2, "error")) {
      g_assert_nonnull(strstr(json_object_get_string_member(json_object_get_object_member(r2,
                                                                                          "error"),
                                                            "desc"),
                              "already running"));
      assert_no_manifest(b);
      refused = TRUE;
    } else {
      g_test_message("attempt %d: the first save finished before the second arrived", attempt);
    }
  }
  g_assert_true(refused);
  assert_guest_runs(f->vm);
}

static void
test_then_quit(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-quit", NULL);
  g_autofree char *manifest = g_build_filename(snap, "manifest.bin", NULL);
  g_autoptr(JsonNode) ret = save(f, snap, "link", "quit", &error);
  int status = -1;

  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_exit(f->vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  g_assert_cmpint(status, ==, 0);
  g_assert_true(g_file_test(manifest, G_FILE_TEST_IS_REGULAR));
}

/* In restore mode, a failure of the plugin's start-up (here: mem= names a
 * file QEMU does not map) ends QEMU with one line instead of leaving it
 * waiting for an incoming migration that never comes. */
static void
test_restore_startup_failure(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-rs", NULL);
  g_autofree char *clone_dir = g_build_filename(f->dir, "clone", NULL);
  g_autoptr(JsonNode) ret = save(f, snap, "link", "quit", &error);
  g_autoptr(VmsVm) clone = NULL;
  g_autofree char *err = NULL;
  int status = 0;

  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_exit(f->vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_cmpint(g_mkdir_with_parents(clone_dir, 0700), ==, 0);
  clone = vms_vm_new(clone_dir);
  clone->smp = 2;
  clone->mem_mib = MEM_MIB;
  g_free(clone->mem_path);
  clone->mem_path = g_build_filename(snap, "memory.bin", NULL);
  clone->share = FALSE;
  clone->incoming_defer = TRUE;
  clone->plugin_extra = g_strdup_printf("restore=%s,mem=%s/not-mapped.ram", snap, clone_dir);
  /* vms_vm_start may or may not see QMP answer before QEMU exits */
  vms_vm_start(clone, NULL);
  g_assert_true(vms_vm_wait_exit(clone, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  err = vms_vm_stderr(clone);
  g_test_message("status %d: %s", status, err);
  g_assert_cmpint(status, ==, 1);
  g_assert_nonnull(strstr(err, "vmsnap: restore: mem="));
}

static void
test_cli(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap-cli", NULL);
  g_autofree char *out = NULL, *err = NULL;
  g_autoptr(GSubprocess) p = g_subprocess_new(
      G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error, vms_test_cli(),
      "save", "--control", f->vm->control_path, snap, "--memory", "copy", "--then", "resume",
      "--json", NULL);
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autoptr(GSubprocess) again = NULL;

  g_assert_no_error(error);
  g_assert_true(g_subprocess_communicate_utf8(p, NULL, NULL, &out, &err, &error));
  g_assert_no_error(error);
  g_assert_cmpint(g_subprocess_get_exit_status(p), ==, 0);
  g_assert_true(json_parser_load_from_data(parser, out, -1, NULL));
  g_assert_cmpstr(json_object_get_string_member(json_node_get_object(json_parser_get_root(parser)),
                                                "memory-capture"), ==, "COPY");
  assert_guest_runs(f->vm);
  /* a second save into the same directory is refused: exit 1, one error line */
  g_clear_pointer(&out, g_free);
  g_clear_pointer(&err, g_free);
  again = g_subprocess_new(G_SUBPROCESS_FLAGS_STDOUT_PIPE | G_SUBPROCESS_FLAGS_STDERR_PIPE, &error,
                           vms_test_cli(), "save", "--control", f->vm->control_path, snap, NULL);
  g_assert_true(g_subprocess_communicate_utf8(again, NULL, NULL, &out, &err, &error));
  g_assert_cmpint(g_subprocess_get_exit_status(again), ==, 1);
  g_assert_true(g_str_has_prefix(err, "vmsnap: error: "));
  assert_guest_runs(f->vm);
}

int
main(int argc, char **argv)
{
  vms_test_init_with_plugin(&argc, &argv);
#define ADD(name, fn) g_test_add(name, Fixture, NULL, setup, fn, teardown)
  ADD("/save/link", test_link);
  ADD("/save/link-invalidated", test_link_invalidated);
  ADD("/save/link-resume-refused", test_link_resume_refused);
  ADD("/save/copy-resume", test_copy_resume);
  ADD("/save/fail-unwritable", test_fail_unwritable);
  ADD("/save/fail-cross-fs", test_fail_cross_fs);
  ADD("/save/busy", test_busy);
  ADD("/save/then-quit", test_then_quit);
  ADD("/save/cli", test_cli);
  ADD("/save/restore-startup-failure", test_restore_startup_failure);
#undef ADD
  return g_test_run();
}
