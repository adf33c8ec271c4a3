//! A first port of reqmod to a single-hart riscv64 kernel.
#![no_std]

use core::future::poll_fn;
use core::task::Poll;
use core::time::Duration;

use reqmod::{Errno, HelperCommand, KernelRet, Kmod, Platform, UmhWait, WaitStatus};

/// The `time` CSR's frequency (10 MHz on QEMU `virt`; the device tree's
/// `timebase-frequency` on your board).
const TIMEBASE_HZ: u64 = 10_000_000;

/// The kernel's side of a helper: run `argv[0]` with `argv` and `envp` and
/// return its raw wait status once it has exited (exit code << 8), or the
/// errno of a failed exec. Here programs are built-in functions; a kernel with
/// processes does `fork` + `exec` + `wait` (SPEC §8).
fn run_program(argv: [&[u8]; 4], envp: [&[u8]; 3]) -> Result<WaitStatus, Errno> {
    let _ = envp; // HOME=/ TERM=linux PATH=/sbin:/usr/sbin:/bin:/usr/bin
    match argv {
        [b"/sbin/modprobe", b"-q", b"--", name] => Ok(WaitStatus::exited(modprobe(name))),
        _ => Err(Errno::ENOENT), // no such program: the exec fails like a missing file
    }
}

/// A built-in `modprobe`: exit 0 if the module is known (and now loaded), 1 if not.
fn modprobe(name: &[u8]) -> u8 {
    match name {
        b"fs-vfat" | b"fs-ext4" => 0,
        _ => 1,
    }
}

/// The port: a clock, a timed sleep and helper spawning.
pub struct MyKernel;

impl Platform for MyKernel {
    fn now(&self) -> Duration {
        let ticks = riscv::register::time::read64();
        Duration::from_nanos(ticks * (1_000_000_000 / TIMEBASE_HZ))
    }

    async fn sleep_until(&self, deadline: Duration) {
        // No timer queue yet: stay runnable until the clock passes the deadline.
        poll_fn(|cx| {
            if self.now() >= deadline {
                Poll::Ready(())
            } else {
                cx.waker().wake_by_ref();
                Poll::Pending
            }
        })
        .await
    }

    async fn run_helper(&self, cmd: HelperCommand, wait: UmhWait) -> Result<WaitStatus, Errno> {
        let status = run_program(cmd.argv(), cmd.envp())?;
        match wait {
            // request_module: the helper's exit status.
            UmhWait::Proc => Ok(status),
            // request_module_nowait: the exec worked.
            UmhWait::Exec | UmhWait::NoWait => Ok(WaitStatus::SUCCESS),
        }
    }
}

/// The autoloader, with the kernel's limits (50 slots, 5 s, duplicates).
pub static KMOD: Kmod<MyKernel> = Kmod::new(MyKernel);

/// `request_module("fs-%s", fstype)`: 0, a negative errno, or the helper's
/// wait status (256 when modprobe exits 1), as in Linux.
pub fn request_fs(fstype: &str) -> i32 {
    embassy_futures::block_on(reqmod::request_module!(KMOD, "fs-{}", fstype)).kernel_ret()
}
