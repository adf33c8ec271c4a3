//! [`Event`]: what a request reports on its way (SPEC §2 steps 1, 5, 6 and §3),
//! delivered to [`Platform::trace`](crate::Platform::trace) and to the log.

use core::panic::Location;
use core::time::Duration;

/// An event of the autoloader. Every event also goes to the log (`defmt` or
/// `log` feature); the platform's [`trace`](crate::Platform::trace) hook sees
/// every one, unthrottled, in the order they happen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Event<'a> {
    /// The `module_request` trace event (SPEC §2 step 6): a request got its slot
    /// and is about to be checked for duplicates. Requests refused earlier are
    /// not traced; duplicates are.
    ModuleRequest {
        /// The module name.
        name: &'a str,
        /// Whether the caller waits for the helper to exit.
        wait: bool,
        /// Where the request was made (the kernel's `_RET_IP_`).
        caller: &'static Location<'static>,
    },
    /// A waiting request was made from an "async" context (the kernel's
    /// `WARN_ON_ONCE(wait && current_is_async())`). Reported once per `Kmod`.
    AsyncWait {
        /// The module name.
        name: &'a str,
        /// Where the request was made.
        caller: &'static Location<'static>,
    },
    /// No slot became free within the busy timeout: the request fails with
    /// `-ETIME`. The log line is rate-limited (10 per 5 s, like
    /// `pr_warn_ratelimited`); this event is not.
    BusyTimeout {
        /// The module name.
        name: &'a str,
        /// The number of slots, all busy.
        max_concurrent: usize,
        /// How long the request waited.
        waited: Duration,
    },
    /// The name was already in the duplicate table (SPEC §3).
    Duplicate {
        /// The module name.
        name: &'a str,
        /// Whether the duplicate waits for the first request's result.
        wait: bool,
        /// Where the duplicate request was made.
        caller: &'static Location<'static>,
    },
}

/// `pr_warn_ratelimited`'s default: at most `BURST` messages per `INTERVAL`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RateLimit {
    window_start: Option<Duration>,
    printed: u32,
}

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
