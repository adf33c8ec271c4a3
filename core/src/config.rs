//! [`Config`]: the construction-time parameters (SPEC §1, §3).

use core::time::Duration;

/// The kernel's `MAX_KMOD_CONCURRENT`.
pub const MAX_KMOD_CONCURRENT: usize = 50;
/// The kernel's `MAX_KMOD_ALL_BUSY_TIMEOUT`: the longest wait for a slot.
pub const MAX_KMOD_ALL_BUSY_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a finished tracked request stays in the duplicate table.
pub const DEDUP_LINGER: Duration = Duration::from_secs(60);
/// How long [`Kmod::disable_helpers`](crate::Kmod::disable_helpers) waits for
/// running helpers (the kernel's `RUNNING_HELPERS_TIMEOUT`).
pub const RUNNING_HELPERS_TIMEOUT: Duration = Duration::from_secs(5);

/// Construction-time parameters of a [`Kmod`](crate::Kmod). [`Config::DEFAULT`]
/// holds the kernel's values; the `with_*` methods change one each, in a
/// `const` too, so a `static` `Kmod` can be configured:
///
/// ```
/// use core::time::Duration;
/// use reqmod::Config;
///
/// const CONFIG: Config = Config::DEFAULT
///     .with_max_concurrent(8)
///     .with_busy_timeout(Duration::from_millis(500));
/// assert_eq!(CONFIG.max_concurrent, 8);
/// assert!(CONFIG.dedup); // the rest keeps the kernel's values
/// ```
///
/// The fields can be read; new ones may be added in a minor release (the
/// struct is `#[non_exhaustive]`), each with a `with_*` method and a default
/// that keeps the kernel's behaviour, so code written this way keeps building.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub struct Config {
    /// Requests that may hold a slot at once (`MAX_KMOD_CONCURRENT`, 50). It is
    /// capped at the `Kmod`'s `SLOTS` capacity; 0 makes every request time out.
    pub max_concurrent: usize,
    /// Longest wait for a slot before `-ETIME` (`MAX_KMOD_ALL_BUSY_TIMEOUT`, 5 s).
    pub busy_timeout: Duration,
    /// Duplicate-request suppression (`CONFIG_MODULE_DEBUG_AUTOLOAD_DUPS`).
    /// Off in the kernel by default, on here (SPEC §3).
    pub dedup: bool,
    /// How long a finished request keeps answering duplicates (60 s).
    pub dedup_linger: Duration,
    /// Report duplicates loudly, with the caller's location, at error level
    /// (the kernel's `enable_dups_trace`, which adds a backtrace).
    pub dups_trace: bool,
}

impl Config {
    /// The kernel's values: 50 slots, 5 s busy timeout, duplicates suppressed
    /// for 60 s, quiet duplicate warnings.
    pub const DEFAULT: Config = Config {
        max_concurrent: MAX_KMOD_CONCURRENT,
        busy_timeout: MAX_KMOD_ALL_BUSY_TIMEOUT,
        dedup: true,
        dedup_linger: DEDUP_LINGER,
        dups_trace: false,
    };

    /// With `max_concurrent` slots (capped at the `Kmod`'s `SLOTS`).
    #[must_use]
    pub const fn with_max_concurrent(mut self, max_concurrent: usize) -> Self {
        self.max_concurrent = max_concurrent;
        self
    }

    /// With a slot wait of at most `busy_timeout` before `-ETIME`.
    #[must_use]
    pub const fn with_busy_timeout(mut self, busy_timeout: Duration) -> Self {
        self.busy_timeout = busy_timeout;
        self
    }

    /// With duplicate suppression on or off.
    #[must_use]
    pub const fn with_dedup(mut self, dedup: bool) -> Self {
        self.dedup = dedup;
        self
    }

    /// With finished requests answering duplicates for `dedup_linger`.
    #[must_use]
    pub const fn with_dedup_linger(mut self, dedup_linger: Duration) -> Self {
        self.dedup_linger = dedup_linger;
        self
    }

    /// With loud duplicate reports on or off (`enable_dups_trace`).
    #[must_use]
    pub const fn with_dups_trace(mut self, dups_trace: bool) -> Self {
        self.dups_trace = dups_trace;
        self
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}
