/* Unit tests for plugin/qemu/state-strip.c: QEMU migration streams built
 * here record by record, the way QEMU 7.2 writes them, and the stream that
 * must come out (every record but the guest RAM block's pages). */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "state-strip.h"
#include "util.h"

#define RAM_SIZE 65536u
#define PG 4096u

typedef struct {
  GByteArray *in;    /* the stream QEMU wrote */
  GByteArray *want;  /* the stream without the guest RAM's page records */
} Streams;

static void
put(Streams *s, gboolean kept, const void *data, gsize len)
{
  g_byte_array_append(s->in, data, (guint)len);
  if (kept)
    g_byte_array_append(s->want, data, (guint)len);
}

static void
put_be(Streams *s, gboolean kept, guint64 v, guint n)
{
  guint8 b[8];

  for (guint i = 0; i < n; i++)
    b[i] = (guint8)(v >> (8 * (n - 1 - i)));
  put(s, kept, b, n);
}

static void
put_name(Streams *s, gboolean kept, const char *name)
{
  put_be(s, kept, strlen(name), 1);
  put(s, kept, name, strlen(name));
}

/* A page record: @block NULL continues the last block. */
static void
put_page(Streams *s, gboolean kept, const char *block, guint64 addr, gboolean zero, guint8 fill)
{
  guint8 page[PG];

  put_be(s, kept, addr | (zero ? 0x02 : 0x08) | (block == NULL ? 0x20 : 0), 8);
  if (block != NULL)
    put_name(s, kept, block);
  memset(page, fill, sizeof(page));
  put(s, kept, page, zero ? 1 : PG);
}

static void
put_header(Streams *s)
{
  put_be(s, TRUE, 0x5145564d, 4);
  put_be(s, TRUE, 3, 4);
  put_be(s, TRUE, 0x07, 1);
  put_be(s, TRUE, 13, 4);
  put(s, TRUE, "pc-i440fx-7.2", 13);
  put_be(s, TRUE, 0x05, 1);
  put_name(s, TRUE, "configuration/capabilities");
  put_be(s, TRUE, 1, 4);
  put_be(s, TRUE, 2, 4);
  put_name(s, TRUE, "x-ignore-shared");
  put_name(s, TRUE, "events");
}

static void
put_ram_start(Streams *s)
{
  put_be(s, TRUE, 0x01, 1);
  put_be(s, TRUE, 2, 4);
  put_name(s, TRUE, "ram");
  put_be(s, TRUE, 0, 4);
  put_be(s, TRUE, 4, 4);
  put_be(s, TRUE, (RAM_SIZE + 2 * PG) | 0x04, 8);
  put_name(s, TRUE, "ram0");
  put_be(s, TRUE, RAM_SIZE, 8);
  put_be(s, TRUE, 0, 8);
  put_name(s, TRUE, "vga.vram");
  put_be(s, TRUE, 2 * PG, 8);
  put_be(s, TRUE, 0xfd000000, 8);
  put_be(s, TRUE, 0x10, 8);
  put_be(s, TRUE, 0x7e, 1);
  put_be(s, TRUE, 2, 4);
}

static void
put_section(Streams *s, guint8 type)
{
  put_be(s, TRUE, type, 1);
  put_be(s, TRUE, 2, 4);
}

static void
put_section_end(Streams *s)
{
  put_be(s, TRUE, 0x10, 8);
  put_be(s, TRUE, 0x7e, 1);
  put_be(s, TRUE, 2, 4);
}

/* A whole stream: guest RAM pages (dropped) between VGA pages (kept),
 * across two sections, then a device section and the end. */
static void
build_stream(Streams *s)
{
  put_header(s);
  put_ram_start(s);
  put_section(s, 0x02);
  put_page(s, FALSE, "ram0", 0, FALSE, 0x11);
  put_page(s, FALSE, NULL, PG, TRUE, 0);
  put_page(s, TRUE, "vga.vram", 0, FALSE, 0x22);
  put_page(s, TRUE, NULL, PG, TRUE, 0);
  put_page(s, FALSE, "ram0", 2 * PG, FALSE, 0x33);
  put_section_end(s);
  put_section(s, 0x03);
  put_page(s, FALSE, NULL, 3 * PG, FALSE, 0x44);
  put_section_end(s);
  put_be(s, TRUE, 0x04, 1);
  put_be(s, TRUE, 3, 4);
  put_name(s, TRUE, "timer");
  put(s, TRUE, "\0\0\0\0\0\0\0\002device-bytes-ram0", 25);
  put_be(s, TRUE, 0x00, 1);
}

static int
file_with(const GByteArray *data)
{
  g_autofree char *path = NULL;
  g_autoptr(GError) error = NULL;
  int fd = g_file_open_tmp("vmsnap-strip-XXXXXX", &path, &error);

  g_assert_no_error(error);
  g_unlink(path);
  if (data != NULL)
    g_assert_cmpint(vms_pwrite_full(fd, data->data, data->len, 0), ==, 0);
  return fd;
}

static GByteArray *
file_bytes(int fd)
{
  GByteArray *out = g_byte_array_new();
  guint8 buf[65536];
  gssize n;
  guint64 off = 0;

  while ((n = vms_pread_full(fd, buf, sizeof(buf), off)) > 0) {
    g_byte_array_append(out, buf, (guint)n);
    off += (guint64)n;
  }
  return out;
}

static void
test_strips_guest_ram(void)
{
  Streams s = { g_byte_array_new(), g_byte_array_new() };
  g_autoptr(GError) error = NULL;
  guint64 dropped = 0;

  build_stream(&s);
  vms_autofd src = file_with(s.in);
  vms_autofd dst = file_with(NULL);
  g_assert_true(vms_state_strip_ram(src, dst, RAM_SIZE, PG, &dropped, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(dropped, ==, 4);
  g_autoptr(GByteArray) got = file_bytes(dst);
  g_assert_cmpmem(got->data, got->len, s.want->data, s.want->len);
  g_assert_cmpuint(got->len, <, s.in->len - 3 * PG);
  g_byte_array_unref(s.in);
  g_byte_array_unref(s.want);
}

/* What the reader does not know is refused, and nothing is written. */
static void
test_refuses(gconstpointer data)
{
  const char *what = data;
  Streams s = { g_byte_array_new(), g_byte_array_new() };
  g_autoptr(GError) error = NULL;
  guint64 dropped = 7, ram_size = RAM_SIZE;

  build_stream(&s);
  if (g_str_equal(what, "truncated")) {
    g_byte_array_set_size(s.in, s.in->len / 2 + 3);
  } else if (g_str_equal(what, "xbzrle")) {
    /* A page record with XBZRLE's flag, which this reader does not decode. */
    g_byte_array_set_size(s.in, 0);
    g_byte_array_set_size(s.want, 0);
    put_header(&s);
    put_ram_start(&s);
    put_section(&s, 0x02);
    put_be(&s, TRUE, 0x40, 8);
    put_name(&s, TRUE, "ram0");
    put_section_end(&s);
  } else if (g_str_equal(what, "no-block")) {
    ram_size = 3 * PG;
  } else if (g_str_equal(what, "magic")) {
    s.in->data[0] ^= 0xff;
  }
  vms_autofd src = file_with(s.in);
  vms_autofd dst = file_with(NULL);
  g_assert_false(vms_state_strip_ram(src, dst, ram_size, PG, &dropped, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED);
  g_test_message("%s: %s", what, error->message);
  g_assert_cmpuint(dropped, ==, 7);
  g_autoptr(GByteArray) got = file_bytes(dst);
  g_assert_cmpuint(got->len, ==, 0);
  g_byte_array_unref(s.in);
  g_byte_array_unref(s.want);
}

int
main(int argc, char **argv)
{
  g_test_init(&argc, &argv, NULL);
  g_test_add_func("/state-strip/guest-ram", test_strips_guest_ram);
  g_test_add_data_func("/state-strip/refuses/truncated", "truncated", test_refuses);
  g_test_add_data_func("/state-strip/refuses/xbzrle", "xbzrle", test_refuses);
  g_test_add_data_func("/state-strip/refuses/no-block", "no-block", test_refuses);
  g_test_add_data_func("/state-strip/refuses/magic", "magic", test_refuses);
  return g_test_run();
}
