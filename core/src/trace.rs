//! [`Event`]: everything a request does, from the call to its result, as one
//! stream. The platform's [`trace`](crate::Platform::trace) hook sees every
//! event, unthrottled, in order; the log lines (`defmt` or `log` feature) are
//! derived from the same events here, in [`log`], and nowhere else.

use core::panic::Location;
use core::time::Duration;

use crate::{Errno, Outcome, RequestId, UmhWait};

/// An event of the autoloader. `id` is the request's [`RequestId`]; `name` its
/// module name (empty if the name did not fit). A request's events come in
/// this order: `Request`; then `Refused`/`LoopRefused`, or the slot
/// (`SlotWait`, `SlotGranted` or `BusyTimeout`), `ModuleRequest`, possibly
/// `Duplicate`, the helper (`HelperStarted`, `HelperKilled`, `HelperExited`),
/// `SlotReleased`; last `Finished` or `Cancelled`. With duplicates holding no
/// slot, `ModuleRequest` and `Duplicate` come before the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event<'a> {
    /// A request was made (its future was first polled).
    Request {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// Whether the caller waits for the helper to exit.
        wait: bool,
        /// Where the request was made (the kernel's `_RET_IP_`).
        caller: &'static Location<'static>,
        /// The request on whose behalf the caller runs, as the platform says.
        parent: Option<RequestId>,
    },
    /// Refused before any slot (SPEC §2 steps 2 to 4): it returns `errno`.
    Refused {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// Which check refused it.
        check: Check,
        /// What it returns.
        errno: Errno,
    },
    /// A waiting request was made from an "async" context (the kernel's
    /// `WARN_ON_ONCE(wait && current_is_async())`). Reported once per `Kmod`.
    AsyncWait {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// Where the request was made.
        caller: &'static Location<'static>,
    },
    /// Loop detection refused the request with `-ELOOP`: its name is among its
    /// ancestors.
    LoopRefused {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// The ancestors, oldest first, then this request: `fs-a -> fs-b -> fs-a`.
        chain: &'a str,
    },
    /// No slot was free: the request waits for one.
    SlotWait {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// Requests waiting for a slot now, this one included.
        waiting: usize,
        /// Slots held now.
        in_use: usize,
    },
    /// The request holds a slot now.
    SlotGranted {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// How long it waited (zero if a slot was free).
        waited: Duration,
        /// Requests still waiting for a slot.
        waiting: usize,
        /// Slots held now, this one included.
        in_use: usize,
    },
    /// No slot became free within the busy timeout: the request fails with
    /// `-ETIME`. Its log line is rate-limited (10 per 5 s, like
    /// `pr_warn_ratelimited`); the event is not.
    BusyTimeout {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// The number of slots, all busy.
        max_concurrent: usize,
        /// The busy timeout.
        timeout: Duration,
        /// How long the request waited (at least `timeout`).
        waited: Duration,
        /// Requests still waiting for a slot.
        waiting: usize,
        /// Slots held now.
        in_use: usize,
    },
    /// The request gave its slot back.
    SlotReleased {
        /// The request.
        id: RequestId,
        /// Slots held now.
        in_use: usize,
        /// Requests waiting for a slot now.
        waiting: usize,
    },
    /// The kernel's `module_request` trace event (SPEC §2 step 6): just before
    /// the duplicate check. Requests refused earlier are not traced; duplicates are.
    ModuleRequest {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// Whether the caller waits for the helper to exit.
        wait: bool,
        /// Where the request was made.
        caller: &'static Location<'static>,
    },
    /// The name was in the duplicate table (SPEC §3): the request will be
    /// answered from it.
    Duplicate {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// Whether the duplicate waits for the first request's result.
        wait: bool,
        /// Where the duplicate request was made.
        caller: &'static Location<'static>,
        /// The first request of that name, whose result it gets.
        first: RequestId,
    },
    /// The helper was handed to the platform.
    HelperStarted {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// How long the request waits for it.
        wait: UmhWait,
    },
    /// The helper watchdog fired: the helper is being killed (SIGKILL).
    HelperKilled {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// How long the helper had run.
        after: Duration,
        /// Whether the platform could kill it (if not, the request waits on).
        killed: bool,
    },
    /// The helper call returned (the exec for `Exec`, the exit for `Proc`).
    HelperExited {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// What the platform returned.
        outcome: Outcome,
    },
    /// The request returned `outcome`.
    Finished {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
        /// Its result.
        outcome: Outcome,
        /// From its first poll to its result.
        latency: Duration,
        /// Whether it was answered from the duplicate table.
        duplicate: bool,
    },
    /// The request's future was dropped before it returned.
    Cancelled {
        /// The request.
        id: RequestId,
        /// The module name.
        name: &'a str,
    },
    /// Helpers were disabled ([`Kmod::disable_helpers`](crate::Kmod::disable_helpers)).
    HelpersDisabled,
    /// Helpers were enabled again.
    HelpersEnabled,
}

/// The check that refused a request before it took a slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Check {
    /// Step 2: the helper path is empty (autoloading disabled).
    EmptyPath,
    /// Step 3: the name does not fit the name bound (or did not format).
    Name,
    /// Step 4: the security hook said no.
    Security,
}

impl Event<'_> {
    /// The request the event belongs to (`None` for the helpers switch).
    pub fn id(&self) -> Option<RequestId> {
        match *self {
            Event::Request { id, .. }
            | Event::Refused { id, .. }
            | Event::AsyncWait { id, .. }
            | Event::LoopRefused { id, .. }
            | Event::SlotWait { id, .. }
            | Event::SlotGranted { id, .. }
            | Event::BusyTimeout { id, .. }
            | Event::SlotReleased { id, .. }
            | Event::ModuleRequest { id, .. }
            | Event::Duplicate { id, .. }
            | Event::HelperStarted { id, .. }
            | Event::HelperKilled { id, .. }
            | Event::HelperExited { id, .. }
            | Event::Finished { id, .. }
            | Event::Cancelled { id, .. } => Some(id),
            Event::HelpersDisabled | Event::HelpersEnabled => None,
        }
    }
}

/// The log line of `event`, if it has one: the kernel's warnings at warn level
/// (error level for duplicates when `loud_duplicates`, the kernel's
/// `enable_dups_trace`), the trace event at trace level, the rest at debug.
/// The caller has already rate-limited `BusyTimeout`.
// Without a logging backend every arm is empty, so some look alike.
#[allow(clippy::if_same_then_else)]
pub(crate) fn log(event: &Event<'_>, loud_duplicates: bool) {
    match *event {
        Event::AsyncWait { name, caller, .. } => warn!(
            "request_module({}): waiting for a module load from an async context may deadlock (requested at {}:{})",
            name,
            caller.file(),
            caller.line()
        ),
        Event::BusyTimeout {
            name,
            max_concurrent,
            timeout,
            ..
        } => {
            if timeout.subsec_nanos() == 0 {
                warn!(
                    "request_module: modprobe {} cannot be processed, kmod busy with {} threads for more than {} seconds now",
                    name,
                    max_concurrent,
                    timeout.as_secs()
                );
            } else {
                warn!(
                    "request_module: modprobe {} cannot be processed, kmod busy with {} threads for more than {} ms now",
                    name,
                    max_concurrent,
                    timeout.as_millis() as u64
                );
            }
        }
        Event::Duplicate { name, caller, .. } => {
            if loud_duplicates {
                error!(
                    "module-autoload: duplicate request for module {} (requested at {}:{})",
                    name,
                    caller.file(),
                    caller.line()
                );
            } else {
                warn!("module-autoload: duplicate request for module {}", name);
            }
        }
        Event::LoopRefused { name, chain, .. } => warn!(
            "request_module: module-load loop {}: request for {} refused with -ELOOP",
            chain, name
        ),
        Event::HelperKilled {
            name,
            after,
            killed,
            ..
        } => {
            if killed {
                warn!(
                    "request_module: helper for {} still running after {} ms: killed (SIGKILL)",
                    name,
                    after.as_millis() as u64
                );
            } else {
                warn!(
                    "request_module: helper for {} still running after {} ms: the platform cannot kill it, waiting on",
                    name,
                    after.as_millis() as u64
                );
            }
        }
        Event::ModuleRequest {
            name, wait, caller, ..
        } => trace!(
            "module_request: name={} wait={} caller={}:{}",
            name,
            wait,
            caller.file(),
            caller.line()
        ),
        Event::HelpersDisabled => debug!("usermode helpers disabled"),
        Event::HelpersEnabled => debug!("usermode helpers enabled"),
        _ => {}
    }
}

/// `pr_warn_ratelimited`'s default: at most `BURST` messages per `INTERVAL`.
#[derive(Debug, Clone, Copy)]
#[cfg_attr(not(any(feature = "defmt", feature = "log", test)), allow(dead_code))]
pub(crate) struct RateLimit {
    window_start: Option<Duration>,
    printed: u32,
}

#[cfg_attr(not(any(feature = "defmt", feature = "log", test)), allow(dead_code))]
impl RateLimit {
    const INTERVAL: Duration = Duration::from_secs(5);
    const BURST: u32 = 10;

    pub(crate) const fn new() -> Self {
        RateLimit {
            window_start: None,
            printed: 0,
        }
    }

    /// Whether a message at `now` may be printed.
    pub(crate) fn allow(&mut self, now: Duration) -> bool {
        match self.window_start {
            Some(start) if now.saturating_sub(start) < Self::INTERVAL => {}
            _ => {
                self.window_start = Some(now);
                self.printed = 0;
            }
        }
        if self.printed < Self::BURST {
            self.printed += 1;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ten_per_five_seconds() {
        let mut rl = RateLimit::new();
        let t0 = Duration::from_secs(100);
        let allowed = (0..25).filter(|_| rl.allow(t0)).count();
        assert_eq!(allowed, 10);
        assert!(!rl.allow(t0 + Duration::from_millis(4999)));
        assert!(rl.allow(t0 + Duration::from_secs(5)));
    }
}
