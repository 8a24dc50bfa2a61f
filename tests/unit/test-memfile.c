/* Unit tests for memfile.c: finding guest memory in canned /proc/PID/maps text. */
#include <glib.h>
#include <glib/gstdio.h>
#include <unistd.h>

#include "error.h"
#include "helpers.h"
#include "memfile.h"

typedef struct {
  char *dir;
  char *ram;   /* a real file, so page-size lookup (statfs) works */
  char *maps;  /* maps text naming it */
} Fixture;

#define MIB64 "0x4000000"

static void
fixture_setup(Fixture *f, gconstpointer data)
{
  f->dir = vms_test_tmpdir(NULL);
  f->ram = g_build_filename(f->dir, "guest.ram", NULL);
  vms_test_write_pattern(f->ram, 4096, 1);
  f->maps = g_strdup_printf(
      "55d0c0a00000-55d0c0e00000 r-xp 00000000 08:01 1234 /usr/bin/qemu-system-x86_64\n"
      "7f0000000000-7f0004000000 rw-p 00000000 00:00 0 \n"
      "7f1000000000-7f1004000000 rw-s 00000000 00:1a 4242 %s\n"
      "7f2000000000-7f2000020000 rw-s 00000000 00:1a 4343 %s\n"
      "7f3000000000-7f3000200000 rw-p 001c0000 08:01 777 /usr/lib/x86_64-linux-gnu/libglib-2.0.so.0.7400.6\n"
      "7f4000000000-7f4004000000 rw-s 00000000 00:01 99 /memfd:ram1 (deleted)\n"
      "7ffd00000000-7ffd00021000 rw-p 00000000 00:00 0 [stack]\n",
      f->ram, f->ram);
}

static void
fixture_teardown(Fixture *f, gconstpointer data)
{
  vms_test_rmtree(f->dir);
  g_free(f->dir);
  g_free(f->ram);
  g_free(f->maps);
}

static void
test_by_size(Fixture *f, gconstpointer data)
{
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_true(vms_memfile_find(f->maps, NULL, 64u << 20, &info, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(info.path, ==, f->ram);
  g_assert_cmpuint(info.size, ==, 64u << 20);
  g_assert_cmpuint((guintptr)info.addr, ==, 0x7f1000000000ull);
  g_assert_true(info.shared);
  g_assert_cmpuint(info.page_size, ==, (guint)sysconf(_SC_PAGESIZE));
  g_assert_cmpuint(info.ino, ==, 4242);
}

static void
test_by_path_takes_largest(Fixture *f, gconstpointer data)
{
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_true(vms_memfile_find(f->maps, f->ram, 0, &info, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(info.size, ==, 64u << 20);
}

static void
test_private(Fixture *f, gconstpointer data)
{
  g_autofree char *maps = g_strdup_printf("7f1000000000-7f1008000000 rw-p 00000000 00:1a 5 %s\n",
                                          f->ram);
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_true(vms_memfile_find(maps, NULL, 128u << 20, &info, &error));
  g_assert_false(info.shared);
}

static void
test_path_with_spaces(Fixture *f, gconstpointer data)
{
  g_autofree char *spaced = g_build_filename(f->dir, "my guest.ram", NULL);
  g_autofree char *maps = NULL;
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  vms_test_write_pattern(spaced, 4096, 2);
  maps = g_strdup_printf("7f1000000000-7f1004000000 rw-s 00000000 00:1a 5 %s\n", spaced);
  g_assert_true(vms_memfile_find(maps, spaced, 0, &info, &error));
  g_assert_no_error(error);
  g_assert_cmpstr(info.path, ==, spaced);
}

/* Anonymous and memfd RAM cannot be skipped by x-ignore-shared: the error
 * must tell the user what to put on QEMU's command line. */
static void
test_anonymous_refused_with_hint(Fixture *f, gconstpointer data)
{
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_false(vms_memfile_find(f->maps, NULL, 512u << 20, &info, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED);
  g_assert_nonnull(strstr(error->message, "memory-backend-file"));
  g_assert_nonnull(strstr(error->message, "share=on"));
  g_assert_null(info.path);
}

static void
test_unknown_path(Fixture *f, gconstpointer data)
{
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_false(vms_memfile_find(f->maps, "/nonexistent/ram", 0, &info, &error));
  g_assert_nonnull(strstr(error->message, "mem=/nonexistent/ram"));
}

static void
test_ambiguous(Fixture *f, gconstpointer data)
{
  g_autofree char *maps = g_strdup_printf("7f1000000000-7f1004000000 rw-s 00000000 00:1a 5 %s\n"
                                          "7f2000000000-7f2004000000 rw-s 00000000 00:1a 6 %s.b\n",
                                          f->ram, f->ram);
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_false(vms_memfile_find(maps, NULL, 64u << 20, &info, &error));
  g_assert_nonnull(strstr(error->message, "mem=PATH"));
}

static void
test_deleted(Fixture *f, gconstpointer data)
{
  g_autofree char *maps = g_strdup_printf("7f1000000000-7f1004000000 rw-s 00000000 00:1a 5 %s (deleted)\n",
                                          f->ram);
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_false(vms_memfile_find(maps, NULL, 64u << 20, &info, &error));
  g_assert_nonnull(strstr(error->message, "deleted"));
}

static void
test_garbage_lines(Fixture *f, gconstpointer data)
{
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  g_assert_false(vms_memfile_find("not a maps file\n\n-\nffff-0000 rw-s\n", NULL, 4096, &info,
                                  &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED);
}

/* The real /proc/self/maps of this test, with a file it maps itself. */
static void
test_self(Fixture *f, gconstpointer data)
{
  g_autoptr(GMappedFile) mf = NULL;
  g_auto(VmsMemInfo) info = { 0 };
  g_autoptr(GError) error = NULL;

  mf = g_mapped_file_new(f->ram, TRUE, &error);
  g_assert_no_error(error);
  g_assert_true(vms_memfile_find(NULL, f->ram, 0, &info, &error));
  g_assert_no_error(error);
  g_assert_true((const char *)info.addr == g_mapped_file_get_contents(mf));
  g_assert_false(info.shared); /* GMappedFile maps MAP_PRIVATE */
}

static void
test_page_size(void)
{
  guint32 ps = 0;
  g_autoptr(GError) error = NULL;

  g_assert_true(vms_memfile_page_size("/", &ps, &error));
  g_assert_cmpuint(ps, ==, (guint)sysconf(_SC_PAGESIZE));
  g_assert_false(vms_memfile_page_size("/nonexistent/x", &ps, &error));
  g_assert_nonnull(strstr(error->message, "/nonexistent/x"));
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
#define ADD(name, fn) g_test_add(name, Fixture, NULL, fixture_setup, fn, fixture_teardown)
  ADD("/memfile/by-size", test_by_size);
  ADD("/memfile/by-path-largest", test_by_path_takes_largest);
  ADD("/memfile/private", test_private);
  ADD("/memfile/path-with-spaces", test_path_with_spaces);
  ADD("/memfile/anonymous-refused", test_anonymous_refused_with_hint);
  ADD("/memfile/unknown-path", test_unknown_path);
  ADD("/memfile/ambiguous", test_ambiguous);
  ADD("/memfile/deleted", test_deleted);
  ADD("/memfile/garbage", test_garbage_lines);
  ADD("/memfile/self", test_self);
#undef ADD
  g_test_add_func("/memfile/page-size", test_page_size);
  return g_test_run();
}
