/* vmsnap integration tests: test set-up, environment, and the CI rule that
 * nothing may be skipped (see harness.h). The rest of the harness is split by
 * job: harness-files.c, harness-vm.c, harness-guest.c, harness-conn.c. */
#include "harness.h"

#include <glib/gstdio.h>
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
vms_test_init_with_plugin(int *argc, char ***argv)
{
  vms_test_init(argc, argv);
  if (!vms_test_have_plugin()) {
    g_printerr("SKIP: no plugin at %s\n", vms_test_plugin());
    exit(77);
  }
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

/* QEMU binaries that get the ASan runtime preloaded through a wrapper. */
static const char *const sanitizer_wrapped[] = { "qemu-system-x86_64", "qemu-system-aarch64" };
static char *sanitizer_dir;

/* A directory of wrapper scripts, made once: each preloads the ASan
 * runtime and execs the real QEMU under its own name (exec -a), so the
 * command line QEMU records — and `vmsnap restore` runs again through
 * PATH — still names plain qemu-system-*. Only QEMU gets the preload:
 * qemu-img under a preloaded ASan hangs in its coroutines. */
static const char *
sanitizer_wrap_dir(void)
{
  const char *preload = g_getenv("VMSNAP_TEST_QEMU_PRELOAD");

  if (preload == NULL || preload[0] == '\0')
    return NULL;
  if (sanitizer_dir != NULL)
    return sanitizer_dir;
  sanitizer_dir = g_dir_make_tmp("vmsnap-asan-XXXXXX", NULL);
  g_assert_nonnull(sanitizer_dir);
  for (gsize i = 0; i < G_N_ELEMENTS(sanitizer_wrapped); i++) {
    g_autofree char *real = g_find_program_in_path(sanitizer_wrapped[i]);
    g_autofree char *path = g_build_filename(sanitizer_dir, sanitizer_wrapped[i], NULL);
    g_autofree char *script = NULL;
    if (real == NULL)
      continue;
    script = g_strdup_printf("#!/bin/bash\n"
                             "export LD_PRELOAD=%s${LD_PRELOAD:+:$LD_PRELOAD}\n"
                             "export ASAN_OPTIONS=\"${ASAN_OPTIONS:+$ASAN_OPTIONS:}detect_leaks=0\"\n"
                             "exec -a %s %s \"$@\"\n", preload, sanitizer_wrapped[i], real);
    g_assert_true(g_file_set_contents(path, script, -1, NULL));
    g_assert_cmpint(g_chmod(path, 0755), ==, 0);
  }
  if (vms_harness_temp_dirs != NULL)
    g_ptr_array_add(vms_harness_temp_dirs, g_strdup(sanitizer_dir));
  return sanitizer_dir;
}

const char *
vms_harness_sanitizer_program(const char *argv0)
{
  const char *dir = sanitizer_wrap_dir();
  static char *paths[G_N_ELEMENTS(sanitizer_wrapped)];

  for (gsize i = 0; dir != NULL && i < G_N_ELEMENTS(sanitizer_wrapped); i++) {
    if (!g_str_equal(argv0, sanitizer_wrapped[i]))
      continue;
    if (paths[i] == NULL)
      paths[i] = g_build_filename(dir, sanitizer_wrapped[i], NULL);
    if (g_file_test(paths[i], G_FILE_TEST_IS_EXECUTABLE))
      return paths[i];
  }
  return argv0;
}

void
vms_harness_sanitizer_env(GSubprocessLauncher *launcher)
{
  const char *dir = sanitizer_wrap_dir();
  g_autofree char *path = NULL;

  if (dir == NULL)
    return;
  path = g_strdup_printf("%s:%s", dir, vms_harness_env_or("PATH", "/usr/bin:/bin"));
  g_subprocess_launcher_setenv(launcher, "PATH", path, TRUE);
}
