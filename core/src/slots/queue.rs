//! The FIFO of queued slot waiters: a ring buffer in ticket order.

use core::task::Waker;

/// A queued waiter.
pub(super) struct Waiter {
    pub(super) ticket: u64,
    pub(super) waker: Option<Waker>,
    pub(super) granted: bool,
}

/// The FIFO of queued waiters: a ring buffer in ticket order. Slots are
/// handed out and taken at its front, where removing is O(1), and a ticket
/// is found by binary search.
pub(super) struct Queue<const Q: usize> {
    ring: [Option<Waiter>; Q],
    /// Where index 0 (the oldest ticket) is in `ring`.
    head: usize,
    len: usize,
    /// Waiters handed a slot that have not taken it yet.
    granted: usize,
}

impl<const Q: usize> Queue<Q> {
    pub(super) const fn new() -> Self {
        Queue {
            ring: [const { None }; Q],
            head: 0,
            len: 0,
            granted: 0,
        }
    }

    pub(super) fn is_full(&self) -> bool {
        self.len == Q
    }

    /// Waiters not handed a slot.
    pub(super) fn waiting(&self) -> usize {
        self.len - self.granted
    }

    /// Position in `ring` of index `i`.
    fn at(&self, i: usize) -> usize {
        (self.head + i) % Q
    }

    pub(super) fn get(&self, i: usize) -> Option<&Waiter> {
        if i >= self.len {
            return None;
        }
        self.ring.get(self.at(i))?.as_ref()
    }

    pub(super) fn get_mut(&mut self, i: usize) -> Option<&mut Waiter> {
        if i >= self.len {
            return None;
        }
        let at = self.at(i);
        self.ring.get_mut(at)?.as_mut()
    }

    /// Moves the entry at ring position `from` to ring position `to`.
    fn shift(&mut self, from: usize, to: usize) {
        let w = self.ring.get_mut(from).and_then(Option::take);
        if let Some(slot) = self.ring.get_mut(to) {
            *slot = w;
        }
    }

    /// The first index whose ticket is `>= ticket` (tickets ascend).
    pub(super) fn lower_bound(&self, ticket: u64) -> usize {
        let (mut lo, mut hi) = (0, self.len);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            if self.get(mid).is_some_and(|w| w.ticket < ticket) {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        lo
    }

    /// The index of `ticket`.
    pub(super) fn find(&self, ticket: u64) -> Option<usize> {
        let i = self.lower_bound(ticket);
        self.get(i).is_some_and(|w| w.ticket == ticket).then_some(i)
    }

    /// Inserts `w` in ticket order (callers check for room first: if full,
    /// `w` is dropped), moving whichever side of it is shorter.
    pub(super) fn insert(&mut self, w: Waiter) {
        if self.is_full() {
            return;
        }
        let i = self.lower_bound(w.ticket);
        if i < self.len - i {
            // Indices 0..i move one place towards the front.
            self.head = (self.head + Q - 1) % Q;
            for j in 0..i {
                self.shift(self.at(j + 1), self.at(j));
            }
        } else {
            // Indices i..len move one place towards the back (room: len < Q).
            for j in (i..self.len).rev() {
                self.shift(self.at(j), self.at(j + 1));
            }
        }
        self.granted += usize::from(w.granted);
        let at = self.at(i);
        if let Some(slot) = self.ring.get_mut(at) {
            *slot = Some(w);
        }
        self.len += 1;
    }

    /// Removes index `i`, moving whichever side of it is shorter.
    pub(super) fn remove(&mut self, i: usize) -> Option<Waiter> {
        if i >= self.len {
            return None;
        }
        let at = self.at(i);
        let w = self.ring.get_mut(at).and_then(Option::take);
        if i < self.len - 1 - i {
            // Indices 0..i move one place towards the back.
            for j in (0..i).rev() {
                self.shift(self.at(j), self.at(j + 1));
            }
            self.head = (self.head + 1) % Q;
        } else {
            for j in i + 1..self.len {
                self.shift(self.at(j), self.at(j - 1));
            }
        }
        self.len -= 1;
        if w.as_ref().is_some_and(|w| w.granted) {
            self.granted -= 1;
        }
        w
    }

    /// Hands a slot to the oldest waiter that has none: its waker, to wake.
    pub(super) fn grant_oldest(&mut self) -> Option<Option<Waker>> {
        if self.waiting() == 0 {
            return None;
        }
        // Granted entries sit near the front until their owners take them.
        let i = (0..self.len).find(|&i| self.get(i).is_some_and(|w| !w.granted))?;
        let w = self.get_mut(i)?;
        w.granted = true;
        let waker = w.waker.take();
        self.granted += 1;
        Some(waker)
    }

    /// The index of the youngest waiter that has no slot.
    pub(super) fn youngest_waiting(&self) -> Option<usize> {
        if self.waiting() == 0 {
            return None;
        }
        (0..self.len)
            .rev()
            .find(|&i| self.get(i).is_some_and(|w| !w.granted))
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use std::vec::Vec;

    /// The ring buffer against a `Vec` model: random inserts (in ticket
    /// order, anywhere), removals from anywhere, hand-outs, lookups, with the
    /// ring's start wandering all around it.
    #[test]
    fn queue_matches_a_sorted_vec() {
        let mut q = Queue::<7>::new();
        let mut model: Vec<(u64, bool)> = Vec::new();
        let mut x: u64 = 0x2545_F491_4F6C_DD1D;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..200_000 {
            match rand(4) {
                0 | 1 if model.len() < 7 => {
                    let ticket = rand(1000);
                    if model.iter().any(|&(t, _)| t == ticket) {
                        continue;
                    }
                    q.insert(Waiter {
                        ticket,
                        waker: None,
                        granted: false,
                    });
                    let at = model.partition_point(|&(t, _)| t < ticket);
                    model.insert(at, (ticket, false));
                }
                2 if !model.is_empty() => {
                    let i = rand(model.len() as u64) as usize;
                    let w = q.remove(i).expect("in range");
                    assert_eq!((w.ticket, w.granted), model.remove(i));
                }
                _ => {
                    let granted = q.grant_oldest().is_some();
                    let first = model.iter_mut().find(|(_, g)| !*g);
                    assert_eq!(granted, first.is_some());
                    if let Some((_, g)) = first {
                        *g = true;
                    }
                }
            }
            assert_eq!(q.len, model.len());
            assert_eq!(q.waiting(), model.iter().filter(|(_, g)| !*g).count());
            let got: Vec<(u64, bool)> = (0..q.len)
                .map(|i| q.get(i).map(|w| (w.ticket, w.granted)).expect("in range"))
                .collect();
            assert_eq!(got, model);
            for (i, &(t, _)) in model.iter().enumerate() {
                assert_eq!(q.find(t), Some(i));
            }
            assert_eq!(q.find(1000), None);
            assert_eq!(q.youngest_waiting(), model.iter().rposition(|(_, g)| !*g));
        }
    }
}
