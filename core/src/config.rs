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
///
/// # Policies beyond the kernel (SPEC §9)
///
/// Each is off in [`Config::DEFAULT`], where SPEC §2 to §5 hold exactly;
/// [`Config::WITH_POLICIES`] turns them all on. Each changes one rule:
///
/// | switch | Linux | with the switch on |
/// | --- | --- | --- |
/// | [`loop_detection`](Self::loop_detection) | a load loop (A's init requests B, B's requests A) deadlocks on the duplicate table, or ends only when all slots stay busy for 5 s (`-ETIME`) | a request whose name is already among its ancestors (the requests on whose behalf its caller runs, as [`Platform::parent_request`](crate::Platform::parent_request) reports them) returns `-ELOOP` (-40) at once, takes no slot, and warns with the chain `a -> b -> a` |
/// | [`dups_hold_no_slot`](Self::dups_hold_no_slot) | the duplicate check comes after the slot, so waiting duplicates hold slots and one slow module can starve every other request | the duplicate check comes before the slot; duplicates wait without one; a first request still takes a slot before running the helper |
/// | [`no_transient_caching`](Self::no_transient_caching) | a first request's result lingers 60 s whatever it is, `-ERESTARTSYS` of a killed first request included | `-ERESTARTSYS`, `-EINTR`, `-ENOMEM`, `-EAGAIN`, `-EBUSY`, `-ETIME` go to the duplicates waiting at that moment and the entry is dropped at once; other failures linger [`failure_linger`](Self::failure_linger), successes [`dedup_linger`](Self::dedup_linger) |
/// | [`helper_timeout`](Self::helper_timeout) | a helper that never exits is waited for forever (killably) | after this time the platform kills the helper with SIGKILL and reaps it ([`Platform::kill_helper`](crate::Platform::kill_helper)); the request and its duplicates get 9; a warning names the helper and the time |
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
    /// Policy: refuse a request whose name is among its ancestors with
    /// `-ELOOP` (see the table above). Off: Linux.
    pub loop_detection: bool,
    /// Policy: look for duplicates before taking a slot, so that waiting
    /// duplicates hold none. Off: Linux.
    pub dups_hold_no_slot: bool,
    /// Policy: do not keep transient results for later duplicates; keep
    /// failures for [`failure_linger`](Self::failure_linger). Off: Linux.
    pub no_transient_caching: bool,
    /// How long a failure answers duplicates when
    /// [`no_transient_caching`](Self::no_transient_caching) is on.
    pub failure_linger: Duration,
    /// Policy: kill a helper that a waiting request has waited for this long
    /// (SIGKILL; the request gets 9). `None`: Linux, wait forever.
    pub helper_timeout: Option<Duration>,
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
        loop_detection: false,
        dups_hold_no_slot: false,
        no_transient_caching: false,
        failure_linger: DEDUP_LINGER,
        helper_timeout: None,
    };

    /// The kernel's values with every policy of SPEC §9 on: loop detection,
    /// duplicates holding no slot, no caching of transient results (failures
    /// linger 10 s), and a helper watchdog of 60 s.
    pub const WITH_POLICIES: Config = Config::DEFAULT
        .with_loop_detection(true)
        .with_dups_hold_no_slot(true)
        .with_no_transient_caching(true)
        .with_failure_linger(Duration::from_secs(10))
        .with_helper_timeout(Some(Duration::from_secs(60)));

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

    /// With loop detection on or off.
    #[must_use]
    pub const fn with_loop_detection(mut self, on: bool) -> Self {
        self.loop_detection = on;
        self
    }

    /// With duplicates holding no slot, or holding one (Linux).
    #[must_use]
    pub const fn with_dups_hold_no_slot(mut self, on: bool) -> Self {
        self.dups_hold_no_slot = on;
        self
    }

    /// With transient results kept for duplicates (Linux) or not.
    #[must_use]
    pub const fn with_no_transient_caching(mut self, on: bool) -> Self {
        self.no_transient_caching = on;
        self
    }

    /// With failures answering duplicates for `failure_linger` (when
    /// transient results are not cached).
    #[must_use]
    pub const fn with_failure_linger(mut self, failure_linger: Duration) -> Self {
        self.failure_linger = failure_linger;
        self
    }

    /// With a helper watchdog of `helper_timeout`, or none (Linux).
    #[must_use]
    pub const fn with_helper_timeout(mut self, helper_timeout: Option<Duration>) -> Self {
        self.helper_timeout = helper_timeout;
        self
    }

    /// How long a result `ret` (a kernel integer) answers later duplicates.
    pub(crate) const fn linger_for(&self, ret: i32) -> Duration {
        if !self.no_transient_caching {
            return self.dedup_linger;
        }
        if ret < 0 && crate::Errno::from_raw(ret).is_transient() {
            Duration::ZERO
        } else if ret != 0 {
            self.failure_linger
        } else {
            self.dedup_linger
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Self::DEFAULT
    }
}
