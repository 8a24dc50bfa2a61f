/* vmsnap test guest: aarch64 under QEMU's virt machine (EL1, MMU off, so
 * every access is to Device memory: built -mstrict-align, no FP/SIMD).
 * See guest-arch.h. */
#include "guest-arch.h"

#define PL011 0x09000000u   /* virt's UART0 */
#define PL011_DR 0x00u
#define PL011_FR 0x18u      /* flags: bit 4 receive FIFO empty, bit 5 transmit FIFO full */
#define PL011_LCR_H 0x2cu
#define PL011_CR 0x30u
#define SEMIHOST_WRITEC 0x03u
#define FDT_MAGIC 0xd00dfeedu
#define FDT_BEGIN_NODE 1u
#define FDT_END_NODE 2u
#define FDT_PROP 3u
#define FDT_NOP 4u

static inline uint32_t
mmio_read(uint32_t reg)
{
  return *(volatile uint32_t *)(uintptr_t)(PL011 + reg);
}

static inline void
mmio_write(uint32_t reg, uint32_t v)
{
  *(volatile uint32_t *)(uintptr_t)(PL011 + reg) = v;
}

static uint32_t
be32(const volatile uint32_t *p)
{
  return __builtin_bswap32(*p);
}

/* @s starts with @prefix; with @whole, @s is exactly @prefix. */
static int
str_prefix(const volatile char *s, const char *prefix, int whole)
{
  while (*prefix)
    if (*s++ != *prefix++)
      return 0;
  return !whole || *s == '\0';
}

/* The device tree QEMU places at the start of RAM for a bare-metal image
 * (docs/system/arm/virt.rst): the "reg" of the first node named memory*,
 * with virt's two address and two size cells. */
uint64_t
arch_ram_size(uintptr_t arg0, uintptr_t arg1)
{
  (void)arg0, (void)arg1; /* the entry point passes nothing: the tree is at a known place */
  const volatile uint32_t *hdr = (const volatile uint32_t *)GUEST_PTR(0);
  if (be32(hdr) != FDT_MAGIC)
    return 0;
  const volatile uint32_t *tok = (const volatile uint32_t *)GUEST_PTR(be32(hdr + 2));
  const volatile char *strings = (const volatile char *)GUEST_PTR(be32(hdr + 3));
  int depth = 0, in_memory = 0;

  for (uint32_t t = be32(tok); depth >= 0; t = be32(tok)) {
    tok++;
    if (t == FDT_BEGIN_NODE) {
      const volatile char *name = (const volatile char *)tok;
      uint32_t len = 0;
      while (name[len] != '\0')
        len++;
      depth++;
      in_memory = depth == 2 && str_prefix(name, "memory", 0);
      tok += (len + 4) / 4;
    } else if (t == FDT_END_NODE) {
      depth--;
      in_memory = 0;
    } else if (t == FDT_PROP) {
      uint32_t len = be32(tok), nameoff = be32(tok + 1);
      if (in_memory && len == 16 && str_prefix(strings + nameoff, "reg", 1))
        return (uint64_t)be32(tok + 4) << 32 | be32(tok + 5);
      tok += 2 + (len + 3) / 4;
    } else if (t != FDT_NOP) {
      return 0; /* FDT_END, or not understood */
    }
  }
  return 0;
}

/* Semihosting SYS_WRITEC: QEMU sends it to -semihosting-config chardev=. */
void
arch_debug_putc(char c)
{
  volatile char ch = c;
  register uintptr_t op __asm__("x0") = SEMIHOST_WRITEC;
  register uintptr_t arg __asm__("x1") = (uintptr_t)&ch;

  __asm__ volatile("hlt #0xf000" : "+r"(op) : "r"(arg) : "memory");
}

void
arch_serial_init(void)
{
  mmio_write(PL011_CR, 0);
  mmio_write(PL011_LCR_H, 0x70);  /* 8 bits, FIFOs on */
  mmio_write(PL011_CR, 0x301);    /* UART, transmit and receive enabled */
}

void
arch_serial_putc(char c)
{
  for (int i = 0; i < 100000 && (mmio_read(PL011_FR) & 0x20); i++)
    ;
  mmio_write(PL011_DR, (uint8_t)c);
}

int
arch_serial_readable(void)
{
  return !(mmio_read(PL011_FR) & 0x10);
}

char
arch_serial_getc(void)
{
  return (char)(mmio_read(PL011_DR) & 0xff);
}

uint64_t
arch_timestamp(void)
{
  uint64_t v;
  __asm__ volatile("mrs %0, cntvct_el0" : "=r"(v));
  return v;
}

void
arch_fill_words(uint32_t offset, uint32_t words, uint32_t value)
{
  volatile uint32_t *w = (volatile uint32_t *)GUEST_PTR(offset);

  for (uint32_t i = 0; i < words; i++)
    w[i] = value;
}

/* GCC may call memset for a zero-initialised struct even freestanding. */
void *memset(void *dst, int c, unsigned long n);

void *
memset(void *dst, int c, unsigned long n)
{
  volatile unsigned char *p = dst;

  for (unsigned long i = 0; i < n; i++)
    p[i] = (unsigned char)c;
  return dst;
}
