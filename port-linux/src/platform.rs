//! [`LinuxPlatform`]: the core's [`Platform`] on a Linux host.

use std::future::Future;
use std::time::Duration;

use embassy_sync::blocking_mutex::raw::RawMutex;
use reqmod::{Errno, HelperCommand, Kmod, Platform, Security, UmhWait, WaitStatus};

use crate::helper;
use crate::spawn::{Output, Prepared};
use crate::{block_on, clock};

/// The core's [`Platform`] on Linux: `CLOCK_MONOTONIC`, timers and helper
/// processes served by the process-wide reactor thread.
///
/// Obligations of [`Platform`] and how they are met:
/// - helpers are real processes (`fork` + `execve`, no `PATH` search, no
///   `/bin/sh` fallback): argv and envp exactly as the core built them, cwd
///   `/`, umask 0022, every signal at its default disposition, empty signal
///   mask, fds 0-2 on `/dev/null` (1 and 2 inherited with
///   [`Output::Inherit`]), every other descriptor closed at exec;
/// - [`UmhWait::Exec`] resolves once `execve` returned: `Ok(0)` or its errno;
///   [`UmhWait::Proc`] with the raw wait status; [`UmhWait::NoWait`] at once;
/// - dropping a `run_helper` future never stops the helper: the reactor owns
///   every child and reaps it when it exits.
///
/// If the application sets `SIGCHLD` to `SIG_IGN`, the kernel reaps helpers
/// itself and their status is lost: [`UmhWait::Proc`] then gives
/// `Err(ECHILD)`.
///
/// It holds only settings, so it is `Copy` and `const`-constructible (a
/// `static` [`Kmod`] works); the reactor thread starts at the first request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LinuxPlatform {
    output: Output,
}

impl LinuxPlatform {
    /// Helpers with standard input, output and error on `/dev/null` (SPEC §4).
    pub const fn new() -> Self {
        Self {
            output: Output::Null,
        }
    }

    /// Helpers whose standard output and error are `output` (standard input
    /// stays `/dev/null`).
    pub const fn with_output(output: Output) -> Self {
        Self { output }
    }

    /// Where helpers' standard output and error go.
    pub const fn output(&self) -> Output {
        self.output
    }
}

impl Platform for LinuxPlatform {
    fn now(&self) -> Duration {
        clock::now()
    }

    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> {
        clock::sleep_until(deadline)
    }

    fn run_helper(
        &self,
        cmd: HelperCommand,
        wait: UmhWait,
    ) -> impl Future<Output = Result<WaitStatus, Errno>> {
        let output = self.output;
        // Copy into C form now, so the future does not keep `cmd` alive.
        let prepared = Prepared::new(cmd.path(), &cmd.argv(), &cmd.envp());
        async move {
            helper::run(prepared, output, wait)
                .await
                .map(WaitStatus::from_raw)
                .map_err(Errno::from_raw)
        }
    }
}

/// The core's request engine on Linux, with the kernel's defaults (50 slots,
/// 5 s busy timeout, duplicate tracking on). `LinuxKmod::new(LinuxPlatform::new())`
/// is `const`, so it can be a `static`.
pub type LinuxKmod = Kmod<LinuxPlatform>;

/// `request_module(wait = true)` from a plain thread: runs the request on the
/// calling thread with [`block_on`] (the thread parks while it waits) and
/// returns its result; `.kernel_ret()` (from [`reqmod::KernelRet`]) gives the
/// kernel's integer. The request's trace location is the caller's.
#[track_caller]
pub fn request_module_blocking<
    S: Security,
    M: RawMutex,
    const SLOTS: usize,
    const WAITERS: usize,
    const DUPS: usize,
>(
    kmod: &Kmod<LinuxPlatform, S, M, SLOTS, WAITERS, DUPS>,
    name: core::fmt::Arguments<'_>,
) -> Result<WaitStatus, Errno> {
    block_on(kmod.request_module(name))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Sync>() {}

    /// Multi-threaded executors (tokio, …) need `Send` futures and a `Sync`
    /// engine.
    #[test]
    fn futures_are_send_and_the_engine_is_sync() {
        assert_sync::<LinuxKmod>();
        let kmod = LinuxKmod::new(LinuxPlatform::new());
        let request = kmod.request_module(format_args!("x"));
        assert_send(&request);
        assert_send(&LinuxPlatform::new().sleep_until(Duration::ZERO));
        let cmd = HelperCommand::modprobe(
            reqmod::ModprobePath::empty(),
            reqmod::ModuleName::format(format_args!("x")).expect("name"),
        );
        assert_send(&LinuxPlatform::new().run_helper(cmd, UmhWait::Proc));
    }
}
