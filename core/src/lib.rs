//! # reqmod: the Linux kernel's module autoloader, `no_std`
//!
//! `reqmod` reproduces `request_module()` (`kernel/module/kmod.c`, `dups.c`,
//! `umh.c`) for hobby and teaching kernels: same order of checks, same limits,
//! same return integers, with no heap, no `unsafe`, and a virtual-time test
//! platform.
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
//! - [`sim`] (feature `sim`) is a deterministic virtual-time platform and
//!   executor for tests.
//!
//! ## Example
//!
//! ```
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
