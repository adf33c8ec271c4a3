//! [`Chain`]: an unbounded set of waiting futures that can all be woken,
//! with O(1) storage outside the futures, no heap and no `unsafe`.
//!
//! The chain keeps one waker, its *head*. Each member keeps, in its own
//! [`Link`], the waker that was the head when it registered, so the wakers of
//! all members form a chain that lives in the waiting futures themselves.
//!
//! - [`Chain::broadcast`] starts a new *generation* and wakes the head. A
//!   member polled in a later generation than the one it registered in first
//!   wakes the member behind it ([`Link::on_poll`]), then registers again if
//!   it still waits. So every member is polled once per generation: a
//!   generation costs O(members) polls and never spins.
//! - A member registers once per generation and stays registered in it,
//!   whatever waker it is polled with afterwards. (It must not rely on
//!   [`Waker::will_wake`] to notice a "changed" waker: executors may hand a
//!   fresh, equivalent waker on every poll, and re-registering then would
//!   start a generation per poll, a wake storm.) The waker in the chain is the
//!   one of its registering poll; for the executors that hand out equivalent
//!   wakers it wakes the same task.
//! - A member that leaves while registered in the current generation (it got
//!   what it waited for another way, or was dropped) makes the members behind
//!   it unreachable, so leaving starts a new generation too.

use core::task::Waker;

use crate::wakes::Wakes;

/// The head of a wake chain (see the module docs).
#[derive(Default)]
pub(crate) struct Chain {
    generation: u32,
    head: Option<Waker>,
}

/// A member's place in a [`Chain`].
#[derive(Default)]
pub(crate) struct Link {
    /// The generation this member registered in.
    registered: Option<u32>,
    /// The chain's head before this member registered.
    next: Option<Waker>,
}

impl Chain {
    pub(crate) const fn new() -> Self {
        Chain {
            generation: 0,
            head: None,
        }
    }

    /// Starts a new generation: every member will be polled once.
    pub(crate) fn broadcast(&mut self, wakes: &mut Wakes) {
        self.generation = self.generation.wrapping_add(1);
        wakes.push(self.head.take());
    }
}

impl Link {
    /// First thing on every poll of a member: in a later generation than its
    /// registration, pass the wake on (it is then unregistered).
    pub(crate) fn on_poll(&mut self, chain: &Chain, wakes: &mut Wakes) {
        if self.registered.is_some_and(|g| g != chain.generation) {
            wakes.push(self.next.take());
            self.registered = None;
        }
    }

    /// Registers `waker` in the current generation, unless already registered in it.
    pub(crate) fn register(&mut self, chain: &mut Chain, waker: &Waker) {
        if self.registered == Some(chain.generation) {
            return;
        }
        self.next = chain.head.replace(waker.clone());
        self.registered = Some(chain.generation);
    }

    /// Leaves the chain (done waiting, or dropped).
    pub(crate) fn leave(&mut self, chain: &mut Chain, wakes: &mut Wakes) {
        if self.registered.take() == Some(chain.generation) {
            chain.broadcast(wakes);
        }
        wakes.push(self.next.take());
    }

    /// Whether this member is registered in the current generation.
    #[cfg(test)]
    pub(crate) fn is_registered(&self, chain: &Chain) -> bool {
        self.registered == Some(chain.generation)
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::vec::Vec;

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// `n` members, each with a wake counter; a fresh waker on every poll.
    struct World {
        chain: Chain,
        links: Vec<Link>,
        counts: Vec<Arc<Counter>>,
        seen: Vec<usize>,
    }

    impl World {
        fn new(n: usize) -> Self {
            World {
                chain: Chain::new(),
                links: (0..n).map(|_| Link::default()).collect(),
                counts: (0..n)
                    .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
                    .collect(),
                seen: std::vec![0; n],
            }
        }
        fn poll(&mut self, i: usize) {
            let mut wakes = Wakes::new();
            self.links[i].on_poll(&self.chain, &mut wakes);
            let waker = Waker::from(Arc::new(Forward(self.counts[i].clone())));
            self.links[i].register(&mut self.chain, &waker);
            wakes.wake();
        }
        /// Polls woken members until quiet; the number of polls.
        fn run(&mut self) -> usize {
            let mut polls = 0;
            loop {
                let woken: Vec<usize> = (0..self.links.len())
                    .filter(|&i| self.counts[i].0.load(Ordering::SeqCst) != self.seen[i])
                    .collect();
                if woken.is_empty() {
                    return polls;
                }
                for i in woken {
                    self.seen[i] = self.counts[i].0.load(Ordering::SeqCst);
                    self.poll(i);
                    polls += 1;
                }
                assert!(polls < 10_000, "wake storm");
            }
        }
    }

    /// A fresh waker (a new `Arc`) that wakes the same counter: `will_wake`
    /// says false although it is equivalent.
    struct Forward(Arc<Counter>);
    impl Wake for Forward {
        fn wake(self: Arc<Self>) {
            self.0.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    #[test]
    fn a_broadcast_polls_every_member_once_even_with_fresh_wakers() {
        let mut w = World::new(20);
        for i in 0..20 {
            w.poll(i);
        }
        assert_eq!(w.run(), 0, "registering wakes nobody");
        let mut wakes = Wakes::new();
        w.chain.broadcast(&mut wakes);
        wakes.wake();
        assert_eq!(w.run(), 20);
        assert!(w.links.iter().all(|l| l.is_registered(&w.chain)));
    }

    #[test]
    fn polling_again_in_a_generation_wakes_nobody() {
        let mut w = World::new(5);
        for _ in 0..3 {
            for i in 0..5 {
                w.poll(i);
            }
        }
        assert_eq!(w.run(), 0);
    }

    #[test]
    fn a_member_leaving_from_the_middle_strands_nobody() {
        let mut w = World::new(6);
        for i in 0..6 {
            w.poll(i);
        }
        let mut wakes = Wakes::new();
        let mut gone = core::mem::take(&mut w.links[2]);
        gone.leave(&mut w.chain, &mut wakes);
        wakes.wake();
        // Everyone but the one that left re-registers in the new generation.
        w.counts.remove(2);
        w.links.remove(2);
        w.seen.remove(2);
        let polls = w.run();
        assert!(polls <= 6, "{polls}");
        assert!(w.links.iter().all(|l| l.is_registered(&w.chain)));
        let mut wakes = Wakes::new();
        w.chain.broadcast(&mut wakes);
        wakes.wake();
        assert_eq!(w.run(), 5);
    }
}
