/* snapshot-cancel (doc/spec.md section 11): a running save stops and
 * commits nothing, the VM runs on; Ctrl-C on `vmsnap save` sends it, and
 * on a terminal the CLI shows the progress line (rate, ETA, guest paused)
 * first. The save step hook (VMSNAP_TEST_SAVE_HOOK=resume:wait=FILE,
 * save-guard.c) holds every save before its resume step — after the memory
 * copy — until the test removes FILE: the cancel lands mid-save, then the
 * save goes on to its next check point, without racing a timer. */
#include "plugin-fixture.h"

#include <fcntl.h>
#include <glib/gstdio.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char *hook_file; /* the save waits before 'resume' while it exists */

/* Waits until a save holds at the hook (it creates the file). */
static void
wait_hooked(void)
{
  for (int i = 0; i < 2000 && !g_file_test(hook_file, G_FILE_TEST_EXISTS); i++)
    g_usleep(10 * 1000);
  g_assert_true(g_file_test(hook_file, G_FILE_TEST_EXISTS));
}

static void
setup(Fixture *f, gconstpointer data)
{
  plugin_vm_setup(f, "cancel");
}

static void
assert_nothing_committed(Fixture *f, const char *snap)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *manifest = g_build_filename(snap, "manifest.bin", NULL);
  g_autofree char *memory = g_build_filename(snap, "memory.bin", NULL);
  g_autoptr(JsonNode) status = NULL;
  g_autoptr(JsonNode) again = NULL;

  g_assert_false(g_file_test(manifest, G_FILE_TEST_EXISTS));
  g_assert_false(g_file_test(memory, G_FILE_TEST_EXISTS));
  status = vms_test_qmp_execute(f->vm->qmp, "query-status", NULL, &error);
  g_assert_no_error(error);
  g_assert_true(json_object_get_boolean_member(json_node_get_object(status), "running"));
  /* the slot is free again: nothing to cancel */
  again = vms_test_qmp_execute(f->ctl, "snapshot-cancel", NULL, &error);
  g_assert_no_error(error);
  g_assert_false(json_object_get_boolean_member(json_node_get_object(again), "cancelled"));
}

static void
test_qmp_cancel(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ready = vms_test_query_ready(f->ctl);
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *cmd = g_strdup_printf(
      "{\"execute\": \"snapshot-save\", \"arguments\": {\"dir\": \"%s\", \"memory\": \"copy\", "
      "\"then\": \"resume\"}, \"id\": \"s\"}", snap);
  g_autoptr(VmsTestQmp) saver = vms_test_qmp_connect(f->vm->control_path, VMS_TEST_TIMEOUT_MS,
                                                     &error);
  g_autoptr(JsonObject) reply = NULL, failed = NULL, progress = NULL;
  g_autoptr(JsonNode) ret = NULL;

  g_assert_no_error(error);
  g_assert_true(vms_test_qmp_send_raw(saver, cmd, &error));
  /* the memory is copied (the guest paused meanwhile), then the save holds */
  progress = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_PROGRESS", VMS_TEST_TIMEOUT_MS,
                                     &error);
  g_assert_no_error(error);
  g_assert_false(json_object_get_boolean_member(json_object_get_object_member(progress, "data"),
                                                "running"));
  ret = vms_test_qmp_execute(f->ctl, "snapshot-cancel", NULL, &error);
  g_assert_no_error(error);
  g_assert_true(json_object_get_boolean_member(json_node_get_object(ret), "cancelled"));
  wait_hooked();
  g_assert_cmpint(g_unlink(hook_file), ==, 0); /* the save goes on: to the check point */
  reply = vms_test_qmp_read_reply(saver, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_test_message("%s", json_object_get_string_member(json_object_get_object_member(reply, "error"),
                                                     "desc"));
  g_assert_nonnull(strstr(json_object_get_string_member(
                              json_object_get_object_member(reply, "error"), "desc"),
                          "cancelled by snapshot-cancel"));
  g_assert_nonnull(strstr(json_object_get_string_member(
                              json_object_get_object_member(reply, "error"), "desc"),
                          "at step 'resume'"));
  failed = vms_test_qmp_wait_event(f->ctl, "VMSNAP_SNAPSHOT_FAILED", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  assert_nothing_committed(f, snap);
}

/* Reads the pty master until @text shows up (or 20 s pass). */
static gboolean
read_pty_until(int fd, GString *out, const char *text)
{
  gint64 deadline = g_get_monotonic_time() + 20 * G_USEC_PER_SEC;

  while (strstr(out->str, text) == NULL && g_get_monotonic_time() < deadline) {
    char buf[4096];
    gssize n = read(fd, buf, sizeof(buf));
    if (n > 0)
      g_string_append_len(out, buf, n);
    else
      g_usleep(10 * 1000);
  }
  return strstr(out->str, text) != NULL;
}

static void
test_cli_ctrl_c(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonObject) ready = vms_test_query_ready(f->ctl);
  g_autofree char *snap = g_build_filename(f->dir, "cli-snap", NULL);
  g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_NONE);
  g_autoptr(GSubprocess) p = NULL;
  g_autoptr(GString) out = g_string_new(NULL);
  int master = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
  int slave;

  g_assert_cmpint(master, >=, 0);
  g_assert_cmpint(grantpt(master), ==, 0);
  g_assert_cmpint(unlockpt(master), ==, 0);
  slave = open(ptsname(master), O_RDWR | O_NOCTTY | O_CLOEXEC);
  g_assert_cmpint(slave, >=, 0);
  fcntl(master, F_SETFL, fcntl(master, F_GETFL) | O_NONBLOCK);
  g_subprocess_launcher_take_stderr_fd(l, slave);
  p = g_subprocess_launcher_spawn(l, &error, vms_test_cli(), "save", "--control",
                                  f->vm->control_path, "--memory", "copy", snap, NULL);
  g_assert_no_error(error);
  /* the terminal shows the progress of the copy, then the save holds */
  g_assert_true(read_pty_until(master, out, "guest paused"));
  g_assert_nonnull(strstr(out->str, "100%"));
  g_assert_nonnull(strstr(out->str, "ETA"));
  wait_hooked();
  g_subprocess_send_signal(p, SIGINT);
  g_assert_true(read_pty_until(master, out, "the save stops at its next step"));
  g_assert_cmpint(g_unlink(hook_file), ==, 0);
  g_assert_true(g_subprocess_wait(p, NULL, &error));
  read_pty_until(master, out, "nothing was committed");
  g_test_message("%s", out->str);
  g_assert_cmpint(g_subprocess_get_exit_status(p), ==, 1);
  g_assert_nonnull(strstr(out->str, "cancelling the save"));
  g_assert_nonnull(strstr(out->str, "vmsnap: error: "));
  g_assert_nonnull(strstr(out->str, "cancelled by snapshot-cancel"));
  g_assert_nonnull(strstr(out->str, "at step 'resume'"));
  close(master);
  assert_nothing_committed(f, snap);
}

int
main(int argc, char **argv)
{
  g_autofree char *hook = NULL;

  hook_file = g_strdup_printf("%s/vmsnap-test-cancel-%d.hook", g_get_tmp_dir(), (int)getpid());
  hook = g_strdup_printf("resume:wait=%s", hook_file);
  g_setenv("VMSNAP_TEST_SAVE_HOOK", hook, TRUE); /* QEMU inherits it */
  vms_test_init_with_plugin(&argc, &argv);
  g_test_add("/cancel/qmp", Fixture, NULL, setup, test_qmp_cancel, teardown);
  g_test_add("/cancel/cli-ctrl-c", Fixture, NULL, setup, test_cli_ctrl_c, teardown);
  return g_test_run();
}
