/* vmsnap test guest: multiboot header and entry point (32-bit, no paging).
 * QEMU's multiboot loader enters in protected mode with flat segments,
 * interrupts off, EAX = 0x2BADB002 and EBX = the multiboot info. */
#include "guest-abi.h"

#define MB_MAGIC 0x1BADB002
#define MB_FLAGS 0x00000003 /* page-align modules, provide memory info */

        .section .multiboot, "a"
        .align 4
        .long MB_MAGIC
        .long MB_FLAGS
        .long -(MB_MAGIC + MB_FLAGS)

        .text
        .globl _start
_start:
        cli
        movl $(VMS_GUEST_STACK_ADDR + VMS_GUEST_PAGE_SIZE), %esp
        pushl %ebx
        pushl %eax
        call guest_main
1:      hlt
        jmp 1b
        .section .note.GNU-stack, "", @progbits
