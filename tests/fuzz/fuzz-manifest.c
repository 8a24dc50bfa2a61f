/* vmsnap fuzz target: manifest decode. Anything the decoder accepts must be
 * complete, re-encode, decode again, and then encode to the same bytes; the
 * JSON view and validation must cope with it. Anything it refuses must come
 * with an error. Each input is decoded as it is (which the checksum almost
 * always refuses) and sealed with a valid checksum (vms_manifest_seal), so
 * the protobuf decoder and the checks behind it are fuzzed too. */
#include <glib.h>
#include <json-glib/json-glib.h>

#include "fuzz.h"
#include "manifest.h"

static void
check_round_trip(const VmsManifest *m)
{
  g_autoptr(GBytes) first = vms_manifest_encode(m);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsManifest) again = NULL;
  g_autoptr(GBytes) second = NULL;

  again = vms_manifest_decode(g_bytes_get_data(first, NULL), g_bytes_get_size(first), &error);
  g_assert_no_error(error);
  g_assert_nonnull(again);
  second = vms_manifest_encode(again);
  g_assert_true(g_bytes_equal(first, second));
}

static void
decode_one(const uint8_t *data, size_t size)
{
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsManifest) m = vms_manifest_decode(data, size, &error);

  if (m == NULL) {
    g_assert_nonnull(error);
    g_assert_nonnull(error->message);
    return;
  }
  g_assert_no_error(error);
  g_assert_true(vms_manifest_check_complete(m, NULL));
  check_round_trip(m);
  {
    g_autoptr(JsonObject) obj = vms_manifest_to_json(m);
    g_assert_true(json_object_has_member(obj, "kind"));
  }
  {
    g_autoptr(GError) mismatch = NULL;
    if (!vms_manifest_validate(m, "x86_64", 1u << 30, 1, 4096, &mismatch))
      g_assert_nonnull(mismatch);
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  decode_one(data, size);
  if (size <= VMS_MANIFEST_MAX_SIZE - 64) {
    g_autoptr(GBytes) sealed = vms_manifest_seal(data, size);
    decode_one(g_bytes_get_data(sealed, NULL), g_bytes_get_size(sealed));
  }
  return 0;
}
