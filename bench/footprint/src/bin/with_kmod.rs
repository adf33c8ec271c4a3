//! The footprint kernel with a `reqmod::Kmod` (default: 50 slots, 32 queued
//! waiters, 64 duplicate-table entries, `CriticalSectionRawMutex`): the
//! platform glue a port writes, and the calls a kernel makes (a waiting and a
//! nowait request, a helper-path write, the counters).

#![no_std]
#![no_main]

use core::time::Duration;

use reqmod::{Errno, HelperCommand, KernelRet, Kmod, Platform, UmhWait, WaitStatus};
use reqmod_footprint::{exit, now, print, run_program};

/// The port: the clock, a sleep that polls it, helpers from the program table.
#[derive(Debug)]
struct Port;

impl Platform for Port {
    fn now(&self) -> Duration {
        now()
    }

    async fn sleep_until(&self, deadline: Duration) {
        while now() < deadline {
            embassy_futures::yield_now().await;
        }
    }

    async fn run_helper(&self, cmd: HelperCommand, wait: UmhWait) -> Result<WaitStatus, Errno> {
        let code = run_program(&cmd.argv(), &cmd.envp()).ok_or(Errno::ENOENT)?;
        Ok(match wait {
            UmhWait::Proc => WaitStatus::exited(code),
            UmhWait::NoWait | UmhWait::Exec => WaitStatus::SUCCESS,
        })
    }
}

/// The autoloader. Its symbol's size is `size_of::<Kmod<Port>>()`.
#[unsafe(no_mangle)]
static KMOD: Kmod<Port> = Kmod::new(Port);

/// Entered from `_start`.
#[unsafe(no_mangle)]
extern "C" fn kmain() -> ! {
    let t0 = now();
    let name = core::hint::black_box("ext4");
    let ret = embassy_futures::block_on(KMOD.request_module(format_args!("fs-{}", name)));
    let again = embassy_futures::block_on(KMOD.request_module_nowait(format_args!("fs-{}", name)));
    KMOD.set_modprobe_path(b"/sbin/modprobe\n");
    let stats = KMOD.stats();
    print!(
        "with kmod: size_of Kmod {} bytes, request fs-{} -> {}, nowait -> {}, {} helper(s), {} duplicate(s) in {} us\n",
        core::mem::size_of::<Kmod<Port>>(),
        name,
        ret.kernel_ret(),
        again.kernel_ret(),
        stats.helpers_started,
        stats.duplicates,
        (now() - t0).as_micros() as u64
    );
    exit(ret.kernel_ret() == 0 && again.kernel_ret() == 0 && stats.duplicates == 1)
}
