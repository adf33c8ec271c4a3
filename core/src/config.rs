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
/// holds the kernel's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
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
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}
