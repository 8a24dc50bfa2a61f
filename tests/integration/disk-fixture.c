/* vmsnap integration tests: the disk tests' fixture (see disk-fixture.h). */
#include "disk-fixture.h"

#include <string.h>
#include <stdio.h>
#include <sys/wait.h>
#include <unistd.h>

void
disk_setup(DiskFixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;

  f->dir = vms_test_make_dir("disks");
  f->guest = vms_linux_guest(&error);
  if (f->guest == NULL)
    vms_test_cannot_run(error->message);
}

void
disk_teardown(DiskFixture *f, gconstpointer data)
{
  for (guint i = 0; i < DISK_MAX_VMS; i++)
    g_clear_pointer(&f->vms[i], vms_vm_free);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

VmsVm *
disk_prepare(DiskFixture *f, guint slot, const char *name, gboolean vmgenid)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);
  g_autofree char *root = g_build_filename(dir, "root.raw", NULL);
  VmsVm *vm;

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  g_assert_true(vms_linux_copy_root(f->guest, root, &error));
  vm = f->vms[slot] = vms_vm_new(dir);
  vms_linux_vm_setup(vm, f->guest);
  vms_linux_add_disk(vm, "root", root, "raw");
  if (vmgenid) {
    g_ptr_array_add(vm->extra_args, g_strdup("-device"));
    g_ptr_array_add(vm->extra_args, g_strdup("vmgenid,guid=6b0c2c3e-3b1f-4a57-9a53-0f6d0c1e2a11"));
  }
  return vm;
}

void
disk_start(VmsVm *vm)
{
  g_autoptr(GError) error = NULL;

  g_assert_true(vms_vm_start(vm, &error));
  g_assert_no_error(error);
  g_assert_true(vms_linux_wait_boot(vm, VMS_LINUX_BOOT_TIMEOUT_MS, &error));
  g_assert_no_error(error);
}

VmsVm *
disk_boot(DiskFixture *f, guint slot, const char *name, gboolean vmgenid)
{
  VmsVm *vm = disk_prepare(f, slot, name, vmgenid);

  disk_start(vm);
  return vm;
}

guint
disk_history_lines(VmsVm *vm)
{
  g_autofree char *n = vms_linux_run_ok(vm, "wc -l < /data/history");
  return (guint)g_ascii_strtoull(n, NULL, 10);
}

void
disk_start_writer(VmsVm *vm, const char *tag, guint lines)
{
  g_autofree char *set = g_strdup_printf("settag %s", tag);
  g_autofree char *wait = g_strdup_printf(
    "until [ -f /data/history ] && [ $(wc -l < /data/history) -ge %u ]; do sleep 0.05; done",
    lines);

  g_free(vms_linux_run_ok(vm, set));
  g_free(vms_linux_run_ok(vm, "start-writer /data/history 0.01"));
  g_free(vms_linux_run_ok(vm, wait));
}

void
disk_tag_and_wait(VmsVm *vm, const char *tag, guint more)
{
  g_autofree char *set = g_strdup_printf("settag %s", tag);
  g_autofree char *wait = g_strdup_printf(
    "while [ $(grep -c ' %s$' /data/history) -lt %u ]; do sleep 0.05; done", tag, more);

  g_free(vms_linux_run_ok(vm, set));
  g_free(vms_linux_run_ok(vm, wait));
}

static JsonNode *
save_call(VmsVm *vm, const char *snap, const char *memory, const char *then, GError **error)
{
  g_autoptr(GError) local = NULL;
  g_autoptr(VmsTestQmp) ctl = vms_vm_control(vm, VMS_TEST_TIMEOUT_MS, &local);

  g_assert_no_error(local);
  return vms_test_qmp_executef(ctl, "snapshot-save", error,
                               "{\"dir\": \"%s\", \"memory\": \"%s\", \"then\": \"%s\"}", snap,
                               memory, then);
}

JsonObject *
disk_save(VmsVm *vm, const char *snap, const char *memory, const char *then)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = save_call(vm, snap, memory, then, &error);

  g_assert_no_error(error);
  return json_object_ref(json_node_get_object(ret));
}

char *
disk_save_fails(VmsVm *vm, const char *snap, const char *memory, const char *then)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = save_call(vm, snap, memory, then, &error);

  g_assert_null(ret);
  g_assert_nonnull(error);
  return g_strdup(error->message);
}

VmsVm *
disk_clone(DiskFixture *f, guint slot, const char *name, const char *snap,
           const char *const *extra)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *rdir = g_build_filename(f->dir, name, NULL);
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  VmsVm *vm;

  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  vm = f->vms[slot] = vms_vm_new(rdir);
  g_ptr_array_add(argv, (gpointer)vms_test_cli());
  g_ptr_array_add(argv, (gpointer)"restore");
  g_ptr_array_add(argv, (gpointer)snap);
  g_ptr_array_add(argv, (gpointer)"--runtime-dir");
  g_ptr_array_add(argv, rdir);
  for (guint i = 0; extra != NULL && extra[i] != NULL; i++)
    g_ptr_array_add(argv, (gpointer)extra[i]);
  g_ptr_array_add(argv, NULL);
  g_assert_true(vms_vm_spawn(vm, (const char *const *)argv->pdata, &error));
  g_assert_no_error(error);
  g_assert_true(vms_vm_connect(vm, VMS_TEST_TIMEOUT_MS, &error));
  g_assert_no_error(error);
  return vm;
}

JsonObject *
disk_inserted(VmsVm *vm, const char *device)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonNode) ret = vms_test_qmp_execute(vm->qmp, "query-block", NULL, &error);
  JsonArray *list;

  g_assert_no_error(error);
  list = json_node_get_array(ret);
  for (guint i = 0; i < json_array_get_length(list); i++) {
    JsonObject *info = json_array_get_object_element(list, i);
    if (g_strcmp0(json_object_get_string_member(info, "device"), device) == 0)
      return json_object_ref(json_object_get_object_member(info, "inserted"));
  }
  g_error("query-block: no device '%s'", device);
}

char *
disk_top_image_of(VmsVm *vm, const char *device)
{
  g_autoptr(JsonObject) inserted = disk_inserted(vm, device);

  return g_strdup(json_object_get_string_member(inserted, "file"));
}

char *
disk_top_image(VmsVm *vm)
{
  return disk_top_image_of(vm, "root");
}

static char *
run_tool(const char *const *argv)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *err = NULL;
  char *out = NULL;
  int status = 0;

  g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, &out,
                             &err, &status, &error));
  g_assert_no_error(error);
  if (!g_spawn_check_wait_status(status, NULL))
    g_error("%s %s failed (status %d): %s%s", argv[0], argv[1], status, out, err);
  return out;
}

char *
disk_halt_and_check(VmsVm *vm, const char *image, const char *scratch)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *raw = g_strconcat(scratch, ".check.raw", NULL);

  g_assert_true(vms_linux_halt(vm, 60000, &error));
  g_assert_no_error(error);
  const char *convert[] = { "qemu-img", "convert", "-O", "raw", image, raw, NULL };
  g_free(run_tool(convert));
  const char *fsck[] = { "e2fsck", "-fn", raw, NULL };
  g_free(run_tool(fsck));
  g_autofree char *out = g_strconcat(scratch, ".history", NULL);
  g_autofree char *dump = g_strdup_printf("dump /data/history %s", out);
  const char *cat[] = { "debugfs", "-R", dump, raw, NULL };
  g_free(run_tool(cat));
  char *history = NULL;
  gsize len = 0;
  g_assert_true(g_file_get_contents(out, &history, &len, &error));
  g_assert_no_error(error);
  if (memchr(history, '\0', len) != NULL)
    g_error("%s: the history holds NUL bytes (two histories written over each other?)", image);
  (void)unlink(raw);
  (void)unlink(out);
  return history;
}

guint
disk_assert_history_runs(const char *history, const char *const *tags, guint min_first)
{
  g_auto(GStrv) lines = g_strsplit(history, "\n", -1);
  guint n = 0, run = 0, first = 0;

  g_assert_cmpuint(strlen(history), >, 0);
  g_assert_cmpint(history[strlen(history) - 1], ==, '\n');
  for (; lines[n] != NULL && lines[n][0] != '\0'; n++) {
    g_autofree char *num = g_strdup_printf("%u ", n + 1);
    if (!g_str_has_prefix(lines[n], num))
      g_error("history line %u is '%s': the numbering broke", n + 1, lines[n]);
    const char *tag = lines[n] + strlen(num);
    while (tags[run] != NULL && !g_str_equal(tag, tags[run]))
      run++;
    if (tags[run] == NULL)
      g_error("history line %u is '%s': its tag is not expected here", n + 1, lines[n]);
    first += run == 0;
  }
  g_assert_true(lines[n] != NULL && lines[n + 1] == NULL); /* nothing after the last newline */
  if (first < min_first)
    g_error("history: %u lines tagged %s, want at least %u; it begins:\n%.400s", first, tags[0],
            min_first, history);
  return first;
}

guint
disk_assert_history(const char *history, const char *first_tag, guint min_first,
                    const char *then_tag)
{
  const char *const tags[] = { first_tag, then_tag, NULL };

  return disk_assert_history_runs(history, tags, min_first);
}

void
disk_add_blank(VmsVm *vm, const char *id, const char *path, guint mib, gboolean readonly)
{
  FILE *f = fopen(path, "w");

  g_assert_nonnull(f);
  g_assert_cmpint(ftruncate(fileno(f), (off_t)mib << 20), ==, 0);
  fclose(f);
  g_ptr_array_add(vm->extra_args, g_strdup("-drive"));
  g_ptr_array_add(vm->extra_args, g_strdup_printf("file=%s,format=raw,if=none,id=%s%s", path, id,
                                                  readonly ? ",readonly=on" : ""));
  g_ptr_array_add(vm->extra_args, g_strdup("-device"));
  g_ptr_array_add(vm->extra_args, g_strdup_printf("virtio-blk-pci,drive=%s,id=%s-dev", id, id));
}

