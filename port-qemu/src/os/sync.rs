//! Small synchronisation helpers between tasks.

use alloc::vec::Vec;
use core::cell::RefCell;
use core::future::poll_fn;
use core::task::{Poll, Waker};

use critical_section::Mutex;

/// A value set once by one task and awaited by any number of others.
#[derive(Debug)]
pub struct OnceSignal<T: Copy> {
    inner: Mutex<RefCell<(Option<T>, Vec<Waker>)>>,
}

impl<T: Copy> OnceSignal<T> {
    /// Not yet set.
    pub const fn new() -> Self {
        OnceSignal {
            inner: Mutex::new(RefCell::new((None, Vec::new()))),
        }
    }

    /// Sets the value (first call wins) and wakes every waiter.
    pub fn set(&self, value: T) {
        let wakers = critical_section::with(|cs| {
            let mut inner = self.inner.borrow_ref_mut(cs);
            if inner.0.is_none() {
                inner.0 = Some(value);
            }
            core::mem::take(&mut inner.1)
        });
        wakers.into_iter().for_each(Waker::wake);
    }

    /// The value, if set.
    pub fn get(&self) -> Option<T> {
        critical_section::with(|cs| self.inner.borrow_ref(cs).0)
    }

    /// Waits until the value is set.
    pub async fn wait(&self) -> T {
        poll_fn(|cx| {
            critical_section::with(|cs| {
                let mut inner = self.inner.borrow_ref_mut(cs);
                match inner.0 {
                    Some(v) => Poll::Ready(v),
                    None => {
                        if !inner.1.iter().any(|w| w.will_wake(cx.waker())) {
                            inner.1.push(cx.waker().clone());
                        }
                        Poll::Pending
                    }
                }
            })
        })
        .await
    }
}

impl<T: Copy> Default for OnceSignal<T> {
    fn default() -> Self {
        Self::new()
    }
}
