/* vmsnap unit tests: shared fixtures (see helpers.h). */
#include "helpers.h"
#include "chunks.h"

#include <stdarg.h>
#include <string.h>
#include <sys/wait.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "extents.h"
#include "snapdir.h"
#include "util.h"

char *
vms_test_tmpdir(const char *base)
{
  g_autofree char *tmpl = g_build_filename(base != NULL ? base : g_get_tmp_dir(),
                                           "vmsnap-test-XXXXXX", NULL);
  char *dir = g_mkdtemp(g_steal_pointer(&tmpl));

  g_assert_nonnull(dir);
  return dir;
}

static int
rm_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
  if (flag == FTW_DP)
    rmdir(path);
  else
    unlink(path);
  return 0;
}

void
vms_test_rmtree(const char *path)
{
  if (path != NULL)
    nftw(path, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
}

void
vms_test_write_pattern(const char *path, gsize len, guint8 seed)
{
  g_autofree guint8 *buf = g_malloc(len > 0 ? len : 1);
  vms_autofd fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);

  g_assert_cmpint(fd, >=, 0);
  for (gsize i = 0; i < len; i++)
    buf[i] = (guint8)(seed + i * 7 + (i >> 12));
  g_assert_cmpint(vms_pwrite_full(fd, buf, len, 0), ==, 0);
}


VmsManifest *
vms_test_manifest_full(guint64 memory_size)
{
  VmsManifest *m = vms_manifest_new();
  const guint8 zero[VMS_SHA256_LEN] = { 0 };
  g_autofree char *mem_arg = g_strdup_printf("%" G_GUINT64_FORMAT "K", memory_size >> 10);
  const char *const argv[] = { "qemu-system-x86_64", "-m", mem_arg, NULL };

  m->memory_size_bytes = memory_size;
  m->vp_count = 2;
  m->page_size = 4096;
  vms_manifest_set_string(&m->architecture, "x86_64");
  vms_manifest_set_string(&m->hypervisor_version, "QEMU 7.2.22 (test)");
  vms_manifest_set_string(&m->machine_type, "pc-i440fx-7.2");
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL;
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_LINK;
  vms_manifest_set_bytes(&m->state_sha256, zero, sizeof zero);
  vms_manifest_set_argv(m, argv);
  return m;
}

VmsManifest *
vms_test_make_full_snapshot(const char *dir, const char *memory_path, guint64 memory_size,
                            gsize state_len)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(dir, &error);
  g_autoptr(VmsManifest) m = vms_test_manifest_full(memory_size);
  guint8 sha[VMS_SHA256_LEN];
  guint64 size = 0;
  g_autofree guint8 *state = g_malloc(state_len > 0 ? state_len : 1);
  vms_autofd fd = -1;

  g_assert_no_error(error);
  if (!g_file_test(memory_path, G_FILE_TEST_EXISTS))
    vms_test_write_pattern(memory_path, memory_size, 0x5a);
  fd = vms_snap_writer_stage(w, VMS_STATE_FILE, &error);
  g_assert_no_error(error);
  for (gsize i = 0; i < state_len; i++)
    state[i] = (guint8)(i * 13 + 1);
  g_assert_cmpint(vms_pwrite_full(fd, state, state_len, 0), ==, 0);
  g_assert_true(vms_snap_writer_finish(w, VMS_STATE_FILE, sha, &size, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(size, ==, state_len);
  vms_manifest_set_bytes(&m->state_sha256, sha, sizeof sha);
  m->state_size = size;
  g_assert_true(vms_snap_writer_link_memory(w, memory_path, &error));
  g_assert_no_error(error);
  g_assert_true(vms_snap_writer_commit(w, m, &error));
  g_assert_no_error(error);
  vms_test_add_digests(dir);
  return g_steal_pointer(&m);
}

/* Stages @name with @len bytes of @data, finishes it, returns its SHA-256. */
static void
stage_file(VmsSnapWriter *w, const char *name, const void *data, gsize len,
           guint8 ret_sha256[32], guint64 *ret_size)
{
  g_autoptr(GError) error = NULL;
  vms_autofd fd = vms_snap_writer_stage(w, name, &error);

  g_assert_no_error(error);
  g_assert_cmpint(vms_pwrite_full(fd, data, len, 0), ==, 0);
  g_assert_true(vms_snap_writer_finish(w, name, ret_sha256, ret_size, &error));
  g_assert_no_error(error);
}

static void
write_diff_data(VmsSnapWriter *w, const GArray *list, guint64 memory_size, guint8 ret_sha256[32])
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GChecksum) sum = g_checksum_new(G_CHECKSUM_SHA256);
  vms_autofd fd = vms_snap_writer_stage(w, VMS_DIFF_FILE, &error);
  guint8 page[4096];
  gsize len = 32;

  g_assert_no_error(error);
  g_assert_cmpint(ftruncate(fd, (off_t)memory_size), ==, 0);
  for (guint i = 0; i < list->len; i++) {
    memset(page, 0x30 + i, sizeof page);
    g_assert_cmpint(vms_pwrite_full(fd, page, sizeof page,
                                    g_array_index(list, VmsExtent, i).offset), ==, 0);
    g_checksum_update(sum, page, sizeof page);
  }
  g_checksum_get_digest(sum, ret_sha256, &len);
  g_assert_true(vms_snap_writer_finish(w, VMS_DIFF_FILE, NULL, NULL, &error));
  g_assert_no_error(error);
}

VmsManifest *
vms_test_make_diff_snapshot(const char *dir, const char *parent, const guint8 parent_sha256[32],
                            guint64 memory_size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(dir, &error);
  g_autoptr(VmsManifest) m = vms_test_manifest_full(memory_size);
  g_autoptr(GArray) list = vms_extents_new();
  guint8 data_sha[32], map_sha[32], state_sha[32];
  vms_autofd map = -1;

  g_assert_no_error(error);
  g_assert_cmpuint(memory_size, >=, 2 * VMS_TEST_DIFF_DATA_OFFSET);
  vms_extents_append(list, 4096, 4096);
  vms_extents_append(list, VMS_TEST_DIFF_DATA_OFFSET, 4096);
  write_diff_data(w, list, memory_size, data_sha);
  map = vms_snap_writer_stage(w, VMS_MAP_FILE, &error);
  g_assert_true(vms_pagemap_file_write(map, list, 4096, memory_size, map_sha, &error));
  g_assert_no_error(error);
  g_assert_true(vms_snap_writer_finish(w, VMS_MAP_FILE, NULL, NULL, &error));
  stage_file(w, VMS_STATE_FILE, "diff state", 10, state_sha, &m->state_size);
  vms_manifest_set_bytes(&m->state_sha256, state_sha, 32);
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;
  vms_manifest_set_string(&m->parent, parent);
  vms_manifest_set_bytes(&m->parent_manifest_sha256, parent_sha256, 32);
  vms_manifest_set_bytes(&m->page_map_sha256, map_sha, 32);
  vms_manifest_set_bytes(&m->diff_data_sha256, data_sha, 32);
  m->diff_data_bytes = vms_extents_total(list);
  m->diff_extents = list->len;
  g_assert_true(vms_snap_writer_commit(w, m, &error));
  g_assert_no_error(error);
  vms_test_add_digests(dir);
  return g_steal_pointer(&m);
}

void
vms_test_add_digests(const char *dir)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(dir, &error);

  g_assert_no_error(error);
  g_assert_true(vms_snapshot_write_chunks(s, &error));
  g_assert_no_error(error);
}

void
vms_test_run_clear(VmsTestRun *r)
{
  g_clear_pointer(&r->out, g_free);
  g_clear_pointer(&r->err, g_free);
}

void
vms_test_run_vmsnap(VmsTestRun *r, ...)
{
  const char *bin = g_getenv("VMSNAP_BIN");
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  g_autoptr(GError) error = NULL;
  const char *arg;
  va_list ap;
  int wait_status = 0;

  g_assert_nonnull(bin);
  g_ptr_array_add(argv, (char *)bin);
  va_start(ap, r);
  while ((arg = va_arg(ap, const char *)) != NULL)
    g_ptr_array_add(argv, (char *)arg);
  va_end(ap);
  g_ptr_array_add(argv, NULL);
  g_spawn_sync(NULL, (char **)argv->pdata, NULL, G_SPAWN_DEFAULT, NULL, NULL, &r->out, &r->err,
               &wait_status, &error);
  g_assert_no_error(error);
  g_assert_true(WIFEXITED(wait_status));
  r->status = WEXITSTATUS(wait_status);
  g_test_message("exit %d\nstdout: %s\nstderr: %s", r->status, r->out, r->err);
}

void
vms_test_expect_cli_error(const VmsTestRun *r, const char *substring)
{
  g_assert_cmpint(r->status, ==, 1);
  g_assert_true(g_str_has_prefix(r->err, "vmsnap: error: "));
  if (strstr(r->err, substring) == NULL)
    g_error("expected '%s' in: %s", substring, r->err);
}

