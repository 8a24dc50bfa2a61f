/* A discard in a share=off clone does not reach the snapshot
 * (plugin/qemu/ram-private.h, doc/restore.md): the Linux guest's
 * virtio-balloon driver inflates in a clone restored with --ram private,
 * which makes QEMU discard the ballooned guest pages. QEMU 7.2 would punch
 * those holes into the snapshot's memory.bin through its read-write
 * descriptor (its data then reads as zeros and its chunk digests fail);
 * with the plugin's read-only one the snapshot's bytes stay the same, and
 * the clone runs on. (The file's allocated size may still grow: reading a
 * hole of a tmpfs file through a mapping allocates a zero page in it.) */
#include "disk-fixture.h"


#define GUEST_MIB 256
#define BALLOON_TARGET_MIB 160

/* query-balloon's "actual" in MiB. */
static guint64
balloon_actual_mib(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, "query-balloon", NULL, &error);

  g_assert_no_error(error);
  return (guint64)json_object_get_int_member(json_node_get_object(ret), "actual") >> 20;
}

static void
test_balloon_private(DiskFixture *f, gconstpointer data)
{
  if (f->guest == NULL)
    return;
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = g_build_filename(f->dir, "snap", NULL);
  g_autofree char *mem = g_build_filename(snap, "memory.bin", NULL);
  const char *const private_ram[] = { "--ram", "private", NULL };
  const char *const verify[] = { "verify", snap, NULL };
  int status = 0;

  VmsVm *vm = disk_prepare(f, 0, "orig", FALSE);
  g_ptr_array_add(vm->extra_args, g_strdup("-device"));
  g_ptr_array_add(vm->extra_args, g_strdup("virtio-balloon-pci,id=balloon0"));
  disk_start(vm);
  disk_start_writer(vm, "orig", 5);
  g_autoptr(JsonObject) saved = disk_save(vm, snap, "copy", "quit");
  g_assert_true(vms_vm_wait_exit(vm, 60000, &status, &error));
  g_autofree char *before = vms_test_file_sha256(mem, &error);
  g_assert_no_error(error);

  VmsVm *clone = disk_clone(f, 1, "clone", snap, private_ram);
  disk_tag_and_wait(clone, "clone", 3);
  g_assert_cmpuint(balloon_actual_mib(clone), ==, GUEST_MIB);
  g_autoptr(JsonNode) ret = vms_test_qmp_executef(clone->qmp, "balloon", &error, "{\"value\": %d}",
                                                  BALLOON_TARGET_MIB << 20);
  g_assert_no_error(error);
  gint64 deadline = g_get_monotonic_time() + 120 * G_USEC_PER_SEC;
  while (balloon_actual_mib(clone) > BALLOON_TARGET_MIB && g_get_monotonic_time() < deadline)
    g_usleep(100000);
  g_assert_cmpuint(balloon_actual_mib(clone), <=, BALLOON_TARGET_MIB);

  /* The guest gave up 96 MiB and QEMU tried to discard it: the snapshot's
   * bytes are the same, its digests still match, and the clone goes on. */
  g_autofree char *after = vms_test_file_sha256(mem, &error);
  g_assert_no_error(error);
  g_assert_cmpstr(after, ==, before);
  g_assert_cmpint(vms_test_run_cli(verify, NULL, NULL), ==, 0);
  disk_tag_and_wait(clone, "after", 3);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/balloon/private-clone", DiskFixture, NULL, disk_setup, test_balloon_private,
             disk_teardown);
  return g_test_run();
}
