/* Push and pull through a real OCI registry (doc/spec.md section 12):
 * Debian's docker-registry on 127.0.0.1 with private storage. Snapshots
 * here are written by the test (random, patterned, zero and hole chunks);
 * test-registry-restore.c restores pulled snapshots of a real guest. */
#include "registry-fixture.h"
#include "token-server.h"

#include <fcntl.h>
#include <signal.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-record.h"
#include "helpers.h"
#include "snapdir.h"
#include "util.h"

#define MIB (1024u * 1024u)

typedef struct {
  char *dir;
  VmsTestRegistry *reg;
} Fixture;

static void
setup(Fixture *f, gconstpointer data)
{
  f->dir = vms_test_make_dir("registry");
  g_autofree char *rdir = g_build_filename(f->dir, "registry", NULL);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  f->reg = data != NULL ? vms_test_registry_start(rdir, "alice", "secret", data)
                        : vms_test_registry_start(rdir, NULL, NULL, NULL);
}

static void
teardown(Fixture *f, gconstpointer data)
{
  vms_test_registry_free(f->reg);
  vms_test_rm_rf(f->dir);
  g_free(f->dir);
}

static void
fill_random(guint8 *buf, gsize len, guint32 seed)
{
  g_autoptr(GRand) r = g_rand_new_with_seed(seed);

  for (gsize i = 0; i + 4 <= len; i += 4) {
    guint32 v = g_rand_int(r);
    memcpy(buf + i, &v, 4);
  }
}

/* A memory file of @mib MiB: @random_mib random MiB, 4 MiB of a repeating
 * pattern, 4 MiB of written zeros, holes after that. */
static void
write_memory(const char *path, guint mib, guint random_mib)
{
  vms_autofd fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  g_autofree guint8 *buf = g_malloc(MIB);
  guint64 off = 0;

  g_assert_cmpint(fd, >=, 0);
  g_assert_cmpint(ftruncate(fd, (off_t)mib * MIB), ==, 0);
  for (guint i = 0; i < random_mib; i++, off += MIB) {
    fill_random(buf, MIB, 1000 + i);
    g_assert_cmpint(vms_pwrite_full(fd, buf, MIB, off), ==, 0);
  }
  for (guint i = 0; i < MIB; i++)
    buf[i] = (guint8)(i % 251);
  for (guint i = 0; i < 4; i++, off += MIB)
    g_assert_cmpint(vms_pwrite_full(fd, buf, MIB, off), ==, 0);
  memset(buf, 0, MIB);
  for (guint i = 0; i < 4; i++, off += MIB)
    g_assert_cmpint(vms_pwrite_full(fd, buf, MIB, off), ==, 0);
}

static char *
make_full(Fixture *f, const char *name, guint mib, guint random_mib)
{
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);
  g_autofree char *mem = g_build_filename(dir, VMS_MEMORY_FILE, NULL);
  g_autoptr(VmsManifest) m = NULL;

  g_assert_cmpuint(mib, >=, random_mib + 8);
  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  write_memory(mem, mib, random_mib);
  m = vms_test_make_full_snapshot(dir, mem, (guint64)mib * MIB, 256u << 10);
  return g_steal_pointer(&dir);
}

static void
fill_page(guint8 *page, gsize len, guint64 n, gpointer seed)
{
  fill_random(page, len, GPOINTER_TO_UINT(seed) + (guint32)n);
}

/* A diff of @f->dir/@parent_name in @f->dir/@name: @pages random pages,
 * every 97th page of the memory (seed @seed), parent named "../PARENT". */
static char *
make_diff(Fixture *f, const char *name, const char *parent_name, guint pages, guint32 seed)
{
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);
  g_autofree char *pdir = g_build_filename(f->dir, parent_name, NULL);
  g_autofree char *prel = g_build_filename("..", parent_name, NULL);

  vms_test_make_diff_pages(dir, pdir, prel, pages, 97, fill_page, GUINT_TO_POINTER(seed));
  return g_steal_pointer(&dir);
}

static void
assert_same_file(const char *a, const char *b)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *da = vms_test_file_sha256(a, &error);
  g_autofree char *db = vms_test_file_sha256(b, &error);

  g_assert_no_error(error);
  g_assert_cmpstr(da, ==, db);
}

/* Runs vmsnap with REGISTRY_AUTH_FILE; asserts exit 0; returns stdout. */
static char *
run_ok(Fixture *f, const char *const *argv)
{
  char *out = NULL;
  g_autofree char *err = NULL;
  int st = vms_test_registry_cliv(f->reg, argv, &out, &err);

  if (st != 0)
    g_error("vmsnap %s failed (%d): %s", argv[0], st, err);
  return out;
}

/* Runs vmsnap; asserts it failed as the CLI contract says; returns stderr. */
static char *
run_fail(Fixture *f, const char *const *argv)
{
  g_autofree char *out = NULL;
  char *err = NULL;
  int st = vms_test_registry_cliv(f->reg, argv, &out, &err);

  g_assert_cmpint(st, ==, 1);
  g_assert_true(g_str_has_prefix(err, "vmsnap: error: "));
  return err;
}

#define RUN_OK(f, ...) run_ok(f, (const char *const[]){ __VA_ARGS__, NULL })
#define RUN_FAIL(f, ...) run_fail(f, (const char *const[]){ __VA_ARGS__, NULL })

static guint64
allocated(const char *path)
{
  struct stat st;

  g_assert_cmpint(stat(path, &st), ==, 0);
  return (guint64)st.st_blocks * 512;
}

/* A full snapshot goes up and comes back the same: zero chunks are not
 * stored, memory comes back sparse, and it verifies. A second push sends
 * nothing; a push to another repository mounts instead of uploading. */
static void
test_full_roundtrip(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = make_full(f, "snap", 32, 8);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/full:v1");
  g_autofree char *ref2 = vms_test_registry_ref(f->reg, "vm/full:v2");
  g_autofree char *other = vms_test_registry_ref(f->reg, "vm/other:v1");
  g_autofree char *pulled = g_build_filename(f->dir, "pulled", NULL);
  g_autofree char *a = g_build_filename(snap, VMS_MEMORY_FILE, NULL);
  g_autofree char *b = g_build_filename(pulled, VMS_MEMORY_FILE, NULL);

  g_autofree char *o1 = RUN_OK(f, "push", "--insecure", snap, ref);
  /* 8 random + 4 patterned MiB: 12 chunks of data (1 MiB, chunks.h); the
   * 4 MiB of written zeros and the 16 MiB of holes are not stored. */
  g_assert_cmpuint(vms_test_number_before(o1, " zero chunks skipped"), ==, 20);
  guint64 stored = vms_test_registry_stored_bytes(f->reg);
  g_assert_cmpuint(stored, <, 9 * MIB + 512 * 1024);

  g_autofree char *o2 = RUN_OK(f, "push", "--insecure", snap, ref2);
  g_assert_cmpuint(vms_test_number_before(o2, " blobs uploaded"), ==, 0);
  g_assert_cmpuint(vms_test_number_before(o2, " bytes sent"), <, 64 * 1024);
  g_assert_cmpuint(vms_test_registry_stored_bytes(f->reg), ==, stored);

  g_autofree char *o3 = RUN_OK(f, "push", "--insecure", "--mount-from", "vm/full", snap, other);
  g_assert_cmpuint(vms_test_number_before(o3, " blobs uploaded"), ==, 0);
  /* 8 random chunks in 1 blob (a window of 8), the 4 patterned ones in
   * another, state.bin, memory.chunks, the index, manifest.bin */
  g_assert_cmpuint(vms_test_number_before(o3, " mounted"), ==, 1 + 1 + 4);

  g_autofree char *o4 = RUN_OK(f, "pull", "--insecure", ref2, pulled);
  /* Zeros are holes (checked before anything reads the file: a read
   * through a mapping fills tmpfs holes). */
  g_assert_cmpuint(allocated(b), <=, 12 * MIB + 64 * 1024);
  assert_same_file(a, b);
  g_autofree char *sa = g_build_filename(snap, VMS_STATE_FILE, NULL);
  g_autofree char *sb = g_build_filename(pulled, VMS_STATE_FILE, NULL);
  assert_same_file(sa, sb);
  g_autofree char *ma = g_build_filename(snap, VMS_MANIFEST_FILE, NULL);
  g_autofree char *mb = g_build_filename(pulled, VMS_MANIFEST_FILE, NULL);
  assert_same_file(ma, mb);
  g_autofree char *v = RUN_OK(f, "verify", pulled);
  /* Pulling what is already there moves only its manifest and config. */
  g_autofree char *o5 = RUN_OK(f, "pull", "--insecure", ref, pulled);
  g_assert_cmpuint(vms_test_number_before(o5, " snapshot(s)"), ==, 0);
  g_assert_cmpuint(vms_test_number_before(o5, " bytes received"), <, 16 * 1024);
}

/* A chain: each diff stores little more than its own data; a diff pulled
 * beside its parent fetches only itself; pulled into an empty place it
 * brings its chain; the pulled chain verifies. */
static void
test_diff_chain(Fixture *f, gconstpointer data)
{
  g_autofree char *base = make_full(f, "base", 64, 16);
  g_autofree char *d1 = make_diff(f, "d1", "base", 160, 7);
  g_autofree char *d2 = make_diff(f, "d2", "d1", 160, 8);
  g_autofree char *rbase = vms_test_registry_ref(f->reg, "vm/chain:base");
  g_autofree char *rd1 = vms_test_registry_ref(f->reg, "vm/chain:d1");
  g_autofree char *rd2 = vms_test_registry_ref(f->reg, "vm/chain:d2");
  g_autofree char *o0 = RUN_OK(f, "push", "--insecure", base, rbase);
  guint64 s0 = vms_test_registry_stored_bytes(f->reg);
  g_autofree char *o1 = RUN_OK(f, "push", "--insecure", d1, rd1);
  guint64 s1 = vms_test_registry_stored_bytes(f->reg);
  guint64 diff_bytes = 160 * 4096;

  g_assert_cmpuint(vms_test_number_before(o1, " snapshot(s)"), ==, 1);
  g_test_message("diff of %" G_GUINT64_FORMAT " bytes stored %" G_GUINT64_FORMAT " bytes",
                 diff_bytes, s1 - s0);
  g_assert_cmpuint(s1 - s0, >, diff_bytes);
  g_assert_cmpuint(s1 - s0, <, diff_bytes + 64 * 1024);
  /* d2 alone: its ancestors are found in the registry, not sent again. */
  g_autofree char *o2 = RUN_OK(f, "push", "--insecure", d2, rd2);
  g_assert_cmpuint(vms_test_number_before(o2, " snapshot(s)"), ==, 1);
  g_assert_cmpuint(vms_test_registry_stored_bytes(f->reg) - s1, <, diff_bytes + 64 * 1024);

  /* Into an empty place: the whole chain comes, at the parent paths. */
  g_autofree char *empty = g_build_filename(f->dir, "empty", "d2", NULL);
  g_autofree char *o3 = RUN_OK(f, "pull", "--insecure", rd2, empty);
  g_assert_cmpuint(vms_test_number_before(o3, " snapshot(s)"), ==, 3);
  g_autofree char *v = RUN_OK(f, "verify", empty);
  g_autofree char *pa = g_build_filename(f->dir, "d2", VMS_DIFF_FILE, NULL);
  g_autofree char *pb = g_build_filename(f->dir, "empty", "d2", VMS_DIFF_FILE, NULL);
  assert_same_file(pa, pb);
  g_autofree char *ba = g_build_filename(f->dir, "base", VMS_MEMORY_FILE, NULL);
  g_autofree char *bb = g_build_filename(f->dir, "empty", "base", VMS_MEMORY_FILE, NULL);
  assert_same_file(ba, bb);

  /* Beside its parent: only the diff moves. */
  g_autofree char *beside = g_build_filename(f->dir, "empty", "d2b", NULL);
  g_autofree char *rd2b = vms_test_registry_ref(f->reg, "vm/chain:d2b");
  g_autofree char *d2b = make_diff(f, "empty/d2b", "d1", 160, 9);
  g_autofree char *o4 = RUN_OK(f, "push", "--insecure", d2b, rd2b);
  vms_test_rm_rf(d2b);
  g_autofree char *o5 = RUN_OK(f, "pull", "--insecure", rd2b, beside);
  g_assert_cmpuint(vms_test_number_before(o5, " snapshot(s)"), ==, 1);
  g_assert_cmpuint(vms_test_number_before(o5, " bytes received"), <, diff_bytes + 64 * 1024);
  g_autofree char *v2 = RUN_OK(f, "verify", beside);
}

/* The parent's artifact is gone from the registry: the pull says which. */
static void
test_missing_parent(Fixture *f, gconstpointer data)
{
  g_autofree char *base = make_full(f, "base", 16, 2);
  g_autofree char *d1 = make_diff(f, "d1", "base", 4, 3);
  g_autofree char *rd1 = vms_test_registry_ref(f->reg, "vm/orphan:d1");
  g_autofree char *o = RUN_OK(f, "push", "--insecure", d1, rd1);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsSnapshot) s = vms_snapshot_open(base, &error);
  char hex[65];

  vms_sha256_hex(s->manifest_sha256, hex);
  /* Take the base's manifest out of the repository (tag and revision). */
  g_autofree char *manifests = g_build_filename(f->reg->store, "docker", "registry", "v2",
                                                "repositories", "vm", "orphan", "_manifests", NULL);
  g_autofree char *tag = g_strdup_printf("%s/tags/sha256-%s", manifests, hex);
  g_autofree char *index = g_build_filename(tag, "current", "link", NULL);
  g_autofree char *digest = NULL;
  g_assert_true(g_file_get_contents(index, &digest, NULL, &error));
  g_autofree char *rev = g_strdup_printf("%s/revisions/sha256/%s", manifests, digest + 7);
  vms_test_rm_rf(tag);
  vms_test_rm_rf(rev);

  g_autofree char *target = g_build_filename(f->dir, "elsewhere", "d1", NULL);
  g_autofree char *err = RUN_FAIL(f, "pull", "--insecure", rd1, target);
  g_autofree char *want = g_strdup_printf("manifest.bin sha256:%s", hex);
  g_assert_nonnull(strstr(err, "the parent of"));
  g_assert_nonnull(strstr(err, want));
  g_assert_nonnull(strstr(err, "404"));
  g_autofree char *m = g_build_filename(target, VMS_MANIFEST_FILE, NULL);
  g_assert_false(g_file_test(m, G_FILE_TEST_EXISTS));
}

/* A flipped byte in a stored chunk fails the pull, naming the blob and
 * its memory offset; nothing is committed. */
static void
test_corrupt_blob(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = make_full(f, "snap", 16, 4);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/bad:v1");
  g_autofree char *out = RUN_OK(f, "push", "--insecure", snap, ref);
  g_autofree char *blobs = g_build_filename(f->reg->store, "docker", "registry", "v2", "blobs",
                                            "sha256", NULL);
  g_autofree char *victim = NULL;
  guint64 biggest = 0;
  g_autoptr(GDir) d = g_dir_open(blobs, 0, NULL);

  /* The biggest blob is a chunk of random memory. */
  for (const char *two; (two = g_dir_read_name(d)) != NULL;) {
    g_autofree char *sub = g_build_filename(blobs, two, NULL);
    g_autoptr(GDir) d2 = g_dir_open(sub, 0, NULL);
    for (const char *hex; (hex = g_dir_read_name(d2)) != NULL;) {
      g_autofree char *data_path = g_build_filename(sub, hex, "data", NULL);
      struct stat st;
      if (stat(data_path, &st) == 0 && (guint64)st.st_size > biggest) {
        biggest = (guint64)st.st_size;
        g_free(victim);
        victim = g_strdup(hex);
      }
    }
  }
  g_assert_nonnull(victim);
  g_autofree char *digest = g_strdup_printf("sha256:%s", victim);
  g_autofree char *path = vms_test_registry_blob_path(f->reg, digest);
  vms_autofd fd = open(path, O_RDWR | O_CLOEXEC);
  guint8 byte = 0;
  g_assert_cmpint(pread(fd, &byte, 1, 1000), ==, 1);
  byte ^= 0x40;
  g_assert_cmpint(pwrite(fd, &byte, 1, 1000), ==, 1);

  g_autofree char *target = g_build_filename(f->dir, "pulled", NULL);
  g_autofree char *err = RUN_FAIL(f, "pull", "--insecure", ref, target);
  g_assert_nonnull(strstr(err, digest));
  g_assert_nonnull(strstr(err, "corrupt"));
  g_assert_nonnull(strstr(err, "memory offset"));
  g_autofree char *m = g_build_filename(target, VMS_MANIFEST_FILE, NULL);
  g_assert_false(g_file_test(m, G_FILE_TEST_EXISTS));
}

static GSubprocess *
spawn_cli(Fixture *f, const char *const *args)
{
  g_autoptr(GSubprocessLauncher) l = g_subprocess_launcher_new(G_SUBPROCESS_FLAGS_STDOUT_SILENCE);
  g_autoptr(GPtrArray) argv = g_ptr_array_new();
  g_autoptr(GError) error = NULL;
  GSubprocess *p;

  g_ptr_array_add(argv, (char *)vms_test_cli());
  for (gsize i = 0; args[i] != NULL; i++)
    g_ptr_array_add(argv, (char *)args[i]);
  g_ptr_array_add(argv, NULL);
  g_subprocess_launcher_setenv(l, "REGISTRY_AUTH_FILE", f->reg->auth_file, TRUE);
  p = g_subprocess_launcher_spawnv(l, (const char *const *)argv->pdata, &error);
  g_assert_no_error(error);
  return p;
}

/* SIGKILLs @p once @reached(@f, @arg) holds; fails if @p ended first. */
static void
kill_when(GSubprocess *p, gboolean (*reached)(Fixture *, const char *), Fixture *f, const char *arg)
{
  for (int i = 0; i < 6000 && !reached(f, arg); i++) {
    if (g_subprocess_get_identifier(p) == NULL) /* ended */
      break;
    g_usleep(2000);
  }
  g_assert_true(reached(f, arg));
  g_subprocess_send_signal(p, SIGKILL);
  g_subprocess_wait(p, NULL, NULL);
  g_assert_true(g_subprocess_get_if_signaled(p));
}

static gboolean
stored_some(Fixture *f, const char *unused)
{
  return vms_test_registry_stored_bytes(f->reg) >= 6 * MIB;
}

/* The pull's staging directory (DIR/.pull-ID) holds 40 MiB of memory: at
 * least 24 MiB of it in whole blobs (at most two 8 MiB blobs are being
 * written at once). */
static gboolean
staged_some(Fixture *f, const char *dir)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);

  for (const char *n; d != NULL && (n = g_dir_read_name(d)) != NULL;) {
    g_autofree char *p = g_build_filename(dir, n, VMS_MEMORY_FILE, NULL);
    if (g_str_has_prefix(n, ".pull-") && g_file_test(p, G_FILE_TEST_EXISTS) && allocated(p) >= 40 * MIB)
      return TRUE;
  }
  return FALSE;
}

/* push and pull killed half way: the second run moves only the rest. */
static void
test_interrupted(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = make_full(f, "snap", 96, 80);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/resume:v1");
  g_autofree char *target = g_build_filename(f->dir, "pulled", NULL);
  const char *const push[] = { "push", "--insecure", "--transfers", "1", snap, ref, NULL };
  const char *const pull[] = { "pull", "--insecure", "--transfers", "1", ref, target, NULL };
  g_autoptr(GSubprocess) p1 = spawn_cli(f, push);

  kill_when(p1, stored_some, f, NULL);
  g_autofree char *o1 = run_ok(f, push);
  guint64 present = vms_test_number_before(o1, " already present");
  guint64 sent = vms_test_number_before(o1, " blobs uploaded");
  g_assert_cmpuint(present, >=, 3);
  g_assert_cmpuint(sent, >=, 1);
  /* 80 random chunks in 10 blobs of 8, the 4 patterned in 1, state.bin,
   * memory.chunks, the index, manifest.bin */
  g_assert_cmpuint(sent + present, ==, 10 + 1 + 4);

  g_autoptr(GSubprocess) p2 = spawn_cli(f, pull);
  kill_when(p2, staged_some, f, target);
  g_autofree char *m = g_build_filename(target, VMS_MANIFEST_FILE, NULL);
  g_assert_false(g_file_test(m, G_FILE_TEST_EXISTS));
  g_autofree char *o2 = run_ok(f, pull);
  g_assert_cmpuint(vms_test_number_before(o2, " blobs already there"), >=, 3);
  g_assert_cmpuint(vms_test_number_before(o2, " bytes received"), <, (84 - 24 + 2) * MIB);
  g_autofree char *a = g_build_filename(snap, VMS_MEMORY_FILE, NULL);
  g_autofree char *b = g_build_filename(target, VMS_MEMORY_FILE, NULL);
  assert_same_file(a, b);
  g_autofree char *v = RUN_OK(f, "verify", target);
}

/* htpasswd: the right password works; a wrong one and none fail with 401
 * naming the user and the auth file. */
static void
test_credentials(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap = make_full(f, "snap", 16, 2);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/auth:v1");
  g_autofree char *err = RUN_FAIL(f, "push", "--insecure", snap, ref);

  g_assert_nonnull(strstr(err, "401"));
  g_assert_nonnull(strstr(err, "user 'alice'"));
  g_assert_nonnull(strstr(err, f->reg->auth_file));
  g_autofree char *err2 = RUN_FAIL(f, "pull", "--insecure", ref, f->dir);
  g_assert_nonnull(strstr(err2, "401"));

  g_autofree char *b64 = g_base64_encode((const guchar *)"alice:secret", 12);
  g_autofree char *good = g_strdup_printf("{\"auths\": {\"http://%s\": {\"auth\": \"%s\"}}}", f->reg->host, b64);
  g_assert_true(g_file_set_contents(f->reg->auth_file, good, -1, &error));
  g_autofree char *o = RUN_OK(f, "push", "--insecure", snap, ref);
  g_autofree char *target = g_build_filename(f->dir, "pulled", NULL);
  g_autofree char *o2 = RUN_OK(f, "pull", "--insecure", ref, target);

  g_assert_true(g_file_set_contents(f->reg->auth_file, "{\"auths\": {}}", -1, &error));
  g_autofree char *err3 = RUN_FAIL(f, "push", "--insecure", snap, ref);
  g_assert_nonnull(strstr(err3, "401"));
  g_assert_nonnull(strstr(err3, "no credentials"));
}

/* A registry that is not there; a tag that is not in it; bad references. */
static void
test_unreachable(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = make_full(f, "snap", 16, 2);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/x:v1");
  g_autofree char *missing = vms_test_registry_ref(f->reg, "vm/x:nope");
  g_autofree char *target = g_build_filename(f->dir, "pulled", NULL);

  g_autofree char *o = RUN_OK(f, "push", "--insecure", snap, ref);
  g_autofree char *e404 = RUN_FAIL(f, "pull", "--insecure", missing, target);
  g_assert_nonnull(strstr(e404, "404"));
  g_assert_nonnull(strstr(e404, "nope"));
  g_autofree char *ebad = RUN_FAIL(f, "pull", "--insecure", "127.0.0.1:1/UPPER:x", target);
  g_assert_nonnull(strstr(ebad, "invalid registry reference"));
  /* Without --insecure the client speaks TLS to a plain-HTTP registry. */
  g_autofree char *etls = RUN_FAIL(f, "pull", ref, target);
  g_assert_nonnull(strstr(etls, f->reg->host));

  vms_test_registry_stop(f->reg);
  g_autofree char *e1 = RUN_FAIL(f, "push", "--insecure", snap, ref);
  g_assert_nonnull(strstr(e1, "not reachable"));
  g_assert_nonnull(strstr(e1, f->reg->host));
  g_autofree char *e2 = RUN_FAIL(f, "pull", "--insecure", ref, target);
  g_assert_nonnull(strstr(e2, "is the registry running"));
}

/* The Bearer flow: the registry sends vmsnap to a token server, which
 * wants the auth file's credential; with the wrong one the error says
 * which token was refused and for whom. */
static void
test_bearer(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *tdir = g_build_filename(f->dir, "token", NULL);
  g_assert_cmpint(g_mkdir_with_parents(tdir, 0700), ==, 0);
  g_autoptr(VmsTestTokenServer) ts = vms_test_token_server_start(tdir, "alice", "secret");
  g_autofree char *rdir = g_build_filename(f->dir, "tokreg", NULL);
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  vms_test_registry_free(f->reg);
  f->reg = vms_test_registry_start_token(rdir, vms_test_token_server_realm(ts), VMS_TEST_TOKEN_SERVICE,
                                         VMS_TEST_TOKEN_ISSUER, vms_test_token_server_cert(ts),
                                         "alice", "secret");
  g_autofree char *snap = make_full(f, "snap", 16, 2);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/tok:v1");
  g_autofree char *target = g_build_filename(f->dir, "pulled", NULL);

  g_autofree char *o1 = RUN_OK(f, "push", "--insecure", snap, ref);
  g_autofree char *o2 = RUN_OK(f, "pull", "--insecure", ref, target);
  g_assert_cmpuint(vms_test_token_server_issued(ts), ==, 2);
  g_autofree char *v = RUN_OK(f, "verify", target);
  /* A mount from another repository: the token covers both. */
  g_autofree char *other = vms_test_registry_ref(f->reg, "vm/tok2:v1");
  g_autofree char *o3 = RUN_OK(f, "push", "--insecure", "--mount-from", "vm/tok", snap, other);
  g_assert_cmpuint(vms_test_number_before(o3, " blobs uploaded"), ==, 0);
  g_assert_cmpuint(vms_test_number_before(o3, " mounted"), >=, 4);
  /* A token the registry refuses half way (expired; here: pull only) is
   * replaced once, and the push goes on. */
  guint before = vms_test_token_server_issued(ts);
  vms_test_token_server_pull_only(ts, 1);
  g_autofree char *snap2 = make_full(f, "snap2", 16, 3);
  g_autofree char *ref3 = vms_test_registry_ref(f->reg, "vm/tok:v2");
  g_autofree char *o4 = RUN_OK(f, "push", "--insecure", snap2, ref3);
  g_assert_cmpuint(vms_test_token_server_issued(ts), ==, before + 2);
  g_assert_cmpuint(vms_test_number_before(o4, " blobs uploaded"), >=, 3);

  g_autofree char *b64 = g_base64_encode((const guchar *)"alice:wrong", 11);
  g_autofree char *bad = g_strdup_printf("{\"auths\": {\"%s\": {\"auth\": \"%s\"}}}", f->reg->host, b64);
  g_assert_true(g_file_set_contents(f->reg->auth_file, bad, -1, &error));
  g_autofree char *err = RUN_FAIL(f, "push", "--insecure", snap, ref);
  g_assert_nonnull(strstr(err, "a token for repository:vm/tok:pull,push"));
  g_assert_nonnull(strstr(err, "401"));
  g_assert_nonnull(strstr(err, "user 'alice'"));
}

/* A pull that runs out of space fails naming it and leaves nothing that
 * looks committed. The target is a 4 MiB tmpfs (root can mount one here and
 * in CI; elsewhere the test cannot run). */
static void
test_disk_full(Fixture *f, gconstpointer data)
{
  g_autofree char *snap = make_full(f, "snap", 16, 8);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/full:v1");
  g_autofree char *mnt = g_build_filename(f->dir, "small", NULL);
  g_autofree char *target = g_build_filename(mnt, "pulled", NULL);
  g_autofree char *manifest = g_build_filename(target, VMS_MANIFEST_FILE, NULL);
  g_autofree char *o = RUN_OK(f, "push", "--insecure", snap, ref);

  g_assert_cmpint(g_mkdir_with_parents(mnt, 0700), ==, 0);
  if (mount("tmpfs", mnt, "tmpfs", 0, "size=4m") != 0)
    vms_test_cannot_run("cannot mount a small tmpfs for the disk-full pull (needs root)");
  g_autofree char *err = RUN_FAIL(f, "pull", "--insecure", ref, target);
  gboolean committed = g_file_test(manifest, G_FILE_TEST_EXISTS);
  g_assert_cmpint(umount2(mnt, MNT_DETACH), ==, 0);
  g_assert_nonnull(strstr(err, "No space left on device"));
  g_assert_false(committed);
}

/* Commits a FULL snapshot @f->dir/@name with 16 MiB of memory (2 random)
 * that records the disk @d (taken). */
static char *
make_with_disk(Fixture *f, const char *name, VmsDiskRecord *d)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *dir = g_build_filename(f->dir, name, NULL);
  g_autofree char *mem = g_build_filename(dir, VMS_MEMORY_FILE, NULL);
  g_autoptr(VmsManifest) m = vms_test_manifest_full(16 * MIB);
  guint8 state[4096] = { 1 };
  guint8 sha[32];

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  write_memory(mem, 16, 2);
  g_autoptr(VmsSnapWriter) w = vms_snap_writer_new(dir, &error);
  vms_autofd fd = vms_snap_writer_stage(w, VMS_STATE_FILE, &error);
  g_assert_cmpint(vms_pwrite_full(fd, state, sizeof state, 0), ==, 0);
  g_assert_true(vms_snap_writer_finish(w, VMS_STATE_FILE, sha, &m->state_size, &error));
  vms_manifest_set_bytes(&m->state_sha256, sha, 32);
  g_assert_true(vms_snap_writer_link_memory(w, mem, &error));
  vms_manifest_add_disk(m, d);
  g_assert_true(vms_snap_writer_commit(w, m, &error));
  g_assert_no_error(error);
  return g_steal_pointer(&dir);
}

/* A snapshot that records a read-only disk (a CD-ROM) is refused by name:
 * push carries the frozen writable disks, never a snapshot without a
 * device it needs (doc/disks.md "Push and pull"). */
static void
test_disks_refused(Fixture *f, gconstpointer data)
{
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/disk:v1");
  VmsDiskRecord *d = vms_disk_record_new();

  vms_manifest_set_string(&d->device, "drive0");
  vms_manifest_set_string(&d->frozen_file, "/srv/images/install.iso");
  d->read_only = TRUE;
  g_autofree char *dir = make_with_disk(f, "withdisk", d);
  g_autofree char *err = RUN_FAIL(f, "push", "--insecure", dir, ref);
  g_assert_nonnull(strstr(err, "disk drive0 is read-only (image /srv/images/install.iso)"));
  g_assert_cmpuint(vms_test_registry_stored_bytes(f->reg), ==, 0);
}

static gboolean
stored_disk_some(Fixture *f, const char *unused)
{
  return vms_test_registry_stored_bytes(f->reg) >= 19 * MIB; /* memory ~3, disk >= 16 */
}

/* The pull's staged disk image holds at least 16 MiB. */
static gboolean
staged_disk_some(Fixture *f, const char *dir)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, NULL);

  for (const char *n; d != NULL && (n = g_dir_read_name(d)) != NULL;) {
    g_autofree char *p = g_build_filename(dir, n, "disk-drive0.raw", NULL);
    if (g_str_has_prefix(n, ".pull-") && g_file_test(p, G_FILE_TEST_EXISTS) && allocated(p) >= 16 * MIB)
      return TRUE;
  }
  return FALSE;
}

/* A snapshot with a disk (an external raw image: 40 random MiB, 4
 * patterned, 4 zero) pushed and pulled with kills half way through the
 * disk: the reruns move only the rest, and the pulled image is the same. */
static void
test_disk_interrupted(Fixture *f, gconstpointer data)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *image = g_build_filename(f->dir, "drive0.raw", NULL);
  g_autofree char *ref = vms_test_registry_ref(f->reg, "vm/dresume:v1");
  g_autofree char *target = g_build_filename(f->dir, "pulled", NULL);
  g_autofree char *pulled = g_build_filename(target, "disk-drive0.raw", NULL);
  VmsDiskRecord *d = vms_disk_record_new();

  write_memory(image, 48, 40);
  vms_manifest_set_string(&d->device, "drive0");
  vms_manifest_set_string(&d->format, "raw");
  vms_manifest_set_string(&d->frozen_file, image);
  d->external = TRUE;
  d->virtual_size = 48 * MIB;
  vms_disk_record_set_identity(d, vms_disk_identity_new(image, "raw", &error));
  g_assert_no_error(error);
  g_autofree char *snap = make_with_disk(f, "dsnap", d);
  const char *const push[] = { "push", "--insecure", "--transfers", "1", snap, ref, NULL };
  const char *const pull[] = { "pull", "--insecure", "--transfers", "1", ref, target, NULL };

  g_autoptr(GSubprocess) p1 = spawn_cli(f, push);
  kill_when(p1, stored_disk_some, f, NULL);
  g_autofree char *o1 = run_ok(f, push);
  guint64 present = vms_test_number_before(o1, " disk blobs already present");
  g_assert_cmpuint(present, >=, 2);
  /* 6 chunk blobs, the digests, the index, the table */
  g_assert_cmpuint(vms_test_number_before(o1, " disk blobs uploaded") + present, ==, 6 + 3);

  g_autoptr(GSubprocess) p2 = spawn_cli(f, pull);
  kill_when(p2, staged_disk_some, f, target);
  g_autofree char *o2 = run_ok(f, pull);
  g_assert_cmpuint(vms_test_number_before(o2, " disk blobs already there"), >=, 1);
  g_assert_cmpuint(vms_test_number_before(o2, " disk bytes received"), <, 34 * MIB);
  assert_same_file(image, pulled);
  g_autofree char *v = RUN_OK(f, "verify", target);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/registry/full-roundtrip", Fixture, NULL, setup, test_full_roundtrip, teardown);
  g_test_add("/registry/diff-chain", Fixture, NULL, setup, test_diff_chain, teardown);
  g_test_add("/registry/missing-parent", Fixture, NULL, setup, test_missing_parent, teardown);
  g_test_add("/registry/corrupt-blob", Fixture, NULL, setup, test_corrupt_blob, teardown);
  g_test_add("/registry/interrupted", Fixture, NULL, setup, test_interrupted, teardown);
  g_test_add("/registry/credentials", Fixture, "wrong", setup, test_credentials, teardown);
  g_test_add("/registry/unreachable", Fixture, NULL, setup, test_unreachable, teardown);
  g_test_add("/registry/bearer-token", Fixture, NULL, setup, test_bearer, teardown);
  g_test_add("/registry/disk-full", Fixture, NULL, setup, test_disk_full, teardown);
  g_test_add("/registry/disks-refused", Fixture, NULL, setup, test_disks_refused, teardown);
  g_test_add("/registry/disk-interrupted", Fixture, NULL, setup, test_disk_interrupted, teardown);
  return g_test_run();
}
