/* Integrity of saves against a real QEMU (issue 10): a save resumed by
 * someone else commits nothing; QEMU's migration settings come back exactly;
 * QEMU killed at every step of a save leaves nothing half-made that looks
 * committed, and the next save cleans up; a full filesystem fails copy,
 * diff and flatten with the ENOSPC named; the recorded command line does
 * not grow down a chain of restores. */
#include "restore-fixture.h"

#include <errno.h>
#include <string.h>
#include <sys/mount.h>
#include <unistd.h>

#include "chunks.h"
#include "snapdir.h"

#define HOOK_ENV "VMSNAP_TEST_SAVE_HOOK"

/* Starts @vm with @hook (nullable) as its step hook in QEMU's environment. */
static void
start_with_hook(VmsVm *vm, const char *hook)
{
  g_autoptr(GError) error = NULL;
  gboolean ok;

  if (hook != NULL)
    g_setenv(HOOK_ENV, hook, TRUE);
  ok = vms_vm_start(vm, &error);
  g_unsetenv(HOOK_ENV);
  g_assert_no_error(error);
  g_assert_true(ok);
}

/* Waits (up to 15 s) until a "wait=FILE" hook has created @path. */
static void
wait_for_hook(const char *path)
{
  for (int i = 0; i < 3000 && !g_file_test(path, G_FILE_TEST_EXISTS); i++)
    g_usleep(5000);
  g_assert_true(g_file_test(path, G_FILE_TEST_EXISTS));
}

/* A plugin VM in @f->dir/@name with @hook (nullable) as its step hook,
 * booted to ready; its control connection in *@ret_ctl. */
static VmsVm *
hooked_vm(Fixture *f, guint slot, const char *name, const char *hook, VmsTestQmp **ret_ctl)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);

  g_clear_pointer(&f->vms[slot], vms_vm_free);
  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  VmsVm *vm = f->vms[slot] = vms_vm_new(dir);
  start_with_hook(vm, hook);
  g_assert_true(vms_vm_wait_ready(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  *ret_ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  return vm;
}

static gboolean
send_save(VmsTestQmp *ctl, const char *dir, const char *memory, const char *then)
{
  g_autofree char *cmd = g_strdup_printf("{\"execute\": \"snapshot-save\", \"arguments\": "
                                         "{\"dir\": \"%s\", \"memory\": \"%s\", \"then\": \"%s\"}}",
                                         dir, memory, then);
  return vms_test_qmp_send_raw(ctl, cmd, NULL);
}

/* The reply's error description; fails the test on success. */
static char *
save_error(VmsTestQmp *ctl, const char *dir, const char *memory, const char *then)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(ctl, "snapshot-save", &error,
                                                  "{\"dir\": \"%s\", \"memory\": \"%s\", "
                                                  "\"then\": \"%s\"}", dir, memory, then);
  if (ret != NULL)
    g_error("snapshot-save %s succeeded; it should have failed", dir);
  return g_strdup(error->message);
}

/* TRUE if QEMU's query-status says @status. */
static gboolean
vm_status_is(VmsVm *vm, const char *status)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, "query-status", NULL, &error);

  g_assert_no_error(error);
  return g_str_equal(json_object_get_string_member(json_node_get_object(ret), "status"), status);
}

static gboolean
has_file(const char *dir, const char *name)
{
  g_autofree char *p = g_build_filename(dir, name, NULL);
  return g_file_test(p, G_FILE_TEST_EXISTS);
}

/* No NAME.tmp in @dir (or @dir is gone). */
static void
assert_no_staged(const char *dir)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);
  const char *name;

  while (d != NULL && (name = g_dir_read_name(d)) != NULL)
    if (g_str_has_suffix(name, ".tmp"))
      g_error("%s/%s was left behind", dir, name);
}

/* `cont` on QEMU's own QMP while a copy save holds the VM stopped: the save
 * fails, commits nothing, and the VM is paused again (then=pause). */
static void
test_resumed_during_save(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *hook_file = g_build_filename(f->dir, "hook", NULL);
  g_autofree char *hook = g_strdup_printf("memory:wait=%s", hook_file);
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autoptr(VmsTestQmp) ctl = NULL;
  VmsVm *vm = hooked_vm(f, 0, "vm", hook, &ctl);

  g_assert_true(send_save(ctl, snap, "copy", "pause"));
  wait_for_hook(hook_file);
  g_assert_false(vm_status_is(vm, "running"));
  g_autoptr(JsonNode) cont = vms_test_qmp_execute(vm->qmp, "cont", NULL, &error);
  g_assert_no_error(error);
  g_assert_cmpint(unlink(hook_file), ==, 0);
  g_autoptr(JsonObject) reply = vms_test_qmp_read_reply(ctl, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_true(json_object_has_member(reply, "error"));
  const char *desc = json_object_get_string_member(json_object_get_object_member(reply, "error"),
                                                   "desc");
  g_assert_nonnull(strstr(desc, "resumed by someone else"));
  g_assert_nonnull(strstr(desc, "paused again"));
  g_assert_false(has_file(snap, VMS_MANIFEST_FILE));
  g_assert_true(vm_status_is(vm, "paused"));
}

static JsonNode *
qmp(VmsVm *vm, const char *command, const char *args)
{
  g_autoptr(GError) error = NULL;
  JsonNode *ret = args != NULL ? vms_test_qmp_executef(vm->qmp, command, &error, "%s", args)
                               : vms_test_qmp_execute(vm->qmp, command, NULL, &error);

  g_assert_no_error(error);
  return ret;
}

static gboolean
capability(VmsVm *vm, const char *name)
{
  g_autoptr(JsonNode) caps = qmp(vm, "query-migrate-capabilities", NULL);
  JsonArray *list = json_node_get_array(caps);

  for (guint i = 0; i < json_array_get_length(list); i++) {
    JsonObject *c = json_array_get_object_element(list, i);
    if (g_str_equal(json_object_get_string_member(c, "capability"), name))
      return json_object_get_boolean_member(c, "state");
  }
  g_error("no capability %s", name);
}

/* Settings a management layer made (libvirt turns `events` on) survive a
 * save exactly. */
static void
test_settings_put_back(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autoptr(VmsTestQmp) ctl = NULL;
  VmsVm *vm = hooked_vm(f, 0, "vm", NULL, &ctl);

  json_node_unref(qmp(vm, "migrate-set-capabilities",
                      "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}"));
  json_node_unref(qmp(vm, "migrate-set-parameters",
                      "{\"max-bandwidth\": 33554432, \"downtime-limit\": 123}"));
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(ctl, "snapshot-save", &error,
                                                  "{\"dir\": \"%s\", \"memory\": \"copy\", "
                                                  "\"then\": \"resume\"}", snap);
  g_assert_no_error(error);
  g_assert_true(json_object_get_boolean_member(json_node_get_object(ret), "memory-digests"));
  g_assert_true(capability(vm, "events"));
  g_assert_false(capability(vm, "x-ignore-shared"));
  g_autoptr(JsonNode) params = qmp(vm, "query-migrate-parameters", NULL);
  JsonObject *p = json_node_get_object(params);
  g_assert_cmpint(json_object_get_int_member(p, "max-bandwidth"), ==, 33554432);
  g_assert_cmpint(json_object_get_int_member(p, "downtime-limit"), ==, 123);
}

/* The same for a restore: settings made while QEMU waits for the incoming
 * state (the hook holds the plugin just before it loads state.bin) are
 * what the restored VM has after it. */
static void
test_restore_puts_back(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *hook_file = g_build_filename(f->dir, "hook", NULL);
  g_autofree char *hook = g_strdup_printf("restore:wait=%s", hook_file);
  VmsVm *vm = f->vms[0] = restored_vm(f->dir, "restored", base_snapshot());

  start_with_hook(vm, hook);
  wait_for_hook(hook_file);
  json_node_unref(qmp(vm, "migrate-set-capabilities",
                      "{\"capabilities\": [{\"capability\": \"events\", \"state\": true}]}"));
  json_node_unref(qmp(vm, "migrate-set-parameters", "{\"max-bandwidth\": 33554432}"));
  g_assert_cmpint(unlink(hook_file), ==, 0);
  assert_continues(vm, base_counter(), base_boot_id());
  g_assert_true(capability(vm, "events"));
  g_assert_false(capability(vm, "x-ignore-shared"));
  g_autoptr(JsonNode) params = qmp(vm, "query-migrate-parameters", NULL);
  g_assert_cmpint(json_object_get_int_member(json_node_get_object(params), "max-bandwidth"), ==,
                  33554432);
}

static const char *const save_steps[] = {
  "prepare", "stop", "state", "memory", "resume", "strip", "commit", "digests",
};

static void
assert_verify(const char *dir, int want_status, const char *want_text)
{
  const char *args[] = { "verify", dir, NULL };
  g_autofree char *out = NULL, *err = NULL;
  int status = vms_test_run_cli(args, &out, &err);

  if (status != want_status || (want_text != NULL && strstr(err, want_text) == NULL))
    g_error("vmsnap verify %s: status %d, stderr %s", dir, status, err);
}

/* QEMU killed at the start of each save step (memory=copy, so a guest-sized
 * memory.bin.tmp is staged from the memory step on): nothing looks
 * committed — before the digests step no manifest.bin; at it a committed
 * snapshot that verify reports as having no digests — and a new save into
 * the same directory succeeds and leaves no staged file. */
static void
test_kill_at_every_step(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) dirs = g_ptr_array_new_with_free_func(g_free);

  for (gsize i = 0; i < G_N_ELEMENTS(save_steps); i++) {
    g_autofree char *hook = g_strdup_printf("%s:kill", save_steps[i]);
    g_autofree char *name = g_strdup_printf("vm-%s", save_steps[i]);
    char *snap = g_strdup_printf("%s/killed-%s", f->dir, save_steps[i]);
    g_autoptr(VmsTestQmp) ctl = NULL;
    VmsVm *vm = hooked_vm(f, 0, name, hook, &ctl);
    int status = 0;

    g_ptr_array_add(dirs, snap);
    g_assert_true(send_save(ctl, snap, "copy", "pause"));
    g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
    g_assert_no_error(error);
    g_assert_cmpint(status, ==, 128 + 9);
    if (g_str_equal(save_steps[i], "digests")) {
      g_assert_true(has_file(snap, VMS_MANIFEST_FILE));
      g_assert_false(has_file(snap, VMS_CHUNKS_FILE));
      assert_verify(snap, 1, "no memory digests");
    } else if (g_file_test(snap, G_FILE_TEST_EXISTS)) { /* prepare makes it */
      g_assert_false(has_file(snap, VMS_MANIFEST_FILE));
      assert_verify(snap, 1, "incomplete snapshot");
    }
  }
  g_autoptr(VmsTestQmp) ctl = NULL;
  hooked_vm(f, 0, "vm-clean", NULL, &ctl);
  for (guint i = 0; i + 1 < dirs->len; i++) {
    const char *snap = dirs->pdata[i];
    g_autoptr(JsonNode) ret = vms_test_qmp_executef(ctl, "snapshot-save", &error,
                                                    "{\"dir\": \"%s\", \"memory\": \"copy\", "
                                                    "\"then\": \"resume\"}", snap);
    g_assert_no_error(error);
    assert_no_staged(snap);
    assert_verify(snap, 0, NULL);
  }
}

/* A tmpfs of 8 MiB at @dir, filled up to @free_bytes; FALSE if this
 * machine cannot mount one. */
static gboolean
small_fs(const char *dir, gsize free_bytes)
{
  g_autofree char *filler = g_build_filename(dir, "filler", NULL);
  g_autofree char *buf = g_malloc0(8u << 20);

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  if (mount("vmsnap-test", dir, "tmpfs", 0, "size=8m") < 0) {
    vms_test_cannot_run("cannot mount a tmpfs (needs CAP_SYS_ADMIN)");
    return FALSE;
  }
  /* Written, not truncated: tmpfs counts only allocated pages. */
  g_assert_true(g_file_set_contents(filler, buf, (8u << 20) - free_bytes, NULL));
  return TRUE;
}

static void
assert_enospc(const char *what, const char *message)
{
  if (strstr(message, "No space left on device") == NULL)
    g_error("%s: the error does not name ENOSPC: %s", what, message);
}

/* memory=copy, memory=diff and flatten into a full filesystem: each fails,
 * says "No space left on device" (for the diff, QEMU's own words from its
 * migration), commits nothing and leaves nothing. */
static void
test_enospc(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *small = g_build_filename(f->dir, "small", NULL);
  g_autofree char *copy_dir = g_build_filename(small, "copy", NULL);
  g_autofree char *diff_dir = g_build_filename(small, "diff", NULL);
  g_autofree char *good_diff = g_build_filename(f->dir, "good-diff", NULL);
  g_autofree char *flat_dir = g_build_filename(small, "flat", NULL);
  int status = -1;

  if (!small_fs(small, 64u << 10))
    return;
  g_autoptr(VmsTestQmp) ctl = NULL;
  VmsVm *src = hooked_vm(f, 0, "src", NULL, &ctl);
  g_autofree char *m1 = save_error(ctl, copy_dir, "copy", "resume");
  assert_enospc("memory=copy", m1);
  g_assert_false(g_file_test(copy_dir, G_FILE_TEST_EXISTS));
  g_assert_true(vm_status_is(src, "running"));
  g_clear_pointer(&ctl, vms_test_qmp_free);

  VmsVm *vm = f->vms[1] = restored_vm(f->dir, "restored", base_snapshot());
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_autofree char *w = vms_vm_guest_command(vm, "W 200 16 33", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_cmpstr(w, ==, "ok W 200 16 33");
  g_autofree char *m2 = save_error(ctl, diff_dir, "diff", "resume");
  assert_enospc("memory=diff", m2);
  g_assert_false(g_file_test(diff_dir, G_FILE_TEST_EXISTS));
  g_autoptr(JsonObject) ok = save(vm, good_diff, "diff", "quit");
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));

  const char *args[] = { "flatten", good_diff, flat_dir, NULL };
  g_autofree char *out = NULL, *err = NULL;
  g_assert_cmpint(vms_test_run_cli(args, &out, &err), ==, 1);
  assert_enospc("flatten", err);
  g_assert_false(g_file_test(flat_dir, G_FILE_TEST_EXISTS));
  assert_no_staged(small);
  g_assert_cmpint(umount2(small, MNT_DETACH), ==, 0);
}

static gsize
recorded_argc(const char *snap)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(snap, &error);

  g_assert_no_error(error);
  return s->manifest->n_qemu_argv;
}

/* The recorded qemu_argv of @snap as one string. */
static char *
recorded_argv(const char *snap)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(snap, &error);

  g_assert_no_error(error);
  GString *out = g_string_new(NULL);
  /* A decoded repeated field is counted, not NULL-terminated. */
  for (gsize i = 0; i < s->manifest->n_qemu_argv; i++)
    g_string_append_printf(out, "%s%s", i > 0 ? " " : "", s->manifest->qemu_argv[i]);
  return g_string_free(out, FALSE);
}

/* `vmsnap restore SNAP -- -name X` then a save of the clone, twice down a
 * chain: the clone's snapshot records the command line without -incoming
 * and without the extra arguments, so it does not grow. */
static void
test_argv_does_not_grow(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *base_argv = recorded_argv(base);
  g_autofree char *prev = g_strdup(base);
  g_autofree char *prev_argv = NULL;

  for (int i = 0; i < 2; i++) {
    g_autofree char *rdir = g_strdup_printf("%s/clone%d", f->dir, i);
    g_autofree char *snap = g_strdup_printf("%s/c%d", f->dir, i);
    g_autofree char *name = g_strdup_printf("clone-%d", i);
    int status = -1;

    g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
    g_clear_pointer(&f->vms[2], vms_vm_free);
    VmsVm *clone = f->vms[2] = vms_vm_new(rdir);
    const char *const argv[] = { vms_test_cli(), "restore", prev, "--runtime-dir", rdir,
                                 "--", "-name", name, NULL };
    g_assert_true(vms_vm_spawn(clone, argv, &error));
    g_assert_no_error(error);
    g_assert_true(vms_vm_connect(clone, VMS_TEST_TIMEOUT_MS, &error));
    g_assert_no_error(error);
    g_autoptr(JsonObject) ret = save(clone, snap, "copy", "quit");
    g_assert_true(vms_vm_wait_exit(clone, VMS_TEST_TIMEOUT_MS, &status, &error));
    g_autofree char *got = recorded_argv(snap);
    g_assert_null(strstr(got, "clone-"));
    g_assert_null(strstr(got, "-incoming"));
    /* The same number of arguments each time (values name other paths). */
    if (prev_argv != NULL)
      g_assert_cmpuint(recorded_argc(snap), ==, recorded_argc(prev));
    g_free(prev_argv);
    prev_argv = g_steal_pointer(&got);
    g_free(prev);
    prev = g_steal_pointer(&snap);
  }
  g_assert_cmpuint(recorded_argc(prev), <=, recorded_argc(base) + 8);
  g_assert_nonnull(base_argv);
}

int
main(int argc, char **argv)
{
  int ret;

  vms_test_init(&argc, &argv);
  g_test_add("/integrity/resumed-during-save", Fixture, NULL, setup, test_resumed_during_save,
             teardown);
  g_test_add("/integrity/settings-put-back", Fixture, NULL, setup, test_settings_put_back,
             teardown);
  g_test_add("/integrity/restore-puts-back", Fixture, NULL, setup, test_restore_puts_back,
             teardown);
  g_test_add("/integrity/kill-at-every-step", Fixture, NULL, setup, test_kill_at_every_step,
             teardown);
  g_test_add("/integrity/enospc", Fixture, NULL, setup, test_enospc, teardown);
  g_test_add("/integrity/argv-does-not-grow", Fixture, NULL, setup, test_argv_does_not_grow,
             teardown);
  ret = g_test_run();
  base_snapshot_cleanup();
  return ret;
}
