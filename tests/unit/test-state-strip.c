/* Unit tests for plugin/qemuctl/state-strip.c: QEMU migration streams built
 * here record by record, the way QEMU 7.2 writes them, and the stream that
 * must come out (every record but the guest RAM block's pages). Shapes: x86
 * (4 KiB pages, no target-page-bits in the stream) and aarch64-like (the
 * stream's configuration says target-page-bits, 12 or 16). */
#include <glib.h>
#include <glib/gstdio.h>
#include <string.h>
#include <unistd.h>

#include "error.h"
#include "state-strip.h"
#include "util.h"

#define RAM_SIZE (1024u * 1024u)
#define PG 4096u
#define PG_MAX 65536u

typedef struct {
  GByteArray *in;    /* the stream QEMU wrote */
  GByteArray *want;  /* the stream without the guest RAM's page records */
  guint page_bits;   /* target-page-bits in the configuration; 0: none (x86) */
  guint pg;          /* the page size the records use */
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
  static guint8 page[PG_MAX];

  put_be(s, kept, addr | (zero ? 0x02 : 0x08) | (block == NULL ? 0x20 : 0), 8);
  if (block != NULL)
    put_name(s, kept, block);
  memset(page, fill, s->pg);
  put(s, kept, page, zero ? 1 : s->pg);
}

static void
put_header(Streams *s)
{
  put_be(s, TRUE, 0x5145564d, 4);
  put_be(s, TRUE, 3, 4);
  put_be(s, TRUE, 0x07, 1);
  if (s->page_bits != 0) {
    /* virt's configuration: target-page-bits comes first (migration/savevm.c) */
    put_be(s, TRUE, 8, 4);
    put(s, TRUE, "virt-7.2", 8);
    put_be(s, TRUE, 0x05, 1);
    put_name(s, TRUE, "configuration/target-page-bits");
    put_be(s, TRUE, 1, 4);
    put_be(s, TRUE, s->page_bits, 4);
  } else {
    put_be(s, TRUE, 13, 4);
    put(s, TRUE, "pc-i440fx-7.2", 13);
  }
  put_be(s, TRUE, 0x05, 1);
  put_name(s, TRUE, "configuration/capabilities");
  put_be(s, TRUE, 1, 4);
  put_be(s, TRUE, 2, 4);
  put_name(s, TRUE, "x-ignore-shared");
  put_name(s, TRUE, "events");
}

static void
put_block(Streams *s, const char *name, guint64 size, guint64 addr)
{
  put_name(s, TRUE, name);
  put_be(s, TRUE, size, 8);
  put_be(s, TRUE, addr, 8);
}

/* The block list: x86 has guest RAM and VGA memory; aarch64 virt has guest
 * RAM and two flash blocks that here are as large as the guest RAM (as with
 * -m 64M, whose flash is 64 MiB each), so only the name tells them apart. */
static void
put_ram_start(Streams *s)
{
  gboolean arm = s->page_bits != 0;

  put_be(s, TRUE, 0x01, 1);
  put_be(s, TRUE, 2, 4);
  put_name(s, TRUE, "ram");
  put_be(s, TRUE, 0, 4);
  put_be(s, TRUE, 4, 4);
  put_be(s, TRUE, (arm ? 3 * RAM_SIZE : RAM_SIZE + 2 * s->pg) | 0x04, 8);
  if (arm) {
    put_block(s, "virt.flash0", RAM_SIZE, 0);
    put_block(s, "virt.flash1", RAM_SIZE, 0);
  }
  put_block(s, "ram0", RAM_SIZE, 0);
  if (!arm)
    put_block(s, "vga.vram", 2 * s->pg, 0xfd000000);
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
  const char *other = s->page_bits != 0 ? "virt.flash0" : "vga.vram";
  guint pg = s->pg;

  put_header(s);
  put_ram_start(s);
  put_section(s, 0x02);
  put_page(s, FALSE, "ram0", 0, FALSE, 0x11);
  put_page(s, FALSE, NULL, pg, TRUE, 0);
  put_page(s, TRUE, other, 0, FALSE, 0x22);
  put_page(s, TRUE, NULL, pg, TRUE, 0);
  put_page(s, FALSE, "ram0", 2 * pg, FALSE, 0x33);
  put_section_end(s);
  put_section(s, 0x03);
  put_page(s, FALSE, NULL, 3 * pg, FALSE, 0x44);
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

/* One shape: the stream's target-page-bits (0: none) and the page size
 * QEMU reports (0: unknown). */
typedef struct {
  guint page_bits;
  guint32 qemu_page_size;
  const char *ram_block;  /* the name QEMU gives (qom-get /machine memory-backend) */
} Shape;

/* Builds the stream of @shape into @s and strips it; *@ret_out gets what
 * was written. */
static gboolean
strip_shape(const Shape *shape, Streams *s, GByteArray **ret_out, guint64 *dropped,
            GError **error)
{
  s->in = g_byte_array_new();
  s->want = g_byte_array_new();
  s->page_bits = shape->page_bits;
  s->pg = shape->page_bits != 0 ? 1u << shape->page_bits : PG;
  build_stream(s);
  vms_autofd src = file_with(s->in);
  vms_autofd dst = file_with(NULL);
  VmsStripGuest guest = { RAM_SIZE, shape->ram_block, shape->qemu_page_size };
  gboolean ok = vms_state_strip_ram(src, dst, &guest, dropped, error);
  *ret_out = file_bytes(dst);
  return ok;
}

static void
test_strips_guest_ram(gconstpointer data)
{
  Streams s;
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) got = NULL;
  guint64 dropped = 0;

  g_assert_true(strip_shape(data, &s, &got, &dropped, &error));
  g_assert_no_error(error);
  g_assert_cmpuint(dropped, ==, 4);
  g_assert_cmpmem(got->data, got->len, s.want->data, s.want->len);
  g_assert_cmpuint(got->len, <, s.in->len - 3 * s.pg);
  g_byte_array_unref(s.in);
  g_byte_array_unref(s.want);
}

/* A page size nobody states, or two that disagree, is refused (reading
 * records with the wrong size would cut pages at the wrong place), and so is
 * a guest RAM block that its size alone cannot name, or that the name
 * given does not. */
static void
test_refuses_block(gconstpointer data)
{
  Streams s;
  g_autoptr(GError) error = NULL;
  g_autoptr(GByteArray) got = NULL;
  guint64 dropped = 7;

  g_assert_false(strip_shape(data, &s, &got, &dropped, &error));
  g_assert_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED);
  g_test_message("%s", error->message);
  g_assert_cmpuint(dropped, ==, 7);
  g_assert_cmpuint(got->len, ==, 0);
  g_byte_array_unref(s.in);
  g_byte_array_unref(s.want);
}

/* What the reader does not know is refused, and nothing is written. */
static void
test_refuses(gconstpointer data)
{
  const char *what = data;
  Streams s = { g_byte_array_new(), g_byte_array_new(), 0, PG };
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
  VmsStripGuest guest = { ram_size, NULL, PG };
  g_assert_false(vms_state_strip_ram(src, dst, &guest, &dropped, &error));
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
  static const Shape x86 = { 0, PG, NULL }, x86_named = { 0, PG, "ram0" },
                     a64 = { 12, 0, "ram0" }, a64_qemu = { 12, PG, "ram0" },
                     a64_64k = { 16, 0, "ram0" }, a64_64k_qemu = { 16, 65536, "ram0" },
                     unknown = { 0, 0, NULL }, disagree = { 16, PG, "ram0" },
                     a64_unnamed = { 12, PG, NULL }, a64_misnamed = { 12, PG, "mach-virt.ram" };

  g_test_add_data_func("/state-strip/guest-ram/x86", &x86, test_strips_guest_ram);
  g_test_add_data_func("/state-strip/guest-ram/x86-named", &x86_named, test_strips_guest_ram);
  g_test_add_data_func("/state-strip/guest-ram/aarch64-4k", &a64, test_strips_guest_ram);
  g_test_add_data_func("/state-strip/guest-ram/aarch64-4k-qemu", &a64_qemu,
                       test_strips_guest_ram);
  g_test_add_data_func("/state-strip/guest-ram/aarch64-64k", &a64_64k, test_strips_guest_ram);
  g_test_add_data_func("/state-strip/guest-ram/aarch64-64k-qemu", &a64_64k_qemu,
                       test_strips_guest_ram);
  g_test_add_data_func("/state-strip/refuses/page-size-unknown", &unknown, test_refuses_block);
  g_test_add_data_func("/state-strip/refuses/page-size-disagrees", &disagree,
                       test_refuses_block);
  g_test_add_data_func("/state-strip/refuses/same-size-unnamed", &a64_unnamed,
                       test_refuses_block);
  g_test_add_data_func("/state-strip/refuses/misnamed", &a64_misnamed, test_refuses_block);
  g_test_add_data_func("/state-strip/refuses/truncated", "truncated", test_refuses);
  g_test_add_data_func("/state-strip/refuses/xbzrle", "xbzrle", test_refuses);
  g_test_add_data_func("/state-strip/refuses/no-block", "no-block", test_refuses);
  g_test_add_data_func("/state-strip/refuses/magic", "magic", test_refuses);
  return g_test_run();
}
