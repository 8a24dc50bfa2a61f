/* vmsnap test guest: aarch64 entry point. QEMU's virt machine enters a
 * bare-metal ELF at EL1 with the MMU off; the device tree is at the start
 * of RAM (read by arch-aarch64.c). */
#include "guest-abi.h"

        .text
        .globl _start
_start:
        msr daifset, #0xf
        ldr x0, =(VMS_GUEST_RAM_BASE_AARCH64 + VMS_GUEST_STACK_ADDR + VMS_GUEST_PAGE_SIZE)
        mov sp, x0
        mov x0, #0
        mov x1, #0
        bl guest_main
1:      wfe
        b 1b
        .section .note.GNU-stack, "", @progbits
