//! [`Stats`]: the counters and gauges of a `Kmod`.

/// Counters and gauges of a [`Kmod`](crate::Kmod), from [`Kmod::stats`](crate::Kmod::stats).
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
    /// Refused with `-ELOOP` by loop detection.
    pub loops: u64,
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
    /// Helpers the watchdog killed.
    pub helpers_killed: u64,
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

impl Stats {
    pub(crate) const ZERO: Stats = Stats {
        requests: 0,
        completed: 0,
        cancelled: 0,
        failures: 0,
        invalid: 0,
        denied: 0,
        loops: 0,
        busy_timeouts: 0,
        duplicates: 0,
        helpers_started: 0,
        helpers_refused: 0,
        helpers_killed: 0,
        in_flight: 0,
        slots_in_use: 0,
        max_concurrent_seen: 0,
        waiting_for_slot: 0,
        running_helpers: 0,
        dup_entries: 0,
        dup_pending: 0,
        dup_waiters: 0,
    };
}
