/* Disks through a real registry (doc/spec.md sections 8 and 12, doc/disks.md
 * "Push and pull"): a Linux guest on a qcow2 disk over a raw base image
 * writes a file and is saved twice; a clone of the first snapshot saves a
 * diff. All three are pushed: the second snapshot finds its shared backing
 * files' blobs in the registry, the diff carries only its own disk layer.
 * Then the source directory is moved away, and the pulled snapshot and the
 * diff pulled beside it verify and restore: the guests read their files,
 * their histories run on and the filesystems are clean. A pull onto a full
 * filesystem fails naming the disk and commits nothing; run again with
 * room it keeps what was staged. A corrupt disk blob fails the pull by
 * name. */
#include "disk-fixture.h"
#include "registry-fixture.h"

#include <stdio.h>
#include <string.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include "disk-local.h"
#include "snapdir.h"

typedef struct {
  DiskFixture *f;
  VmsTestRegistry *reg;
  char *src;     /* the source host's files: VM, images, snapshots */
  char *target;  /* the other host's snapshots */
  char *digest1; /* snap1's OCI manifest */
} Hosts;

static char *
cli_ok(Hosts *h, const char *const *args)
{
  char *out = NULL;
  g_autofree char *err = NULL;
  int st = vms_test_registry_cliv(h->reg, args, &out, &err);

  if (st != 0)
    g_error("vmsnap %s failed (%d): %s", args[0], st, err);
  return out;
}

static void
run_tool(const char *const *argv, char **ret_out)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *err = NULL;
  int status = 0;

  g_assert_true(g_spawn_sync(NULL, (char **)argv, NULL, G_SPAWN_SEARCH_PATH, NULL, NULL, ret_out,
                             &err, &status, &error));
  g_assert_no_error(error);
  if (!g_spawn_check_wait_status(status, NULL))
    g_error("%s failed: %s", argv[0], err);
}

static guint64
allocated(const char *path)
{
  struct stat st;

  g_assert_cmpint(stat(path, &st), ==, 0);
  return (guint64)st.st_blocks * 512;
}

static char *
path_in(const char *dir, const char *name)
{
  return g_build_filename(dir, name, NULL);
}

/* The original VM on root.qcow2 over base.raw: writes a marker file, is
 * saved (then=resume, so the VM goes on in an overlay), writes on and is
 * saved again (then=quit): two snapshots sharing both image files. */
static void
save_originals(Hosts *h)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *vmdir = path_in(h->src, "orig");
  g_autofree char *base = path_in(vmdir, "base.raw");
  g_autofree char *root = path_in(vmdir, "root.qcow2");
  g_autofree char *snap1 = path_in(h->src, "snap1");
  g_autofree char *snap2 = path_in(h->src, "snap2");
  int status = 0;

  g_assert_cmpint(g_mkdir_with_parents(vmdir, 0700), ==, 0);
  g_assert_true(vms_linux_copy_root(h->f->guest, base, &error));
  const char *const create[] = { "qemu-img", "create", "-q", "-f", "qcow2", "-b", base,
                                 "-F", "raw", root, NULL };
  run_tool(create, NULL);
  VmsVm *orig = h->f->vms[0] = vms_vm_new(vmdir);
  vms_linux_vm_setup(orig, h->f->guest);
  vms_linux_add_disk(orig, "root", root, "qcow2");
  disk_start(orig);
  disk_start_writer(orig, "orig", 10);
  g_free(vms_linux_run_ok(orig, "echo pulled-across-hosts > /data/marker && sync"));
  g_autoptr(JsonObject) r1 = disk_save(orig, snap1, "copy", "resume");
  g_assert_cmpint(json_object_get_int_member(r1, "disks"), ==, 1);
  disk_tag_and_wait(orig, "later", 5);
  g_autoptr(JsonObject) r2 = disk_save(orig, snap2, "copy", "quit");
  g_assert_true(vms_vm_wait_exit(orig, 60000, &status, &error));
}

/* A clone of snap1 writes its own file and saves a diff (its overlay
 * becomes the diff's disk layer over snap1's frozen image). */
static void
save_clone_diff(Hosts *h)
{
  g_autoptr(GError) error = NULL;
  g_autofree char *snap1 = path_in(h->src, "snap1");
  g_autofree char *d1 = path_in(h->src, "d1");
  g_autofree char *ddir = path_in(h->src, "disks-a");
  int status = 0;

  g_assert_cmpint(g_mkdir_with_parents(ddir, 0700), ==, 0);
  const char *const in_ddir[] = { "--disk-dir", ddir, NULL };
  VmsVm *a = disk_clone(h->f, 1, "src/clone-a", snap1, in_ddir);
  g_autofree char *marker = vms_linux_run_ok(a, "cat /data/marker");
  g_assert_cmpstr(g_strchomp(marker), ==, "pulled-across-hosts");
  disk_tag_and_wait(a, "a", 5);
  g_free(vms_linux_run_ok(a, "echo from-clone-a > /data/clone-a && sync"));
  g_autoptr(JsonObject) r = disk_save(a, d1, "diff", "quit");
  g_assert_cmpstr(json_object_get_string_member(r, "kind"), ==, "DIFF");
  g_assert_true(vms_vm_wait_exit(a, 60000, &status, &error));
}

/* Pushes all three and checks what moved. */
static void
push_all(Hosts *h)
{
  g_autofree char *snap1 = path_in(h->src, "snap1");
  g_autofree char *snap2 = path_in(h->src, "snap2");
  g_autofree char *d1 = path_in(h->src, "d1");
  g_autofree char *overlay = path_in(h->src, "orig/root-snap1.qcow2");
  g_autofree char *ref1 = vms_test_registry_ref(h->reg, "vm/disks:s1");
  g_autofree char *ref2 = vms_test_registry_ref(h->reg, "vm/disks:s2");
  g_autofree char *refd = vms_test_registry_ref(h->reg, "vm/disks:d1");

  const char *const p1[] = { "push", "--insecure", snap1, ref1, NULL };
  g_autofree char *o1 = cli_ok(h, p1);
  g_assert_cmpuint(vms_test_number_before(o1, " image file(s)"), ==, 2); /* root.qcow2, base.raw */
  guint64 sent1 = vms_test_number_before(o1, " disk blobs uploaded");
  g_assert_cmpuint(sent1, >=, 5); /* 2 x (digests, index, >= 1 chunk blob) + the table */
  h->digest1 = g_strndup(strstr(o1, "sha256:"), 71);

  /* The sibling shares root.qcow2 and base.raw: their blobs are found by
   * HEAD, only its own overlay's are sent. */
  const char *const p2[] = { "push", "--insecure", snap2, ref2, NULL };
  g_autofree char *o2 = cli_ok(h, p2);
  g_assert_cmpuint(vms_test_number_before(o2, " image file(s)"), ==, 3);
  g_assert_cmpuint(vms_test_number_before(o2, " disk blobs already present"), >=, sent1 - 1);
  g_assert_cmpuint(vms_test_number_before(o2, " disk bytes sent"), <,
                   allocated(overlay) + (256u << 10));

  /* The diff: its parent is there (1 snapshot), it carries only the clone's overlay. */
  const char *const p3[] = { "push", "--insecure", d1, refd, NULL };
  g_autofree char *o3 = cli_ok(h, p3);
  g_assert_cmpuint(vms_test_number_before(o3, " snapshot(s)"), ==, 1);
  g_assert_cmpuint(vms_test_number_before(o3, " image file(s)"), ==, 1);
}

static void
verify_ok(Hosts *h, const char *dir)
{
  const char *const verify[] = { "verify", dir, NULL };
  g_autofree char *out = cli_ok(h, verify);
  g_assert_nonnull(strstr(out, "1 disk(s) checked (pulled: identities of this host"));
}

/* Pulls snap1 onto the "other host"; checks its disk chain there. */
static void
pull_full(Hosts *h, const char *moved)
{
  g_autofree char *ref1 = vms_test_registry_ref(h->reg, "vm/disks:s1");
  g_autofree char *snap1 = path_in(h->target, "snap1");
  g_autofree char *top = path_in(snap1, "disk-root.qcow2");
  g_autofree char *base = path_in(snap1, "disk-root.1.raw");
  g_autofree char *local = path_in(snap1, VMS_DISKS_LOCAL_FILE);
  g_autofree char *m_src = g_build_filename(moved, "snap1", VMS_MANIFEST_FILE, NULL);
  g_autofree char *m_dst = path_in(snap1, VMS_MANIFEST_FILE);
  g_autofree char *a = NULL, *b = NULL, *info = NULL;
  gsize la = 0, lb = 0;
  struct stat st;

  const char *const pull[] = { "pull", "--insecure", ref1, snap1, NULL };
  g_autofree char *o = cli_ok(h, pull);
  g_assert_cmpuint(vms_test_number_before(o, " image file(s)"), ==, 2);
  g_assert_true(g_file_test(local, G_FILE_TEST_IS_REGULAR));
  /* manifest.bin is the source's, byte for byte (diffs name its digest). */
  g_assert_true(g_file_get_contents(m_src, &a, &la, NULL));
  g_assert_true(g_file_get_contents(m_dst, &b, &lb, NULL));
  g_assert_true(la == lb && memcmp(a, b, la) == 0);
  /* The pulled qcow2 names the pulled base; the base is sparse and 0400. */
  const char *const qinfo[] = { "qemu-img", "info", "-U", "--output=json", top, NULL };
  run_tool(qinfo, &info);
  g_autofree char *want = g_strdup_printf("\"backing-filename\": \"%s\"", base);
  if (strstr(info, want) == NULL)
    g_error("pulled image's backing file is not %s: %s", base, info);
  g_assert_cmpint(stat(base, &st), ==, 0);
  g_assert_cmpuint(allocated(base), <, (guint64)st.st_size);
  g_assert_cmpuint(st.st_mode & 0777, ==, 0400);
  /* The base arrived byte for byte; the rewritten qcow2 header is sound. */
  g_autofree char *src_base = g_build_filename(moved, "orig", "base.raw", NULL);
  const char *const cmp[] = { "cmp", src_base, base, NULL };
  run_tool(cmp, NULL);
  const char *const check[] = { "qemu-img", "check", "-q", "-U", top, NULL };
  run_tool(check, NULL);
  verify_ok(h, snap1);
}

/* The sibling snap2 pulled beside snap1 links the shared base image from
 * it (checked chunk by chunk) instead of fetching it again. */
static void
pull_sibling(Hosts *h)
{
  g_autofree char *ref2 = vms_test_registry_ref(h->reg, "vm/disks:s2");
  g_autofree char *snap2 = path_in(h->target, "snap2");
  g_autofree char *base1 = g_build_filename(h->target, "snap1", "disk-root.1.raw", NULL);
  g_autofree char *base2 = path_in(snap2, "disk-root.2.raw");
  struct stat s1, s2;

  const char *const pull[] = { "pull", "--insecure", ref2, snap2, NULL };
  g_autofree char *o = cli_ok(h, pull);
  g_assert_cmpuint(vms_test_number_before(o, " image file(s)"), ==, 3);
  g_assert_cmpuint(vms_test_number_before(o, " linked from beside it"), ==, 1);
  g_assert_cmpint(stat(base1, &s1), ==, 0);
  g_assert_cmpint(stat(base2, &s2), ==, 0);
  g_assert_cmpuint(s1.st_ino, ==, s2.st_ino);
  g_assert_cmpuint(vms_test_number_before(o, " disk bytes received"), <, allocated(base1) / 2);
  verify_ok(h, snap2);
}

/* Restores @snap on the other host; the guest reads @file (content @want),
 * writes on with @tag, halts; the disk is clean and its history runs @runs. */
static void
restore_and_check(Hosts *h, guint slot, const char *name, const char *snap, const char *file,
                  const char *want, const char *const *runs)
{
  g_autofree char *ddir = path_in(h->target, name);
  g_autofree char *cmd = g_strdup_printf("cat %s", file);

  g_assert_cmpint(g_mkdir_with_parents(ddir, 0700), ==, 0);
  const char *const in_ddir[] = { "--disk-dir", ddir, NULL };
  g_autofree char *rname = g_strdup_printf("target/run-%s", name);
  VmsVm *vm = disk_clone(h->f, slot, rname, snap, in_ddir);
  g_autofree char *got = vms_linux_run_ok(vm, cmd);
  g_assert_cmpstr(g_strchomp(got), ==, want);
  g_free(vms_linux_run_ok(vm, "cat /data/marker"));
  disk_tag_and_wait(vm, runs[g_strv_length((char **)runs) - 1], 5);
  g_autofree char *top = disk_top_image(vm);
  g_assert_true(g_str_has_prefix(top, ddir));
  g_autofree char *hist = disk_halt_and_check(vm, top, top);
  disk_assert_history_runs(hist, runs, 10);
}

/* The diff pulled beside its pulled parent fetches only its own layer. */
static void
pull_diff(Hosts *h, const char *moved)
{
  g_autofree char *refd = vms_test_registry_ref(h->reg, "vm/disks:d1");
  g_autofree char *d1 = path_in(h->target, "d1");
  g_autoptr(GDir) dd = NULL;
  guint64 layer = 0;

  /* The clone's overlay the diff froze (in the moved source's disk dir). */
  g_autofree char *ddir = path_in(moved, "disks-a");
  dd = g_dir_open(ddir, 0, NULL);
  g_assert_nonnull(dd);
  for (const char *n; (n = g_dir_read_name(dd)) != NULL;) {
    g_autofree char *p = path_in(ddir, n);
    layer += allocated(p);
  }
  const char *const pull[] = { "pull", "--insecure", refd, d1, NULL };
  g_autofree char *o = cli_ok(h, pull);
  g_assert_cmpuint(vms_test_number_before(o, " snapshot(s)"), ==, 1);
  g_assert_cmpuint(vms_test_number_before(o, " image file(s)"), ==, 1);
  g_assert_cmpuint(vms_test_number_before(o, " disk bytes received"), <, layer + (256u << 10));
  verify_ok(h, d1);
}

/* The diff pulled into an empty place brings its parent, disks and all. */
static void
pull_chain(Hosts *h)
{
  g_autofree char *refd = vms_test_registry_ref(h->reg, "vm/disks:d1");
  g_autofree char *dir = path_in(h->f->dir, "third-host");
  g_autofree char *d1 = path_in(dir, "d1");
  g_autofree char *base = g_build_filename(dir, "snap1", "disk-root.1.raw", NULL);

  g_assert_cmpint(g_mkdir_with_parents(dir, 0700), ==, 0);
  const char *const pull[] = { "pull", "--insecure", refd, d1, NULL };
  g_autofree char *o = cli_ok(h, pull);
  g_assert_cmpuint(vms_test_number_before(o, " snapshot(s)"), ==, 2);
  g_assert_cmpuint(vms_test_number_before(o, " image file(s)"), ==, 3);
  g_assert_true(g_file_test(base, G_FILE_TEST_IS_REGULAR));
  verify_ok(h, d1);
}

/* A pull onto a filesystem with room for the memory but not the disks:
 * fails naming the disk and the blob, commits nothing; with room, the rerun
 * keeps the staged blobs and the snapshot verifies. */
static void
pull_disk_full(Hosts *h)
{
  g_autofree char *ref1 = vms_test_registry_ref(h->reg, "vm/disks:s1");
  g_autofree char *pulled = path_in(h->target, "snap1");
  g_autofree char *mnt = path_in(h->f->dir, "small");
  g_autofree char *dst = path_in(mnt, "snap1");
  g_autofree char *manifest = path_in(dst, VMS_MANIFEST_FILE);
  g_autofree char *mem = path_in(pulled, VMS_MEMORY_FILE);
  g_autofree char *state = path_in(pulled, VMS_STATE_FILE);
  g_autofree char *err = NULL, *out = NULL;
  guint64 room = allocated(mem) + allocated(state) + (1u << 20);
  g_autofree char *opts = g_strdup_printf("size=%" G_GUINT64_FORMAT "k", room >> 10);

  g_assert_cmpint(g_mkdir_with_parents(mnt, 0700), ==, 0);
  if (mount("tmpfs", mnt, "tmpfs", 0, opts) != 0)
    vms_test_cannot_run("cannot mount a small tmpfs for the disk-full pull (needs root)");
  const char *const pull[] = { "pull", "--insecure", ref1, dst, NULL };
  int st = vms_test_registry_cliv(h->reg, pull, NULL, &err);
  gboolean committed = g_file_test(manifest, G_FILE_TEST_EXISTS);
  g_assert_cmpint(mount("tmpfs", mnt, "tmpfs", MS_REMOUNT, "size=512m"), ==, 0);
  int st2 = vms_test_registry_cliv(h->reg, pull, &out, NULL);
  const char *const verify[] = { "verify", dst, NULL };
  int st3 = vms_test_registry_cliv(h->reg, verify, NULL, NULL);
  g_assert_cmpint(umount2(mnt, MNT_DETACH), ==, 0);
  g_assert_cmpint(st, !=, 0);
  if (strstr(err, "No space left on device") == NULL || strstr(err, "disk root image") == NULL ||
      strstr(err, "blob sha256:") == NULL)
    g_error("the disk-full pull says: %s", err);
  g_assert_false(committed);
  g_assert_cmpint(st2, ==, 0);
  g_assert_cmpuint(vms_test_number_before(out, " blobs already there"), >=, 1);
  g_assert_cmpint(st3, ==, 0);
}

/* A flipped byte in a disk blob in the registry's storage fails the pull,
 * naming the disk, the image file and the blob; nothing is committed. */
static void
pull_corrupt_disk(Hosts *h)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(JsonParser) parser = json_parser_new();
  g_autofree char *mpath = vms_test_registry_blob_path(h->reg, h->digest1);
  g_autofree char *ref1 = vms_test_registry_ref(h->reg, "vm/disks:s1");
  g_autofree char *dst = path_in(h->target, "corrupt");
  g_autofree char *manifest = path_in(dst, VMS_MANIFEST_FILE);
  g_autofree char *err = NULL, *bytes = NULL;
  const char *digest = NULL;
  gsize len = 0;

  g_assert_true(json_parser_load_from_file(parser, mpath, &error));
  JsonArray *layers = json_object_get_array_member(
    json_node_get_object(json_parser_get_root(parser)), "layers");
  for (guint i = 0; digest == NULL && i < json_array_get_length(layers); i++) {
    JsonObject *l = json_array_get_object_element(layers, i);
    if (g_str_equal(json_object_get_string_member(l, "mediaType"),
                    "application/vnd.vmsnap.disk-chunk.v1+zstd"))
      digest = json_object_get_string_member(l, "digest");
  }
  g_assert_nonnull(digest);
  g_autofree char *bpath = vms_test_registry_blob_path(h->reg, digest);
  g_assert_true(g_file_get_contents(bpath, &bytes, &len, &error));
  bytes[len / 2] ^= 0x5a;
  g_assert_true(g_file_set_contents(bpath, bytes, (gssize)len, &error));
  const char *const pull[] = { "pull", "--insecure", ref1, dst, NULL };
  g_assert_cmpint(vms_test_registry_cliv(h->reg, pull, NULL, &err), !=, 0);
  if (strstr(err, digest) == NULL || strstr(err, "disk root image disk-root.") == NULL ||
      strstr(err, "is corrupt") == NULL)
    g_error("the corrupt disk blob's pull says: %s", err);
  g_assert_false(g_file_test(manifest, G_FILE_TEST_EXISTS));
}

static void
test_roundtrip(DiskFixture *f, gconstpointer data)
{
  if (f->guest == NULL)
    return;
  g_autofree char *rdir = path_in(f->dir, "registry");
  g_autofree char *moved = path_in(f->dir, "src-moved");
  g_assert_cmpint(g_mkdir_with_parents(rdir, 0700), ==, 0);
  g_autoptr(VmsTestRegistry) reg = vms_test_registry_start(rdir, NULL, NULL, NULL);
  g_autofree char *src = path_in(f->dir, "src");
  g_autofree char *target = path_in(f->dir, "target");
  g_autofree char *t_snap1 = path_in(target, "snap1");
  g_autofree char *t_d1 = path_in(target, "d1");
  Hosts h = { .f = f, .reg = reg, .src = src, .target = target };
  g_assert_cmpint(g_mkdir_with_parents(h.target, 0700), ==, 0);

  save_originals(&h);
  save_clone_diff(&h);
  push_all(&h);
  /* Nothing on the source's paths is there any more. */
  g_assert_cmpint(rename(h.src, moved), ==, 0);
  pull_full(&h, moved);
  pull_sibling(&h);
  const char *const runs_full[] = { "orig", "c", NULL };
  restore_and_check(&h, 2, "c", t_snap1, "/data/marker",
                    "pulled-across-hosts", runs_full);
  pull_diff(&h, moved);
  const char *const runs_diff[] = { "orig", "a", "e", NULL };
  restore_and_check(&h, 3, "e", t_d1, "/data/clone-a",
                    "from-clone-a", runs_diff);
  pull_chain(&h);
  pull_disk_full(&h);
  pull_corrupt_disk(&h); /* last: it spoils a blob */
  g_free(h.digest1);
}

int
main(int argc, char **argv)
{
  vms_test_init(&argc, &argv);
  g_test_add("/registry/disks", DiskFixture, NULL, disk_setup, test_roundtrip, disk_teardown);
  return g_test_run();
}
