//! Not part of the quick start: a bare-metal executable that calls it, so
//! `cargo build` also links it and an unresolved symbol (a missing
//! `critical-section` implementation: `_critical_section_1_0_acquire`) fails
//! the build instead of showing up only in a user's kernel.
#![no_std]
#![no_main]

/// The entry point the linker looks for.
#[unsafe(no_mangle)] // SAFETY: the only `_start` in this executable.
extern "C" fn _start() -> ! {
    let ret = reqmod_quickstart::request_fs("vfat");
    core::hint::black_box(ret);
    loop {
        riscv::asm::wfi();
    }
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    loop {
        riscv::asm::wfi();
    }
}
