//! The footprint baseline: the kernel runs its built-in modprobe itself,
//! without reqmod. Everything but the `Kmod` is the same as in `with_kmod.rs`.

#![no_std]
#![no_main]

use reqmod_footprint::{exit, now, print, run_program};

const ENVP: [&[u8]; 3] = [
    b"HOME=/",
    b"TERM=linux",
    b"PATH=/sbin:/usr/sbin:/bin:/usr/bin",
];

/// Entered from `_start`.
#[unsafe(no_mangle)]
extern "C" fn kmain() -> ! {
    let t0 = now();
    let name = core::hint::black_box("fs-ext4");
    let ret = match run_program(&[b"/sbin/modprobe", b"-q", b"--", name.as_bytes()], &ENVP) {
        Some(code) => i32::from(code) << 8,
        None => -2,
    };
    print!(
        "without kmod: modprobe {} -> {} in {} us\n",
        name,
        ret,
        (now() - t0).as_micros() as u64
    );
    exit(ret == 0)
}
