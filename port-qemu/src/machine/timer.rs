//! The platform timer: the `time` CSR (10 MHz on QEMU `virt`) and SBI
//! `set_timer`, which arms the calling hart only.

use core::sync::atomic::{AtomicU64, Ordering};

use super::{cpu, sbi};

static TIMEBASE_HZ: AtomicU64 = AtomicU64::new(10_000_000);

/// Records the timebase frequency from the device tree.
pub fn set_timebase(hz: u64) {
    TIMEBASE_HZ.store(hz, Ordering::Relaxed);
}

/// Ticks per second of [`ticks`].
pub fn timebase() -> u64 {
    TIMEBASE_HZ.load(Ordering::Relaxed)
}

/// The `time` CSR: monotonic, shared by all harts.
pub fn ticks() -> u64 {
    cpu::read_time()
}

/// Arms this hart's timer interrupt for `deadline` (in ticks). A deadline in
/// the past fires at once.
pub fn arm(deadline: u64) {
    sbi::set_timer(deadline);
}

/// Disarms this hart's timer (and clears a pending timer interrupt).
pub fn disarm() {
    sbi::set_timer(u64::MAX);
}

/// Called by the trap handler on a timer interrupt.
pub(super) fn acknowledge() {
    disarm();
}
