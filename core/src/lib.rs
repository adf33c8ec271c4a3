//! # reqmod: the Linux kernel's module autoloader, `no_std`
//!
//! `reqmod` reproduces `request_module()` (`kernel/module/kmod.c`, `dups.c`,
//! `umh.c`) for hobby and teaching kernels: same order of checks, same limits,
//! same return integers, with no heap, no `unsafe`, and a virtual-time test
//! platform.
//!
//! ## Quick start: a kernel's first port
//!
//! A new crate in (or beside) your kernel, here for a single-hart riscv64
//! kernel in S-mode. `Cargo.toml`:
//!
//! ```toml
//! [dependencies]
//! reqmod = "0.1"
//! embassy-futures = "0.1" # block_on, for a kernel without an async executor
//! riscv = { version = "0.16", features = ["critical-section-single-hart", "s-mode"] }
//! ```
//!
//! `src/lib.rs` (built for `riscv64gc-unknown-none-elf` in this project's CI,
//! as `examples/quickstart`):
//!
//! ```ignore
//! //! A first port of reqmod to a single-hart riscv64 kernel.
//! #![no_std]
//!
//! use core::future::poll_fn;
//! use core::task::Poll;
//! use core::time::Duration;
//!
//! use reqmod::{Errno, HelperCommand, KernelRet, Kmod, Platform, UmhWait, WaitStatus};
//!
//! /// The `time` CSR's frequency (10 MHz on QEMU `virt`; the device tree's
//! /// `timebase-frequency` on your board).
//! const TIMEBASE_HZ: u64 = 10_000_000;
//!
//! /// The kernel's side of a helper: run `argv[0]` with `argv` and `envp` and
//! /// return its raw wait status once it has exited (exit code << 8), or the
//! /// errno of a failed exec. Here programs are built-in functions; a kernel with
//! /// processes does `fork` + `exec` + `wait` (SPEC §8).
//! fn run_program(argv: [&[u8]; 4], envp: [&[u8]; 3]) -> Result<WaitStatus, Errno> {
//!     let _ = envp; // HOME=/ TERM=linux PATH=/sbin:/usr/sbin:/bin:/usr/bin
//!     match argv {
//!         [b"/sbin/modprobe", b"-q", b"--", name] => Ok(WaitStatus::exited(modprobe(name))),
//!         _ => Err(Errno::ENOENT), // no such program: the exec fails like a missing file
//!     }
//! }
//!
//! /// A built-in `modprobe`: exit 0 if the module is known (and now loaded), 1 if not.
//! fn modprobe(name: &[u8]) -> u8 {
//!     match name {
//!         b"fs-vfat" | b"fs-ext4" => 0,
//!         _ => 1,
//!     }
//! }
//!
//! /// The port: a clock, a timed sleep and helper spawning.
//! pub struct MyKernel;
//!
//! impl Platform for MyKernel {
//!     fn now(&self) -> Duration {
//!         let ticks = riscv::register::time::read64();
//!         Duration::from_nanos(ticks * (1_000_000_000 / TIMEBASE_HZ))
//!     }
//!
//!     async fn sleep_until(&self, deadline: Duration) {
//!         // No timer queue yet: stay runnable until the clock passes the deadline.
//!         poll_fn(|cx| {
//!             if self.now() >= deadline {
//!                 Poll::Ready(())
//!             } else {
//!                 cx.waker().wake_by_ref();
//!                 Poll::Pending
//!             }
//!         })
//!         .await
//!     }
//!
//!     async fn run_helper(&self, cmd: HelperCommand, wait: UmhWait) -> Result<WaitStatus, Errno> {
//!         let status = run_program(cmd.argv(), cmd.envp())?;
//!         match wait {
//!             // request_module: the helper's exit status.
//!             UmhWait::Proc => Ok(status),
//!             // request_module_nowait: the exec worked.
//!             UmhWait::Exec | UmhWait::NoWait => Ok(WaitStatus::SUCCESS),
//!         }
//!     }
//! }
//!
//! /// The autoloader, with the kernel's limits (50 slots, 5 s, duplicates).
//! pub static KMOD: Kmod<MyKernel> = Kmod::new(MyKernel);
//!
//! /// `request_module("fs-%s", fstype)`: 0, a negative errno, or the helper's
//! /// wait status (256 when modprobe exits 1), as in Linux.
//! pub fn request_fs(fstype: &str) -> i32 {
//!     embassy_futures::block_on(reqmod::request_module!(KMOD, "fs-{}", fstype)).kernel_ret()
//! }
//! ```
//!
//! Then `request_fs("vfat")` returns `0`, and `request_fs("xfs")` returns
//! `256` (modprobe exited 1), as `request_module()` does in Linux. What to
//! change for your kernel:
//!
//! - **`run_program`** becomes your process creation (SPEC §8): a new process
//!   running `argv[0]` with exactly `argv` and `envp`, cwd `/`, umask 022; the
//!   wait status once it exits, or the exec's errno (`-ENOENT`, `-EACCES`,
//!   `-ENOEXEC`). [`Platform`] lists every obligation (MUST sentences) and
//!   carries a complete async port.
//! - **The lock.** A `Kmod` guards its state with an `embassy-sync`
//!   [`RawMutex`], by default [`CriticalSectionRawMutex`], which calls the
//!   `critical-section` implementation your kernel links in. Pick one:
//!   - one hart (or core): interrupts off is enough: the `riscv` crate's
//!     `critical-section-single-hart` feature (with `s-mode` for an S-mode
//!     kernel), `cortex-m`'s `critical-section-single-core`, or your own
//!     `critical_section::set_impl!`;
//!   - several harts: interrupts off on this hart **and** a spinlock with an
//!     owner word, re-entrant on the same hart (interrupts alone lose updates
//!     between harts); `reqmod-qemu`'s `critical-section` implementation does
//!     exactly that;
//!   - or your own [`RawMutex`] as `Kmod`'s third parameter.
//!
//!   A link error `undefined symbol: _critical_section_1_0_acquire` (and
//!   `_release`) means no implementation is linked: add one of the above.
//!   [`NoopRawMutex`] has no lock at all and is not `Sync`, so a `Kmod` using
//!   it cannot be a `static`; it suits a `Kmod` owned by one single-threaded
//!   executor (tests, benchmarks), not a kernel.
//! - **Waiting.** `embassy_futures::block_on` polls in a loop: fine for a
//!   first port. A kernel with threads parks the caller instead and wakes it
//!   from the core's waker; a kernel with an async executor awaits the request
//!   future in a task. `sleep_until` then goes to your timer queue.
//! - **Limits.** [`Kmod::with_config`] takes a [`Config`] (build one with
//!   `Config::DEFAULT.with_…`); the const generics size the slots, the wait
//!   queue and the duplicate table.
//!
//! ## A request's path through the core
//!
//! ```text
//! kmod.request_module(format_args!("fs-{}", fstype))        name formatted now
//!  1. wait && platform.current_is_async()  -> warn once, go on
//!  2. helper path empty                    -> -ENOENT          (nothing spawned)
//!  3. name >= MODULE_NAME_LEN bytes        -> -ENAMETOOLONG
//!  4. security hook says no                -> its errno
//!  5. take one of 50 slots, FIFO, <= 5 s   -> -ETIME + rate-limited warning
//!  6. trace event `module_request`
//!  7. duplicate table: a duplicate returns 0 (nowait) or the first
//!     request's result (wait), releasing its slot
//!  8. run [path, "-q", "--", name] with HOME=/ TERM=linux PATH=…,
//!     UMH_WAIT_PROC (wait) or UMH_WAIT_EXEC (nowait), killable
//!  9. announce the result to the duplicate table, release the slot
//! -> Ok(WaitStatus) (exit 1 => 256 as a kernel integer) or Err(Errno)
//! ```
//!
//! ## Layers
//!
//! - [`Kmod`] (`kmod.rs`) runs the steps above over three platform-blind
//!   parts: the slot semaphore (`slots.rs`, FIFO hand-off with a deadline and
//!   an overflow lobby so that no request fails because many wait), the
//!   duplicate table (`dups.rs`), and the helper path ([`ModprobePath`]).
//! - [`Platform`] is the whole port: a clock, `sleep_until`, and `run_helper`.
//!   Its docs hold the obligations and a complete example port.
//! - [`Security`] is the LSM hook; [`Event`] the trace events.
//! - `sim` (feature `sim`) is a deterministic virtual-time platform and
//!   executor for tests.
//!
//! ## Example
//!
//! On the virtual-time `sim` platform (feature `sim`):
//!
#![cfg_attr(feature = "sim", doc = "```")]
#![cfg_attr(not(feature = "sim"), doc = "```ignore")]
//! use reqmod::sim::{Executor, SimPlatform};
//! use reqmod::{KernelRet, Kmod};
//!
//! let kmod = Kmod::new(SimPlatform::new());
//! let mut ex = Executor::new();
//! let loaded = ex.spawn(reqmod::request_module!(kmod, "fs-{}", "vfat"));
//! ex.run(kmod.platform()).unwrap();
//! assert_eq!(loaded.take().unwrap().kernel_ret(), 0);
//! let run = &kmod.platform().runs()[0];
//! assert_eq!(run.command.argv(), [&b"/sbin/modprobe"[..], b"-q", b"--", b"fs-vfat"]);
//! ```
//!
//! ## Features
#![doc = document_features::document_features!()]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![forbid(unsafe_code)]
#![deny(missing_docs, missing_debug_implementations)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[macro_use]
mod fmt;

mod command;
mod config;
mod dups;
mod errno;
mod kill;
mod kmod;
mod name;
mod path;
mod platform;
mod security;
mod slots;
mod status;
mod trace;

#[cfg(feature = "sim")]
#[cfg_attr(docsrs, doc(cfg(feature = "sim")))]
pub mod sim;

pub use command::{HELPER_ENVP, HelperCommand, UmhWait};
pub use config::{
    Config, DEDUP_LINGER, MAX_KMOD_ALL_BUSY_TIMEOUT, MAX_KMOD_CONCURRENT, RUNNING_HELPERS_TIMEOUT,
};
pub use errno::Errno;
pub use kill::KillSignal;
pub use kmod::{Kmod, Stats};
pub use name::{MODULE_NAME_LEN, ModuleName};
pub use path::{DEFAULT_MODPROBE_PATH, KMOD_PATH_LEN, ModprobePath};
pub use platform::Platform;
pub use security::{AllowAll, Security};
pub use status::{KernelRet, Outcome, WaitStatus, from_kernel_ret, kernel_ret};
pub use trace::Event;

/// The raw mutexes a [`Kmod`] can be built with (its `M` parameter), from
/// `embassy-sync`, so a port can name them without depending on it.
///
/// - [`CriticalSectionRawMutex`] (the default): through the `critical-section`
///   implementation the kernel links in (see the quick start); a `Kmod` with
///   it is `Sync` and can be a `static`.
/// - [`NoopRawMutex`]: no locking and not `Sync`: for a `Kmod` owned by one
///   single-threaded executor (tests, benchmarks), never a `static`.
/// - [`RawMutex`]: the trait, to bring your kernel's own lock.
pub use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex, RawMutex};
