//! The `sifive_test` device: writing to it ends QEMU with an exit status.

use core::sync::atomic::{AtomicUsize, Ordering};

static BASE: AtomicUsize = AtomicUsize::new(0x10_0000);

const PASS: u32 = 0x5555;
const FAIL: u32 = 0x3333;

/// Uses the device at `base` from now on (from the device tree).
pub fn set_base(base: usize) {
    BASE.store(base, Ordering::Relaxed);
}

fn write(value: u32) -> ! {
    super::logger::flush();
    let base = BASE.load(Ordering::Relaxed);
    // SAFETY: `base` is the sifive_test MMIO register; the write ends the
    // emulator, nothing runs after it.
    unsafe { core::ptr::write_volatile(base as *mut u32, value) };
    loop {
        super::cpu::wait_for_interrupt();
    }
}

/// Ends QEMU with exit status 0.
pub fn exit_success() -> ! {
    write(PASS)
}

/// Ends QEMU with exit status `code` (1..=255; 0 becomes 1).
pub fn exit_failure(code: u8) -> ! {
    let code = if code == 0 { 1 } else { code };
    write((u32::from(code) << 16) | FAIL)
}
