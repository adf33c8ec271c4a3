//! reqmod on a Linux host: the kernel's module autoloader
//! ([`reqmod`]'s `request_module()`) running real helper processes.
//!
//! - [`LinuxPlatform`] implements [`reqmod::Platform`]: helpers are real
//!   processes started with exactly the environment of SPEC §4 (argv as the
//!   core built it, the three-variable environment, cwd `/`, umask 0022,
//!   default signal dispositions, empty signal mask, standard descriptors on
//!   `/dev/null`, nothing else inherited); exec failures come back as their
//!   errno, exits as raw wait statuses; every child is reaped, also when its
//!   caller gave up.
//! - [`block_on`] lets plain threads call the core and park while they wait;
//!   [`block_on_all`] runs any number of requests on one thread.
//! - [`LinuxKmod`] is the core's `Kmod` on this platform;
//!   [`request_module_blocking`] is the one-call blocking form.
//! - The `reqmod` binary ([`cli`], feature `cli`) requests modules from the
//!   command line.
//!
//! # How waiting scales
//!
//! One reactor thread per process waits, in `epoll_wait`, for every helper
//! (a pidfd each) and every timer (an ordered map,
//! whose earliest deadline is the `epoll_wait` timeout). Waiting callers are
//! wakers, not threads. Details in the `reactor` module's source.
//!
//! ```no_run
//! use reqmod::KernelRet;
//! use reqmod_linux::{LinuxKmod, LinuxPlatform, request_module_blocking};
//!
//! static KMOD: LinuxKmod = LinuxKmod::new(LinuxPlatform::new());
//!
//! // Runs `/sbin/modprobe -q -- fs-ext4` and waits for it.
//! let result = request_module_blocking(&KMOD, format_args!("fs-{}", "ext4"));
//! println!("request_module returned {}", result.kernel_ret());
//! ```

#![cfg_attr(docsrs, feature(doc_cfg))]

#[cfg(feature = "cli")]
#[cfg_attr(docsrs, doc(cfg(feature = "cli")))]
pub mod cli;
mod clock;
mod executor;
mod helper;
mod platform;
mod reactor;
mod spawn;

pub use clock::{Sleep, now, sleep, sleep_until};
pub use executor::{block_on, block_on_all, block_on_each};
pub use platform::{LinuxKmod, LinuxPlatform, request_module_blocking};
pub use spawn::Output;

/// Number of helper processes started by this process that have not been
/// reaped yet (running, or exited a moment ago and about to be reaped).
///
/// Zero once every helper has ended: useful to wait for `nowait` helpers
/// before exiting, and to check for leaks.
pub fn live_helpers() -> usize {
    reactor::existing().map_or(0, |reactor| reactor.live_children())
}
