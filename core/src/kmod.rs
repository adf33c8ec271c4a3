//! [`Kmod`]: the autoloader, tying slots, the duplicate table, the helper path,
//! the security hook and the platform together (SPEC §2).

use core::cell::RefCell;
use core::fmt;
use core::future::{Future, poll_fn};
use core::panic::Location;
use core::pin::pin;
use core::task::Poll;

use embassy_futures::select::{Either, select};
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, RawMutex};
use embassy_sync::waitqueue::MultiWakerRegistration;

use crate::config::RUNNING_HELPERS_TIMEOUT;
use crate::dups::{self, DupLock, DupWakes, Lookup, name_hash};
use crate::slots::{self, SlotGuard, SlotLock, Wakes};
use crate::status::from_kernel_ret;
use crate::trace::RateLimit;
use crate::{
    AllowAll, Config, Errno, Event, HelperCommand, KernelRet, KillSignal, ModprobePath, ModuleName,
    Outcome, Platform, Security, UmhWait,
};

/// Counters and gauges of a [`Kmod`], from [`Kmod::stats`].
///
/// Every request that began is, at any moment, exactly one of completed,
/// cancelled (its future was dropped) or in flight:
/// `requests == completed + cancelled + in_flight`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Stats {
    /// Requests that began (their future was polled).
    pub requests: u64,
    /// Requests that returned a result.
    pub completed: u64,
    /// Requests whose future was dropped before returning.
    pub cancelled: u64,
    /// Completed requests whose result was not 0.
    pub failures: u64,
    /// Refused before a slot: empty helper path (`-ENOENT`) or a name too long
    /// (`-ENAMETOOLONG`).
    pub invalid: u64,
    /// Refused by the security hook.
    pub denied: u64,
    /// Failed with `-ETIME`: no slot within the busy timeout.
    pub busy_timeouts: u64,
    /// Requests answered from the duplicate table instead of running a helper
    /// (counted when they return; [`dup_waiters`](Self::dup_waiters) counts
    /// the ones still waiting).
    pub duplicates: u64,
    /// Helpers handed to the platform.
    pub helpers_started: u64,
    /// Helper runs refused with `-EBUSY` while helpers were disabled.
    pub helpers_refused: u64,
    /// Requests in flight now.
    pub in_flight: u64,
    /// Slots held now.
    pub slots_in_use: usize,
    /// The most slots ever held at once (never above `max_concurrent`).
    pub max_concurrent_seen: usize,
    /// Requests waiting for a slot now.
    pub waiting_for_slot: usize,
    /// Helpers the platform is running for a caller now.
    pub running_helpers: usize,
    /// Entries in the duplicate table now, pending or lingering.
    pub dup_entries: usize,
    /// Entries still waiting for their first request's result.
    pub dup_pending: usize,
    /// Duplicates waiting for a result now.
    pub dup_waiters: usize,
}

/// Everything a `Kmod` changes, under its one mutex. An uncontended request
/// takes it four times: to count it; for its slot; for the duplicate check
/// (and, if it runs the helper, to count the helper and copy the path); and
/// at the end (helper done, result announced, slot handed on, request
/// counted). A duplicate's last lock releases its slot and counts it; one
/// that waits for the first request's result also locks on each of its polls.
/// (Three mutexes, one each for the slots, the table and the rest, took eight
/// round trips; on a host whose `critical-section` is a global mutex that was
/// a quarter of a request's instructions.)
struct Inner<const SLOTS: usize, const WAITERS: usize, const DUPS: usize> {
    shared: Shared,
    slots: slots::State<WAITERS>,
    dups: dups::State<DUPS, SLOTS>,
}

struct Shared {
    path: ModprobePath,
    helpers_disabled: bool,
    running_helpers: usize,
    drain: MultiWakerRegistration<4>,
    warned_async: bool,
    busy_log: RateLimit,
    stats: Stats,
}

impl Shared {
    /// Counts a running helper and copies the helper path into `cmd` (the
    /// caller then makes the `RunningHelper` guard): `-EBUSY` while helpers
    /// are disabled (`call_usermodehelper_exec`); then `-ENOENT` if the path
    /// was emptied since step 2, as the exec of `""` would fail (the kernel's
    /// exec reads the path buffer only now).
    fn helper_starts(&mut self, cmd: &mut HelperCommand) -> Result<(), Errno> {
        if self.helpers_disabled {
            self.stats.helpers_refused += 1;
            Err(Errno::EBUSY)
        } else if self.path.is_empty() {
            Err(Errno::ENOENT)
        } else {
            self.running_helpers += 1;
            self.stats.helpers_started += 1;
            cmd.set_path(&self.path);
            Ok(())
        }
    }

    /// A running helper ended (`running_helpers` in `umh.c`).
    fn helper_exited(&mut self) {
        self.running_helpers -= 1;
        if self.running_helpers == 0 {
            self.drain.wake();
        }
    }
}

/// The module autoloader: the kernel's `request_module()` with its slots,
/// duplicate table, helper path and security hook, over a [`Platform`].
///
/// - `P`: the platform (clock and helper spawning).
/// - `S`: the security hook, [`AllowAll`] by default.
/// - `M`: the `embassy-sync` raw mutex guarding the state,
///   `CriticalSectionRawMutex` by default (the port supplies `critical-section`).
/// - `SLOTS`: the most slots [`Config::max_concurrent`] may ask for (50); also
///   the number of duplicates that can wait at once (each holds a slot).
/// - `WAITERS`: slot waiters kept in the FIFO queue; more still wait, in an
///   overflow lobby, and are served in order and in time (see `slots.rs`).
/// - `DUPS`: duplicate-table entries, at least `SLOTS` (checked at compile time).
///
/// A default `Kmod` can live in a `static` (see [`Platform`] for a whole port):
///
/// ```
/// # use core::time::Duration;
/// # use reqmod::{Errno, HelperCommand, Platform, UmhWait, WaitStatus};
/// # struct MyKernel;
/// # impl Platform for MyKernel {
/// #     fn now(&self) -> Duration { Duration::ZERO }
/// #     async fn sleep_until(&self, _: Duration) {}
/// #     async fn run_helper(&self, _: HelperCommand, _: UmhWait) -> Result<WaitStatus, Errno> {
/// #         Err(Errno::ENOENT)
/// #     }
/// # }
/// use reqmod::Kmod;
/// static KMOD: Kmod<MyKernel> = Kmod::new(MyKernel);
/// ```
pub struct Kmod<
    P,
    S = AllowAll,
    M: RawMutex = CriticalSectionRawMutex,
    const SLOTS: usize = 50,
    const WAITERS: usize = 32,
    const DUPS: usize = 64,
> {
    platform: P,
    security: S,
    config: Config,
    state: Mutex<M, RefCell<Inner<SLOTS, WAITERS, DUPS>>>,
}

impl<P: Platform> Kmod<P> {
    /// A `Kmod` with the kernel's defaults ([`Config::DEFAULT`], no security
    /// hook). `const`, so it can initialise a `static`.
    pub const fn new(platform: P) -> Self {
        Self::with_config(platform, Config::DEFAULT, AllowAll)
    }
}

impl<P, S, M, const SLOTS: usize, const WAITERS: usize, const DUPS: usize>
    Kmod<P, S, M, SLOTS, WAITERS, DUPS>
where
    P: Platform,
    S: Security,
    M: RawMutex,
{
    const CAPACITY_OK: () = assert!(
        DUPS >= SLOTS,
        "the duplicate table must hold at least one entry per slot"
    );

    /// A `Kmod` with `config` and a security hook. `config.max_concurrent` is
    /// capped at `SLOTS`.
    pub const fn with_config(platform: P, config: Config, security: S) -> Self {
        let () = Self::CAPACITY_OK;
        let mut config = config;
        if config.max_concurrent > SLOTS {
            config.max_concurrent = SLOTS;
        }
        Kmod {
            platform,
            security,
            config,
            state: Mutex::new(RefCell::new(Inner {
                slots: slots::State::new(config.max_concurrent),
                dups: dups::State::new(),
                shared: Shared {
                    path: ModprobePath::default_path(),
                    helpers_disabled: false,
                    running_helpers: 0,
                    drain: MultiWakerRegistration::new(),
                    warned_async: false,
                    busy_log: RateLimit::new(),
                    stats: Stats {
                        requests: 0,
                        completed: 0,
                        cancelled: 0,
                        failures: 0,
                        invalid: 0,
                        denied: 0,
                        busy_timeouts: 0,
                        duplicates: 0,
                        helpers_started: 0,
                        helpers_refused: 0,
                        in_flight: 0,
                        slots_in_use: 0,
                        max_concurrent_seen: 0,
                        waiting_for_slot: 0,
                        running_helpers: 0,
                        dup_entries: 0,
                        dup_pending: 0,
                        dup_waiters: 0,
                    },
                },
            })),
        }
    }

    /// `request_module(fmt, …)`: load a module and wait for the helper to exit
    /// (`UMH_WAIT_PROC`). Resolves to the helper's wait status or an errno.
    ///
    /// The name is formatted now; everything else happens when the future is
    /// polled. Dropping the future at any point cancels the request cleanly.
    #[track_caller]
    pub fn request_module<'a>(
        &'a self,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, WAITERS, DUPS> {
        self.request(true, args)
    }

    /// `request_module_nowait(fmt, …)`: return once the helper has been
    /// executed (`UMH_WAIT_EXEC`), without waiting for it to exit.
    #[track_caller]
    pub fn request_module_nowait<'a>(
        &'a self,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, WAITERS, DUPS> {
        self.request(false, args)
    }

    /// `__request_module(wait, fmt, …)`.
    #[track_caller]
    pub fn request<'a>(
        &'a self,
        wait: bool,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, WAITERS, DUPS> {
        let caller = Location::caller();
        self.run(wait, ModuleName::format(args), None, caller)
    }

    /// [`request`](Self::request) under a [`KillSignal`]: when it fires, a
    /// request waiting for a duplicate's result or for its helper returns
    /// `-ERESTARTSYS` (its helper runs on, and a first request announces
    /// `-ERESTARTSYS` to its duplicates, as a killed kernel thread does).
    #[track_caller]
    pub fn request_killable<'a>(
        &'a self,
        wait: bool,
        kill: &'a KillSignal<M>,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, WAITERS, DUPS> {
        let caller = Location::caller();
        self.run(wait, ModuleName::format(args), Some(kill), caller)
    }

    /// `try_then_request_module(x, fmt, …)`: `probe()`; if it finds nothing,
    /// request the module (waiting) and probe again.
    #[track_caller]
    pub fn try_then_request_module<'a, T, F>(
        &'a self,
        mut probe: F,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Option<T>> + use<'a, T, F, P, S, M, SLOTS, WAITERS, DUPS>
    where
        F: FnMut() -> Option<T> + 'a,
    {
        let caller = Location::caller();
        let name = ModuleName::format(args);
        async move {
            if let Some(found) = probe() {
                return Some(found);
            }
            let _ = self.run(true, name, None, caller).await;
            probe()
        }
    }

    async fn run(
        &self,
        wait: bool,
        name: Result<ModuleName, Errno>,
        kill: Option<&KillSignal<M>>,
        caller: &'static Location<'static>,
    ) -> Outcome {
        let (request, path_empty) = InFlight::begin(self);

        // 1. A waiting request from an async context may deadlock: warn once.
        if wait && self.platform.current_is_async() {
            self.warn_async_once(name.as_ref().map_or("", ModuleName::as_str), caller);
        }

        // 2. Autoloading disabled by an empty helper path.
        if path_empty {
            return request.finish(Err(Errno::ENOENT), |s| s.invalid += 1);
        }

        // 3. The name must fit MODULE_NAME_LEN.
        let name = match name {
            Ok(name) => name,
            Err(errno) => return request.finish(Err(errno), |s| s.invalid += 1),
        };

        // 4. The security hook.
        if let Err(errno) = self.security.kernel_module_request(name.as_str()) {
            return request.finish(Err(errno), |s| s.denied += 1);
        }

        // 5. A slot, waiting at most busy_timeout, first come first served.
        let start = self.platform.now();
        let deadline = start.saturating_add(self.config.busy_timeout);
        let Some(slot) = slots::acquire_until(self, &self.platform, deadline).await else {
            self.busy_timeout(&name, start);
            return request.finish(Err(Errno::ETIME), |s| s.busy_timeouts += 1);
        };

        // 6. The module_request trace event (duplicates are traced too).
        trace!(
            "module_request: name={} wait={} caller={}:{}",
            name.as_str(),
            wait,
            caller.file(),
            caller.line()
        );
        self.platform.trace(&Event::ModuleRequest {
            name: name.as_str(),
            wait,
            caller,
        });

        // 7, and the start of 8 under the same lock: the duplicate check, then,
        // for a request that runs the helper, counting it and copying the path
        // into its command (built in place: a command is over 300 bytes, and
        // every move copies all of them).
        let mut cmd = HelperCommand::modprobe(ModprobePath::empty(), name.clone());
        let (hash, now) = if self.config.dedup {
            (name_hash(&name), self.platform.now())
        } else {
            (0, core::time::Duration::ZERO)
        };
        let (lookup, entered) = self.lock(|i| {
            let lookup = if self.config.dedup {
                i.dups
                    .lookup(&name, hash, wait, now, self.config.dedup_linger)
            } else {
                Lookup::Untracked
            };
            let entered = match lookup {
                Lookup::First(_) | Lookup::Untracked => i.shared.helper_starts(&mut cmd),
                Lookup::Done(_) | Lookup::Wait(_) => Ok(()),
            };
            (lookup, entered)
        });

        // Duplicates return here, releasing their slot.
        let first = match lookup {
            Lookup::Done(ret) => {
                self.report_duplicate(&name, wait, caller);
                return self.release_and_finish(request, slot, from_kernel_ret(ret), |s| {
                    s.duplicates += 1
                });
            }
            Lookup::Wait(key) => {
                self.report_duplicate(&name, wait, caller);
                let waited = match kill {
                    None => dups::wait(self, key).await,
                    Some(kill) => match select(dups::wait(self, key), kill.killed()).await {
                        Either::First(ret) => ret,
                        Either::Second(()) => -Errno::ERESTARTSYS.raw(),
                    },
                };
                return self.release_and_finish(request, slot, from_kernel_ret(waited), |s| {
                    s.duplicates += 1
                });
            }
            Lookup::First(first) => Some(first),
            Lookup::Untracked => None,
        };

        // 8. Run the helper; a killed or dropped request announces -ERESTARTSYS.
        let announcer = Announcer {
            kmod: self,
            name: &name,
            first,
        };
        let (outcome, running) = match entered {
            Ok(()) => {
                let running = RunningHelper { kmod: self };
                let umh = if wait { UmhWait::Proc } else { UmhWait::Exec };
                // `call_usermodehelper_exec()`, killable.
                let helper = self.platform.run_helper(cmd, umh);
                let outcome = match kill {
                    None => helper.await,
                    // The helper is polled first, so it has started before a
                    // pending kill is seen (the kernel queues the helper,
                    // then waits killably).
                    Some(kill) => match select(helper, kill.killed()).await {
                        Either::First(outcome) => outcome,
                        Either::Second(()) => Err(Errno::ERESTARTSYS),
                    },
                };
                (outcome, Some(running))
            }
            Err(errno) => (Err(errno), None),
        };

        // 9. Announce the result, release the slot, return.
        self.complete(request, slot, announcer, running, outcome)
    }

    /// A duplicate's end: releases its slot and counts it, under one lock.
    fn release_and_finish(
        &self,
        request: InFlight<'_, P, S, M, SLOTS, WAITERS, DUPS>,
        slot: SlotGuard<'_, Self, WAITERS>,
        outcome: Outcome,
        count: impl FnOnce(&mut Stats),
    ) -> Outcome {
        let mut wakes = Wakes::new();
        self.lock(|i| {
            slot.release_in(&mut i.slots, &mut wakes);
            request.finish_in(&mut i.shared.stats, outcome, count);
        });
        wakes.wake();
        outcome
    }

    /// Step 9 for a request that ran (or tried to run) the helper, under one
    /// lock: the helper is no longer running, its result is announced to the
    /// duplicate table, the slot goes to the next waiter, the request counts
    /// as completed. Wakers run after the lock is released.
    fn complete(
        &self,
        request: InFlight<'_, P, S, M, SLOTS, WAITERS, DUPS>,
        slot: SlotGuard<'_, Self, WAITERS>,
        announcer: Announcer<'_, '_, P, S, M, SLOTS, WAITERS, DUPS>,
        running: Option<RunningHelper<'_, P, S, M, SLOTS, WAITERS, DUPS>>,
        outcome: Outcome,
    ) -> Outcome {
        let now = if self.config.dedup {
            self.platform.now()
        } else {
            core::time::Duration::ZERO
        };
        let mut dup_wakes = DupWakes::<SLOTS>::new();
        let mut slot_wakes = Wakes::new();
        self.lock(|i| {
            if let Some(running) = running {
                running.exit_in(&mut i.shared);
            }
            announcer.announce_in(&mut i.dups, outcome.kernel_ret(), now, &mut dup_wakes);
            slot.release_in(&mut i.slots, &mut slot_wakes);
            request.finish_in(&mut i.shared.stats, outcome, |_| {});
        });
        dups::wake_all(&mut dup_wakes);
        slot_wakes.wake();
        outcome
    }

    fn busy_timeout(&self, name: &ModuleName, start: core::time::Duration) {
        let now = self.platform.now();
        let max = self.config.max_concurrent;
        if self.shared(|s| s.busy_log.allow(now)) {
            let timeout = self.config.busy_timeout;
            if timeout.subsec_nanos() == 0 {
                warn!(
                    "request_module: modprobe {} cannot be processed, kmod busy with {} threads for more than {} seconds now",
                    name.as_str(),
                    max,
                    timeout.as_secs()
                );
            } else {
                warn!(
                    "request_module: modprobe {} cannot be processed, kmod busy with {} threads for more than {} ms now",
                    name.as_str(),
                    max,
                    timeout.as_millis() as u64
                );
            }
        }
        self.platform.trace(&Event::BusyTimeout {
            name: name.as_str(),
            max_concurrent: max,
            waited: now.saturating_sub(start),
        });
    }

    fn report_duplicate(&self, name: &ModuleName, wait: bool, caller: &'static Location<'static>) {
        if self.config.dups_trace {
            error!(
                "module-autoload: duplicate request for module {} (requested at {}:{})",
                name.as_str(),
                caller.file(),
                caller.line()
            );
        } else {
            warn!(
                "module-autoload: duplicate request for module {}",
                name.as_str()
            );
        }
        self.platform.trace(&Event::Duplicate {
            name: name.as_str(),
            wait,
            caller,
        });
    }

    fn warn_async_once(&self, name: &str, caller: &'static Location<'static>) {
        let first = self.shared(|s| !core::mem::replace(&mut s.warned_async, true));
        if first {
            warn!(
                "request_module({}): waiting for a module load from an async context may deadlock (requested at {}:{})",
                name,
                caller.file(),
                caller.line()
            );
            self.platform.trace(&Event::AsyncWait { name, caller });
        }
    }

    fn lock<R>(&self, f: impl FnOnce(&mut Inner<SLOTS, WAITERS, DUPS>) -> R) -> R {
        self.state.lock(|s| f(&mut s.borrow_mut()))
    }

    fn shared<R>(&self, f: impl FnOnce(&mut Shared) -> R) -> R {
        self.lock(|i| f(&mut i.shared))
    }

    /// Writes the helper path with `/proc/sys/kernel/modprobe` semantics: the
    /// bytes up to the first NUL or newline, at most 255; empty input (or a
    /// bare newline) empties the path and disables autoloading (`-ENOENT`).
    /// Who may call this is the port's decision (the kernel requires
    /// `CAP_SYS_ADMIN`).
    pub fn set_modprobe_path(&self, bytes: &[u8]) {
        let path = ModprobePath::from_sysctl_write(bytes);
        self.shared(|s| s.path = path);
    }

    /// The helper path (its [`sysctl_read`](ModprobePath::sysctl_read) adds the newline).
    pub fn modprobe_path(&self) -> ModprobePath {
        self.shared(|s| s.path.clone())
    }

    /// `usermodehelper_disable()`: refuse new helpers with `-EBUSY`, then wait up
    /// to 5 s for running ones to finish. If they do not, helpers are enabled
    /// again and the result is `Err(EAGAIN)`. Dropping the future before it
    /// finishes counts as that failure too (helpers are enabled again).
    pub async fn disable_helpers(&self) -> Result<(), Errno> {
        self.shared(|s| s.helpers_disabled = true);
        let deadline = self.platform.now().saturating_add(RUNNING_HELPERS_TIMEOUT);
        let mut undo = ReenableOnDrop(Some(self));
        let drained = poll_fn(|cx| {
            self.shared(|s| {
                if s.running_helpers == 0 {
                    Poll::Ready(())
                } else {
                    s.drain.register(cx.waker());
                    Poll::Pending
                }
            })
        });
        let sleep = pin!(self.platform.sleep_until(deadline));
        let drained = match select(drained, sleep).await {
            Either::First(()) => true,
            Either::Second(()) => self.shared(|s| s.running_helpers == 0),
        };
        if drained {
            undo.0 = None;
            Ok(())
        } else {
            Err(Errno::EAGAIN)
        }
    }

    /// `usermodehelper_enable()`: helpers may run again.
    pub fn enable_helpers(&self) {
        self.shared(|s| s.helpers_disabled = false);
    }

    /// Whether helpers are disabled.
    pub fn helpers_disabled(&self) -> bool {
        self.shared(|s| s.helpers_disabled)
    }

    /// Counters and gauges.
    pub fn stats(&self) -> Stats {
        let now = self.platform.now();
        let (slots, (dup_entries, dup_pending, dup_waiters), mut stats) = self.lock(|i| {
            let mut st = i.shared.stats;
            st.running_helpers = i.shared.running_helpers;
            (
                i.slots.usage(),
                i.dups.usage(now, self.config.dedup_linger),
                st,
            )
        });
        stats.in_flight = stats.requests - stats.completed - stats.cancelled;
        stats.slots_in_use = slots.held;
        stats.max_concurrent_seen = slots.peak;
        stats.waiting_for_slot = slots.queued + slots.lobby;
        stats.dup_entries = dup_entries;
        stats.dup_pending = dup_pending;
        stats.dup_waiters = dup_waiters;
        stats
    }

    /// The configuration in force (`max_concurrent` already capped at `SLOTS`).
    pub fn config(&self) -> &Config {
        &self.config
    }

    /// The platform.
    pub fn platform(&self) -> &P {
        &self.platform
    }

    /// The security hook.
    pub fn security(&self) -> &S {
        &self.security
    }
}

/// Counts a request from its start; a drop before `finish` counts it cancelled.
struct InFlight<
    'a,
    P: Platform,
    S: Security,
    M: RawMutex,
    const A: usize,
    const B: usize,
    const C: usize,
> {
    kmod: Option<&'a Kmod<P, S, M, A, B, C>>,
}

impl<'a, P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize>
    InFlight<'a, P, S, M, A, B, C>
{
    /// Counts the request; also says whether the helper path is empty (step 2),
    /// under the same lock.
    fn begin(kmod: &'a Kmod<P, S, M, A, B, C>) -> (Self, bool) {
        let path_empty = kmod.shared(|s| {
            s.stats.requests += 1;
            s.path.is_empty()
        });
        (InFlight { kmod: Some(kmod) }, path_empty)
    }

    fn finish(mut self, outcome: Outcome, count: impl FnOnce(&mut Stats)) -> Outcome {
        if let Some(kmod) = self.kmod.take() {
            kmod.shared(|s| Self::count_completed(&mut s.stats, outcome, count));
        }
        outcome
    }

    /// [`finish`](Self::finish) with the `Kmod`'s lock already held.
    fn finish_in(mut self, stats: &mut Stats, outcome: Outcome, count: impl FnOnce(&mut Stats)) {
        if self.kmod.take().is_some() {
            Self::count_completed(stats, outcome, count);
        }
    }

    fn count_completed(stats: &mut Stats, outcome: Outcome, count: impl FnOnce(&mut Stats)) {
        stats.completed += 1;
        if outcome != Ok(crate::WaitStatus::SUCCESS) {
            stats.failures += 1;
        }
        count(stats);
    }
}

impl<P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize> Drop
    for InFlight<'_, P, S, M, A, B, C>
{
    fn drop(&mut self) {
        if let Some(kmod) = self.kmod.take() {
            kmod.shared(|s| s.stats.cancelled += 1);
        }
    }
}

/// Announces a helper run's result to the duplicate table; dropped without
/// announcing (the request was killed), it announces `-ERESTARTSYS`.
struct Announcer<
    'a,
    'n,
    P: Platform,
    S: Security,
    M: RawMutex,
    const A: usize,
    const B: usize,
    const C: usize,
> {
    kmod: &'a Kmod<P, S, M, A, B, C>,
    name: &'n ModuleName,
    first: Option<crate::dups::First>,
}

impl<P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize>
    Announcer<'_, '_, P, S, M, A, B, C>
{
    /// Announces `ret` with the `Kmod`'s lock already held (the table is
    /// `dups`); the released waiters' wakers go to `wakes`.
    fn announce_in(
        self,
        dups: &mut dups::State<C, A>,
        ret: i32,
        now: core::time::Duration,
        wakes: &mut DupWakes<A>,
    ) {
        if self.kmod.config.dedup {
            dups.announce(self.name, self.first, ret, now, wakes);
        }
        core::mem::forget(self);
    }
}

impl<P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize> Drop
    for Announcer<'_, '_, P, S, M, A, B, C>
{
    fn drop(&mut self) {
        let kmod = self.kmod;
        if kmod.config.dedup {
            let now = kmod.platform.now();
            let mut wakes = DupWakes::<A>::new();
            let ret = -Errno::ERESTARTSYS.raw();
            kmod.lock(|i| i.dups.announce(self.name, self.first, ret, now, &mut wakes));
            dups::wake_all(&mut wakes);
        }
    }
}

/// One running helper (`running_helpers` in `umh.c`).
struct RunningHelper<
    'a,
    P: Platform,
    S: Security,
    M: RawMutex,
    const A: usize,
    const B: usize,
    const C: usize,
> {
    kmod: &'a Kmod<P, S, M, A, B, C>,
}

impl<'a, P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize>
    RunningHelper<'a, P, S, M, A, B, C>
{
    /// The helper ended: uncounts it with the `Kmod`'s lock already held.
    fn exit_in(self, s: &mut Shared) {
        s.helper_exited();
        core::mem::forget(self);
    }
}

impl<P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize> Drop
    for RunningHelper<'_, P, S, M, A, B, C>
{
    fn drop(&mut self) {
        self.kmod.shared(Shared::helper_exited);
    }
}

/// Enables helpers again when a `disable_helpers` call fails or is dropped.
struct ReenableOnDrop<
    'a,
    P: Platform,
    S: Security,
    M: RawMutex,
    const A: usize,
    const B: usize,
    const C: usize,
>(Option<&'a Kmod<P, S, M, A, B, C>>);

impl<P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize> Drop
    for ReenableOnDrop<'_, P, S, M, A, B, C>
{
    fn drop(&mut self) {
        if let Some(kmod) = self.0.take() {
            kmod.enable_helpers();
        }
    }
}

impl<P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize>
    SlotLock<B> for Kmod<P, S, M, A, B, C>
{
    fn with_slots<R>(&self, f: impl FnOnce(&mut slots::State<B>) -> R) -> R {
        self.lock(|i| f(&mut i.slots))
    }
}

impl<P: Platform, S: Security, M: RawMutex, const A: usize, const B: usize, const C: usize>
    DupLock<C, A> for Kmod<P, S, M, A, B, C>
{
    fn with_dups<R>(&self, f: impl FnOnce(&mut dups::State<C, A>) -> R) -> R {
        self.lock(|i| f(&mut i.dups))
    }
}

impl<P, S, M, const A: usize, const B: usize, const C: usize> fmt::Debug for Kmod<P, S, M, A, B, C>
where
    P: Platform,
    S: Security,
    M: RawMutex,
{
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Kmod")
            .field("config", &self.config)
            .field("modprobe_path", &self.modprobe_path())
            .field("helpers_disabled", &self.helpers_disabled())
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

#[cfg(feature = "defmt")]
impl<P, S, M, const A: usize, const B: usize, const C: usize> defmt::Format
    for Kmod<P, S, M, A, B, C>
where
    P: Platform,
    S: Security,
    M: RawMutex,
{
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(
            f,
            "Kmod {{ config: {}, modprobe_path: {}, stats: {} }}",
            self.config,
            self.modprobe_path(),
            self.stats()
        )
    }
}

/// `request_module!(kmod, "fs-{}", name)`: a waiting request with a formatted name.
#[macro_export]
macro_rules! request_module {
    ($kmod:expr, $($arg:tt)+) => {
        $kmod.request_module(::core::format_args!($($arg)+))
    };
}

/// `request_module_nowait!(kmod, "fs-{}", name)`: a request that returns once
/// the helper has been executed.
#[macro_export]
macro_rules! request_module_nowait {
    ($kmod:expr, $($arg:tt)+) => {
        $kmod.request_module_nowait(::core::format_args!($($arg)+))
    };
}
