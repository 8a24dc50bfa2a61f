/* vmsnap test guest: what differs between targets (guest-abi.h). guest.c
 * holds everything else; arch-x86.c and arch-aarch64.c implement this. */
#pragma once

#include <stdint.h>
#include "guest-abi.h"

/* Guest RAM starts here in physical address space (x86: 0, aarch64 virt:
 * 1 GiB); every address of guest-abi.h is an offset from it. */
#if defined(__aarch64__)
#define GUEST_RAM_BASE VMS_GUEST_RAM_BASE_AARCH64
#else
#define GUEST_RAM_BASE 0u
#endif
#define GUEST_PTR(offset) ((uintptr_t)GUEST_RAM_BASE + (uintptr_t)(offset))

/* The size of guest RAM from what the firmware/loader handed the entry
 * point (@arg0, @arg1), or 0 when it says nothing. */
uint64_t arch_ram_size(uintptr_t arg0, uintptr_t arg1);

/* One byte to the debug console (x86: isa-debugcon; aarch64: semihosting). */
void arch_debug_putc(char c);

/* The command UART (x86: COM1; aarch64: virt's PL011), polled. */
void arch_serial_init(void);
void arch_serial_putc(char c);
int arch_serial_readable(void);
char arch_serial_getc(void);

/* A free-running counter, different between boots (x86: TSC; aarch64:
 * CNTVCT_EL0). */
uint64_t arch_timestamp(void);

/* Fills @words 32-bit words from guest RAM offset @offset with @value. */
void arch_fill_words(uint32_t offset, uint32_t words, uint32_t value);

void guest_main(uintptr_t arg0, uintptr_t arg1);
