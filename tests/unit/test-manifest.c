/* vmsnap unit tests: manifest encode, decode, checks, validation, JSON. */
#include <fcntl.h>
#include <string.h>
#include <unistd.h>
#include <json-glib/json-glib.h>

#include "error.h"
#include "helpers.h"
#include "manifest.h"
#include "util.h"

#define MEM_SIZE (64u * 1024u * 1024u)

static VmsManifest *
make_manifest(void)
{
  VmsManifest *m = vms_test_manifest_full(MEM_SIZE);
  guint8 sha[VMS_SHA256_LEN];

  for (guint i = 0; i < sizeof sha; i++)
    sha[i] = (guint8)(0xa0 + i);
  vms_manifest_set_bytes(&m->state_sha256, sha, sizeof sha);
  m->state_size = 327680;
  vms_manifest_set_string(&m->memory_file, "memory.bin");
  return m;
}

static void
test_new(void)
{
  g_autoptr(VmsManifest) m = vms_manifest_new();

  g_assert_cmpuint(m->version, ==, VMS_MANIFEST_VERSION);
  g_assert_true(g_uuid_string_is_valid(m->id));
  g_assert_cmpstr(m->plugin_version, !=, "");
  g_assert_nonnull(m->created_at);
  g_assert_cmpint(m->created_at->seconds, >, 1700000000);
  g_assert_cmpint(m->created_at->nanos, <, 1000000000);
}

static void
test_round_trip(void)
{
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(VmsManifest) back = NULL;
  g_autoptr(GBytes) bytes = vms_manifest_encode(m);
  g_autoptr(GError) error = NULL;
  gsize len;
  const guint8 *data = g_bytes_get_data(bytes, &len);

  back = vms_manifest_decode(data, len, &error);
  g_assert_no_error(error);
  g_assert_cmpuint(back->memory_size_bytes, ==, MEM_SIZE);
  g_assert_cmpuint(back->vp_count, ==, 2);
  g_assert_cmpuint(back->page_size, ==, 4096);
  g_assert_cmpstr(back->architecture, ==, "x86_64");
  g_assert_cmpstr(back->id, ==, m->id);
  g_assert_cmpint(back->created_at->seconds, ==, m->created_at->seconds);
  g_assert_cmpint(back->created_at->nanos, ==, m->created_at->nanos);
  g_assert_cmpint(back->kind, ==, VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL);
  g_assert_cmpmem(back->state_sha256.data, back->state_sha256.len,
                  m->state_sha256.data, m->state_sha256.len);
  g_assert_cmpuint(back->n_qemu_argv, ==, 3);
  g_assert_cmpstr(back->qemu_argv[2], ==, "65536K");
}

static void
test_decode_encode_identical(void)
{
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(GBytes) first = vms_manifest_encode(m);
  g_autoptr(VmsManifest) back = NULL;
  g_autoptr(GBytes) second = NULL;
  g_autoptr(GError) error = NULL;

  back = vms_manifest_decode(g_bytes_get_data(first, NULL), g_bytes_get_size(first), &error);
  g_assert_no_error(error);
  /* Setters on a decoded manifest must not corrupt it (ownership rule). */
  vms_manifest_set_string(&back->hypervisor_version, m->hypervisor_version);
  vms_manifest_set_argv(back, (const char *const *)m->qemu_argv);
  second = vms_manifest_encode(back);
  g_assert_true(g_bytes_equal(first, second));
}

static void
test_validate_ok(void)
{
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(GError) error = NULL;

  g_assert_true(vms_manifest_validate(m, "x86_64", MEM_SIZE, 2, 4096, &error));
  g_assert_no_error(error);
}

/* Each mismatch fails with VMS_ERROR_MISMATCH and a message that names the
 * field and carries both values. */
static void
expect_mismatch(const VmsManifest *m, const char *arch, guint64 mem, guint32 vps, guint32 page,
                const char *field, const char *snap_value, const char *vm_value)
{
  g_autoptr(GError) error = NULL;

  g_assert_false(vms_manifest_validate(m, arch, mem, vps, page, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_MISMATCH);
  g_test_message("%s", error->message);
  g_assert_nonnull(strstr(error->message, field));
  g_assert_nonnull(strstr(error->message, snap_value));
  g_assert_nonnull(strstr(error->message, vm_value));
}

static void
test_validate_mismatch(void)
{
  g_autoptr(VmsManifest) m = make_manifest();

  expect_mismatch(m, "aarch64", MEM_SIZE, 2, 4096, "architecture", "(x86_64)", "(aarch64)");
  expect_mismatch(m, "x86_64", 128u << 20, 2, 4096, "memory size", "(67108864)", "(134217728)");
  expect_mismatch(m, "x86_64", MEM_SIZE, 4, 4096, "VP count", "(2)", "(4)");
  expect_mismatch(m, "x86_64", MEM_SIZE, 2, 2 << 20, "page size", "(4096)", "(2097152)");
  m->version = 7;
  expect_mismatch(m, "x86_64", MEM_SIZE, 2, 4096, "version", "version 7", "version 1");
}

static void
test_unknown_version_decodes(void)
{
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(GBytes) bytes = NULL;
  g_autoptr(VmsManifest) back = NULL;
  g_autoptr(GError) error = NULL;

  m->version = 7;
  bytes = vms_manifest_encode(m);
  back = vms_manifest_decode(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes), &error);
  g_assert_no_error(error);
  g_assert_cmpuint(back->version, ==, 7);
}

static void
expect_incomplete(VmsManifest *m, const char *what)
{
  g_autoptr(GBytes) bytes = vms_manifest_encode(m);
  g_autoptr(GError) error = NULL;
  VmsManifest *back;

  back = vms_manifest_decode(g_bytes_get_data(bytes, NULL), g_bytes_get_size(bytes), &error);
  g_assert_null(back);
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_test_message("%s", error->message);
  g_assert_nonnull(strstr(error->message, what));
}

static void
test_incomplete_refused(void)
{
  g_autoptr(VmsManifest) m = make_manifest();

  vms_manifest_set_bytes(&m->state_sha256, NULL, 0);
  expect_incomplete(m, "state_sha256");
  g_clear_pointer(&m, vms_manifest_free);
  m = make_manifest();
  m->page_size = 4097;
  expect_incomplete(m, "page size");
  m->page_size = 4096;
  vms_manifest_set_string(&m->architecture, "");
  expect_incomplete(m, "architecture");
  vms_manifest_set_string(&m->architecture, "x86_64");
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  expect_incomplete(m, "doesn't fit");
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;
  expect_incomplete(m, "parent");
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_FULL;
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_COPY;
  vms_manifest_set_string(&m->memory_file, "../../etc/passwd");
  expect_incomplete(m, "memory_file");
}

static void
test_garbage_refused(void)
{
  guint8 garbage[64];
  g_autoptr(GError) error = NULL;

  memset(garbage, 0xff, sizeof garbage);
  g_assert_null(vms_manifest_decode(garbage, sizeof garbage, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_clear_error(&error);
  g_assert_null(vms_manifest_decode(garbage, 0, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
}

/* Every prefix of a valid encoding either fails with an error or decodes to
 * a complete manifest; the one cut inside the last field must fail. */
static void
test_truncated_refused(void)
{
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(GBytes) bytes = vms_manifest_encode(m);
  gsize len;
  const guint8 *data = g_bytes_get_data(bytes, &len);

  for (gsize cut = 0; cut < len; cut++) {
    g_autoptr(GError) error = NULL;
    g_autoptr(VmsManifest) back = vms_manifest_decode(data, cut, &error);
    g_assert_true((back == NULL) != (error == NULL));
    if (cut == len - 1 || cut == len / 2) {
      g_assert_null(back);
      g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
    }
  }
}

static void
test_oversized_refused(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(dir, "manifest.bin", NULL);
  vms_autofd fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  g_autoptr(GError) error = NULL;
  guint8 one = 0;

  g_assert_cmpint(fd, >=, 0);
  /* Sparse, so the test costs nothing; refused from its size alone. */
  g_assert_cmpint(ftruncate(fd, VMS_MANIFEST_MAX_SIZE + 1), ==, 0);
  g_assert_null(vms_manifest_read_fd(fd, NULL, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "16777217 bytes"));
  g_clear_error(&error);
  g_assert_null(vms_manifest_decode(&one, VMS_MANIFEST_MAX_SIZE + 1, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  vms_test_rmtree(dir);
}

static void
test_read_fd_sha(void)
{
  g_autofree char *dir = vms_test_tmpdir(NULL);
  g_autofree char *path = g_build_filename(dir, "manifest.bin", NULL);
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(GBytes) bytes = vms_manifest_encode(m);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsManifest) back = NULL;
  g_autofree char *want = g_compute_checksum_for_bytes(G_CHECKSUM_SHA256, bytes);
  guint8 sha[VMS_SHA256_LEN];
  char hex[65];
  vms_autofd fd = -1;

  g_assert_true(g_file_set_contents(path, g_bytes_get_data(bytes, NULL),
                                    g_bytes_get_size(bytes), NULL));
  fd = open(path, O_RDONLY | O_CLOEXEC);
  back = vms_manifest_read_fd(fd, sha, &error);
  g_assert_no_error(error);
  vms_sha256_hex(sha, hex);
  g_assert_cmpstr(hex, ==, want);
  vms_test_rmtree(dir);
}

/* A manifest as a real save writes it: a DIFF with every field set and a
 * QEMU command line of realistic length. */
static VmsManifest *
make_real_manifest(void)
{
  const char *argv[] = {
    "qemu-system-x86_64", "-accel", "tcg", "-m", "256M", "-smp", "2", "-nographic",
    "-object", "memory-backend-file,id=ram0,size=256M,mem-path=/dev/shm/vm0.ram,share=on",
    "-machine", "pc,memory-backend=ram0", "-chardev",
    "socket,id=vmsnap-qmp,path=/run/vm0/qmp.sock,server=on,wait=off",
    "-mon", "chardev=vmsnap-qmp,mode=control", "-plugin",
    "/usr/lib/vmsnap/libvmsnap.so,qmp=/run/vm0/qmp.sock,control=/run/vm0/vmsnap.sock",
    "-kernel", "/boot/vmlinuz", "-append", "console=ttyS0 quiet", NULL,
  };
  VmsManifest *m = make_manifest();
  guint8 sha[VMS_SHA256_LEN];

  memset(sha, 0x5c, sizeof sha);
  m->kind = VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF;
  m->memory_capture = VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_DIFF;
  vms_manifest_set_string(&m->parent, "../base");
  vms_manifest_set_bytes(&m->parent_manifest_sha256, sha, sizeof sha);
  vms_manifest_set_bytes(&m->page_map_sha256, sha, sizeof sha);
  vms_manifest_set_bytes(&m->diff_data_sha256, sha, sizeof sha);
  vms_manifest_set_string(&m->hypervisor_version, "QEMU 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)");
  vms_manifest_set_string(&m->machine_type, "pc-i440fx-7.2");
  vms_manifest_set_string(&m->memory_file, "memory.diff");
  vms_manifest_set_argv(m, argv);
  m->diff_data_bytes = 1u << 20;
  m->diff_extents = 12;
  return m;
}

/* SPEC 10: every single-bit flip anywhere in manifest.bin is refused
 * (before, 820 of 933 flips of a real manifest decoded). */
static void
test_every_bit_flip_refused(void)
{
  g_autoptr(VmsManifest) m = make_real_manifest();
  g_autoptr(GBytes) bytes = vms_manifest_encode(m);
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(bytes, &len);
  g_autofree guint8 *mut = g_memdup2(data, len);

  g_assert_cmpuint(len, >, 500);
  for (gsize bit = 0; bit < len * 8; bit++) {
    g_autoptr(GError) error = NULL;
    mut[bit / 8] ^= (guint8)(1u << (bit % 8));
    g_autoptr(VmsManifest) back = vms_manifest_decode(mut, len, &error);
    if (back != NULL)
      g_error("flipping bit %" G_GSIZE_FORMAT " of %" G_GSIZE_FORMAT " went unnoticed", bit,
              len * 8);
    g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
    mut[bit / 8] ^= (guint8)(1u << (bit % 8));
  }
  g_autoptr(VmsManifest) ok = vms_manifest_decode(mut, len, NULL);
  g_assert_nonnull(ok);
}

/* A manifest without the checksum (an older writer, or a bare protobuf) is
 * refused by name; one with fields this vmsnap doesn't know is covered by
 * the checksum and decodes. */
static void
test_seal(void)
{
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(GBytes) bytes = vms_manifest_encode(m);
  gsize len = 0;
  const guint8 *data = g_bytes_get_data(bytes, &len);
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) newer = g_byte_array_new();
  const guint8 unknown[] = { 0xa2, 0x06, 0x03, 'n', 'e', 'w' }; /* field 100, "new" */

  g_assert_null(vms_manifest_decode(data, len - 35, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_CORRUPT);
  g_assert_nonnull(strstr(error->message, "has no checksum"));
  g_clear_error(&error);
  g_byte_array_append(newer, data, len - 35);
  g_byte_array_append(newer, unknown, sizeof unknown);
  g_autoptr(GBytes) sealed = vms_manifest_seal(newer->data, newer->len);
  g_autoptr(VmsManifest) back = vms_manifest_decode(g_bytes_get_data(sealed, NULL),
                                                    g_bytes_get_size(sealed), &error);
  g_assert_no_error(error);
  g_assert_cmpstr(back->id, ==, m->id);
  g_assert_cmpuint(back->content_sha256.len, ==, 0);
  /* Re-encoded, the unknown field is gone (doc/format.md) and the seal is new. */
  g_autoptr(GBytes) again = vms_manifest_encode(back);
  g_assert_true(g_bytes_equal(again, bytes));
}

static void
test_json(void)
{
  g_autoptr(VmsManifest) m = make_manifest();
  g_autoptr(JsonObject) obj = vms_manifest_to_json(m);
  JsonObject *ts;

  g_assert_cmpint(json_object_get_int_member(obj, "version"), ==, 1);
  g_assert_cmpstr(json_object_get_string_member(obj, "kind"), ==, "FULL");
  g_assert_cmpstr(json_object_get_string_member(obj, "memory_capture"), ==, "LINK");
  g_assert_cmpstr(json_object_get_string_member(obj, "architecture"), ==, "x86_64");
  g_assert_cmpint(json_object_get_int_member(obj, "memory_size_bytes"), ==, MEM_SIZE);
  g_assert_cmpstr(json_object_get_string_member(obj, "state_sha256"), ==,
                  "a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3b4b5b6b7b8b9babbbcbdbebf");
  g_assert_true(json_object_get_null_member(obj, "parent"));
  ts = json_object_get_object_member(obj, "created_at");
  g_assert_cmpint(json_object_get_int_member(ts, "seconds"), ==, m->created_at->seconds);
  g_assert_cmpuint(json_array_get_length(json_object_get_array_member(obj, "qemu_argv")), ==, 3);
  g_assert_cmpstr(vms_manifest_capture_name(VMSNAP__V1__MEMORY_CAPTURE__MEMORY_CAPTURE_REFLINK),
                  ==, "REFLINK");
  g_assert_cmpstr(vms_manifest_kind_name(VMSNAP__V1__SNAPSHOT_KIND__SNAPSHOT_KIND_DIFF), ==, "DIFF");
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/manifest/new", test_new);
  g_test_add_func("/manifest/round-trip", test_round_trip);
  g_test_add_func("/manifest/decode-encode-identical", test_decode_encode_identical);
  g_test_add_func("/manifest/validate-ok", test_validate_ok);
  g_test_add_func("/manifest/validate-mismatch", test_validate_mismatch);
  g_test_add_func("/manifest/unknown-version-decodes", test_unknown_version_decodes);
  g_test_add_func("/manifest/incomplete-refused", test_incomplete_refused);
  g_test_add_func("/manifest/garbage-refused", test_garbage_refused);
  g_test_add_func("/manifest/truncated-refused", test_truncated_refused);
  g_test_add_func("/manifest/oversized-refused", test_oversized_refused);
  g_test_add_func("/manifest/read-fd-sha", test_read_fd_sha);
  g_test_add_func("/manifest/json", test_json);
  g_test_add_func("/manifest/every-bit-flip-refused", test_every_bit_flip_refused);
  g_test_add_func("/manifest/seal", test_seal);
  return g_test_run();
}
