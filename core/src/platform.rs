//! [`Platform`]: the port interface.

use core::future::Future;
use core::time::Duration;

use crate::{Errno, Event, HelperCommand, UmhWait, WaitStatus};

/// What a kernel supplies to the autoloader: a monotonic clock, timed sleeps,
/// and helper spawning, nothing else.
///
/// # Obligations of a port
///
/// - `now()` MUST be monotonic (never go backwards) and MUST NOT fail.
/// - `sleep_until(deadline)` MUST complete once `now() >= deadline`, and not
///   before. Many sleepers may wait at once (one per request waiting for a slot).
///   Dropping the future MUST cancel the sleep without side effects.
/// - `run_helper(cmd, wait)` MUST run the program `cmd.path()` with exactly
///   `cmd.argv()` and `cmd.envp()` (SPEC §4), and resolve as `wait` says:
///   [`UmhWait::NoWait`] at once with `Ok(WaitStatus::SUCCESS)`;
///   [`UmhWait::Exec`] once the program has been executed, with
///   `Ok(WaitStatus::SUCCESS)` or `Err(errno)` of the failed exec
///   (`ENOENT` for a missing program, `EACCES`, `ENOEXEC`);
///   [`UmhWait::Proc`] once it has exited, with its raw wait status (exit code
///   in bits 8..15, so exit 1 is 256), or `Err(errno)` if it could not start.
/// - Dropping a `run_helper` future (the caller was killed: `UMH_KILLABLE`) MUST
///   NOT stop the helper: it runs to its end, and the platform reaps it and frees
///   what it used. No helper may be left a zombie or leak a task, thread or
///   descriptor, whatever the wait mode.
/// - Errors the platform cannot map to one of SPEC §6 are passed as their own
///   errno; resource exhaustion while starting a helper is `ENOMEM` (or
///   `EAGAIN`, as `fork` says).
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
///             UmhWait::NoWait | UmhWait::Exec => {
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
pub trait Platform {
    /// Monotonic time since an arbitrary epoch.
    fn now(&self) -> Duration;

    /// Completes once `now() >= deadline`.
    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()>;

    /// Runs one helper as SPEC §4 says. `cmd` is owned, so a cancelled caller
    /// cannot free it while the helper starts.
    fn run_helper(
        &self,
        cmd: HelperCommand,
        wait: UmhWait,
    ) -> impl Future<Output = Result<WaitStatus, Errno>>;

    /// Whether the calling task runs in an "async" context, one that a waiting
    /// module load could deadlock (the kernel's `current_is_async()`, SPEC §2
    /// step 1). Default: `false`.
    fn current_is_async(&self) -> bool {
        false
    }

    /// Receives every [`Event`] (trace events and warnings). Default: ignore.
    fn trace(&self, event: &Event<'_>) {
        let _ = event;
    }
}
