//! Time and the timer queue.
//!
//! Deadlines are `time` CSR ticks. Sleeping tasks register `(deadline,
//! waker)` in one queue shared by all harts. Every hart's executor loop fires
//! expired entries; a hart going idle arms its own SBI timer for the earliest
//! deadline (`set_timer` only arms the calling hart, and any idle hart may be
//! the one to wake).

use alloc::collections::BTreeMap;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, Ordering};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use critical_section::Mutex;

use crate::machine::timer;

/// Key of one queue entry: deadline, then a sequence number for uniqueness.
type Key = (u64, u64);

static TIMERS: Mutex<RefCell<BTreeMap<Key, Waker>>> = Mutex::new(RefCell::new(BTreeMap::new()));
/// Earliest deadline in `TIMERS` (`u64::MAX`: none); a lock-free fast path.
static NEXT: AtomicU64 = AtomicU64::new(u64::MAX);
static SEQ: AtomicU64 = AtomicU64::new(0);

/// Ticks since boot (the `time` CSR).
pub fn ticks() -> u64 {
    timer::ticks()
}

/// Converts a duration to ticks (rounding up).
pub fn to_ticks(d: Duration) -> u64 {
    let hz = u128::from(timer::timebase());
    let t = (d.as_nanos() * hz).div_ceil(1_000_000_000);
    u64::try_from(t).unwrap_or(u64::MAX)
}

/// Converts ticks to a duration.
pub fn to_duration(ticks: u64) -> Duration {
    let hz = u128::from(timer::timebase());
    let ns = u128::from(ticks) * 1_000_000_000 / hz;
    Duration::from_nanos(u64::try_from(ns).unwrap_or(u64::MAX))
}

/// Monotonic time since boot.
pub fn now() -> Duration {
    to_duration(ticks())
}

/// The earliest registered deadline, if any.
pub fn next_deadline() -> Option<u64> {
    let next = NEXT.load(Ordering::SeqCst);
    (next != u64::MAX).then_some(next)
}

/// Whether some registered deadline has passed.
pub fn expired() -> bool {
    ticks() >= NEXT.load(Ordering::SeqCst)
}

/// Wakes every task whose deadline has passed.
pub fn fire_expired() {
    if !expired() {
        return;
    }
    let now = ticks();
    let due = critical_section::with(|cs| {
        let mut timers = TIMERS.borrow_ref_mut(cs);
        let later = timers.split_off(&(now + 1, 0));
        let due = core::mem::replace(&mut *timers, later);
        NEXT.store(
            timers.first_key_value().map_or(u64::MAX, |(k, _)| k.0),
            Ordering::SeqCst,
        );
        due
    });
    for (_, waker) in due {
        waker.wake();
    }
}

fn register(deadline: u64, waker: Waker) -> Key {
    let key = (deadline, SEQ.fetch_add(1, Ordering::Relaxed));
    critical_section::with(|cs| {
        TIMERS.borrow_ref_mut(cs).insert(key, waker);
        NEXT.fetch_min(deadline, Ordering::SeqCst);
    });
    key
}

fn cancel(key: Key) {
    critical_section::with(|cs| {
        let mut timers = TIMERS.borrow_ref_mut(cs);
        timers.remove(&key);
        NEXT.store(
            timers.first_key_value().map_or(u64::MAX, |(k, _)| k.0),
            Ordering::SeqCst,
        );
    });
}

/// A future that completes once `ticks() >= deadline`.
#[derive(Debug)]
pub struct Sleep {
    deadline: u64,
    key: Option<Key>,
}

impl Sleep {
    /// Until `ticks() >= deadline`.
    pub fn until_ticks(deadline: u64) -> Self {
        Sleep {
            deadline,
            key: None,
        }
    }

    /// Until [`now`] `>= deadline`.
    pub fn until(deadline: Duration) -> Self {
        Self::until_ticks(to_ticks(deadline))
    }

    /// For `d` from now.
    pub fn for_duration(d: Duration) -> Self {
        Self::until_ticks(ticks().saturating_add(to_ticks(d)))
    }
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if ticks() >= self.deadline {
            if let Some(key) = self.key.take() {
                cancel(key);
            }
            return Poll::Ready(());
        }
        // Re-register on every poll: the waker may have changed, and a stale
        // entry only costs a spurious wake.
        if let Some(key) = self.key.take() {
            cancel(key);
        }
        self.key = Some(register(self.deadline, cx.waker().clone()));
        Poll::Pending
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            cancel(key);
        }
    }
}

/// Sleeps for `d`.
pub fn sleep(d: Duration) -> Sleep {
    Sleep::for_duration(d)
}
