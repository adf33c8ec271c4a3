//! The 16550 UART console (QEMU `virt` has exactly one, at `0x1000_0000`).
//! OpenSBI has already set it up; this only transmits.

use core::sync::atomic::{AtomicUsize, Ordering};

static BASE: AtomicUsize = AtomicUsize::new(0x1000_0000);

const THR: usize = 0;
const LSR: usize = 5;
const LSR_THRE: u8 = 1 << 5;

/// Uses the UART at `base` from now on (from the device tree).
pub fn set_base(base: usize) {
    BASE.store(base, Ordering::Relaxed);
}

/// Sends one byte, waiting for room in the transmit register. Callers
/// serialize through the console lock ([`super::logger`]).
pub fn put(byte: u8) {
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the 16550's MMIO block (device tree or the `virt`
    // default); LSR and THR are byte registers at offsets 5 and 0.
    unsafe {
        while core::ptr::read_volatile((base + LSR) as *const u8) & LSR_THRE == 0 {}
        core::ptr::write_volatile((base + THR) as *mut u8, byte);
    }
}

/// Sends every byte of `bytes`.
pub fn write(bytes: &[u8]) {
    for &b in bytes {
        put(b);
    }
}
