/* vmsnap test guest: a counter, a pattern and a command loop (guest-abi.h).
 *
 * Freestanding, no paging/MMU, interrupts off, no libgcc (so no 64-bit
 * division: numbers are printed in hex). It has no writable globals: its
 * only writable memory is the state page and the stack page, plus the
 * pattern at boot and the scratch pages a command names, so a diff test can
 * bound what it dirties. What differs between x86 and aarch64 is in
 * guest-arch.h. */
#include <stdint.h>
#include "guest-arch.h"

#define ST ((volatile VmsGuestState *)GUEST_PTR(VMS_GUEST_STATE_ADDR))
#define TICK_MASK 0x03ffffffu /* a tick line every 2^26 increments */
#define POLL_MASK 0x00000fffu /* look at the UART every 2^12 increments */
#define LOW_RAM_MAX 0xc0000000u /* the guest never goes above the PCI hole (x86) */
#define RAM_DEFAULT (16u * 1024u * 1024u) /* when the loader does not say */

/* ---- output: a reply goes to the UART and, prefixed, to the debug console ---- */

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
    arch_debug_putc(*p++);
  for (uint32_t i = 0; i < l->len; i++)
    arch_debug_putc(l->buf[i]);
  arch_debug_putc('\n');
}

static void
reply(const Line *l)
{
  for (uint32_t i = 0; i < l->len; i++)
    arch_serial_putc(l->buf[i]);
  arch_serial_putc('\n');
  debugcon_line(l);
}

/* ---- memory ---- */

/* The first page in [page, page+count) not filled with @byte, or -1. */
static int32_t
check_pages(uint32_t page, uint32_t count, uint8_t byte)
{
  uint32_t want = byte * 0x01010101u;

  for (uint32_t p = page; p < page + count; p++) {
    const volatile uint32_t *w =
        (const volatile uint32_t *)GUEST_PTR(VMS_GUEST_SCRATCH_ADDR + p * VMS_GUEST_PAGE_SIZE);
    for (uint32_t i = 0; i < VMS_GUEST_PAGE_SIZE / 4; i++)
      if (w[i] != want)
        return (int32_t)p;
  }
  return -1;
}

static void
fill_pattern(void)
{
  volatile uint32_t *w = (volatile uint32_t *)GUEST_PTR(VMS_GUEST_PATTERN_ADDR);

  for (uint32_t i = 0; i < VMS_GUEST_PATTERN_SIZE / 4; i++)
    w[i] = VMS_GUEST_PATTERN_WORD(VMS_GUEST_PATTERN_ADDR + i * 4);
}

/* The first address whose word is not the pattern, or 0. */
static uint32_t
check_pattern(void)
{
  const volatile uint32_t *w = (const volatile uint32_t *)GUEST_PTR(VMS_GUEST_PATTERN_ADDR);

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
    arch_fill_words(addr, a[1] * (VMS_GUEST_PAGE_SIZE / 4), (uint8_t)a[2] * 0x01010101u);
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
  while (arch_serial_readable()) {
    char c = arch_serial_getc();
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
announce(const char *what, uint64_t value)
{
  Line l = { .len = 0 };
  line_str(&l, what);
  line_hex(&l, value);
  debugcon_line(&l);
}

/* @arg0, @arg1: what the entry point got from the loader (guest-arch.h). */
void
guest_main(uintptr_t arg0, uintptr_t arg1)
{
  uint64_t size = arch_ram_size(arg0, arg1);
  uint32_t end = size == 0 ? RAM_DEFAULT : size > LOW_RAM_MAX ? LOW_RAM_MAX : (uint32_t)size;

  ST->counter = 0;
  ST->magic = 0;
  ST->boot_id = arch_timestamp();
  ST->commands = 0;
  ST->line_len = 0;
  ST->scratch_pages = end > VMS_GUEST_SCRATCH_ADDR
                          ? (end - VMS_GUEST_SCRATCH_ADDR) / VMS_GUEST_PAGE_SIZE : 0;
  arch_serial_init();
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
