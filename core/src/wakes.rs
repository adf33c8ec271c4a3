//! [`Wakes`]: wakers collected while a lock is held, woken once it is released.

use core::task::Waker;

/// A small batch of wakers to wake after unlocking. A step of the core hands
/// over at most a few wakers (a slot, a chain head); a batch that would
/// overflow wakes the extra one at once rather than lose it.
pub(crate) struct Wakes(heapless::Vec<Waker, 4>);

impl Wakes {
    pub(crate) const fn new() -> Self {
        Wakes(heapless::Vec::new())
    }

    /// Adds `waker`, if any.
    pub(crate) fn push(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker
            && let Err(w) = self.0.push(w)
        {
            w.wake();
        }
    }

    /// Wakes them all. (By reference and inlined: usually there are none.)
    #[inline]
    pub(crate) fn wake(&mut self) {
        while let Some(w) = self.0.pop() {
            w.wake();
        }
    }
}

impl Drop for Wakes {
    fn drop(&mut self) {
        self.wake();
    }
}
