/* The test guest and the harness, without the plugin: the guest boots,
 * counts, keeps its pattern, obeys its commands, and the harness reaps it. */
#include "harness.h"

#include <string.h>

typedef struct {
  char *dir;
  VmsVm *vm;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;

  f->dir = vms_test_make_dir("guest");
  f->vm = vms_vm_new(f->dir);
  f->vm->with_plugin = FALSE;
  g_assert_true(vms_vm_start(f->vm, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_ready(f->vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
}

static void
teardown(Fixture *f, gconstpointer data)
{
  g_clear_pointer(&f->vm, vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

static void
test_boot_and_count(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  VmsGuestState st;
  guint64 c1 = 0;

  g_assert_true(vms_vm_read_state(f->vm, &st, &error));
  g_assert_no_error(error);
  g_assert_cmphex(st.magic, ==, VMS_GUEST_MAGIC);
  g_assert_cmpuint(st.boot_id, !=, 0);
  /* 64 MiB of RAM: scratch from 8 MiB to just below 64 MiB. */
  g_assert_cmpuint(st.scratch_pages, >, (56u << 20) / 4096 - 64);
  g_assert_cmpuint(st.scratch_pages, <=, (56u << 20) / 4096);
  g_assert_true(vms_vm_read_counter(f->vm, &c1, &error));
  g_assert_true(vms_vm_wait_counter_above(f->vm, c1 + 1000000, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);

  g_autofree char *boot_line = g_strdup_printf(VMS_GUEST_PREFIX "ready 0x%" G_GINT64_MODIFIER "x",
                                               (guint64)st.boot_id);
  g_assert_true(vms_vm_wait_debugcon(f->vm, boot_line, 0, 1000, NULL, &error));
  g_assert_no_error(error);
}

static void
test_pattern(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GBytes) b = vms_vm_read_phys(f->vm, VMS_GUEST_PATTERN_ADDR, VMS_GUEST_PATTERN_SIZE, &error);
  gsize len = 0;

  g_assert_no_error(error);
  const guint32 *w = g_bytes_get_data(b, &len);
  g_assert_cmpuint(len, ==, VMS_GUEST_PATTERN_SIZE);
  for (gsize i = 0; i < len / 4; i++) {
    if (GUINT32_FROM_LE(w[i]) != VMS_GUEST_PATTERN_WORD(VMS_GUEST_PATTERN_ADDR + i * 4))
      g_error("pattern differs at 0x%" G_GSIZE_MODIFIER "x", VMS_GUEST_PATTERN_ADDR + i * 4);
  }
  g_autofree char *r = vms_vm_guest_command(f->vm, "K", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(r, ==, "ok K");
}

static void
assert_command(VmsVm *vm, const char *command, const char *want)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *r = vms_vm_guest_command(vm, command, VMS_TEST_TIMEOUT_MS, &error);

  g_assert_no_error(error);
  g_assert_cmpstr(r, ==, want);
}

static void
test_commands(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;

  assert_command(f->vm, "W 3 5 171", "ok W 3 5 171");
  assert_command(f->vm, "C 3 5 0xab", "ok C 3 5 171");
  assert_command(f->vm, "C 3 6 171", "bad C 8");
  assert_command(f->vm, "Z 4 2", "ok Z 4 2");
  assert_command(f->vm, "C 4 2 0", "ok C 4 2 0");
  assert_command(f->vm, "C 3 1 171", "ok C 3 1 171");
  assert_command(f->vm, "W 0 1 256", "err bad arguments");
  assert_command(f->vm, "Q", "err unknown command");

  /* The guest wrote exactly what it was told, seen from outside. */
  g_autoptr(GBytes) b = vms_vm_read_phys(f->vm, VMS_GUEST_SCRATCH_ADDR, 10 * 4096, &error);
  g_assert_no_error(error);
  const guint8 *p = g_bytes_get_data(b, NULL);
  for (gsize i = 0; i < 10 * 4096; i++) {
    gsize page = i / 4096;
    guint8 want = (page == 3 || page == 6 || page == 7) ? 0xab : 0;
    if (p[i] != want)
      g_error("scratch byte %" G_GSIZE_FORMAT " is 0x%x, want 0x%x", i, p[i], want);
  }
  g_autofree char *r = vms_vm_guest_command(f->vm, "P", VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_true(g_str_has_prefix(r, "ok P 0x"));
  g_assert_true(vms_vm_wait_debugcon(f->vm, VMS_GUEST_PREFIX "ok Z 4 2", 0, 1000, NULL, &error));
  g_assert_no_error(error);
}

static void
test_out_of_range(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  VmsGuestState st;

  g_assert_true(vms_vm_read_state(f->vm, &st, &error));
  g_autofree char *last = g_strdup_printf("W %u 1 1", st.scratch_pages - 1);
  g_autofree char *last_ok = g_strdup_printf("ok W %u 1 1", st.scratch_pages - 1);
  g_autofree char *beyond = g_strdup_printf("W %u 1 1", st.scratch_pages);
  assert_command(f->vm, last, last_ok);
  g_autofree char *r = vms_vm_guest_command(f->vm, beyond, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
  g_assert_true(g_str_has_prefix(r, "err pages out of range"));
}

static void
test_kill_reaps(void)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = vms_test_make_dir("guest-kill");
  g_autoptr(VmsVm) vm = vms_vm_new(dir);
  int status = 0;

  vm->with_plugin = FALSE;
  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, "quit", NULL, &error);
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_exit(vm, VMS_TEST_TIMEOUT_MS, &status, &error));
  g_assert_no_error(error);
  g_assert_cmpint(status, ==, 0);

  /* A QEMU that cannot start is reported with its stderr. */
  g_autoptr(VmsVm) bad = vms_vm_new(dir);
  bad->with_plugin = FALSE;
  g_ptr_array_add(bad->extra_args, g_strdup("-no-such-option"));
  g_assert_false(vms_vm_start(bad, &error));
  g_assert_nonnull(error);
  g_assert_nonnull(strstr(error->message, "no-such-option"));
  vms_test_rm_rf(dir);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/guest/boot-and-count", Fixture, NULL, setup, test_boot_and_count, teardown);
  g_test_add("/guest/pattern", Fixture, NULL, setup, test_pattern, teardown);
  g_test_add("/guest/commands", Fixture, NULL, setup, test_commands, teardown);
  g_test_add("/guest/out-of-range", Fixture, NULL, setup, test_out_of_range, teardown);
  g_test_add_func("/guest/kill-reaps", test_kill_reaps);
  return g_test_run();
}
