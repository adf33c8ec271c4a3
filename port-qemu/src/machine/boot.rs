//! Entry points. OpenSBI enters `_start` in S-mode on one hart (the boot
//! hart, not always hart 0) with `a0` = hart id and `a1` = device tree
//! address; the others stay parked until [`super::smp`] starts them at
//! `_start_secondary` through SBI HSM (`a0` = hart id, `a1` = opaque).
//!
//! Both set `tp` = hart id, pick the hart's stack from `.stacks` (see
//! `kernel.ld`), enable the FPU state (the `gc` target may emit FP
//! instructions), and call into Rust: [`crate::kernel_main`] or
//! [`crate::secondary_main`]. The boot hart clears `.bss` first.

use core::arch::global_asm;

use super::{MAX_HARTS, STACK_SIZE};

const _: () = assert!(STACK_SIZE.is_power_of_two());

global_asm!(
    r#"
    .section .text.entry
    .globl _start
_start:
    li      t0, {max_harts}
    bgeu    a0, t0, 9f
    mv      tp, a0
    // sp = __stacks_end - hartid * STACK_SIZE (a power of two)
    la      sp, __stacks_end
    slli    t0, a0, {stack_shift}
    sub     sp, sp, t0
    // sstatus.FS = Initial
    li      t0, 0x2000
    csrs    sstatus, t0
    // clear .bss
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    {boot_main}
9:  wfi
    j       9b

    .text
    .globl _start_secondary
    .align 2
_start_secondary:
    li      t0, {max_harts}
    bgeu    a0, t0, 9b
    mv      tp, a0
    la      sp, __stacks_end
    slli    t0, a0, {stack_shift}
    sub     sp, sp, t0
    li      t0, 0x2000
    csrs    sstatus, t0
    call    {secondary_main}
    j       9b
"#,
    max_harts = const MAX_HARTS,
    stack_shift = const STACK_SIZE.trailing_zeros(),
    boot_main = sym boot_main,
    secondary_main = sym secondary_main,
);

unsafe extern "C" {
    /// The secondary harts' entry (assembly above).
    fn _start_secondary();
}

/// Address of `_start_secondary`, for SBI HSM `hart_start`.
pub fn secondary_entry() -> usize {
    _start_secondary as *const () as usize
}

extern "C" fn boot_main(hart: usize, dtb: usize) -> ! {
    crate::kernel_main(hart, dtb)
}

extern "C" fn secondary_main(hart: usize, _opaque: usize) -> ! {
    crate::secondary_main(hart)
}
