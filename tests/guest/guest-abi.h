/* vmsnap test guest: the contract between tests/guest and the tests.
 *
 * The guest is a freestanding kernel for two targets, one source (guest.c;
 * guest-arch.h has what differs): guest.elf, 32-bit multiboot for x86
 * (no paging, interrupts off), and guest-aarch64.elf, a bare-metal ELF for
 * QEMU's aarch64 virt machine (EL1, MMU off, interrupts masked).
 * Everything it writes lives at the fixed offsets below, counted from the
 * start of guest RAM — the offset in the memory file; the physical address
 * on x86, VMS_GUEST_RAM_BASE_AARCH64 + offset on aarch64 — so a test can
 * read guest state from outside (QMP `pmemsave`, or the memory file) and a
 * diff test can bound the pages the guest dirties:
 *
 *   0x00100000  code and read-only data (loaded by QEMU, never written)
 *   0x00200000  the state page (VmsGuestState below): the only page the idle
 *               guest writes, besides its stack page
 *   0x00201000  the stack page (the stack grows down from 0x00202000)
 *   0x00400000  the pattern region, 4 MiB, filled once at boot
 *   0x00800000  the scratch region: page N of the W/Z/C commands is at
 *               0x00800000 + N * 4096, up to the end of low RAM (at most
 *               3 GiB: the guest never goes above the PCI hole)
 *
 * (aarch64: QEMU puts the device tree below 0x00100000, at the start of RAM.)
 *
 * Devices: the debug console for progress lines (below) — x86: isa-debugcon
 * on port 0xe9; aarch64: semihosting SYS_WRITEC, sent by QEMU to
 * -semihosting-config chardev=. The command UART, polled, no interrupts —
 * x86: COM1 (0x3f8); aarch64: virt's PL011 (0x09000000).
 *
 * Debugcon lines (each ends with '\n'):
 *   "vmsnap-guest: boot <boot_id>"       once, at the start of a boot
 *   "vmsnap-guest: ready <boot_id>"      after the pattern is filled
 *   "vmsnap-guest: tick <counter>"       every 2^26 increments (hex)
 *   "vmsnap-guest: <reply>"              a copy of every command reply
 *
 * Commands on the UART, one per line, numbers decimal or 0x-hex; each gets one
 * reply line on the UART (and a copy on the debug console):
 *   "W <page> <count> <byte>"  fill scratch pages with <byte>  -> "ok W <page> <count> <byte>"
 *   "Z <page> <count>"         zero scratch pages                -> "ok Z <page> <count>"
 *   "C <page> <count> <byte>"  check scratch pages hold <byte>   -> "ok C ..." or "bad C <page>"
 *   "K"                        check the pattern region          -> "ok K" or "bad K <addr>"
 *   "P"                        print the counter and boot id     -> "ok P <counter> <boot_id>"
 * A malformed or out-of-range command gets "err <what>". Counters and ids
 * are printed as 0x-prefixed hex. Lines longer than 120 bytes are dropped.
 */
#pragma once

#define VMS_GUEST_RAM_BASE_AARCH64 0x40000000u /* virt's RAM; x86's starts at 0 */
#define VMS_GUEST_LOAD_ADDR 0x00100000u
#define VMS_GUEST_STATE_ADDR 0x00200000u
#define VMS_GUEST_STACK_ADDR 0x00201000u /* the page; the stack top is +0x1000 */
#define VMS_GUEST_PATTERN_ADDR 0x00400000u
#define VMS_GUEST_PATTERN_SIZE (4u * 1024u * 1024u)
#define VMS_GUEST_SCRATCH_ADDR 0x00800000u
#define VMS_GUEST_PAGE_SIZE 4096u

/* Physical address of the 64-bit counter (the first field of the state). */
#define VMS_GUEST_COUNTER_ADDR VMS_GUEST_STATE_ADDR

/* state.magic once the guest has filled its pattern. */
#define VMS_GUEST_MAGIC 0x564d534e41502d47ull /* "VMSNAP-G" */

/* The 32-bit word at offset A (A a multiple of 4) of the pattern region
 * holds VMS_GUEST_PATTERN_WORD(A). */
#define VMS_GUEST_PATTERN_WORD(a) ((unsigned int)(a) ^ 0xa5c3e10fu)

/* The debugcon prefix of every line. */
#define VMS_GUEST_PREFIX "vmsnap-guest: "

#ifndef __ASSEMBLER__
/* The state page. All fields little-endian, at VMS_GUEST_STATE_ADDR. */
typedef struct {
  unsigned long long counter;   /* +0: incremented in the guest's main loop */
  unsigned long long magic;     /* +8: VMS_GUEST_MAGIC once ready */
  unsigned long long boot_id;   /* +16: the TSC (aarch64: CNTVCT) at boot: differs between boots,
                                 * kept by a restore */
  unsigned int commands;        /* +24: commands executed since boot */
  unsigned int line_len;        /* +28: bytes in line[] */
  char line[128];               /* +32: the command line being received */
  unsigned int scratch_pages;   /* +160: pages in the scratch region (from multiboot's memory info
                                 * or the device tree; 16 MiB of RAM if neither says) */
} VmsGuestState;
#endif
