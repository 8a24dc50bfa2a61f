/* vmsnap fuzz target: the disk table of a registry artifact
 * (plugin/registry/disk-table.c), JSON from the registry that a pull trusts
 * only after these checks. Anything the parser accepts must re-encode,
 * parse again and encode to the same bytes, with every field inside the
 * bounds the parser promises; anything it refuses must say so with an
 * error naming the artifact. */
#include <glib.h>
#include <string.h>

#include "disk-table.h"
#include "fuzz.h"
#include "reference.h"

static void
check_bounds(const VmsRegDiskTable *t)
{
  g_assert_true(t->chunk_size >= (1u << 16) && (t->chunk_size & (t->chunk_size - 1)) == 0);
  for (guint i = 0; i < t->disks->len; i++) {
    const VmsRegDiskEntry *e = &g_array_index(t->disks, VmsRegDiskEntry, i);
    g_assert_true(e->device != NULL && e->device[0] != '\0');
    g_assert_true(e->parent_file >= -1 && e->parent_file <= 64);
    g_assert_cmpuint(e->files->len, <=, 64);
    for (guint j = 0; j < e->files->len; j++) {
      const VmsRegDiskFile *f = &g_array_index(e->files, VmsRegDiskFile, j);
      g_assert_null(strchr(f->format, '/'));
      g_assert_true(vms_reg_digest_valid(f->digests) && vms_reg_digest_valid(f->index));
    }
  }
}

int
LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
  g_autoptr(GBytes) json = g_bytes_new(data, size);
  g_autoptr(GError) error = NULL;
  g_autoptr(VmsRegDiskTable) t = vms_reg_disk_table_from_json(json, "fuzz/ref", &error);

  if (t == NULL) {
    g_assert_nonnull(error);
    g_assert_nonnull(strstr(error->message, "fuzz/ref"));
    return 0;
  }
  check_bounds(t);
  g_autoptr(GBytes) first = vms_reg_disk_table_to_json(t);
  g_autoptr(VmsRegDiskTable) again = vms_reg_disk_table_from_json(first, "fuzz/ref", &error);
  g_assert_no_error(error);
  g_autoptr(GBytes) second = vms_reg_disk_table_to_json(again);
  g_assert_true(g_bytes_equal(first, second));
  return 0;
}
