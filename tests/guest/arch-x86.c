/* vmsnap test guest: x86 (32-bit multiboot, port I/O). See guest-arch.h. */
#include "guest-arch.h"

#define DEBUGCON 0xe9
#define COM1 0x3f8
#define MB_BOOT_MAGIC 0x2BADB002u

typedef struct {
  uint32_t flags;
  uint32_t mem_lower; /* KiB below 1 MiB */
  uint32_t mem_upper; /* KiB from 1 MiB to the first hole */
} MultibootInfo;

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

/* @arg0: EAX at entry (the multiboot magic), @arg1: EBX (its info). */
uint64_t
arch_ram_size(uintptr_t arg0, uintptr_t arg1)
{
  const MultibootInfo *mbi = (const MultibootInfo *)arg1;

  if (arg0 != MB_BOOT_MAGIC || !(mbi->flags & 1u))
    return 0;
  return 0x00100000u + (uint64_t)mbi->mem_upper * 1024u;
}

void
arch_debug_putc(char c)
{
  outb(DEBUGCON, (uint8_t)c);
}

void
arch_serial_init(void)
{
  outb(COM1 + 1, 0x00); /* no interrupts */
  outb(COM1 + 3, 0x80); /* DLAB */
  outb(COM1 + 0, 0x01); /* 115200 baud */
  outb(COM1 + 1, 0x00);
  outb(COM1 + 3, 0x03); /* 8N1 */
  outb(COM1 + 2, 0x07); /* FIFO on, cleared */
  outb(COM1 + 4, 0x03); /* DTR, RTS */
}

void
arch_serial_putc(char c)
{
  for (int i = 0; i < 100000 && !(inb(COM1 + 5) & 0x20); i++)
    ;
  outb(COM1, (uint8_t)c);
}

int
arch_serial_readable(void)
{
  return inb(COM1 + 5) & 0x01;
}

char
arch_serial_getc(void)
{
  return (char)inb(COM1);
}

uint64_t
arch_timestamp(void)
{
  uint32_t lo, hi;
  __asm__ volatile("rdtsc" : "=a"(lo), "=d"(hi));
  return ((uint64_t)hi << 32) | lo;
}

void
arch_fill_words(uint32_t offset, uint32_t words, uint32_t value)
{
  uint32_t dst = offset;
  uint32_t n = words;

  __asm__ volatile("cld; rep stosl" : "+D"(dst), "+c"(n) : "a"(value) : "memory");
}
