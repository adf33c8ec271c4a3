//! The kernel both footprint binaries share: entry, console, clock, exit, a
//! program runner and a `critical-section` implementation for one hart.
//!
//! `kernel-without-kmod` uses the console, the clock and the program runner
//! directly; `kernel-with-kmod` does the same through a `reqmod::Kmod`. The
//! difference in `.text + .rodata` between the two is what the core (plus
//! the few lines of platform glue a port writes) adds to a kernel.

#![no_std]

use core::arch::{asm, global_asm};
use core::fmt;
use core::time::Duration;

global_asm!(
    r#"
    .section .text.entry
    .globl _start
_start:
    la      sp, __stack_top
    la      t0, __bss_start
    la      t1, __bss_end
1:  bgeu    t0, t1, 2f
    sd      zero, 0(t0)
    addi    t0, t0, 8
    j       1b
2:  call    kmain
3:  wfi
    j       3b
"#
);

const UART: usize = 0x1000_0000;
const EXIT_DEVICE: usize = 0x10_0000;

/// The 16550 console of QEMU `virt` (OpenSBI has set it up).
#[derive(Debug)]
pub struct Console;

impl Console {
    /// Sends `bytes`.
    pub fn write_bytes(&mut self, bytes: &[u8]) {
        for &b in bytes {
            // SAFETY: the 16550's line status (offset 5) and transmit (offset
            // 0) byte registers on QEMU `virt`; one hart, nothing else uses them.
            unsafe {
                while core::ptr::read_volatile((UART + 5) as *const u8) & 0x20 == 0 {}
                core::ptr::write_volatile(UART as *mut u8, b);
            }
        }
    }
}

impl fmt::Write for Console {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.write_bytes(s.as_bytes());
        Ok(())
    }
}

/// `print!` to the console.
#[macro_export]
macro_rules! print {
    ($($arg:tt)*) => {{
        let _ = core::fmt::Write::write_fmt(&mut $crate::Console, format_args!($($arg)*));
    }};
}

/// Monotonic time from the `time` CSR (10 MHz on QEMU `virt`).
pub fn now() -> Duration {
    let ticks: u64;
    // SAFETY: reads the `time` CSR, no side effects.
    unsafe { asm!("rdtime {0}", out(reg) ticks, options(nomem, nostack)) };
    Duration::from_nanos(ticks.saturating_mul(100))
}

/// Powers QEMU off through the `sifive_test` device: status 0, or 1 if `ok` is false.
pub fn exit(ok: bool) -> ! {
    let code: u32 = if ok { 0x5555 } else { (1 << 16) | 0x3333 };
    // SAFETY: the `sifive_test` device's only register on QEMU `virt`.
    unsafe { core::ptr::write_volatile(EXIT_DEVICE as *mut u32, code) };
    loop {
        // SAFETY: only stalls the hart.
        unsafe { asm!("wfi", options(nomem, nostack)) };
    }
}

/// The kernel's built-in programs, by path: `Some(exit code)`, or `None`
/// when no program has that path. `/sbin/modprobe -q -- NAME` "loads" NAME.
pub fn run_program(argv: &[&[u8]], envp: &[&[u8]]) -> Option<u8> {
    let (&path, args) = argv.split_first()?;
    if path != b"/sbin/modprobe" {
        return None;
    }
    let mut console = Console;
    console.write_bytes(b"modprobe:");
    for arg in args {
        console.write_bytes(b" ");
        console.write_bytes(arg);
    }
    console.write_bytes(b" (");
    console.write_bytes(envp.first().copied().unwrap_or_default());
    console.write_bytes(b")\n");
    Some(0)
}

/// `critical-section` for one hart: interrupts off.
struct SingleHart;
critical_section::set_impl!(SingleHart);

// SAFETY: one hart; with `sstatus.SIE` clear nothing else can run until the
// matching release restores it.
unsafe impl critical_section::Impl for SingleHart {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        let old: usize;
        // SAFETY: clears `sstatus.SIE`, returns the old value.
        unsafe { asm!("csrrci {0}, sstatus, 2", out(reg) old, options(nostack)) };
        old & 2 != 0
    }

    unsafe fn release(was_enabled: critical_section::RawRestoreState) {
        if was_enabled {
            // SAFETY: sets `sstatus.SIE` back as it was before `acquire`.
            unsafe { asm!("csrsi sstatus, 2", options(nostack)) };
        }
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo<'_>) -> ! {
    Console.write_bytes(b"panic\n");
    exit(false)
}
