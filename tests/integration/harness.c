/* vmsnap integration tests: test set-up, environment, and the CI rule that
 * nothing may be skipped (see harness.h). The rest of the harness is split by
 * job: harness-files.c, harness-vm.c, harness-guest.c, harness-conn.c. */
#include "harness.h"
#include "harness-private.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <gio/gunixoutputstream.h>

GPtrArray *vms_harness_live_procs; /* see harness-private.h */
GPtrArray *vms_harness_temp_dirs;

const char *
vms_harness_env_or(const char *name, const char *fallback)
{
  const char *v = g_getenv(name);
  return v != NULL && v[0] != '\0' ? v : fallback;
}

const char *
vms_test_qemu(void)
{
  return vms_harness_env_or("VMSNAP_QEMU", "qemu-system-x86_64");
}

const char *
vms_test_arch(void)
{
  const char *arch = vms_harness_env_or("VMSNAP_TEST_ARCH", "x86_64");

  if (!g_str_equal(arch, "x86_64") && !g_str_equal(arch, "aarch64"))
    g_error("VMSNAP_TEST_ARCH=%s: expected x86_64 or aarch64", arch);
  return arch;
}

const char *
vms_test_plugin(void)
{
  return vms_harness_env_or("VMSNAP_PLUGIN", "libvmsnap.so");
}

const char *
vms_test_guest(void)
{
  return vms_harness_env_or("VMSNAP_GUEST", "guest.elf");
}

const char *
vms_test_cli(void)
{
  return vms_harness_env_or("VMSNAP_CLI", "vmsnap");
}

gboolean
vms_test_have_plugin(void)
{
  return g_file_test(vms_test_plugin(), G_FILE_TEST_IS_REGULAR);
}

static void
safety_net(void)
{
  for (guint i = 0; vms_harness_live_procs != NULL && i < vms_harness_live_procs->len; i++)
    g_subprocess_force_exit(vms_harness_live_procs->pdata[i]);
  if (g_getenv("VMSNAP_TEST_KEEP") == NULL) {
    for (guint i = 0; vms_harness_temp_dirs != NULL && i < vms_harness_temp_dirs->len; i++)
      vms_test_rm_rf(vms_harness_temp_dirs->pdata[i]);
  }
}

void
vms_test_init(int *argc, char ***argv)
{
  g_test_init(argc, argv, NULL);
  vms_harness_init();
}

void
vms_harness_init(void)
{
  g_autofree char *qemu = g_find_program_in_path(vms_test_qemu());
  if (qemu == NULL) {
    g_printerr("SKIP: %s not found\n", vms_test_qemu());
    exit(77);
  }
  vms_harness_live_procs = g_ptr_array_new();
  vms_harness_temp_dirs = g_ptr_array_new_with_free_func(g_free);
  atexit(safety_net);
}


JsonObject *
vms_test_query_ready(VmsTestQmp *ctl)
{
  for (int i = 0; i < 500; i++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(JsonNode) ret = vms_test_qmp_execute(ctl, "query-vmsnap", NULL, &error);
    JsonObject *o;

    g_assert_no_error(error);
    o = json_node_get_object(ret);
    if (!json_object_get_null_member(o, "memory"))
      return json_object_ref(o);
    g_usleep(10 * 1000);
  }
  g_error("the plugin never found the guest memory");
}

gboolean
vms_harness_said(gboolean ok, GError **error, const char *fn)
{
  if (!ok)
    g_printerr("harness: %s: %s\n", fn,
               error != NULL && *error != NULL ? (*error)->message : "(no error message)");
  return ok;
}

void
vms_harness_sanitizer_env(GSubprocessLauncher *launcher)
{
  const char *preload = g_getenv("VMSNAP_TEST_QEMU_PRELOAD");
  const char *asan = g_getenv("ASAN_OPTIONS");
  g_autofree char *opts = NULL;

  if (preload == NULL || preload[0] == '\0')
    return;
  g_subprocess_launcher_setenv(launcher, "LD_PRELOAD", preload, TRUE);
  opts = g_strdup_printf("%s%sdetect_leaks=0", asan != NULL ? asan : "",
                         asan != NULL && asan[0] != '\0' ? ":" : "");
  g_subprocess_launcher_setenv(launcher, "ASAN_OPTIONS", opts, TRUE);
}
