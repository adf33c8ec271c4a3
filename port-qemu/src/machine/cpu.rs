//! Control and status registers of the current hart (S-mode).

use core::arch::asm;

/// `sstatus.SIE`: supervisor interrupts enabled.
const SSTATUS_SIE: usize = 1 << 1;
/// `sie.SSIE`: supervisor software interrupts (IPIs).
pub const SIE_SSIE: usize = 1 << 1;
/// `sie.STIE`: supervisor timer interrupts.
pub const SIE_STIE: usize = 1 << 5;

/// The id of the hart running this code. `_start` puts it in `tp`, which
/// nothing else in this kernel uses (there is no thread-local storage).
#[inline(always)]
pub fn hart_id() -> usize {
    let id: usize;
    // SAFETY: reads a register; `tp` holds the hart id from boot on (see `boot`).
    unsafe { asm!("mv {0}, tp", out(reg) id, options(nomem, nostack, preserves_flags)) };
    id
}

/// Disables interrupts on this hart; returns whether they were enabled.
#[inline(always)]
pub fn interrupts_disable() -> bool {
    let old: usize;
    // SAFETY: clears `sstatus.SIE` of this hart only; the compiler fence in
    // the asm (no `nomem`) keeps memory accesses from moving across it.
    unsafe { asm!("csrrci {0}, sstatus, 2", out(reg) old, options(nostack)) };
    old & SSTATUS_SIE != 0
}

/// Enables interrupts on this hart (a pending one is taken right after).
#[inline(always)]
pub fn interrupts_enable() {
    // SAFETY: sets `sstatus.SIE`; the trap vector is installed before any
    // interrupt source is enabled in `sie`.
    unsafe { asm!("csrsi sstatus, 2", options(nostack)) };
}

/// Enables the given interrupt sources in `sie`.
pub fn sie_set(bits: usize) {
    // SAFETY: only enables interrupt sources whose handlers exist (`trap`).
    unsafe { asm!("csrs sie, {0}", in(reg) bits, options(nostack)) };
}

/// Clears the pending software interrupt of this hart (`sip.SSIP`).
pub fn clear_soft_pending() {
    // SAFETY: `sip.SSIP` is writable in S-mode and only acknowledges an IPI.
    unsafe { asm!("csrci sip, 2", options(nomem, nostack)) };
}

/// Waits for an interrupt. Returns when one is pending and enabled in `sie`,
/// even while `sstatus.SIE` is clear (that is how the idle loop avoids the
/// check-then-sleep race).
#[inline(always)]
pub fn wait_for_interrupt() {
    // SAFETY: `wfi` only stalls the hart; it has no memory effects.
    unsafe { asm!("wfi", options(nomem, nostack)) };
}

/// The `time` CSR: ticks of the platform timer (10 MHz on QEMU `virt`).
#[inline(always)]
pub fn read_time() -> u64 {
    let t: u64;
    // SAFETY: `rdtime` reads a read-only counter.
    unsafe { asm!("rdtime {0}", out(reg) t, options(nomem, nostack)) };
    t
}

/// Sets `stvec` (direct mode).
pub fn set_trap_vector(addr: usize) {
    // SAFETY: the caller passes the address of a valid, 4-byte aligned trap
    // entry (`trap::install` is the only caller).
    unsafe { asm!("csrw stvec, {0}", in(reg) addr, options(nostack)) };
}

/// A hint for spin loops.
#[inline(always)]
pub fn relax() {
    core::hint::spin_loop();
}
