//! [`Platform`]: the port interface.

use core::future::Future;
use core::time::Duration;

use crate::{Errno, Event, HelperCommand, MODULE_NAME_LEN, RequestId, UmhWait, WaitStatus};

/// What a kernel supplies to the autoloader: a monotonic clock, timed sleeps,
/// and helper spawning; optionally the context of the caller, a way to kill a
/// helper, and a sink for events.
///
/// `NAME` is the module-name bound of the [`Kmod`](crate::Kmod)s this
/// platform serves ([`MODULE_NAME_LEN`] unless a `Kmod` asks for another);
/// `impl Platform for MyKernel` implements the default.
///
/// # Obligations of a port
///
/// - `now()` MUST be monotonic (never go backwards) and MUST NOT fail.
/// - `sleep_until(deadline)` MUST complete once `now() >= deadline`, and not
///   before. Many sleepers may wait at once (one per request waiting for a slot).
///   Dropping the future MUST cancel the sleep without side effects.
/// - `run_helper(cmd, wait)` MUST run the program `cmd.path()` with exactly
///   `cmd.argv()` and `cmd.envp()` (SPEC §4, §8), and resolve as `wait` says:
///   [`UmhWait::Exec`] once the program has been executed, with
///   `Ok(WaitStatus::SUCCESS)` or `Err(errno)` of the failed exec
///   (`ENOENT` for a missing program, `EACCES`, `ENOEXEC`, `ENOMEM`);
///   [`UmhWait::Proc`] once it has exited, with its raw wait status (exit code
///   in bits 8..15, so exit 1 is 256; a signal's number for a process it
///   killed), or `Err(errno)` if it could not start. These are the only two
///   modes the core asks for.
/// - Dropping a `run_helper` future (the caller was killed: `UMH_KILLABLE`) MUST
///   NOT stop the helper: it runs to its end, and the platform reaps it and frees
///   what it used. No helper may be left a zombie or leak a task, thread or
///   descriptor, whatever the wait mode.
/// - Errors the platform cannot map to one of SPEC §6 are passed as their own
///   errno; resource exhaustion while starting a helper is `ENOMEM` (or
///   `EAGAIN`, as `fork` says).
/// - `trace(event)` MUST NOT call back into the `Kmod` (it runs with no lock
///   held, but in the middle of a request's step).
///
/// For the policies of SPEC §9 (all optional; a port that leaves the defaults
/// gets Linux's behaviour for them):
///
/// - `parent_request()` (loop detection) MUST return the [`RequestId`] of the
///   request on whose behalf the caller runs: the id in the
///   [`HelperCommand::request`] of the helper process that makes this request,
///   or of the helper whose action (a module load, and that module's init)
///   makes it; `None` for anything else. It is called synchronously when a
///   request is made, in the caller's context.
/// - `kill_helper(request)` (the helper watchdog) MUST send SIGKILL to the
///   helper started for `request` if it still runs, return `true`, and then
///   resolve that helper's `run_helper` future with its wait status (9, once
///   it is reaped). It MUST return `false` if the platform cannot kill helpers;
///   the request then goes on waiting, as in Linux, and a warning says so.
///
/// The core calls these from whatever task or thread makes the request. The
/// futures need not be `Send`; a request future is `Send` when they are.
///
/// # A complete port
///
/// A hobby kernel with a 1 kHz tick, a timer queue and a table of built-in
/// programs plugs in like this (this is the whole port):
///
/// ```
/// use core::sync::atomic::{AtomicU64, Ordering};
/// use core::time::Duration;
/// use reqmod::{Errno, HelperCommand, Kmod, Platform, UmhWait, WaitStatus};
///
/// /// Milliseconds since boot, advanced by the timer interrupt.
/// static TICKS: AtomicU64 = AtomicU64::new(0);
///
/// # mod kernel {
/// #     use core::time::Duration;
/// #     pub async fn timer_queue_wait(_deadline: Duration) {}
/// #     pub async fn spawn_and_wait(_main: fn(&[&[u8]]) -> u8, _argv: [&[u8]; 4]) -> u8 { 0 }
/// #     pub fn spawn_detached(_main: fn(&[&[u8]]) -> u8, _argv: [&[u8]; 4]) {}
/// # }
/// fn modprobe_main(argv: &[&[u8]]) -> u8 {
///     // argv = ["/sbin/modprobe", "-q", "--", name]: find and load the module.
///     # let _ = argv;
///     0
/// }
///
/// struct MyKernel;
///
/// impl Platform for MyKernel {
///     fn now(&self) -> Duration {
///         Duration::from_millis(TICKS.load(Ordering::Relaxed))
///     }
///
///     async fn sleep_until(&self, deadline: Duration) {
///         kernel::timer_queue_wait(deadline).await
///     }
///
///     async fn run_helper(&self, cmd: HelperCommand, wait: UmhWait) -> Result<WaitStatus, Errno> {
///         // Programs are looked up by path; a missing one fails like a missing file.
///         let main = match cmd.path() {
///             b"/sbin/modprobe" => modprobe_main,
///             _ => return Err(Errno::ENOENT),
///         };
///         match wait {
///             UmhWait::Exec => {
///                 kernel::spawn_detached(main, cmd.argv());
///                 Ok(WaitStatus::SUCCESS)
///             }
///             UmhWait::Proc => Ok(WaitStatus::exited(kernel::spawn_and_wait(main, cmd.argv()).await)),
///         }
///     }
/// }
///
/// static KMOD: Kmod<MyKernel> = Kmod::new(MyKernel);
///
/// async fn mount(fstype: &str) {
///     let result = reqmod::request_module!(KMOD, "fs-{}", fstype).await;
///     # let _ = result;
/// }
/// ```
///
/// The workspace ships complete ports: `reqmod-linux` (real processes),
/// `reqmod-qemu` (a riscv64 kernel), the virtual-time `sim`
/// platform, and `examples/minimal_port.rs`.
pub trait Platform<const NAME: usize = MODULE_NAME_LEN> {
    /// Monotonic time since an arbitrary epoch.
    fn now(&self) -> Duration;

    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()>;

    /// Runs one helper as SPEC §4 says. `cmd` is owned, so a cancelled caller
    /// cannot free it while the helper starts.
    fn run_helper(
        &self,
        cmd: HelperCommand<NAME>,
        wait: UmhWait,
    ) -> impl Future<Output = Result<WaitStatus, Errno>>;

    /// Whether the calling task runs in an "async" context, one that a waiting
    /// module load could deadlock (the kernel's `current_is_async()`, SPEC §2
    /// step 1). Default: `false`.
    fn current_is_async(&self) -> bool {
        false
    }

    /// The request on whose behalf the caller runs (see the obligations).
    /// Default: `None` (loop detection then sees no ancestors).
    fn parent_request(&self) -> Option<RequestId> {
        None
    }

    /// Kills the helper of `request` with SIGKILL (see the obligations).
    /// Default: `false`, the platform cannot.
    fn kill_helper(&self, request: RequestId) -> bool {
        let _ = request;
        false
    }

    /// Receives every [`Event`], in the order they happen. Default: ignore.
    fn trace(&self, event: &Event<'_>) {
        let _ = event;
    }
}

/// A platform behind a shared reference is a platform (for a platform that
/// lives in a `static`, or one shared by several `Kmod`s).
impl<const NAME: usize, P: Platform<NAME> + ?Sized> Platform<NAME> for &P {
    fn now(&self) -> Duration {
        (**self).now()
    }

    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> {
        (**self).sleep_until(deadline)
    }

    fn run_helper(
        &self,
        cmd: HelperCommand<NAME>,
        wait: UmhWait,
    ) -> impl Future<Output = Result<WaitStatus, Errno>> {
        (**self).run_helper(cmd, wait)
    }

    fn current_is_async(&self) -> bool {
        (**self).current_is_async()
    }

    fn parent_request(&self) -> Option<RequestId> {
        (**self).parent_request()
    }

    fn kill_helper(&self, request: RequestId) -> bool {
        (**self).kill_helper(request)
    }

    fn trace(&self, event: &Event<'_>) {
        (**self).trace(event)
    }
}
