//! `reqmod-qemu`: a minimal riscv64 OS for QEMU `virt` that autoloads kernel
//! modules through [`reqmod`], the way Linux's `request_module()` does.
//!
//! It is the example a hobby-kernel author reads to embed reqmod. Layers, from
//! the bottom (Tock-style: the folder says what may touch hardware):
//!
//! - [`machine`]: boot, per-hart stacks, traps, SBI timer and IPIs, SMP start,
//!   the device tree, the UART, the exit device, the SMP `critical-section`
//!   implementation. The only `unsafe` code lives here.
//! - [`os`]: the multi-hart async executor, the timer queue, task signals.
//! - [`platform`]: `impl reqmod::Platform` for this OS: the clock, sleeping,
//!   and helpers started as tasks that run programs from [`programs`].
//! - [`programs`]: the program table (`/sbin/modprobe` and test programs);
//!   [`modules`]: the module table that the built-in modprobe loads from.
//! - [`demo`] and [`selftest`]: the two boot modes, chosen on the kernel
//!   command line (QEMU `-append demo` or `-append selftest`); [`bench`](mod@bench), a
//!   third, is the SMP-scaling storm of `cargo xtask bench`.
//!
//! # Embedding reqmod: the three things this port supplies
//!
//! 1. A `critical-section` implementation that is correct on several harts
//!    ([`machine::lock`]): the core's `embassy-sync` mutexes lock through it.
//! 2. `impl reqmod::Platform` ([`platform::QemuPlatform`]): `now`,
//!    `sleep_until`, `run_helper`.
//! 3. A `static KMOD: Kmod<QemuPlatform> = Kmod::new(…)` ([`platform::KMOD`])
//!    and an executor to poll its futures ([`os::executor`]).
//!
//! # Running
//!
//! From the repository root (the runner builds this crate, boots QEMU,
//! decodes the defmt log and enforces a timeout):
//!
//! ```text
//! cargo xtask qemu demo                 # -smp 4, six virtio devices
//! cargo xtask qemu selftest --smp 4     # exit status 0 iff every check passed
//! cargo xtask qemu size                 # llvm-size -A of the release kernel
//! ```
//!
//! `cargo build` inside `port-qemu/` builds the kernel alone
//! (`.cargo/config.toml` sets the target, `kernel.ld`, `-Tdefmt.x` and
//! `code-model=large`); `cargo run` there boots it with the raw, undecoded console.

#![no_std]
#![no_main]
#![deny(unsafe_op_in_unsafe_fn)]
#![deny(missing_docs)]

extern crate alloc;

pub mod bench;
pub mod demo;
pub mod machine;
pub mod modules;
pub mod os;
pub mod platform;
pub mod programs;
pub mod selftest;

use core::sync::atomic::{AtomicUsize, Ordering};

use machine::{exit, fdt, heap, logger, smp, timer, trap, uart};

/// Harts that reached [`secondary_main`] (plus the boot hart).
static STARTED: AtomicUsize = AtomicUsize::new(0);

/// The boot hart's Rust entry (from `_start`).
pub fn kernel_main(hart: usize, dtb: usize) -> ! {
    logger::start();
    let info = match fdt::parse(dtb) {
        Ok(info) => info,
        Err(e) => {
            defmt::error!("device tree at {=usize:#x}: {}", dtb, e);
            exit::exit_failure(4);
        }
    };
    uart::set_base(info.uart);
    if let Some(base) = info.test_device {
        exit::set_base(base);
    }
    timer::set_timebase(info.timebase_hz);
    let (heap_start, heap_end) = heap::region();
    if info.blob.0 < heap_end && heap_start < info.blob.0 + info.blob.1 {
        defmt::error!("the device tree overlaps the heap");
        exit::exit_failure(4);
    }
    heap::init();
    trap::install();

    let harts = &info.harts[..info.hart_count];
    defmt::info!(
        "reqmod-qemu: boot hart {}, {} harts, timebase {} Hz, bootargs {=str:?}",
        hart,
        harts.len(),
        info.timebase_hz,
        info.bootargs()
    );
    STARTED.fetch_add(1, Ordering::SeqCst);
    let started = smp::start_secondaries(harts, hart);
    // Wait (boundedly) for the secondaries to come up, so tests see them all.
    let t0 = timer::ticks();
    while STARTED.load(Ordering::SeqCst) < started + 1 && timer::ticks() - t0 < info.timebase_hz {
        core::hint::spin_loop();
    }
    defmt::info!("{} harts online", STARTED.load(Ordering::SeqCst));

    let mode = info.bootargs().split_whitespace().next().unwrap_or("");
    match mode {
        "demo" => os::executor::spawn(demo::run(info.clone())),
        "selftest" => os::executor::spawn(selftest::run(info.clone())),
        "bench" => os::executor::spawn(bench::run(info.clone())),
        other => {
            defmt::error!(
                "unknown mode {=str:?}: boot with -append demo, selftest or bench",
                other
            );
            exit::exit_failure(5);
        }
    }
    os::executor::run()
}

/// A secondary hart's Rust entry (from `_start_secondary`).
pub fn secondary_main(_hart: usize) -> ! {
    trap::install();
    STARTED.fetch_add(1, Ordering::SeqCst);
    os::executor::run()
}

#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    defmt::error!("panic: {}", defmt::Display2Format(info));
    exit::exit_failure(2)
}
