/* Unit tests: diff chains — resolve (parent checks, cycles, depth), verify
 * and flatten to the expected bytes. Snapshots live on /dev/shm when it is
 * there (64-deep chains commit many manifests), else in the temp dir. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>

#include "chain.h"
#include "error.h"
#include "helpers.h"
#include "util.h"

#define PAGE 4096u
#define MEM_SIZE (256u * PAGE)

static char *
chain_tmpdir(void)
{
  return vms_test_tmpdir(g_file_test("/dev/shm", G_FILE_TEST_IS_DIR) ? "/dev/shm" : NULL);
}

static guint8 *
read_all(const char *path, gsize expect)
{
  g_autoptr(GBytes) b = vms_test_read_bytes(path);
  gsize len = 0;
  const guint8 *d = g_bytes_get_data(b, &len);
  g_assert_cmpuint(len, ==, expect);
  return g_memdup2(d, len);
}

/* Stages @name in @w with the @len bytes at @data; returns its SHA-256 in @sha. */
static void
stage_bytes(VmsSnapWriter *w, const char *name, const guint8 *data, gsize len, guint8 sha[32],
            guint64 *size)
{
  g_autoptr(GError) error = NULL;
  vms_autofd fd = vms_snap_writer_stage(w, name, &error);
  g_assert_no_error(error);
  g_assert_cmpint(vms_pwrite_full(fd, data, len, 0), ==, 0);
  g_assert_true(vms_snap_writer_finish(w, name, sha, size, &error));
  g_assert_no_error(error);
}

/* Commits a DIFF snapshot in @dir whose memory is @mem and which carries the
 * pages of @list, with parent @parent_rel (relative to @dir) recorded with
 * @parent_sha (NULL: the parent's real manifest SHA-256). */
static void
make_diff(const char *dir, const char *parent_rel, const guint8 *parent_sha,
          const guint8 *mem, guint64 mem_size, const GArray *list, guint8 state_seed)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(dir, &error);
  g_autoptr(VmsManifest) m = vms_test_manifest_full(mem_size);
  guint8 state[100], sha[32], map_sha[32], data_sha[32];
  guint64 size = 0;
  VmsCopyStats stats = { 0 };

  g_assert_no_error(error);
  memset(state, state_seed, sizeof state);
  stage_bytes(w, VMS_STATE_FILE, state, sizeof state, sha, &size);
  vms_manifest_set_bytes(&m->state_sha256, sha, 32);
  m->state_size = size;
  {
    vms_autofd diff_fd = vms_snap_writer_stage(w, VMS_DIFF_FILE, &error);
    vms_autofd map_fd = vms_snap_writer_stage(w, VMS_MAP_FILE, &error);
    VmsCopySource src = { .fd = -1, .mem = mem, .size = mem_size };
    g_assert_true(vms_write_diff(&src, list, diff_fd, map_fd, PAGE, NULL, data_sha, map_sha,
                                 &stats, &error));
    g_assert_no_error(error);
  }
  g_assert_true(vms_snap_writer_finish(w, VMS_DIFF_FILE, NULL, NULL, &error));
  g_assert_true(vms_snap_writer_finish(w, VMS_MAP_FILE, NULL, NULL, &error));
  g_assert_no_error(error);

  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;
  vms_manifest_set_string(&m->parent, parent_rel);
  if (parent_sha == NULL) {
    g_autofree char *parent_path = g_build_filename(dir, parent_rel, NULL);
    g_autoptr(VmsSnapshot) parent = vms_snapshot_open(parent_path, &error);
    g_assert_no_error(error);
    vms_manifest_set_bytes(&m->parent_manifest_sha256, parent->manifest_sha256, 32);
  } else {
    vms_manifest_set_bytes(&m->parent_manifest_sha256, parent_sha, 32);
  }
  vms_manifest_set_bytes(&m->page_map_sha256, map_sha, 32);
  vms_manifest_set_bytes(&m->diff_data_sha256, data_sha, 32);
  m->diff_data_bytes = stats.bytes;
  m->diff_extents = stats.extents;
  g_assert_true(vms_snap_writer_commit(w, m, &error));
  g_assert_no_error(error);
  vms_test_add_digests(dir);
}

/* Changes @pages (page numbers, -1 ends) of @mem: odd ones to @byte, even
 * ones to zeros (a page the guest cleared is still in the diff). */
static GArray *
touch_pages(guint8 *mem, const int *pages, guint8 byte)
{
  GArray *list = vms_extents_new();
  for (const int *p = pages; *p >= 0; p++) {
    memset(mem + (gsize)*p * PAGE, *p % 2 ? byte : 0, PAGE);
    vms_extents_append(list, (guint64)*p * PAGE, PAGE);
  }
  return list;
}

typedef struct {
  char *root;
  guint8 *mem[4];  /* memory of base, d1, d2, d3 */
} Chain;

static void
chain_free(Chain *c)
{
  vms_test_rmtree(c->root);
  g_free(c->root);
  for (int i = 0; i < 4; i++)
    g_free(c->mem[i]);
  g_free(c);
}
G_DEFINE_AUTOPTR_CLEANUP_FUNC(Chain, chain_free)

/* base <- d1 <- d2 <- d3 under one root, parents named relatively. */
static Chain *
make_chain3(void)
{
  Chain *c = g_new0(Chain, 1);
  static const int p1[] = { 0, 1, 7, 8, 9, 100, -1 };
  static const int p2[] = { 1, 2, 8, 200, 201, 202, -1 };
  static const int p3[] = { 2, 9, 100, 254, 255, -1 };
  const int *pages[] = { p1, p2, p3 };
  const char *names[] = { "d1", "d2", "d3" };
  const char *parents[] = { "../base", "../d1", "../d2" };

  c->root = chain_tmpdir();
  g_autofree char *base_dir = g_build_filename(c->root, "base", NULL);
  g_autofree char *mem_path = g_build_filename(c->root, "base", "memory.bin", NULL);
  g_autoptr(VmsManifest) bm = vms_test_make_full_snapshot(base_dir, mem_path, MEM_SIZE, 64);
  c->mem[0] = read_all(mem_path, MEM_SIZE);
  for (int i = 0; i < 3; i++) {
    g_autofree char *dir = g_build_filename(c->root, names[i], NULL);
    c->mem[i + 1] = g_memdup2(c->mem[i], MEM_SIZE);
    g_autoptr(GArray) list = touch_pages(c->mem[i + 1], pages[i], (guint8)(0x11 * (i + 1)));
    make_diff(dir, parents[i], NULL, c->mem[i + 1], MEM_SIZE, list, (guint8)(i + 1));
  }
  return c;
}

static void
test_flatten_three_deep(void)
{
  g_autoptr(Chain) c = make_chain3();
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) chain = NULL;
  g_autofree char *d3 = g_build_filename(c->root, "d3", NULL);
  g_autofree char *out = g_build_filename(c->root, "flat", NULL);

  g_assert_true(vms_chain_resolve(d3, &chain, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(chain->len, ==, 4);
  g_assert_true(g_str_has_suffix(((VmsSnapshot *)chain->pdata[0])->path, "base"));
  g_assert_true(vms_chain_verify(d3, &error));
  g_assert_no_error(error);

  g_assert_true(vms_chain_flatten(d3, out, NULL, &error));
  g_assert_no_error(error);
  g_autofree char *mem_path = g_build_filename(out, VMS_MEMORY_FILE, NULL);
  g_autofree guint8 *got = read_all(mem_path, MEM_SIZE);
  g_assert_cmpmem(got, MEM_SIZE, c->mem[3], MEM_SIZE);
  /* The pages the chain zeroed are zeros, not the base's pattern. */
  g_assert_cmpint(got[200 * PAGE + 5], ==, 0);
  g_assert_cmpint(c->mem[0][200 * PAGE + 5], !=, 0);

  g_autoptr(VmsSnapshot) flat = vms_snapshot_open(out, &error);
  g_assert_no_error(error);
  g_assert_cmpint(flat->manifest->kind, ==, VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL);
  g_assert_cmpstr(flat->manifest->parent, ==, "");
  g_assert_cmpuint(flat->manifest->memory_size_bytes, ==, MEM_SIZE);
  g_assert_true(vms_snapshot_verify(flat, &error));
  g_assert_no_error(error);
  g_autofree char *state_path = g_build_filename(out, VMS_STATE_FILE, NULL);
  g_autofree guint8 *state = read_all(state_path, 100);
  g_assert_cmpint(state[0], ==, 3);   /* the newest snapshot's state */

  /* Flattening the middle of the chain gives its own memory. */
  g_autofree char *d1 = g_build_filename(c->root, "d1", NULL);
  g_autofree char *out1 = g_build_filename(c->root, "flat1", NULL);
  g_assert_true(vms_chain_flatten(d1, out1, NULL, &error));
  g_autofree char *mem1_path = g_build_filename(out1, VMS_MEMORY_FILE, NULL);
  g_autofree guint8 *got1 = read_all(mem1_path, MEM_SIZE);
  g_assert_cmpmem(got1, MEM_SIZE, c->mem[1], MEM_SIZE);

  /* An existing snapshot is never overwritten: d1's flattening into d3's
   * place is refused; d3's again finds its own there, which is success. */
  g_assert_false(vms_chain_flatten(d1, out, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_EXISTS);
  g_clear_error(&error);
  g_assert_true(vms_chain_flatten(d3, out, NULL, &error));
  g_assert_no_error(error);
}

static void
assert_parent_error(const char *dir, const char *also)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(GPtrArray) chain = NULL;

  g_assert_false(vms_chain_resolve(dir, &chain, &error));
  g_assert_nonnull(error);
  g_assert_null(chain);
  if (strstr(error->message, "parent") == NULL || strstr(error->message, also) == NULL)
    g_error("expected 'parent' and '%s' in: %s", also, error->message);
  g_clear_error(&error);
  g_assert_false(vms_chain_verify(dir, &error));
  g_assert_nonnull(strstr(error->message, "parent"));
}

static void
test_changed_and_missing_parent(void)
{
  g_autoptr(Chain) c = make_chain3();
  g_autoptr(GError) error = NULL;
  g_autofree char *d1 = g_build_filename(c->root, "d1", NULL);
  g_autofree char *d3 = g_build_filename(c->root, "d3", NULL);
  g_autofree char *base = g_build_filename(c->root, "base", NULL);
  g_autofree char *out = g_build_filename(c->root, "flat", NULL);
  g_autoptr(GArray) list = vms_extents_new();

  /* d1 taken again: same memory, a new manifest (new id, new time). */
  vms_test_rmtree(d1);
  vms_extents_append(list, 0, PAGE);
  make_diff(d1, "../base", NULL, c->mem[1], MEM_SIZE, list, 1);
  assert_parent_error(d3, "d1");
  g_assert_false(vms_chain_flatten(d3, out, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_MISMATCH);
  g_clear_error(&error);
  g_assert_false(g_file_test(out, G_FILE_TEST_EXISTS));

  /* d1 itself still resolves; its base gone, it doesn't. */
  g_assert_true(vms_chain_verify(d1, &error));
  g_assert_no_error(error);
  vms_test_rmtree(base);
  assert_parent_error(d1, "base");
}

static void
test_cycle_and_self_parent(void)
{
  g_autofree char *root = chain_tmpdir();
  g_autofree char *a = g_build_filename(root, "a", NULL);
  g_autofree char *b = g_build_filename(root, "b", NULL);
  g_autofree char *self = g_build_filename(root, "self", NULL);
  g_autofree guint8 *mem = g_malloc0(MEM_SIZE);
  g_autoptr(GArray) list = vms_extents_new();
  const guint8 bogus[32] = { 1 };

  mem[0] = 1;
  vms_extents_append(list, 0, PAGE);
  /* b names a (not there yet); a names b with b's real hash: a -> b -> a. */
  make_diff(b, "../a", bogus, mem, MEM_SIZE, list, 1);
  make_diff(a, "../b", NULL, mem, MEM_SIZE, list, 2);
  assert_parent_error(a, "cycle");
  make_diff(self, ".", bogus, mem, MEM_SIZE, list, 3);
  assert_parent_error(self, "cycle");
  vms_test_rmtree(root);
}

static void
test_depth_limit(void)
{
  g_autofree char *root = chain_tmpdir();
  g_autofree char *base = g_build_filename(root, "s0", NULL);
  g_autofree char *mem_path = g_build_filename(root, "s0", "memory.bin", NULL);
  g_autoptr(VmsManifest) bm = vms_test_make_full_snapshot(base, mem_path, 4 * PAGE, 8);
  g_autofree guint8 *mem = read_all(mem_path, 4 * PAGE);
  g_autoptr(GArray) list = vms_extents_new();
  g_autoptr(GError) error = NULL;

  vms_extents_append(list, PAGE, PAGE);
  for (int i = 1; i <= VMS_CHAIN_MAX_DEPTH + 1; i++) {
    g_autofree char *dir = g_strdup_printf("%s/s%d", root, i);
    g_autofree char *parent = g_strdup_printf("../s%d", i - 1);
    mem[PAGE] = (guint8)i;
    make_diff(dir, parent, NULL, mem, 4 * PAGE, list, (guint8)i);
  }
  g_autoptr(GPtrArray) chain = NULL;
  g_autofree char *deepest_ok = g_strdup_printf("%s/s%d", root, VMS_CHAIN_MAX_DEPTH);
  g_assert_true(vms_chain_resolve(deepest_ok, &chain, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(chain->len, ==, VMS_CHAIN_MAX_DEPTH + 1);
  g_autofree char *too_deep = g_strdup_printf("%s/s%d", root, VMS_CHAIN_MAX_DEPTH + 1);
  assert_parent_error(too_deep, "deeper than 64");
  vms_test_rmtree(root);
}

static void
test_memory_size_change(void)
{
  g_autofree char *root = chain_tmpdir();
  g_autofree char *base = g_build_filename(root, "base", NULL);
  g_autofree char *mem_path = g_build_filename(root, "base", "memory.bin", NULL);
  g_autofree char *d = g_build_filename(root, "d", NULL);
  g_autoptr(VmsManifest) bm = vms_test_make_full_snapshot(base, mem_path, MEM_SIZE, 8);
  g_autofree guint8 *mem = g_malloc0(2 * MEM_SIZE);
  g_autoptr(GArray) list = vms_extents_new();

  vms_extents_append(list, 0, PAGE);
  make_diff(d, "../base", NULL, mem, 2 * MEM_SIZE, list, 1);
  assert_parent_error(d, "memory size");
  vms_test_rmtree(root);
}

/* A corrupt member (the base's state.bin changed) fails verify, naming the parent. */
static void
test_verify_corrupt_member(void)
{
  g_autoptr(Chain) c = make_chain3();
  g_autoptr(GError) error = NULL;
  g_autofree char *d2 = g_build_filename(c->root, "d2", NULL);
  g_autofree char *state = g_build_filename(c->root, "base", VMS_STATE_FILE, NULL);
  g_autofree char *out = g_build_filename(c->root, "flat", NULL);

  vms_test_write_pattern(state, 64, 0x77);
  g_assert_false(vms_chain_verify(d2, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "parent"));
  g_assert_nonnull(strstr(error->message, "state"));
  g_clear_error(&error);
  /* flatten needs only the newest state, so it still works. */
  g_assert_true(vms_chain_flatten(d2, out, NULL, &error));
  g_assert_no_error(error);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/chain/flatten-three-deep", test_flatten_three_deep);
  g_test_add_func("/chain/changed-and-missing-parent", test_changed_and_missing_parent);
  g_test_add_func("/chain/cycle", test_cycle_and_self_parent);
  g_test_add_func("/chain/depth-limit", test_depth_limit);
  g_test_add_func("/chain/memory-size-change", test_memory_size_change);
  g_test_add_func("/chain/verify-corrupt-member", test_verify_corrupt_member);
  return g_test_run();
}
