/* vmsnap integration tests: per-test directories and file digests (see
 * harness.h). */
#include "harness.h"
#include "harness-private.h"

#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

#include <gio/gunixoutputstream.h>



char *
vms_test_make_dir(const char *name)
{
  g_autofree char *tmpl = g_strdup_printf("%s/vmsnap-%s-XXXXXX",
                                          vms_harness_env_or("VMSNAP_TEST_TMPDIR", "/dev/shm"), name);
  char *dir = g_mkdtemp(tmpl);

  g_assert_nonnull(dir);
  if (vms_harness_temp_dirs != NULL)
    g_ptr_array_add(vms_harness_temp_dirs, g_strdup(dir));
  return g_steal_pointer(&tmpl);
}

void
vms_test_rm_rf(const char *path)
{
  g_autoptr(GDir) dir = g_dir_open(path, 0, NULL);

  if (dir != NULL && !g_file_test(path, G_FILE_TEST_IS_SYMLINK)) {
    const char *name;
    while ((name = g_dir_read_name(dir)) != NULL) {
      g_autofree char *child = g_build_filename(path, name, NULL);
      vms_test_rm_rf(child);
    }
    (void)rmdir(path);
  } else {
    (void)unlink(path);
  }
}

char *
vms_test_file_sha256(const char *path, GError **error)
{
  g_autoptr(GMappedFile) f = g_mapped_file_new(path, FALSE, error);

  if (f == NULL)
    return NULL;
  return g_compute_checksum_for_data(G_CHECKSUM_SHA256, (const guchar *)g_mapped_file_get_contents(f),
                                     g_mapped_file_get_length(f));
}

static gint
compare_strings(gconstpointer a, gconstpointer b)
{
  return g_strcmp0(*(const char *const *)a, *(const char *const *)b);
}

char *
vms_test_dir_digest(const char *dir, GError **error)
{
  g_autoptr(GDir) d = g_dir_open(dir, 0, error);
  g_autoptr(GPtrArray) lines = g_ptr_array_new_with_free_func(g_free);
  const char *name;

  if (d == NULL)
    return NULL;
  while ((name = g_dir_read_name(d)) != NULL) {
    g_autofree char *path = g_build_filename(dir, name, NULL);
    if (!g_file_test(path, G_FILE_TEST_IS_REGULAR) || g_file_test(path, G_FILE_TEST_IS_SYMLINK))
      continue;
    g_autofree char *sum = vms_test_file_sha256(path, error);
    if (sum == NULL)
      return NULL;
    g_ptr_array_add(lines, g_strdup_printf("%s %s\n", name, sum));
  }
  g_ptr_array_sort(lines, compare_strings);
  g_ptr_array_add(lines, NULL);
  return g_strjoinv("", (char **)lines->pdata);
}

