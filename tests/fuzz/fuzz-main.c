/* Replay main for the fuzz targets when they are not built with
 * -fsanitize=fuzzer: runs every file named on the command line (or found in
 * a directory named there) through LLVMFuzzerTestOneInput, so the corpus is
 * an ordinary test. Fails when no input was found: a corpus that silently
 * went missing must not pass. */
#include <glib.h>
#include <stdio.h>

#include "fuzz.h"

static gboolean
replay_file(const char *path, guint *count)
{
  g_autofree char *data = NULL;
  gsize len = 0;
  g_autoptr(GError) error = NULL;

  if (!g_file_get_contents(path, &data, &len, &error)) {
    fprintf(stderr, "fuzz replay: %s\n", error->message);
    return FALSE;
  }
  printf("replay %s (%" G_GSIZE_FORMAT " bytes)\n", path, len);
  LLVMFuzzerTestOneInput((const uint8_t *)data, len);
  (*count)++;
  return TRUE;
}

static gboolean
replay_path(const char *path, guint *count)
{
  g_autoptr(GDir) dir = NULL;
  g_autoptr(GError) error = NULL;
  const char *name;

  if (!g_file_test(path, G_FILE_TEST_IS_DIR))
    return replay_file(path, count);
  dir = g_dir_open(path, 0, &error);
  if (dir == NULL) {
    fprintf(stderr, "fuzz replay: %s\n", error->message);
    return FALSE;
  }
  while ((name = g_dir_read_name(dir)) != NULL) {
    g_autofree char *child = g_build_filename(path, name, NULL);
    if (!replay_file(child, count))
      return FALSE;
  }
  return TRUE;
}

int
main(int argc, char **argv)
{
  guint count = 0;

  for (int i = 1; i < argc; i++) {
    if (!replay_path(argv[i], &count))
      return 1;
  }
  if (count == 0) {
    fprintf(stderr, "fuzz replay: no input files given\n");
    return 1;
  }
  printf("replayed %u inputs\n", count);
  return 0;
}
