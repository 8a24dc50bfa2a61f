/* The RAM overlay (doc/diff.md, "The RAM overlay"): `vmsnap restore` maps
 * an empty placeholder share=on for QEMU and the plugin maps the
 * snapshot's memory copy-on-write over it, so QEMU's next migration skips
 * the guest RAM while pagemap still finds the written pages. Also the
 * fallback to the private (share=off) mapping, its log line, the plugin's
 * own refusals and warm (--paused) clones. */
#include "diff-fixture.h"

#include <sys/stat.h>

/* `env @env vmsnap restore @snap --runtime-dir @f->dir/@name [--paused]`,
 * started (and, unless @paused, running). @env: "NAME=VALUE" or NULL. */
static VmsVm *
restore_env(Fixture *f, guint slot, const char *name, const char *snap, gboolean paused,
            const char *env)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  VmsVm *vm = f->vms[slot] = vms_vm_new(dir);
  const char *const argv[] = { "env", env != NULL ? env : "VMSNAP_TEST_NOTHING=1", vms_test_cli(),
                               "restore", snap, "--runtime-dir", dir,
                               paused ? "--paused" : NULL, NULL };
  g_assert_true(vms_vm_spawn(vm, argv, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_connect(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  if (!paused)
    wait_running(vm);
  return vm;
}

static VmsVm *
restore_with(Fixture *f, guint slot, const char *name, const char *snap, gboolean paused)
{
  return restore_env(f, slot, name, snap, paused, NULL);
}

/* The RAM total of the save's live migration, from the plugin's debug
 * line (G_MESSAGES_DEBUG=vmsnap, set in main): query-migrate once the
 * migration completed, before x-ignore-shared is turned off again. */
static gint64
migrated_ram_total(VmsVm *vm)
{
  g_autofree char *log = vms_vm_stderr(vm);
  const char *line = strstr(log, "query-migrate after the live migration");
  const char *total = line != NULL ? strstr(line, "\"ram\":{\"total\":") : NULL;

  g_assert_nonnull(total);
  return g_ascii_strtoll(total + strlen("\"ram\":{\"total\":"), NULL, 10);
}

/* The guest memory as the plugin sees it after an overlay restore: the
 * snapshot's memory file, private; the placeholder's name is gone. */
static void
assert_overlay(VmsVm *vm, const char *mem)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_autoptr(JsonObject) q = vms_test_query_ready(ctl);
  JsonObject *m = json_object_get_object_member(q, "memory");
  g_autofree char *placeholder = g_build_filename(vm->dir, "guest-ram.placeholder", NULL);
  g_autofree char *log = vms_vm_stderr(vm);

  g_assert_cmpstr(json_object_get_string_member(m, "path"), ==, mem);
  g_assert_false(json_object_get_boolean_member(m, "shared"));
  g_assert_false(g_file_test(placeholder, G_FILE_TEST_EXISTS));
  g_assert_null(strstr(log, "not as an overlay"));
}

/* A clone restored with the overlay writes pages; its diff holds them (and
 * only them), QEMU's stream had no guest RAM in it, and the diff restores
 * (again with the overlay) to what the guest wrote. */
static void
test_diff(Fixture *f, gconstpointer data)
{
  const char *base = base_snapshot();
  g_autofree char *base_mem = g_build_filename(base, "memory.bin", NULL);
  g_autofree char *before = sha_hex_of(base_mem);
  g_autofree char *d1 = g_build_filename(f->dir, "d1", NULL);

  VmsVm *vm = restore_with(f, 0, "c1", base, FALSE);
  assert_overlay(vm, base_mem);
  guest_cmd(vm, "C 100 8 90"); /* the snapshot's pages, read through the overlay */
  guest_cmd(vm, "W 300 37 66");
  g_autoptr(JsonObject) r = save(vm, d1, "diff", "resume");
  g_autoptr(VmsSnapshot) s = assert_diff_manifest(d1, base, r);
  /* QEMU skipped the guest RAM: its RAM total is the small blocks only. */
  g_assert_cmpint(migrated_ram_total(vm), <, (gint64)MEM_MIB << 20);
  g_assert_cmpint(json_object_get_int_member(r, "state-bytes"), <, 1 << 20);
  g_autoptr(GArray) list = read_map(d1, NULL);
  for (guint p = 300; p < 337; p++)
    g_assert_true(map_has_page(list, scratch(p)));
  g_assert_cmpuint(vms_extents_total(list), <=, (37 + GUEST_OWN_PAGES + SLACK_PAGES) * PAGE);
  guest_cmd(vm, "K");
  g_autofree char *after = sha_hex_of(base_mem);
  g_assert_cmpstr(after, ==, before); /* the snapshot never changed */

  VmsVm *c2 = restore_with(f, 1, "c2", d1, FALSE);
  g_autofree char *flat_mem = g_strconcat(d1, ".flat/memory.bin", NULL);
  assert_overlay(c2, flat_mem);
  guest_cmd(c2, "C 300 37 66");
  guest_cmd(c2, "C 100 8 90");
  guest_cmd(c2, "K");
}

/* A diff written while the guest runs (diff-precopy.c; the threshold
 * lowered for the 64 MiB guest): then=pause, so the state page the guest
 * kept writing during the pre-copy must hold the paused VM's counter —
 * only the copy made with the VM stopped has it. */
static void
test_precopy(Fixture *f, gconstpointer data)
{
  const char *base = base_snapshot();
  g_autofree char *d1 = g_build_filename(f->dir, "d1", NULL);
  g_autofree char *flat = g_build_filename(f->dir, "d1.flat", NULL);
  g_autofree char *flat_mem = g_build_filename(flat, "memory.bin", NULL);

  VmsVm *vm = restore_env(f, 0, "c1", base, FALSE, "VMSNAP_TEST_PRECOPY_MIN_BYTES=4096");
  guest_cmd(vm, "W 300 37 66");
  guest_cmd(vm, "Z 100 2");
  g_autoptr(JsonObject) r = save(vm, d1, "diff", "pause");
  g_autoptr(VmsSnapshot) s = assert_diff_manifest(d1, base, r);
  g_autofree char *log = vms_vm_stderr(vm);
  g_assert_nonnull(strstr(log, "written while the guest runs"));
  g_assert_nonnull(strstr(log, "written again with the VM stopped"));
  guint64 paused = guest_counter(vm);
  flatten(d1, flat);
  g_assert_cmpuint(file_u64(flat_mem, VMS_GUEST_COUNTER_ADDR), ==, paused);
  for (guint p = 300; p < 337; p++)
    assert_page_filled(flat_mem, scratch(p), 66);
  assert_page_filled(flat_mem, scratch(100), 0);
  assert_page_filled(flat_mem, scratch(102), 90);
  g_autoptr(GArray) list = read_map(d1, NULL);
  g_assert_cmpuint(vms_extents_total(list), <=, (39 + GUEST_OWN_PAGES + SLACK_PAGES) * PAGE);
}

/* A paused clone waits with its state loaded; `cont` starts it where the
 * snapshot was. */
static void
test_paused(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  VmsVm *vm = restore_with(f, 0, "warm", base, TRUE);
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &error);
  g_autoptr(JsonObject) q = vms_test_query_ready(ctl);

  g_assert_nonnull(json_object_get_string_member(q, "restored-from"));
  g_assert_false(json_object_get_boolean_member(q, "running"));
  guint64 c0 = guest_counter(vm);
  g_assert_cmpuint(c0, ==, base_counter);
  g_usleep(200000);
  g_assert_cmpuint(guest_counter(vm), ==, c0); /* not running */
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, "cont", NULL, &error);
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_counter_above(vm, c0, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  guest_cmd(vm, "C 100 8 90");
}

static int
cli_dry_run(Fixture *f, const char *const *extra, const char *ram, char **ret_out, char **ret_err)
{
  g_autofree char *rdir = g_build_filename(f->dir, "dry", NULL);
  g_autoptr(GPtrArray) args = g_ptr_array_new();
  g_autoptr(GError) error = NULL;
  int status = -1;

  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  const char *const head[] = { vms_test_cli(), "restore", base_snapshot(), "--dry-run",
                               "--runtime-dir", rdir, "--ram", ram };
  for (gsize i = 0; i < G_N_ELEMENTS(head); i++)
    g_ptr_array_add(args, (gpointer)head[i]);
  g_ptr_array_add(args, "--");
  for (gsize i = 0; extra[i] != NULL; i++)
    g_ptr_array_add(args, (gpointer)extra[i]);
  g_ptr_array_add(args, NULL);
  g_assert_true(g_spawn_sync(NULL, (char **)args->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL,
                             ret_out, ret_err, &status, &error));
  g_assert_no_error(error);
  return g_spawn_check_wait_status(status, NULL) ? 0 : WEXITSTATUS(status);
}

/* The command line of each mode, and the fallback: a vhost-user device
 * (its back end would map the placeholder) gets the private mapping and
 * one line saying why; --ram overlay refuses instead. */
static void
test_fallback(Fixture *f, gconstpointer data)
{
  g_autofree char *out = NULL, *err = NULL;
  g_autofree char *base_mem = g_build_filename(base_snapshot(), "memory.bin", NULL);
  g_autofree char *overlay_arg = g_strdup_printf("overlay=%s", base_mem);
  g_autofree char *private_arg = g_strdup_printf("mem-path=%s,share=off", base_mem);
  const char *const none[] = { NULL };
  const char *const vhost[] = { "-chardev", "socket,id=vu,path=/nonexistent/vu.sock",
                                "-device", "vhost-user-blk-pci,chardev=vu", NULL };

  g_assert_cmpint(cli_dry_run(f, none, "auto", &out, &err), ==, 0);
  g_assert_nonnull(strstr(out, "guest-ram.placeholder,share=on"));
  g_assert_nonnull(strstr(out, overlay_arg));
  g_clear_pointer(&out, g_free);
  g_clear_pointer(&err, g_free);

  g_assert_cmpint(cli_dry_run(f, vhost, "auto", &out, &err), ==, 0);
  g_assert_nonnull(strstr(out, private_arg));
  g_assert_null(strstr(out, "overlay="));
  g_assert_nonnull(strstr(err, "not as an overlay"));
  g_assert_nonnull(strstr(err, "vhost-user-blk-pci"));
  g_clear_pointer(&out, g_free);
  g_clear_pointer(&err, g_free);

  g_assert_cmpint(cli_dry_run(f, vhost, "overlay", &out, &err), ==, 1);
  g_assert_nonnull(strstr(err, "--ram overlay"));
  g_clear_pointer(&out, g_free);
  g_clear_pointer(&err, g_free);

  g_assert_cmpint(cli_dry_run(f, none, "private", &out, &err), ==, 0);
  g_assert_nonnull(strstr(out, private_arg));
  g_assert_null(strstr(err, "not as an overlay"));
}

/* The plugin's own checks: overlay= over a backend that is not share=on,
 * or over a placeholder that holds data, stops QEMU with one line; the
 * placeholder is left as it was. */
static void
test_plugin_refuses(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  const char *base = base_snapshot();
  g_autofree char *base_mem = g_build_filename(base, "memory.bin", NULL);

  for (guint i = 0; i < 2; i++) {
    g_autofree char *dir = g_strdup_printf("%s/refused-%u", f->dir, i);
    g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
    VmsVm *vm = f->vms[i] = vms_vm_new(dir);
    vm->mem_mib = MEM_MIB;
    vm->incoming_defer = TRUE;
    vm->share = i == 1;
    g_autofree char *data_file = g_build_filename(dir, "data.ram", NULL);
    g_assert_true(g_file_set_contents(data_file, "not empty", -1, NULL));
    g_assert_cmpint(truncate(data_file, (off_t)MEM_MIB << 20), ==, 0); /* the size QEMU wants */
    g_free(vm->mem_path);
    vm->mem_path = g_strdup(i == 0 ? base_mem : data_file);
    vm->plugin_extra = g_strdup_printf("restore=%s,overlay=%s", base, base_mem);
    g_autoptr(GPtrArray) argv = vms_vm_build_argv(vm);
    g_assert_true(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error));
    g_assert_no_error(error);
    int status = -1;
    g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
    g_assert_no_error(error);
    g_assert_cmpint(status, !=, 0);
    g_autofree char *log = vms_vm_stderr(vm);
    g_assert_nonnull(strstr(log, i == 0 ? "share=on" : "is not an empty regular file"));
    g_autofree char *left = NULL;
    g_assert_true(g_file_get_contents(data_file, &left, NULL, NULL));
    g_assert_true(g_str_has_prefix(left, "not empty"));
  }
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_setenv("G_MESSAGES_DEBUG", "vmsnap", TRUE); /* QEMU's plugin logs its migration */
  g_test_add("/overlay/diff", Fixture, NULL, setup, test_diff, teardown);
  g_test_add("/overlay/precopy", Fixture, NULL, setup, test_precopy, teardown);
  g_test_add("/overlay/paused", Fixture, NULL, setup, test_paused, teardown);
  g_test_add("/overlay/fallback", Fixture, NULL, setup, test_fallback, teardown);
  g_test_add("/overlay/plugin-refuses", Fixture, NULL, setup, test_plugin_refuses, teardown);
  int rc = g_test_run();
  if (base_root != NULL && g_getenv("VMSNAP_TEST_KEEP") == NULL)
    vms_test_rm_rf(base_root);
  return rc;
}
