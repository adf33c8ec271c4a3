//! [`Kmod`]: the autoloader, tying slots, the duplicate table, the helper path,
//! the security hook and the platform together (SPEC §2, §9).

use core::cell::RefCell;
use core::fmt;
use core::future::{Future, poll_fn};
use core::panic::Location;
use core::pin::pin;
use core::task::Poll;
use core::time::Duration;

use embassy_futures::select::{Either, select};
use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, RawMutex};

use crate::ancestry::Ancestry;
use crate::chain::{Chain, Link};
use crate::config::RUNNING_HELPERS_TIMEOUT;
use crate::dups::{self, DupLock, First, Lookup, name_hash};
use crate::guards::{Announcer, Engine, InFlight, ReenableOnDrop, RunningHelper};
use crate::slots::{self, SlotGuard, SlotLock};
use crate::status::from_kernel_ret;
use crate::trace::{Check, RateLimit};
use crate::wakes::Wakes;
use crate::{
    AllowAll, Config, Errno, Event, HelperCommand, KernelRet, KillSignal, MODULE_NAME_LEN,
    ModprobePath, ModuleName, Outcome, Platform, RequestId, Security, Stats, UmhWait,
};

/// Everything a `Kmod` changes, under its one mutex, so that an uncontended
/// request takes it only a few times.
pub(crate) struct Inner<
    const SLOTS: usize,
    const SLOT_QUEUE: usize,
    const DUP_ENTRIES: usize,
    const NAME_LEN: usize,
> {
    pub(crate) shared: Shared,
    slots: slots::State<SLOT_QUEUE>,
    dups: dups::State<DUP_ENTRIES, NAME_LEN>,
    pub(crate) ancestry: Ancestry<SLOTS>,
}

pub(crate) struct Shared {
    path: ModprobePath,
    helpers_disabled: bool,
    running_helpers: usize,
    /// `disable_helpers` callers waiting for the running helpers to end.
    drain: Chain,
    warned_async: bool,
    #[cfg_attr(not(any(feature = "defmt", feature = "log")), allow(dead_code))]
    busy_log: RateLimit,
    pub(crate) stats: Stats,
}

impl Shared {
    /// Counts a running helper and copies the helper path into `cmd` (the
    /// caller then makes the `RunningHelper` guard): `-EBUSY` while helpers
    /// are disabled (`call_usermodehelper_exec`); then `-ENOENT` if the path
    /// was emptied since step 2, as the exec of `""` would fail (the kernel's
    /// exec reads the path buffer only now).
    fn helper_starts<const N: usize>(&mut self, cmd: &mut HelperCommand<N>) -> Result<(), Errno> {
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
    pub(crate) fn helper_exited(&mut self, wakes: &mut Wakes) {
        self.running_helpers -= 1;
        if self.running_helpers == 0 {
            self.drain.broadcast(wakes);
        }
    }
}

/// The module autoloader: the kernel's `request_module()` with its slots,
/// duplicate table, helper path and security hook, over a [`Platform`].
///
/// - `P`: the platform (clock and helper spawning).
/// - `S`: the security hook, [`AllowAll`] by default.
/// - `M`: the `embassy-sync` raw mutex guarding the state,
///   [`CriticalSectionRawMutex`] by default (the port supplies `critical-section`).
/// - `SLOTS`: the most slots [`Config::max_concurrent`] may ask for (50).
/// - `SLOT_QUEUE`: slot waiters kept in the FIFO queue (32); more still wait,
///   in an overflow lobby, and are served in order and in time (see `slots`).
/// - `DUP_ENTRIES`: duplicate-table entries (64), at least `SLOTS` (checked at
///   compile time).
/// - `NAME_LEN`: the module-name bound including the NUL ([`MODULE_NAME_LEN`],
///   56 on 64-bit targets): a longer name is `-ENAMETOOLONG`.
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
    const SLOT_QUEUE: usize = 32,
    const DUP_ENTRIES: usize = 64,
    const NAME_LEN: usize = MODULE_NAME_LEN,
> {
    platform: P,
    security: S,
    config: Config,
    state: Mutex<M, RefCell<Inner<SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>>>,
}

impl<P: Platform> Kmod<P> {
    /// A `Kmod` with the kernel's defaults ([`Config::DEFAULT`], no security
    /// hook). `const`, so it can initialise a `static`.
    pub const fn new(platform: P) -> Self {
        Self::with_config(platform, Config::DEFAULT, AllowAll)
    }
}

impl<
    P,
    S,
    M,
    const SLOTS: usize,
    const SLOT_QUEUE: usize,
    const DUP_ENTRIES: usize,
    const NAME_LEN: usize,
> Kmod<P, S, M, SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>
where
    P: Platform<NAME_LEN>,
    S: Security,
    M: RawMutex,
{
    const CAPACITY_OK: () = assert!(
        DUP_ENTRIES >= SLOTS,
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
                ancestry: Ancestry::new(),
                shared: Shared {
                    path: ModprobePath::default_path(),
                    helpers_disabled: false,
                    running_helpers: 0,
                    drain: Chain::new(),
                    warned_async: false,
                    busy_log: RateLimit::new(),
                    stats: Stats::ZERO,
                },
            })),
        }
    }

    /// `request_module(fmt, …)`: load a module and wait for the helper to exit
    /// (`UMH_WAIT_PROC`). Resolves to the helper's wait status or an errno.
    ///
    /// The name is formatted now, and the platform asked now for the request's
    /// parent; everything else happens when the future is polled. Dropping the
    /// future at any point cancels the request cleanly.
    #[track_caller]
    pub fn request_module<'a>(
        &'a self,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>
    {
        self.request(true, args)
    }

    /// `request_module_nowait(fmt, …)`: return once the helper has been
    /// executed (`UMH_WAIT_EXEC`), without waiting for it to exit.
    #[track_caller]
    pub fn request_module_nowait<'a>(
        &'a self,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>
    {
        self.request(false, args)
    }

    /// `__request_module(wait, fmt, …)`.
    #[track_caller]
    pub fn request<'a>(
        &'a self,
        wait: bool,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>
    {
        let caller = Location::caller();
        let parent = self.platform.parent_request();
        self.run(wait, ModuleName::format_bounded(args), None, caller, parent)
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
    ) -> impl Future<Output = Outcome> + use<'a, P, S, M, SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>
    {
        let caller = Location::caller();
        let parent = self.platform.parent_request();
        self.run(
            wait,
            ModuleName::format_bounded(args),
            Some(kill),
            caller,
            parent,
        )
    }

    /// `try_then_request_module(x, fmt, …)`: `probe()`; if it finds nothing,
    /// request the module (waiting) and probe again.
    #[track_caller]
    pub fn try_then_request_module<'a, T, F>(
        &'a self,
        mut probe: F,
        args: fmt::Arguments<'_>,
    ) -> impl Future<Output = Option<T>> + use<'a, T, F, P, S, M, SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>
    where
        F: FnMut() -> Option<T> + 'a,
    {
        let caller = Location::caller();
        let parent = self.platform.parent_request();
        let name = ModuleName::format_bounded(args);
        async move {
            if let Some(found) = probe() {
                return Some(found);
            }
            let _ = self.run(true, name, None, caller, parent).await;
            probe()
        }
    }

    /// One request, SPEC §2 steps 1 to 9 (and the policies of §9).
    async fn run(
        &self,
        wait: bool,
        name: Result<ModuleName<NAME_LEN>, Errno>,
        kill: Option<&KillSignal<M>>,
        caller: &'static Location<'static>,
        parent: Option<RequestId>,
    ) -> Outcome {
        let shown = name.as_ref().map_or("", ModuleName::as_str);
        let (request, path_empty) = InFlight::begin(self, shown, |i| i.shared.path.is_empty());
        let id = request.id();
        self.emit(Event::Request {
            id,
            name: shown,
            wait,
            caller,
            parent,
        });

        // 1. A waiting request from an async context may deadlock: warn once.
        if wait
            && self.platform.current_is_async()
            && self.shared(|s| !core::mem::replace(&mut s.warned_async, true))
        {
            self.emit(Event::AsyncWait {
                id,
                name: shown,
                caller,
            });
        }

        // 2. Autoloading disabled by an empty helper path.
        if path_empty {
            return self.refuse(request, Check::EmptyPath, Errno::ENOENT, |s| s.invalid += 1);
        }

        // 3. The name must fit the name bound.
        let name = match &name {
            Ok(name) => name,
            Err(errno) => return self.refuse(request, Check::Name, *errno, |s| s.invalid += 1),
        };

        // 4. The security hook.
        if let Err(errno) = self.security.kernel_module_request(name.as_str()) {
            return self.refuse(request, Check::Security, errno, |s| s.denied += 1);
        }

        // 4a. Policy: a name already among the ancestors is a loop, refused
        //     before any slot.
        if self.config.loop_detection
            && let Some(chain) = self.lock(|i| {
                let Inner { ancestry, dups, .. } = i;
                ancestry.find_loop(name.as_str(), parent, |f| dups::name_of(dups, f))
            })
        {
            self.emit(Event::LoopRefused {
                id,
                name: shown,
                chain: chain.as_str(),
            });
            return self.finish(request, Err(Errno::ELOOP), None, false, |s| s.loops += 1);
        }

        let start = self.platform.now();

        // Policy, duplicates hold no slot: steps 6 and 7 come before the slot.
        let mut announcer = None;
        if self.config.dups_hold_no_slot {
            let (lookup, _) = self.step7(&request, name, wait, caller, |_, _| ());
            match lookup {
                Step7::Duplicate(answer) => {
                    let outcome = self.answer(answer, kill).await;
                    return self.finish(request, outcome, Some(start), true, |s| s.duplicates += 1);
                }
                Step7::Runs(first) => announcer = Some(Announcer::new(self, shown, first)),
            }
        }

        // 5. A slot, waiting at most busy_timeout, first come first served.
        let deadline = start.saturating_add(self.config.busy_timeout);
        let on_wait = |waiting, in_use| {
            self.emit(Event::SlotWait {
                id,
                name: shown,
                waiting,
                in_use,
            })
        };
        let slot = match slots::acquire_until(self, &self.platform, deadline, on_wait).await {
            Some(slot) => slot,
            None => {
                let waited = self.platform.now().saturating_sub(start);
                // A first request (policy) gives its duplicates its -ETIME.
                if let Some(a) = announcer {
                    a.announce(-Errno::ETIME.raw());
                }
                let (waiting, in_use) = self.lock(|i| i.slots.waiting_and_held());
                self.emit(Event::BusyTimeout {
                    id,
                    name: shown,
                    max_concurrent: self.config.max_concurrent,
                    timeout: self.config.busy_timeout,
                    waited,
                    waiting,
                    in_use,
                });
                return self.finish(request, Err(Errno::ETIME), Some(start), false, |s| {
                    s.busy_timeouts += 1
                });
            }
        };
        let granted = slot.granted();
        self.emit(Event::SlotGranted {
            id,
            name: shown,
            waited: if granted.waited {
                self.platform.now().saturating_sub(start)
            } else {
                Duration::ZERO
            },
            waiting: granted.waiting,
            in_use: granted.in_use,
        });

        // 6 and 7 (Linux: holding the slot), and the start of 8 under the same
        // lock: the duplicate check, then, for a request that runs the
        // helper, counting it and copying the path into its command. (The
        // command is built only now, so a waiting request does not carry
        // its 300 bytes.)
        let mut cmd = HelperCommand::modprobe(ModprobePath::empty(), name.clone(), id);
        let (announcer, entered) = match announcer {
            Some(announcer) => {
                let first = announcer.first();
                let entered = self.lock(|i| self.start_helper_in(i, &mut cmd, parent, first));
                (announcer, entered)
            }
            None => {
                let (lookup, entered) = self.step7(&request, name, wait, caller, |i, first| {
                    self.start_helper_in(i, &mut cmd, parent, first)
                });
                match (lookup, entered) {
                    (Step7::Runs(first), Some(entered)) => {
                        (Announcer::new(self, shown, first), entered)
                    }
                    // Duplicates return here, releasing their slot.
                    (Step7::Duplicate(answer), _) => {
                        let outcome = self.answer(answer, kill).await;
                        return self.release_and_finish(request, slot, outcome, start);
                    }
                    (Step7::Runs(first), None) => {
                        (Announcer::new(self, shown, first), Err(Errno::ENOENT))
                    }
                }
            }
        };

        // 8. Run the helper; a killed or dropped request announces -ERESTARTSYS.
        let (outcome, running) = match entered {
            Ok(()) => {
                let running = RunningHelper::new(self, id);
                let umh = if wait { UmhWait::Proc } else { UmhWait::Exec };
                self.emit(Event::HelperStarted {
                    id,
                    name: shown,
                    wait: umh,
                });
                // `call_usermodehelper_exec()`, killable, under the watchdog.
                // The futures are pinned here, in this request's own state
                // (moving the helper's future into another would copy it).
                let watchdog = self.config.helper_timeout.filter(|_| wait);
                let started = match watchdog {
                    Some(_) => self.platform.now(),
                    None => Duration::ZERO,
                };
                let mut helper = pin!(self.platform.run_helper(cmd, umh));
                let mut timer = pin!(
                    watchdog.map(|limit| self.platform.sleep_until(started.saturating_add(limit)))
                );
                let mut killed = pin!(kill.map(KillSignal::killed));
                let outcome = poll_fn(|cx| {
                    // The helper first, so it has started before a pending
                    // kill is seen (the kernel queues the helper, then waits
                    // killably), and a helper that ends wins over a timer.
                    if let Poll::Ready(outcome) = helper.as_mut().poll(cx) {
                        return Poll::Ready(outcome);
                    }
                    if let Some(t) = timer.as_mut().as_pin_mut()
                        && t.poll(cx).is_ready()
                    {
                        timer.set(None);
                        self.watchdog_fired(id, shown, started);
                    }
                    match killed.as_mut().as_pin_mut().map(|k| k.poll(cx)) {
                        Some(Poll::Ready(())) => Poll::Ready(Err(Errno::ERESTARTSYS)),
                        _ => Poll::Pending,
                    }
                })
                .await;
                self.emit(Event::HelperExited {
                    id,
                    name: shown,
                    outcome,
                });
                (outcome, Some(running))
            }
            Err(errno) => (Err(errno), None),
        };

        // 9. Announce the result, release the slot, return.
        self.complete(request, slot, announcer, running, outcome, start)
    }

    /// Step 7 (and, under the same lock, `then`: the start of step 8 for a
    /// request that runs the helper). Emits `module_request` first (step 6)
    /// and `Duplicate` for a duplicate.
    fn step7<R>(
        &self,
        request: &InFlight<'_, Self>,
        name: &ModuleName<NAME_LEN>,
        wait: bool,
        caller: &'static Location<'static>,
        then: impl FnOnce(&mut Inner<SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>, Option<First>) -> R,
    ) -> (Step7, Option<R>) {
        let id = request.id();
        // 6. The module_request trace event (duplicates are traced too).
        self.emit(Event::ModuleRequest {
            id,
            name: name.as_str(),
            wait,
            caller,
        });
        let (hash, now) = if self.config.dedup {
            (name_hash(name.as_bytes()), self.platform.now())
        } else {
            (0, Duration::ZERO)
        };
        let (lookup, r) = self.lock(|i| {
            let lookup = if self.config.dedup {
                i.dups.lookup(name, hash, wait, now, id)
            } else {
                Lookup::Untracked
            };
            let r = match lookup {
                Lookup::First(first) => Some(then(i, Some(first))),
                Lookup::Untracked => Some(then(i, None)),
                Lookup::Done(..) | Lookup::Wait(..) => None,
            };
            (lookup, r)
        });
        let step = match lookup {
            Lookup::First(first) => Step7::Runs(Some(first)),
            Lookup::Untracked => Step7::Runs(None),
            Lookup::Done(ret, first) => {
                self.emit_duplicate(id, name.as_str(), wait, caller, first);
                Step7::Duplicate(Answer::Now(ret))
            }
            Lookup::Wait(at, first) => {
                self.emit_duplicate(id, name.as_str(), wait, caller, first);
                Step7::Duplicate(Answer::Wait(at))
            }
        };
        (step, r)
    }

    fn emit_duplicate(
        &self,
        id: RequestId,
        name: &str,
        wait: bool,
        caller: &'static Location<'static>,
        first: RequestId,
    ) {
        self.emit(Event::Duplicate {
            id,
            name,
            wait,
            caller,
            first,
        });
    }

    /// A duplicate's result: at once, or its first request's (killably).
    async fn answer(&self, answer: Answer, kill: Option<&KillSignal<M>>) -> Outcome {
        let ret = match answer {
            Answer::Now(ret) => ret,
            Answer::Wait(at) => match kill {
                None => dups::wait(self, at).await,
                Some(kill) => match select(dups::wait(self, at), kill.killed()).await {
                    Either::First(ret) => ret,
                    Either::Second(()) => -Errno::ERESTARTSYS.raw(),
                },
            },
        };
        from_kernel_ret(ret)
    }

    /// The start of step 8 with the lock held: counts the helper, copies the
    /// path, and (loop detection) records the request as running.
    fn start_helper_in(
        &self,
        i: &mut Inner<SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>,
        cmd: &mut HelperCommand<NAME_LEN>,
        parent: Option<RequestId>,
        first: Option<First>,
    ) -> Result<(), Errno> {
        i.shared.helper_starts(cmd)?;
        if self.config.loop_detection {
            i.ancestry.enter(cmd.request(), parent, cmd.name(), first);
        }
        Ok(())
    }

    /// The helper watchdog's time is up: kill the helper (its `run_helper`
    /// future then ends with its status, 9).
    fn watchdog_fired(&self, id: RequestId, name: &str, started: Duration) {
        let killed = self.platform.kill_helper(id);
        if killed {
            self.shared(|s| s.stats.helpers_killed += 1);
        }
        self.emit(Event::HelperKilled {
            id,
            name,
            after: self.platform.now().saturating_sub(started),
            killed,
        });
    }

    /// Steps 2 to 4 refused the request.
    fn refuse(
        &self,
        request: InFlight<'_, Self>,
        check: Check,
        errno: Errno,
        count: impl FnOnce(&mut Stats),
    ) -> Outcome {
        self.emit(Event::Refused {
            id: request.id(),
            name: request_name(&request),
            check,
            errno,
        });
        self.finish(request, Err(errno), None, false, count)
    }

    /// The end of a request that holds no slot.
    fn finish(
        &self,
        request: InFlight<'_, Self>,
        outcome: Outcome,
        start: Option<Duration>,
        duplicate: bool,
        count: impl FnOnce(&mut Stats),
    ) -> Outcome {
        let (id, name) = (request.id(), request_name(&request));
        self.lock(|i| request.finish_in(i, outcome, count));
        let latency = start.map_or(Duration::ZERO, |t| self.platform.now().saturating_sub(t));
        self.emit(Event::Finished {
            id,
            name,
            outcome,
            latency,
            duplicate,
        });
        outcome
    }

    /// A duplicate's end (Linux: it holds a slot): releases its slot and
    /// counts it, under one lock.
    fn release_and_finish(
        &self,
        request: InFlight<'_, Self>,
        slot: SlotGuard<'_, Self, SLOT_QUEUE>,
        outcome: Outcome,
        start: Duration,
    ) -> Outcome {
        let (id, name) = (request.id(), request_name(&request));
        let mut wakes = Wakes::new();
        let (waiting, in_use) = self.lock(|i| {
            slot.release_in(&mut i.slots, &mut wakes);
            let use_now = i.slots.waiting_and_held();
            request.finish_in(i, outcome, |s| s.duplicates += 1);
            use_now
        });
        wakes.wake();
        self.emit(Event::SlotReleased {
            id,
            in_use,
            waiting,
        });
        self.emit(Event::Finished {
            id,
            name,
            outcome,
            latency: self.platform.now().saturating_sub(start),
            duplicate: true,
        });
        outcome
    }

    /// Step 9 for a request that ran (or tried to run) the helper, under one
    /// lock: the helper is no longer running, its result is announced to the
    /// duplicate table, the slot goes to the next waiter, the request counts
    /// as completed. Wakers run after the lock is released.
    fn complete(
        &self,
        request: InFlight<'_, Self>,
        slot: SlotGuard<'_, Self, SLOT_QUEUE>,
        announcer: Announcer<'_, Self>,
        running: Option<RunningHelper<'_, Self>>,
        outcome: Outcome,
        start: Duration,
    ) -> Outcome {
        let (id, name) = (request.id(), request_name(&request));
        let now = self.platform.now();
        let ret = outcome.kernel_ret();
        let linger = self.config.linger_for(ret);
        let mut wakes = Wakes::new();
        let (waiting, in_use) = self.lock(|i| {
            if let Some(running) = running {
                i.shared.helper_exited(&mut wakes);
                if self.config.loop_detection {
                    i.ancestry.leave(running.id());
                }
                running.disarm();
            }
            if self.config.dedup {
                i.dups.announce(
                    announcer.name(),
                    announcer.first(),
                    ret,
                    now,
                    linger,
                    &mut wakes,
                );
            }
            announcer.disarm();
            slot.release_in(&mut i.slots, &mut wakes);
            let use_now = i.slots.waiting_and_held();
            request.finish_in(i, outcome, |_| {});
            use_now
        });
        wakes.wake();
        self.emit(Event::SlotReleased {
            id,
            in_use,
            waiting,
        });
        self.emit(Event::Finished {
            id,
            name,
            outcome,
            latency: now.saturating_sub(start),
            duplicate: false,
        });
        outcome
    }

    /// Every event goes out here: its log line (the busy-timeout warning
    /// rate-limited), then the platform's hook.
    fn emit(&self, event: Event<'_>) {
        // Without a logging backend there are no lines to limit.
        #[cfg(any(feature = "defmt", feature = "log"))]
        let log = match event {
            Event::BusyTimeout { .. } => {
                let now = self.platform.now();
                self.shared(|s| s.busy_log.allow(now))
            }
            _ => true,
        };
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let log = true;
        if log {
            crate::trace::log(&event, self.config.dups_trace);
        }
        self.platform.trace(&event);
    }

    fn lock<R>(
        &self,
        f: impl FnOnce(&mut Inner<SLOTS, SLOT_QUEUE, DUP_ENTRIES, NAME_LEN>) -> R,
    ) -> R {
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
        self.emit(Event::HelpersDisabled);
        let deadline = self.platform.now().saturating_add(RUNNING_HELPERS_TIMEOUT);
        let mut undo = ReenableOnDrop(Some(self));
        let mut waiter = DrainWaiter {
            state: &self.state,
            link: Link::default(),
        };
        let drained = poll_fn(|cx| waiter.poll(cx));
        let sleep = pin!(self.platform.sleep_until(deadline));
        let drained = match select(drained, sleep).await {
            Either::First(()) => true,
            Either::Second(()) => self.shared(|s| s.running_helpers == 0),
        };
        drop(waiter);
        if drained {
            undo.0 = None;
            Ok(())
        } else {
            Err(Errno::EAGAIN)
        }
    }

    /// `usermodehelper_enable()`: helpers may run again.
    pub fn enable_helpers(&self) {
        let was = self.shared(|s| core::mem::replace(&mut s.helpers_disabled, false));
        if was {
            self.emit(Event::HelpersEnabled);
        }
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
            (i.slots.usage(), i.dups.usage(now), st)
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

/// The name a request's guard carries.
fn request_name<'a, K: Engine>(request: &InFlight<'a, K>) -> &'a str {
    request.name()
}

/// What step 7 decided.
enum Step7 {
    /// A duplicate: answered from the table.
    Duplicate(Answer),
    /// It runs the helper (as the first request of its entry, or untracked).
    Runs(Option<First>),
}

/// How a duplicate is answered.
enum Answer {
    /// At once, with this kernel integer.
    Now(i32),
    /// With the first request's result, once announced.
    Wait(dups::Waiting),
}

/// One `disable_helpers` caller waiting for the running helpers to end.
struct DrainWaiter<'a, M: RawMutex, const A: usize, const B: usize, const C: usize, const N: usize>
{
    state: &'a Mutex<M, RefCell<Inner<A, B, C, N>>>,
    link: Link,
}

impl<M: RawMutex, const A: usize, const B: usize, const C: usize, const N: usize>
    DrainWaiter<'_, M, A, B, C, N>
{
    fn poll(&mut self, cx: &mut core::task::Context<'_>) -> Poll<()> {
        let mut wakes = Wakes::new();
        let link = &mut self.link;
        let done = self.state.lock(|i| {
            let s = &mut i.borrow_mut().shared;
            link.on_poll(&s.drain, &mut wakes);
            if s.running_helpers == 0 {
                link.leave(&mut s.drain, &mut wakes);
                true
            } else {
                link.register(&mut s.drain, cx.waker());
                false
            }
        });
        wakes.wake();
        if done { Poll::Ready(()) } else { Poll::Pending }
    }
}

impl<M: RawMutex, const A: usize, const B: usize, const C: usize, const N: usize> Drop
    for DrainWaiter<'_, M, A, B, C, N>
{
    fn drop(&mut self) {
        let mut wakes = Wakes::new();
        let link = &mut self.link;
        self.state
            .lock(|i| link.leave(&mut i.borrow_mut().shared.drain, &mut wakes));
        wakes.wake();
    }
}

impl<P, S, M, const A: usize, const B: usize, const C: usize, const N: usize> Engine
    for Kmod<P, S, M, A, B, C, N>
where
    P: Platform<N>,
    S: Security,
    M: RawMutex,
{
    type Inner = Inner<A, B, C, N>;

    fn with_inner<R>(&self, f: impl FnOnce(&mut Self::Inner) -> R) -> R {
        self.lock(f)
    }

    fn stats_of(inner: &mut Self::Inner) -> &mut Stats {
        &mut inner.shared.stats
    }

    fn emit(&self, event: Event<'_>) {
        Kmod::emit(self, event)
    }

    fn announce(&self, name: &str, first: Option<First>, ret: i32) {
        if self.config.dedup {
            let now = self.platform.now();
            let linger = self.config.linger_for(ret);
            let mut wakes = Wakes::new();
            self.lock(|i| i.dups.announce(name, first, ret, now, linger, &mut wakes));
            wakes.wake();
        }
    }

    fn helper_gone(&self, id: RequestId) {
        let mut wakes = Wakes::new();
        self.lock(|i| {
            i.shared.helper_exited(&mut wakes);
            if self.config.loop_detection {
                i.ancestry.leave(id);
            }
        });
        wakes.wake();
    }

    fn enable_helpers(&self) {
        Kmod::enable_helpers(self)
    }
}

impl<P, S, M, const A: usize, const B: usize, const C: usize, const N: usize> SlotLock<B>
    for Kmod<P, S, M, A, B, C, N>
where
    P: Platform<N>,
    S: Security,
    M: RawMutex,
{
    fn with_slots<R>(&self, f: impl FnOnce(&mut slots::State<B>) -> R) -> R {
        self.lock(|i| f(&mut i.slots))
    }
}

impl<P, S, M, const A: usize, const B: usize, const C: usize, const N: usize> DupLock<C, N>
    for Kmod<P, S, M, A, B, C, N>
where
    P: Platform<N>,
    S: Security,
    M: RawMutex,
{
    fn with_dups<R>(&self, f: impl FnOnce(&mut dups::State<C, N>) -> R) -> R {
        self.lock(|i| f(&mut i.dups))
    }
}

impl<P, S, M, const A: usize, const B: usize, const C: usize, const N: usize> fmt::Debug
    for Kmod<P, S, M, A, B, C, N>
where
    P: Platform<N>,
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
impl<P, S, M, const A: usize, const B: usize, const C: usize, const N: usize> defmt::Format
    for Kmod<P, S, M, A, B, C, N>
where
    P: Platform<N>,
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
