//! The monotonic clock and timed sleeps.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use rustix::time::{ClockId, clock_gettime};

use crate::reactor;

/// Monotonic time (`CLOCK_MONOTONIC`) since an arbitrary epoch (boot, on
/// Linux). Never goes backwards; does not count time the machine is suspended.
pub fn now() -> Duration {
    let t = clock_gettime(ClockId::Monotonic);
    // tv_sec and tv_nsec of CLOCK_MONOTONIC are never negative.
    Duration::new(
        u64::try_from(t.tv_sec).unwrap_or(0),
        u32::try_from(t.tv_nsec).unwrap_or(0),
    )
}

/// A future that completes once [`now()`] `>= deadline`.
///
/// Sleeping costs no thread: the sleeper is a map entry in the reactor, whose
/// single thread wakes it (see [the reactor](crate#how-waiting-scales)).
/// Dropping the future cancels the sleep.
#[derive(Debug)]
#[must_use = "futures do nothing unless polled"]
pub struct Sleep {
    deadline: Duration,
    /// Id of the reactor's timer entry once registered.
    id: Option<u64>,
}

/// Sleeps until [`now()`] `>= deadline`.
pub fn sleep_until(deadline: Duration) -> Sleep {
    Sleep { deadline, id: None }
}

/// Sleeps for `duration` from now.
pub fn sleep(duration: Duration) -> Sleep {
    sleep_until(now().saturating_add(duration))
}

impl Future for Sleep {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        if now() >= self.deadline {
            if let (Some(id), Ok(reactor)) = (self.id.take(), reactor::get()) {
                reactor.remove_timer(self.deadline, id);
            }
            return Poll::Ready(());
        }
        match reactor::get() {
            Ok(reactor) => {
                self.id = Some(reactor.add_timer(self.deadline, cx.waker(), self.id));
                Poll::Pending
            }
            Err(_) => {
                // No reactor (the process could not create an epoll or an
                // eventfd): fall back to blocking this thread. Never happens
                // on a working system; keeps the clock contract regardless.
                std::thread::sleep(self.deadline.saturating_sub(now()));
                Poll::Ready(())
            }
        }
    }
}

impl Drop for Sleep {
    fn drop(&mut self) {
        if let (Some(id), Ok(reactor)) = (self.id, reactor::get()) {
            reactor.remove_timer(self.deadline, id);
        }
    }
}
