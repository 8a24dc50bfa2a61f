/* vmsnap integration tests: the fixture test-plugin.c and test-save.c
 * share — one VM with the plugin (2 vCPUs, MEM_MIB of guest RAM in a
 * share=on memory file), booted to "ready", with a client on the plugin's
 * control socket. Test code: failures abort via g_assert. */
#pragma once

#include "harness.h"

#define MEM_MIB 64u

typedef struct {
  char *dir;
  VmsVm *vm;
  VmsTestQmp *ctl;
} Fixture;

/* Starts the VM in a new directory named after @name and connects @f->ctl. */
static G_GNUC_UNUSED void
plugin_vm_setup(Fixture *f, const char *name)
{
  g_autoptr(GError) error = NULL;

  f->dir = vms_test_make_dir(name);
  f->vm = vms_vm_new(f->dir);
  f->vm->smp = 2;
  f->vm->mem_mib = MEM_MIB;
  g_assert_true(vms_vm_start(f->vm, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_wait_ready(f->vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  f->ctl = vms_test_qmp_connect(f->vm->control_path, VMS_TEST_TIMEOUT_MS, &error);
  g_assert_no_error(error);
}

static G_GNUC_UNUSED void
teardown(Fixture *f, gconstpointer data)
{
  g_clear_pointer(&f->ctl, vms_test_qmp_free);
  g_clear_pointer(&f->vm, vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}
