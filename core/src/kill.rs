//! [`KillSignal`]: a fatal signal for requests (the kernel's `TASK_KILLABLE`).

use core::cell::RefCell;
use core::fmt;
use core::future::poll_fn;
use core::task::Poll;

use embassy_sync::blocking_mutex::Mutex;
use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, RawMutex};
use embassy_sync::waitqueue::MultiWakerRegistration;

/// A fatal signal that requests made with
/// [`Kmod::request_killable`](crate::Kmod::request_killable) obey.
///
/// Once [`kill`](Self::kill)ed it stays pending, as a fatal signal does: a
/// request waiting for a duplicate's result or for its helper returns
/// `-ERESTARTSYS` (the helper itself runs on). Waiting for a slot is not
/// killable, as in the kernel. Dropping a request future is the other way to
/// kill it; it then returns nothing.
pub struct KillSignal<M: RawMutex = CriticalSectionRawMutex> {
    state: Mutex<M, RefCell<(bool, MultiWakerRegistration<4>)>>,
}

impl<M: RawMutex> KillSignal<M> {
    /// A signal that has not fired.
    pub const fn new() -> Self {
        KillSignal {
            state: Mutex::new(RefCell::new((false, MultiWakerRegistration::new()))),
        }
    }

    /// Fires the signal: every killable wait under it ends.
    pub fn kill(&self) {
        self.state.lock(|s| {
            let mut s = s.borrow_mut();
            s.0 = true;
            s.1.wake();
        });
    }

    /// Whether the signal has fired.
    pub fn is_killed(&self) -> bool {
        self.state.lock(|s| s.borrow().0)
    }

    /// Completes once the signal has fired.
    pub async fn killed(&self) {
        poll_fn(|cx| {
            self.state.lock(|s| {
                let mut s = s.borrow_mut();
                if s.0 {
                    Poll::Ready(())
                } else {
                    s.1.register(cx.waker());
                    Poll::Pending
                }
            })
        })
        .await
    }
}

impl<M: RawMutex> Default for KillSignal<M> {
    fn default() -> Self {
        Self::new()
    }
}

impl<M: RawMutex> fmt::Debug for KillSignal<M> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KillSignal")
            .field("killed", &self.is_killed())
            .finish()
    }
}

#[cfg(feature = "defmt")]
impl<M: RawMutex> defmt::Format for KillSignal<M> {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "KillSignal {{ killed: {} }}", self.is_killed())
    }
}
