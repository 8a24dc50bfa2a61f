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
  return g_test_run();
}
