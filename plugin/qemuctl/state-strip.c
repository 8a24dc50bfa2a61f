/* vmsnap plugin: guest RAM out of state.bin (state-strip.h). */
#include "state-strip.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "error.h"
#include "stream.h"
#include "snapdir.h"
#include "util.h"

/* migration/savevm.c */
#define VM_FILE_MAGIC 0x5145564du
#define VM_FILE_VERSION 3u
#define VM_EOF 0x00
#define VM_SECTION_START 0x01
#define VM_SECTION_PART 0x02
#define VM_SECTION_END 0x03
#define VM_SECTION_FULL 0x04
#define VM_SUBSECTION 0x05
#define VM_CONFIGURATION 0x07
#define VM_SECTION_FOOTER 0x7e
/* migration/ram.c */
#define RAM_ZERO 0x02u
#define RAM_MEM_SIZE 0x04u
#define RAM_PAGE 0x08u
#define RAM_EOS 0x10u
#define RAM_CONTINUE 0x20u

typedef struct {
  const guint8 *data;
  gsize len, pos;
  const char *bad;          /* why the stream is not understood; NULL while fine */
  guint64 page_size;        /* QEMU's target page size; 0 while unknown */
  guint64 stream_page_size; /* what the stream's configuration says; 0 if silent */
  guint64 ram_size;
  const char *ram_name;     /* nullable: the guest RAM block's idstr, if known */
  gboolean ignore_shared;   /* x-ignore-shared: the block list carries addresses */
  char ram_block[256];      /* idstr of the guest RAM block; "" until found */
  char cur_block[256];      /* block of the last page record */
  guint32 ram_section;
  gboolean have_ram_section;
  gsize mark;               /* input not yet kept starts here */
  GArray *keep;             /* (offset, length) pairs of input to write */
  guint64 dropped;
} Stream;

static const guint8 *
take(Stream *s, gsize n)
{
  if (s->bad != NULL || n > s->len - s->pos) {
    s->bad = s->bad != NULL ? s->bad : "the stream ends early";
    return NULL;
  }
  s->pos += n;
  return s->data + s->pos - n;
}

static guint64
be(Stream *s, gsize n)
{
  const guint8 *p = take(s, n);
  guint64 v = 0;

  for (gsize i = 0; p != NULL && i < n; i++)
    v = v << 8 | p[i];
  return v;
}

static gint
peek(Stream *s)
{
  return s->bad == NULL && s->pos < s->len ? s->data[s->pos] : -1;
}

/* A length-prefixed (one byte) name into @out (NUL-terminated). */
static void
name(Stream *s, char out[256])
{
  guint64 n = be(s, 1);
  const guint8 *p = take(s, (gsize)n);

  if (p != NULL) {
    memcpy(out, p, (gsize)n);
    out[n] = '\0';
  }
}

static void
drop(Stream *s, gsize from)
{
  guint64 range[2] = { s->mark, from - s->mark };

  if (range[1] > 0)
    g_array_append_vals(s->keep, range, 2);
  s->mark = s->pos;
  s->dropped++;
}

/* The configuration section (vmstate "configuration" and its subsections). */
static void
parse_configuration(Stream *s)
{
  char sub[256];

  take(s, (gsize)be(s, 4)); /* the machine type */
  while (peek(s) == VM_SUBSECTION) {
    take(s, 1);
    name(s, sub);
    be(s, 4); /* version */
    if (g_str_equal(sub, "configuration/target-page-bits")) {
      guint64 bits = be(s, 4);
      if (bits < 10 || bits > 20)
        s->bad = "unexpected target-page-bits";
      s->stream_page_size = G_GUINT64_CONSTANT(1) << bits;
    } else if (g_str_equal(sub, "configuration/capabilities")) {
      guint64 count = be(s, 4);
      for (guint64 i = 0; i < count && s->bad == NULL; i++) {
        char cap[256];
        name(s, cap);
        s->ignore_shared |= g_str_equal(cap, "x-ignore-shared");
        if (g_str_equal(cap, "postcopy-ram"))
          s->bad = "postcopy-ram changes the RAM block list";
      }
    } else if (g_str_equal(sub, "configuration/uuid")) {
      take(s, 16);
    } else if (s->bad == NULL) {
      s->bad = "an unknown configuration subsection";
    }
  }
}

/* The RAM block list of the ram section's start: finds the guest RAM. */
static void
parse_block_list(Stream *s, guint64 total)
{
  while (total > 0 && s->bad == NULL) {
    char block[256];
    name(s, block);
    guint64 used = be(s, 8);
    if (s->ignore_shared)
      be(s, 8); /* the block's guest address */
    if (used > total) {
      s->bad = "the RAM block list does not add up";
      return;
    }
    total -= used;
    if (s->ram_name != NULL && !g_str_equal(block, s->ram_name))
      continue;
    if (used != s->ram_size && s->ram_name != NULL)
      s->bad = "the guest RAM block's size is not the guest RAM's";
    else if (used == s->ram_size && s->ram_block[0] != '\0')
      s->bad = "two RAM blocks have the guest RAM's size, and no name tells them apart";
    else if (used == s->ram_size)
      g_strlcpy(s->ram_block, block, sizeof(s->ram_block));
  }
}

/* The records of one ram section, up to its EOS. */
static void
parse_ram(Stream *s)
{
  while (s->bad == NULL) {
    gsize start = s->pos;
    guint64 hdr = be(s, 8);
    guint64 flags = hdr & (s->page_size - 1);

    if (flags == RAM_MEM_SIZE) {
      parse_block_list(s, hdr & ~(s->page_size - 1));
    } else if (flags == RAM_EOS) {
      return;
    } else if ((flags & (RAM_ZERO | RAM_PAGE)) != 0 &&
               (flags & ~(guint64)(RAM_ZERO | RAM_PAGE | RAM_CONTINUE)) == 0 &&
               (flags & (RAM_ZERO | RAM_PAGE)) != (RAM_ZERO | RAM_PAGE)) {
      if ((flags & RAM_CONTINUE) == 0)
        name(s, s->cur_block);
      else if (s->cur_block[0] == '\0')
        s->bad = "a page record continues no block";
      take(s, (flags & RAM_ZERO) ? 1 : (gsize)s->page_size);
      if (s->bad == NULL && s->ram_block[0] != '\0' && g_str_equal(s->cur_block, s->ram_block))
        drop(s, start);
    } else if (s->bad == NULL) {
      s->bad = "a RAM record with flags this reader does not know (compression, XBZRLE, ...)";
    }
  }
}

static void
footer(Stream *s, guint32 id)
{
  if (peek(s) != VM_SECTION_FOOTER)
    return;
  take(s, 1);
  if (be(s, 4) != id && s->bad == NULL)
    s->bad = "a section footer names another section";
}

/* One section; FALSE at the first device section or the end (the rest is kept as is). */
static gboolean
parse_section(Stream *s)
{
  char idstr[256];
  gint type = peek(s);
  guint32 id;

  if (type != VM_SECTION_START && type != VM_SECTION_PART && type != VM_SECTION_END)
    return FALSE;
  take(s, 1);
  id = (guint32)be(s, 4);
  if (type == VM_SECTION_START) {
    name(s, idstr);
    be(s, 8); /* instance and version */
    if (!g_str_equal(idstr, "ram") || s->have_ram_section) {
      s->bad = "an iterative section other than one \"ram\"";
      return FALSE;
    }
    s->ram_section = id;
    s->have_ram_section = TRUE;
  } else if (!s->have_ram_section || id != s->ram_section) {
    s->bad = "a section part that is not RAM";
    return FALSE;
  }
  parse_ram(s);
  footer(s, id);
  return s->bad == NULL;
}

/* QEMU writes configuration/target-page-bits only when the target's page
 * size is above its minimum (aarch64: 4 KiB above 1 KiB); x86's 4 KiB is its
 * only size, so the caller's (QEMU's own, query-migrate) must serve. Both
 * given must agree. */
static void
settle_page_size(Stream *s)
{
  if (s->bad != NULL)
    return;
  if (s->stream_page_size != 0 && s->page_size != 0 && s->stream_page_size != s->page_size)
    s->bad = "the stream's target page size differs from QEMU's";
  else if (s->stream_page_size != 0)
    s->page_size = s->stream_page_size;
  else if (s->page_size == 0)
    s->bad = "the target page size is not in the stream and not known otherwise";
}

static gboolean
parse(Stream *s)
{
  if (be(s, 4) != VM_FILE_MAGIC || be(s, 4) != VM_FILE_VERSION)
    s->bad = s->bad != NULL ? s->bad : "not a QEMU migration stream of version 3";
  if (peek(s) == VM_CONFIGURATION) {
    take(s, 1);
    parse_configuration(s);
  }
  settle_page_size(s);
  while (parse_section(s))
    ;
  if (s->bad == NULL && s->ram_block[0] == '\0')
    s->bad = s->ram_name != NULL ? "no RAM block of the guest RAM's name"
                                 : "no RAM block of the guest RAM's size";
  return s->bad == NULL;
}

/* The kept ranges, in order, through a GIO stream from @dst_fd's position. */
static gboolean
write_kept(const Stream *s, int dst_fd, GError **error)
{
  for (guint i = 0; i < s->keep->len; i += 2) {
    guint64 from = g_array_index(s->keep, guint64, i);
    guint64 n = g_array_index(s->keep, guint64, i + 1);
    if (!vms_stream_write_all(dst_fd, s->data + from, (gsize)n, NULL, "the stripped state",
                              error))
      return FALSE;
  }
  return TRUE;
}

gboolean
vms_state_strip_ram(int src_fd, int dst_fd, const VmsStripGuest *guest, guint64 *ret_dropped,
                    GError **error)
{
  struct stat st;

  if (fstat(src_fd, &st) < 0)
    return vms_set_error_errno(error, errno, "failed to stat the state");
  if (st.st_size == 0)
    return g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED, "the state is empty"), FALSE;
  void *map = mmap(NULL, (gsize)st.st_size, PROT_READ, MAP_PRIVATE, src_fd, 0);
  if (map == MAP_FAILED)
    return vms_set_error_errno(error, errno, "failed to map the state");
  g_autoptr(GArray) keep = g_array_new(FALSE, FALSE, sizeof(guint64));
  Stream s = { .data = map, .len = (gsize)st.st_size, .page_size = guest->target_page_size,
               .ram_size = guest->ram_size, .ram_name = guest->ram_block, .keep = keep };
  gboolean ok = parse(&s);
  if (ok) {
    guint64 rest[2] = { s.mark, s.len - s.mark };
    g_array_append_vals(keep, rest, 2);
    ok = write_kept(&s, dst_fd, error);
  } else {
    g_set_error(error, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED,
                "QEMU's migration stream not understood at byte %zu: %s", s.pos, s.bad);
  }
  munmap(map, (gsize)st.st_size);
  if (ok)
    *ret_dropped = s.dropped;
  return ok;
}

/* The staged raw stream kept as state.bin: the stream was not understood
 * (or the target's page size is known neither from it nor from QEMU). */
static gboolean
keep_stream(VmsSnapWriter *w, const char *stream_tmp, guint8 ret_sha256[32], guint64 *ret_size,
            GError **error)
{
  int dirfd = vms_snap_writer_get_dirfd(w);

  if (renameat(dirfd, stream_tmp, dirfd, VMS_STATE_FILE ".tmp") < 0)
    return vms_set_error_errno(error, errno, "failed to rename %s/%s to %s.tmp",
                               vms_snap_writer_get_path(w), stream_tmp, VMS_STATE_FILE);
  return vms_snap_writer_finish(w, VMS_STATE_FILE, ret_sha256, ret_size, error);
}

gboolean
vms_state_strip_staged(VmsSnapWriter *w, const char *stream_name, const VmsStripGuest *guest,
                       guint8 ret_sha256[32], guint64 *ret_size, GError **error)
{
  g_autofree char *stream_tmp = g_strconcat(stream_name, ".tmp", NULL);
  int dirfd = vms_snap_writer_get_dirfd(w);
  g_autoptr(GError) local = NULL;
  guint64 dropped = 0;

  vms_autofd src = vms_openat_regular(dirfd, stream_tmp, O_RDONLY, 0, error);
  if (src < 0)
    return FALSE;
  vms_autofd dst = vms_snap_writer_stage(w, VMS_STATE_FILE, error);
  if (dst < 0)
    return FALSE;
  if (!vms_state_strip_ram(src, dst, guest, &dropped, &local)) {
    (void)unlinkat(dirfd, VMS_STATE_FILE ".tmp", 0);
    if (!g_error_matches(local, VMS_ERROR, VMS_ERROR_NOT_SUPPORTED)) {
      g_propagate_prefixed_error(error, g_steal_pointer(&local), "%s/%s: ",
                                 vms_snap_writer_get_path(w), stream_tmp);
      return FALSE;
    }
    g_debug("%s/%s keeps the guest RAM: %s", vms_snap_writer_get_path(w), VMS_STATE_FILE,
            local->message);
    return keep_stream(w, stream_tmp, ret_sha256, ret_size, error);
  }
  g_debug("%s/%s: %" G_GUINT64_FORMAT " guest RAM page records left out",
          vms_snap_writer_get_path(w), VMS_STATE_FILE, dropped);
  if (!vms_snap_writer_finish(w, VMS_STATE_FILE, ret_sha256, ret_size, error))
    return FALSE;
  (void)unlinkat(dirfd, stream_tmp, 0);
  return TRUE;
}
