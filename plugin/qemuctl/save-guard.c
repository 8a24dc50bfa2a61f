/* vmsnap plugin: a save's guard against someone else's resume, and the
 * test-only step hook (save-guard.h). */
#include "save-guard.h"

#include <errno.h>
#include <signal.h>
#include <string.h>
#include <unistd.h>

#include "error.h"

#define QMP_TIMEOUT_MS 30000
#define HOOK_WAIT_US (60 * G_USEC_PER_SEC)

gboolean
vms_save_guard_not_resumed(VmsQmpClient *qmp, guint64 since_seq, GError **error)
{
  g_autoptr(JsonObject) resume = vms_qmp_client_wait_event(qmp, since_seq, "RESUME", NULL, NULL,
                                                           0, NULL);
  g_autoptr(JsonNode) status = NULL;

  if (resume == NULL) {
    status = vms_qmp_client_execute(qmp, "query-status", NULL, -1, QMP_TIMEOUT_MS, error);
    if (status == NULL)
      return FALSE;
    if (!json_object_get_boolean_member_with_default(json_node_get_object(status), "running",
                                                     FALSE))
      return TRUE;
  }
  g_set_error_literal(error, VMS_ERROR, VMS_ERROR_RESUMED,
                      "the VM was resumed by someone else while the save held it stopped (a "
                      "`cont` on QEMU's monitor, or `virsh resume`): the guest may have changed "
                      "what was being captured, so nothing was committed");
  return FALSE;
}

static void
hook_wait(const char *file)
{
  gint64 deadline = g_get_monotonic_time() + HOOK_WAIT_US;

  if (!g_file_set_contents(file, "waiting\n", -1, NULL)) {
    g_warning("VMSNAP_TEST_SAVE_HOOK: cannot create %s", file);
    return;
  }
  while (g_file_test(file, G_FILE_TEST_EXISTS) && g_get_monotonic_time() < deadline)
    g_usleep(2000);
}

void
vms_save_test_hook(const char *step)
{
  const char *hook = g_getenv("VMSNAP_TEST_SAVE_HOOK");
  gsize n = strlen(step);

  if (hook == NULL || strncmp(hook, step, n) != 0 || hook[n] != ':')
    return;
  if (strcmp(hook + n + 1, "kill") == 0) {
    g_message("VMSNAP_TEST_SAVE_HOOK: killing QEMU at step '%s'", step);
    kill(getpid(), SIGKILL);
  } else if (g_str_has_prefix(hook + n + 1, "wait=")) {
    hook_wait(hook + n + 1 + strlen("wait="));
  }
}
