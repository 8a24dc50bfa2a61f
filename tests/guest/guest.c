/* vmsnap test guest: a counter, a pattern and a command loop (guest-abi.h).
 *
 * Freestanding, 32-bit, no paging, interrupts off, no libgcc (so no 64-bit
 * division: numbers are printed in hex). It has no writable globals: its
 * only writable memory is the state page and the stack page, plus the
 * pattern at boot and the scratch pages a command names, so a diff test can
 * bound what it dirties. */
#include <stdint.h>
#include "guest-abi.h"

#define ST ((volatile VmsGuestState *)VMS_GUEST_STATE_ADDR)
#define DEBUGCON 0xe9
#define COM1 0x3f8
#define MB_BOOT_MAGIC 0x2BADB002u
#define TICK_MASK 0x03ffffffu /* a tick line every 2^26 increments */
#define POLL_MASK 0x00000fffu /* look at COM1 every 2^12 increments */
#define LOW_RAM_MAX 0xc0000000u /* the guest never goes above the PCI hole */

typedef struct {
  uint32_t flags;
  uint32_t mem_lower; /* KiB below 1 MiB */
  uint32_t mem_upper; /* KiB from 1 MiB to the first hole */
} MultibootInfo;

void guest_main(uint32_t magic, const MultibootInfo *mbi);

static inline void
outb(uint16_t port, uint8_t v)
{
  __asm__ volatile("outb %0, %1" : : "a"(v), "Nd"(port));
}

static inline uint8_t
inb(uint16_t port)
{
  uint8_t v;
  __asm__ volatile("inb %1, %0" : "=a"(v) : "Nd"(port));
  return v;
}

static uint64_t
rdtsc(void)
{
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

/* ---- output: a reply goes to COM1 and, prefixed, to debugcon ---- */

typedef struct {
  char buf[160];
  uint32_t len;
} Line;

static void
line_str(Line *l, const char *s)
{
  while (*s && l->len < sizeof(l->buf) - 1)
    l->buf[l->len++] = *s++;
}

static void
line_hex(Line *l, uint64_t v)
{
  char tmp[16];
  int n = 0;

  line_str(l, "0x");
  do {
    tmp[n++] = "0123456789abcdef"[v & 0xf];
    v >>= 4;
  } while (v != 0);
  while (n > 0 && l->len < sizeof(l->buf) - 1)
    l->buf[l->len++] = tmp[--n];
}

static void
line_dec(Line *l, uint32_t v)
{
  char tmp[10];
  int n = 0;

  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  while (n > 0 && l->len < sizeof(l->buf) - 1)
    l->buf[l->len++] = tmp[--n];
}

static void
debugcon_line(const Line *l)
{
  const char *p = VMS_GUEST_PREFIX;

  while (*p)
    outb(DEBUGCON, (uint8_t)*p++);
  for (uint32_t i = 0; i < l->len; i++)
    outb(DEBUGCON, (uint8_t)l->buf[i]);
  outb(DEBUGCON, '\n');
}

static void
serial_putc(char c)
{
  for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
    ;
  outb(COM1, (uint8_t)c);
}

static void
reply(const Line *l)
{
  for (uint32_t i = 0; i < l->len; i++)
    serial_putc(l->buf[i]);
  serial_putc('\n');
  debugcon_line(l);
}

/* ---- memory ---- */

static void
fill_words(uint32_t addr, uint32_t words, uint32_t value)
{
  uint32_t dst = addr;
  uint32_t n = words;

  __asm__ volatile("cld; rep stosl" : "+D"(dst), "+c"(n) : "a"(value) : "memory");
}

/* The first page in [page, page+count) not filled with @byte, or -1. */
static int32_t
check_pages(uint32_t page, uint32_t count, uint8_t byte)
{
  uint32_t want = byte * 0x01010101u;

  for (uint32_t p = page; p < page + count; p++) {
    const volatile uint32_t *w =
        (const volatile uint32_t *)(VMS_GUEST_SCRATCH_ADDR + p * VMS_GUEST_PAGE_SIZE);
    for (uint32_t i = 0; i < VMS_GUEST_PAGE_SIZE / 4; i++)
      if (w[i] != want)
        return (int32_t)p;
  }
  return -1;
}

static void
fill_pattern(void)
{
  volatile uint32_t *w = (volatile uint32_t *)VMS_GUEST_PATTERN_ADDR;

  for (uint32_t i = 0; i < VMS_GUEST_PATTERN_SIZE / 4; i++)
    w[i] = VMS_GUEST_PATTERN_WORD(VMS_GUEST_PATTERN_ADDR + i * 4);
}

/* The first address whose word is not the pattern, or 0. */
static uint32_t
check_pattern(void)
{
  const volatile uint32_t *w = (const volatile uint32_t *)VMS_GUEST_PATTERN_ADDR;

  for (uint32_t i = 0; i < VMS_GUEST_PATTERN_SIZE / 4; i++) {
    uint32_t a = VMS_GUEST_PATTERN_ADDR + i * 4;
    if (w[i] != VMS_GUEST_PATTERN_WORD(a))
      return a;
  }
  return 0;
}

/* ---- commands ---- */

static const char *
parse_num(const char *s, uint32_t *ret)
{
  uint32_t v = 0;
  int digits = 0;

  while (*s == ' ')
    s++;
  if (s[0] == '0' && (s[1] == 'x' || s[1] == 'X')) {
    s += 2;
    for (;; s++, digits++) {
      char c = *s;
      uint32_t d = c >= '0' && c <= '9' ? (uint32_t)(c - '0')
                 : c >= 'a' && c <= 'f' ? (uint32_t)(c - 'a' + 10)
                 : c >= 'A' && c <= 'F' ? (uint32_t)(c - 'A' + 10) : 16u;
      if (d == 16)
        break;
      v = v * 16 + d;
    }
  } else {
    for (; *s >= '0' && *s <= '9'; s++, digits++)
      v = v * 10 + (uint32_t)(*s - '0');
  }
  if (digits == 0 || digits > 10)
    return 0;
  *ret = v;
  return s;
}

/* Parses @n numbers after the command letter; FALSE on junk or a bad count. */
static int
parse_args(const char *s, uint32_t *args, int n)
{
  for (int i = 0; i < n; i++) {
    s = parse_num(s, &args[i]);
    if (s == 0)
      return 0;
  }
  while (*s == ' ')
    s++;
  return *s == '\0';
}

static int
pages_ok(uint32_t page, uint32_t count)
{
  uint32_t n = ST->scratch_pages;
  return count <= n && page <= n - count;
}

static void
cmd_pages(char op, const char *args, Line *out)
{
  uint32_t a[3] = { 0, 0, 0 };
  int nargs = op == 'Z' ? 2 : 3;

  if (!parse_args(args, a, nargs) || a[2] > 255) {
    line_str(out, "err bad arguments");
    return;
  }
  if (!pages_ok(a[0], a[1])) {
    line_str(out, "err pages out of range, scratch pages: ");
    line_dec(out, ST->scratch_pages);
    return;
  }
  uint32_t addr = VMS_GUEST_SCRATCH_ADDR + a[0] * VMS_GUEST_PAGE_SIZE;
  int32_t bad = -1;
  if (op == 'C')
    bad = check_pages(a[0], a[1], (uint8_t)a[2]);
  else
    fill_words(addr, a[1] * (VMS_GUEST_PAGE_SIZE / 4), (uint8_t)a[2] * 0x01010101u);
  line_str(out, bad >= 0 ? "bad C " : "ok ");
  if (bad >= 0) {
    line_dec(out, (uint32_t)bad);
    return;
  }
  char opstr[2] = { op, 0 };
  line_str(out, opstr);
  for (int i = 0; i < nargs; i++) {
    line_str(out, " ");
    line_dec(out, a[i]);
  }
}

static void
run_command(const char *cmd)
{
  Line out = { .len = 0 };
  char op = cmd[0];

  if (op == 'W' || op == 'Z' || op == 'C') {
    cmd_pages(op, cmd + 1, &out);
  } else if (op == 'K' && cmd[1] == '\0') {
    uint32_t bad = check_pattern();
    line_str(&out, bad ? "bad K " : "ok K");
    if (bad)
      line_hex(&out, bad);
  } else if (op == 'P' && cmd[1] == '\0') {
    line_str(&out, "ok P ");
    line_hex(&out, ST->counter);
    line_str(&out, " ");
    line_hex(&out, ST->boot_id);
  } else {
    line_str(&out, "err unknown command");
  }
  ST->commands = ST->commands + 1;
  reply(&out);
}

static void
poll_serial(void)
{
  while (inb(COM1 + 5) & 0x01) {
    char c = (char)inb(COM1);
    uint32_t len = ST->line_len;
    if (c == '\r')
      continue;
    if (c != '\n') {
      if (len < sizeof(ST->line) - 1)
        ST->line[len] = c;
      ST->line_len = len + 1;
      continue;
    }
    ST->line_len = 0;
    if (len == 0 || len >= sizeof(ST->line) - 1)
      continue; /* empty or overlong: dropped */
    char cmd[sizeof(ST->line)];
    for (uint32_t i = 0; i < len; i++)
      cmd[i] = ST->line[i];
    cmd[len] = '\0';
    run_command(cmd);
  }
}

static void
serial_init(void)
{
  outb(COM1 + 1, 0x00); /* no interrupts */
  outb(COM1 + 3, 0x80); /* DLAB */
  outb(COM1 + 0, 0x01); /* 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03); /* 8N1 */
  outb(COM1 + 2, 0x07); /* FIFO on, cleared */
  outb(COM1 + 4, 0x03); /* DTR, RTS */
}

static void
announce(const char *what, uint64_t value)
{
  Line l = { .len = 0 };
  line_str(&l, what);
  line_hex(&l, value);
  debugcon_line(&l);
}

void
guest_main(uint32_t magic, const MultibootInfo *mbi)
{
  uint32_t end = 16u * 1024u * 1024u;

  if (magic == MB_BOOT_MAGIC && (mbi->flags & 1u))
    end = 0x00100000u + mbi->mem_upper * 1024u;
  if (end > LOW_RAM_MAX)
    end = LOW_RAM_MAX;
  ST->counter = 0;
  ST->magic = 0;
  ST->boot_id = rdtsc();
  ST->commands = 0;
  ST->line_len = 0;
  ST->scratch_pages = end > VMS_GUEST_SCRATCH_ADDR
                          ? (end - VMS_GUEST_SCRATCH_ADDR) / VMS_GUEST_PAGE_SIZE : 0;
  serial_init();
  announce("boot ", ST->boot_id);
  fill_pattern();
  ST->magic = VMS_GUEST_MAGIC;
  announce("ready ", ST->boot_id);

  for (;;) {
    uint64_t c = ST->counter + 1;
    ST->counter = c;
    if (((uint32_t)c & POLL_MASK) == 0) {
      poll_serial();
      if (((uint32_t)c & TICK_MASK) == 0)
        announce("tick ", c);
    }
  }
}
