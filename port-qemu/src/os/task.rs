//! Spawning with a result, and waiting with a time limit.

use alloc::sync::Arc;
use core::cell::RefCell;
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use critical_section::Mutex;

use super::{executor, time};

struct Slot<T> {
    value: Option<T>,
    waker: Option<Waker>,
}

/// The result of a task started with [`spawn_join`]. Dropping the handle
/// does not stop the task.
#[derive(Debug)]
pub struct JoinHandle<T> {
    slot: Arc<Mutex<RefCell<Slot<T>>>>,
}

impl<T> core::fmt::Debug for Slot<T> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Slot")
            .field("done", &self.value.is_some())
            .finish()
    }
}

/// Spawns `future` on any hart; its output comes out of the handle.
pub fn spawn_join<T: Send + 'static>(
    future: impl Future<Output = T> + Send + 'static,
) -> JoinHandle<T> {
    let slot = Arc::new(Mutex::new(RefCell::new(Slot {
        value: None,
        waker: None,
    })));
    let theirs = Arc::clone(&slot);
    executor::spawn(async move {
        let value = future.await;
        let waker = critical_section::with(|cs| {
            let mut s = theirs.borrow_ref_mut(cs);
            s.value = Some(value);
            s.waker.take()
        });
        if let Some(w) = waker {
            w.wake();
        }
    });
    JoinHandle { slot }
}

impl<T> Future for JoinHandle<T> {
    type Output = T;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<T> {
        critical_section::with(|cs| {
            let mut s = self.slot.borrow_ref_mut(cs);
            match s.value.take() {
                Some(v) => Poll::Ready(v),
                None => {
                    s.waker = Some(cx.waker().clone());
                    Poll::Pending
                }
            }
        })
    }
}

/// Runs `future` for at most `limit`: `None` if the time ran out first (the
/// future is then dropped).
pub async fn timeout<F: Future>(limit: Duration, future: F) -> Option<F::Output> {
    let mut future = pin!(future);
    let mut sleep = pin!(time::sleep(limit));
    poll_fn(|cx| {
        if let Poll::Ready(v) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(v));
        }
        if sleep.as_mut().poll(cx).is_ready() {
            return Poll::Ready(None);
        }
        Poll::Pending
    })
    .await
}

/// Yields to other tasks once.
pub async fn yield_now() {
    let mut yielded = false;
    poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
