//! Bounded concurrency: the kernel's `kmod_concurrent_max` semaphore with its
//! 5 s `down_timeout` (SPEC §2 step 5).
//!
//! # Semantics
//!
//! - A request takes a slot at once when one is free and nobody waits.
//! - Otherwise it waits, first come first served: a released slot is handed
//!   directly to the oldest waiter (as the kernel's `up()` does), so a newcomer
//!   can never take it from under a waiter.
//! - A waiter whose deadline passes fails, unless the slot was handed to it
//!   first: a hand-off always wins over the timeout, as in `down_timeout`.
//! - Dropping a waiting future withdraws it; if a slot had already been handed
//!   to it, the slot goes on to the next waiter.
//!
//! # How an unbounded number of waiters fits in a bounded queue
//!
//! Without a heap and without `unsafe` (no intrusive lists), waker storage is
//! bounded: the queue holds `Q` waiters. `embassy_sync`'s `FairSemaphore` fails
//! with `WaitQueueFull` beyond that; a request must never fail for that reason.
//! So waiters beyond `Q` wait in an overflow **lobby**:
//!
//! - The lobby stores no per-waiter state in the semaphore, only a count and
//!   one waker, the head of a chain: each lobby future keeps the waker that
//!   was at the head before it registered, so the chain of all lobby wakers
//!   lives in the waiting futures themselves.
//! - When the lobby must be looked at (queue room opened, a lobby member left,
//!   a slot became free with nobody queued), the semaphore starts a new
//!   *generation* and wakes the head; every woken member wakes the next one in
//!   its chain and registers again in the new generation. Each member is polled
//!   once per generation, so a generation costs O(lobby) polls and never spins.
//! - A lobby member enters the queue when there is room, in ticket order: if the
//!   queue is full but holds a younger ticket that has not been granted yet,
//!   the older lobby member takes its place and the younger one moves to the
//!   lobby. So the queue always converges to the `Q` oldest waiters and slots
//!   are handed out in arrival order, except for the moment between a slot
//!   being handed out and an older lobby member having been polled.
//! - Every waiter keeps its own deadline wherever it waits: a lobby member gets a
//!   slot in time or fails with `-ETIME` at its deadline, exactly like a queued one.

#[cfg(test)]
use core::cell::RefCell;
use core::future::{Future, poll_fn};
use core::pin::{Pin, pin};
use core::task::{Context, Poll, Waker};
use core::time::Duration;

#[cfg(test)]
use embassy_sync::blocking_mutex::Mutex;
#[cfg(test)]
use embassy_sync::blocking_mutex::raw::RawMutex;

use crate::Platform;

/// A counting semaphore with FIFO hand-off, a deadline, and an overflow
/// lobby, under a mutex of its own, for the unit tests. (`Kmod` keeps a
/// [`State`] inside its one mutex, next to the rest of its state, so that a
/// request takes fewer locks: see [`SlotLock`].)
#[cfg(test)]
pub(crate) struct Slots<M: RawMutex, const Q: usize> {
    state: Mutex<M, RefCell<State<Q>>>,
}

/// Where a semaphore's [`State`] lives and how it is locked: in its own
/// mutex ([`Slots`]), or as part of a larger state under one lock (`Kmod`).
pub(crate) trait SlotLock<const Q: usize> {
    /// Runs `f` on the state with the lock held. `f` must not wake wakers
    /// (they are collected and woken after the lock is released).
    fn with_slots<R>(&self, f: impl FnOnce(&mut State<Q>) -> R) -> R;
}

/// Runs `f` under `lock` and wakes what it handed over once the lock is released.
fn with<L: SlotLock<Q> + ?Sized, const Q: usize, R>(
    lock: &L,
    f: impl FnOnce(&mut State<Q>, &mut Wakes) -> R,
) -> R {
    let mut wakes = Wakes::new();
    let r = lock.with_slots(|s| f(s, &mut wakes));
    wakes.wake();
    r
}

/// A snapshot of the semaphore, for [`Stats`](crate::Stats) and tests.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct SlotUsage {
    /// Slots held, including ones handed to a waiter that has not run yet.
    pub held: usize,
    /// The highest `held` ever seen.
    pub peak: usize,
    /// Slots free.
    pub free: usize,
    /// Waiters in the queue that have not been handed a slot.
    pub queued: usize,
    /// Waiters in the overflow lobby.
    pub lobby: usize,
}

struct Waiter {
    ticket: u64,
    waker: Option<Waker>,
    granted: bool,
}

/// The FIFO of queued waiters: a ring buffer in ticket order. Slots are
/// handed out and taken at its front, where removing is O(1), and a ticket
/// is found by binary search. (A `Vec` shifted all the others on every
/// hand-off and scanned for every ticket: with thousands of waiters, as the
/// `reqmod` CLI queues, that was half of a storm's CPU time.)
struct Queue<const Q: usize> {
    ring: [Option<Waiter>; Q],
    /// Where index 0 (the oldest ticket) is in `ring`.
    head: usize,
    len: usize,
    /// Waiters handed a slot that have not taken it yet.
    granted: usize,
}

impl<const Q: usize> Queue<Q> {
    const fn new() -> Self {
        Queue {
            ring: [const { None }; Q],
            head: 0,
            len: 0,
            granted: 0,
        }
    }

    fn is_full(&self) -> bool {
        self.len == Q
    }

    /// Waiters not handed a slot.
    fn waiting(&self) -> usize {
        self.len - self.granted
    }

    /// Position in `ring` of index `i`.
    fn at(&self, i: usize) -> usize {
        (self.head + i) % Q
    }

    fn get(&self, i: usize) -> Option<&Waiter> {
        if i >= self.len {
            return None;
        }
        self.ring.get(self.at(i))?.as_ref()
    }

    fn get_mut(&mut self, i: usize) -> Option<&mut Waiter> {
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
    fn lower_bound(&self, ticket: u64) -> usize {
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
    fn find(&self, ticket: u64) -> Option<usize> {
        let i = self.lower_bound(ticket);
        self.get(i).is_some_and(|w| w.ticket == ticket).then_some(i)
    }

    /// Inserts `w` in ticket order (callers check for room first: if full,
    /// `w` is dropped), moving whichever side of it is shorter.
    fn insert(&mut self, w: Waiter) {
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
    fn remove(&mut self, i: usize) -> Option<Waiter> {
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
    fn grant_oldest(&mut self) -> Option<Option<Waker>> {
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
    fn youngest_waiting(&self) -> Option<usize> {
        if self.waiting() == 0 {
            return None;
        }
        (0..self.len)
            .rev()
            .find(|&i| self.get(i).is_some_and(|w| !w.granted))
    }
}

/// The semaphore's state (see the module docs).
pub(crate) struct State<const Q: usize> {
    free: usize,
    held: usize,
    peak: usize,
    next_ticket: u64,
    queue: Queue<Q>,
    lobby: usize,
    lobby_gen: u32,
    lobby_head: Option<Waker>,
}

/// Wakers to wake once the lock is released.
pub(crate) struct Wakes(heapless::Vec<Waker, 4>);

impl Wakes {
    pub(crate) fn new() -> Self {
        Wakes(heapless::Vec::new())
    }

    fn push(&mut self, waker: Option<Waker>) {
        if let Some(w) = waker
            && let Err(w) = self.0.push(w)
        {
            // More hand-offs than expected in one step: wake now rather than lose it.
            w.wake();
        }
    }

    /// Wakes them all. (By reference and inlined: usually there are none,
    /// and a call that moves the array costs more than that check.)
    #[inline]
    pub(crate) fn wake(&mut self) {
        while let Some(w) = self.0.pop() {
            w.wake();
        }
    }
}

impl<const Q: usize> State<Q> {
    const QUEUE_NOT_EMPTY: () = assert!(Q >= 1, "the slot wait queue needs room for one waiter");

    /// `permits` free slots, nobody waiting.
    pub(crate) const fn new(permits: usize) -> Self {
        let () = Self::QUEUE_NOT_EMPTY;
        State {
            free: permits,
            held: 0,
            peak: 0,
            next_ticket: 0,
            queue: Queue::new(),
            lobby: 0,
            lobby_gen: 0,
            lobby_head: None,
        }
    }

    /// A snapshot for [`Stats`](crate::Stats).
    pub(crate) fn usage(&self) -> SlotUsage {
        SlotUsage {
            held: self.held,
            peak: self.peak,
            free: self.free,
            queued: self.queue.waiting(),
            lobby: self.lobby,
        }
    }

    fn find(&self, ticket: u64) -> Option<usize> {
        self.queue.find(ticket)
    }

    fn has_queued(&self) -> bool {
        self.queue.waiting() > 0
    }

    fn take_free(&mut self) {
        self.free -= 1;
        self.held += 1;
        self.peak = self.peak.max(self.held);
    }

    /// Hands free slots to the oldest queued waiters.
    fn dispatch(&mut self, wakes: &mut Wakes) {
        while self.free > 0 {
            let Some(waker) = self.queue.grant_oldest() else {
                break;
            };
            wakes.push(waker);
            self.take_free();
        }
    }

    /// Starts a new lobby generation: every lobby member will be polled once.
    fn broadcast(&mut self, wakes: &mut Wakes) {
        self.lobby_gen = self.lobby_gen.wrapping_add(1);
        wakes.push(self.lobby_head.take());
    }

    fn room_opened(&mut self, wakes: &mut Wakes) {
        if self.lobby > 0 {
            self.broadcast(wakes);
        }
    }

    pub(crate) fn release(&mut self, wakes: &mut Wakes) {
        self.held -= 1;
        self.free += 1;
        self.dispatch(wakes);
        if self.free > 0 {
            // Nobody queued took it; a lobby member may.
            self.room_opened(wakes);
        }
    }

    fn insert_sorted(&mut self, waiter: Waiter) {
        // Callers check for room first.
        self.queue.insert(waiter);
    }

    /// Removes and returns the granted entry for `ticket`, if any.
    fn take_granted(&mut self, ticket: u64, wakes: &mut Wakes) -> bool {
        match self.find(ticket) {
            Some(i) if self.queue.get(i).is_some_and(|w| w.granted) => {
                self.queue.remove(i);
                self.room_opened(wakes);
                true
            }
            _ => false,
        }
    }
}

/// A lobby member's link in the waker chain.
#[derive(Default)]
struct Link {
    /// The generation this member registered in, and the waker it registered.
    registered: Option<(u32, Waker)>,
    /// The waker that was the chain's head before this member registered.
    next: Option<Waker>,
}

impl Link {
    /// Called on every poll in the lobby: in a new generation, pass the wake on.
    fn on_poll<const Q: usize>(&mut self, s: &State<Q>, wakes: &mut Wakes) {
        if let Some((generation, _)) = &self.registered
            && *generation != s.lobby_gen
        {
            wakes.push(self.next.take());
            self.registered = None;
        }
    }

    fn register<const Q: usize>(&mut self, s: &mut State<Q>, waker: &Waker, wakes: &mut Wakes) {
        if let Some((generation, w)) = &self.registered {
            if *generation == s.lobby_gen && w.will_wake(waker) {
                return;
            }
            // Our task's waker changed while we are in the chain: start over.
            self.leave(s, wakes);
        }
        self.next = s.lobby_head.replace(waker.clone());
        self.registered = Some((s.lobby_gen, waker.clone()));
    }

    /// Leaving the lobby: the members behind us in the chain may be unreachable
    /// now, so start a new generation and pass our wake on.
    fn leave<const Q: usize>(&mut self, s: &mut State<Q>, wakes: &mut Wakes) {
        if self.registered.take().is_some() {
            s.broadcast(wakes);
        }
        wakes.push(self.next.take());
    }
}

#[cfg(test)]
impl<M: RawMutex, const Q: usize> Slots<M, Q> {
    pub(crate) const fn new(permits: usize) -> Self {
        Slots {
            state: Mutex::new(RefCell::new(State::new(permits))),
        }
    }

    /// A future that waits for a slot with no deadline.
    pub(crate) fn acquire(&self) -> Acquire<'_, Self, Q> {
        acquire(self)
    }

    pub(crate) fn usage(&self) -> SlotUsage {
        self.with_slots(|s| s.usage())
    }
}

#[cfg(test)]
impl<M: RawMutex, const Q: usize> SlotLock<Q> for Slots<M, Q> {
    fn with_slots<R>(&self, f: impl FnOnce(&mut State<Q>) -> R) -> R {
        self.state.lock(|s| f(&mut s.borrow_mut()))
    }
}

/// Waits for a slot of the semaphore under `lock`, FIFO, until `deadline` on
/// `platform`'s clock. `None` means the deadline passed first (`-ETIME`).
pub(crate) async fn acquire_until<'a, L: SlotLock<Q>, P: Platform, const Q: usize>(
    lock: &'a L,
    platform: &P,
    deadline: Duration,
) -> Option<SlotGuard<'a, L, Q>> {
    let mut acquire = acquire(lock);
    // Uncontended, a free slot is taken on the first poll: no timer is made.
    if let Poll::Ready(guard) = poll_fn(|cx| Poll::Ready(Pin::new(&mut acquire).poll(cx))).await {
        return Some(guard);
    }
    // It waits: now the platform's timer. The slot was polled just now, in
    // this same poll of the task, so the first round only arms the timer.
    let mut sleep = pin!(platform.sleep_until(deadline));
    let mut just_polled = true;
    poll_fn(|cx| {
        // The slot first: a hand-off wins over the timeout, as in `down_timeout`.
        if !core::mem::take(&mut just_polled)
            && let Poll::Ready(guard) = Pin::new(&mut acquire).poll(cx)
        {
            return Poll::Ready(Some(guard));
        }
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(acquire.cancel_or_take()),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// A future that waits for a slot of the semaphore under `lock`, with no deadline.
pub(crate) fn acquire<L: SlotLock<Q>, const Q: usize>(lock: &L) -> Acquire<'_, L, Q> {
    Acquire {
        slots: lock,
        step: Step::Start,
        link: Link::default(),
    }
}

/// A held slot; dropping it hands the slot to the oldest waiter.
pub(crate) struct SlotGuard<'a, L: SlotLock<Q>, const Q: usize> {
    slots: &'a L,
}

impl<L: SlotLock<Q>, const Q: usize> SlotGuard<'_, L, Q> {
    /// Releases the slot in `s`, the state this guard's lock guards, which
    /// the caller holds locked already (so that releasing takes no lock of
    /// its own); `wakes` are to be woken once it is unlocked.
    #[inline]
    pub(crate) fn release_in(self, s: &mut State<Q>, wakes: &mut Wakes) {
        s.release(wakes);
        core::mem::forget(self);
    }
}

impl<L: SlotLock<Q>, const Q: usize> Drop for SlotGuard<'_, L, Q> {
    fn drop(&mut self) {
        with(self.slots, |s, wakes| s.release(wakes));
    }
}

enum Step {
    Start,
    Waiting(u64),
    Done,
}

/// The future of [`acquire`]. Unpin; cancel-safe.
pub(crate) struct Acquire<'a, L: SlotLock<Q>, const Q: usize> {
    slots: &'a L,
    step: Step,
    link: Link,
}

impl<'a, L: SlotLock<Q>, const Q: usize> Acquire<'a, L, Q> {
    /// Gives up waiting, unless a slot was already handed over (then returns it).
    pub(crate) fn cancel_or_take(&mut self) -> Option<SlotGuard<'a, L, Q>> {
        let Step::Waiting(ticket) = self.step else {
            return None;
        };
        self.step = Step::Done;
        let slots = self.slots;
        let link = &mut self.link;
        let granted = with(slots, |s, wakes| match s.find(ticket) {
            Some(i) => {
                let w = s.queue.remove(i);
                s.room_opened(wakes);
                w.is_some_and(|w| w.granted)
            }
            None => {
                s.lobby -= 1;
                link.leave(s, wakes);
                false
            }
        });
        granted.then(|| SlotGuard { slots })
    }

    fn poll_waiting(
        &mut self,
        s: &mut State<Q>,
        ticket: u64,
        waker: &Waker,
        wakes: &mut Wakes,
    ) -> bool {
        if let Some(i) = s.find(ticket) {
            let Some(w) = s.queue.get_mut(i) else {
                return false;
            };
            if w.granted {
                s.queue.remove(i);
                s.room_opened(wakes);
                return true;
            }
            if !w.waker.as_ref().is_some_and(|old| old.will_wake(waker)) {
                w.waker = Some(waker.clone());
            }
            return false;
        }

        // In the lobby.
        self.link.on_poll(s, wakes);
        let me = Waiter {
            ticket,
            waker: Some(waker.clone()),
            granted: false,
        };
        if !s.queue.is_full() {
            s.lobby -= 1;
            self.link.leave(s, wakes);
            s.insert_sorted(me);
        } else {
            let younger = s
                .queue
                .youngest_waiting()
                .filter(|&i| s.queue.get(i).is_some_and(|w| w.ticket > ticket));
            let Some(i) = younger else {
                self.link.register(s, waker, wakes);
                return false;
            };
            // Swap places with the youngest queued waiter; it moves to the lobby
            // (lobby count unchanged) and learns so when its waker runs.
            let victim = s.queue.remove(i);
            wakes.push(victim.and_then(|v| v.waker));
            self.link.leave(s, wakes);
            s.insert_sorted(me);
        }
        s.dispatch(wakes);
        s.take_granted(ticket, wakes)
    }
}

impl<'a, L: SlotLock<Q>, const Q: usize> Future for Acquire<'a, L, Q> {
    type Output = SlotGuard<'a, L, Q>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let slots = this.slots;
        let ready = with(slots, |s, wakes| match this.step {
            Step::Done => false,
            Step::Start => {
                if s.free > 0 && s.lobby == 0 && !s.has_queued() {
                    s.take_free();
                    return true;
                }
                let ticket = s.next_ticket;
                s.next_ticket += 1;
                this.step = Step::Waiting(ticket);
                if s.lobby == 0 && !s.queue.is_full() {
                    // The newest ticket goes last.
                    s.insert_sorted(Waiter {
                        ticket,
                        waker: Some(cx.waker().clone()),
                        granted: false,
                    });
                    s.dispatch(wakes);
                    s.take_granted(ticket, wakes)
                } else {
                    s.lobby += 1;
                    this.link.register(s, cx.waker(), wakes);
                    false
                }
            }
            Step::Waiting(ticket) => this.poll_waiting(s, ticket, cx.waker(), wakes),
        });
        if ready {
            this.step = Step::Done;
            Poll::Ready(SlotGuard { slots })
        } else {
            Poll::Pending
        }
    }
}

impl<L: SlotLock<Q>, const Q: usize> Drop for Acquire<'_, L, Q> {
    fn drop(&mut self) {
        // A slot handed to us but never picked up goes on to the next waiter.
        drop(self.cancel_or_take());
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
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

    /// A waiter polled by hand, with a waker that counts its wakes.
    struct Task<'a, const Q: usize> {
        fut: Acquire<'a, Slots<CriticalSectionRawMutex, Q>, Q>,
        wakes: Arc<Counter>,
        guard: Option<SlotGuard<'a, Slots<CriticalSectionRawMutex, Q>, Q>>,
    }

    impl<'a, const Q: usize> Task<'a, Q> {
        fn new(slots: &'a Slots<CriticalSectionRawMutex, Q>) -> Self {
            Task {
                fut: slots.acquire(),
                wakes: Arc::new(Counter(AtomicUsize::new(0))),
                guard: None,
            }
        }
        fn woken(&self) -> usize {
            self.wakes.0.load(Ordering::SeqCst)
        }
        fn poll(&mut self) -> bool {
            if self.guard.is_some() {
                return true;
            }
            let waker = Waker::from(self.wakes.clone());
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(g) = Pin::new(&mut self.fut).poll(&mut cx) {
                self.guard = Some(g);
            }
            self.guard.is_some()
        }
    }

    /// Polls every task that has been woken since its last poll until quiet,
    /// like an executor; returns how many polls that took.
    fn run<const Q: usize>(tasks: &mut [Task<'_, Q>], seen: &mut Vec<usize>) -> usize {
        seen.resize(tasks.len(), 0);
        let mut polls = 0;
        loop {
            let mut progressed = false;
            for (i, t) in tasks.iter_mut().enumerate() {
                if t.woken() != seen[i] {
                    seen[i] = t.woken();
                    t.poll();
                    polls += 1;
                    progressed = true;
                }
            }
            if !progressed {
                return polls;
            }
            assert!(polls < 100_000, "wake storm");
        }
    }

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

    #[test]
    fn free_slots_are_taken_at_once_and_handed_over_fifo() {
        let slots = Slots::<CriticalSectionRawMutex, 8>::new(2);
        let mut tasks: Vec<_> = (0..5).map(|_| Task::new(&slots)).collect();
        let ready: Vec<bool> = tasks.iter_mut().map(Task::poll).collect();
        assert_eq!(ready, [true, true, false, false, false]);
        assert_eq!(slots.usage().queued, 3);
        let mut seen = Vec::new();
        run(&mut tasks, &mut seen);
        // Release the first holder: the oldest waiter (task 2) gets it.
        tasks[0].guard = None;
        run(&mut tasks, &mut seen);
        let holders: Vec<bool> = tasks.iter().map(|t| t.guard.is_some()).collect();
        assert_eq!(holders, [false, true, true, false, false]);
        tasks[1].guard = None;
        run(&mut tasks, &mut seen);
        assert!(tasks[3].guard.is_some() && tasks[4].guard.is_none());
        assert_eq!(slots.usage().held, 2);
        assert_eq!(slots.usage().peak, 2);
    }

    #[test]
    fn newcomer_cannot_barge_past_a_waiter() {
        let slots = Slots::<CriticalSectionRawMutex, 8>::new(1);
        let mut a = Task::new(&slots);
        let mut b = Task::new(&slots);
        assert!(a.poll());
        assert!(!b.poll());
        a.guard = None; // handed to b, which has not run yet
        let mut c = Task::new(&slots);
        assert!(!c.poll(), "the released slot belongs to b");
        assert!(b.poll());
    }

    #[test]
    fn cancelled_grantee_passes_the_slot_on() {
        let slots = Slots::<CriticalSectionRawMutex, 8>::new(1);
        let mut a = Task::new(&slots);
        let mut b = Task::new(&slots);
        let mut c = Task::new(&slots);
        assert!(a.poll());
        assert!(!b.poll());
        assert!(!c.poll());
        a.guard = None;
        drop(b); // granted, never polled
        assert!(c.poll());
        assert_eq!(slots.usage().held, 1);
    }

    #[test]
    fn timeout_loses_to_a_hand_off() {
        let slots = Slots::<CriticalSectionRawMutex, 8>::new(1);
        let mut a = Task::new(&slots);
        let mut b = Task::new(&slots);
        assert!(a.poll());
        assert!(!b.poll());
        a.guard = None;
        // b's deadline fires before it was polled: it still gets the slot.
        let held = b.fut.cancel_or_take();
        assert!(held.is_some());
        let mut c = Task::new(&slots);
        assert!(!c.poll());
        assert_eq!(c.fut.cancel_or_take().map(|_| ()), None);
        assert_eq!(slots.usage().queued, 0);
    }

    #[test]
    fn lobby_waiters_are_served_in_arrival_order() {
        // Queue of 2, 1 slot, 7 waiters: 5 of them overflow into the lobby.
        let slots = Slots::<CriticalSectionRawMutex, 2>::new(1);
        let mut tasks: Vec<_> = (0..8).map(|_| Task::new(&slots)).collect();
        for t in tasks.iter_mut() {
            t.poll();
        }
        assert_eq!(slots.usage().lobby, 5);
        let mut seen = Vec::new();
        let mut order = Vec::new();
        for _ in 0..8 {
            run(&mut tasks, &mut seen);
            let holder = tasks.iter().position(|t| t.guard.is_some()).unwrap();
            order.push(holder);
            tasks[holder].guard = None;
        }
        assert_eq!(order, [0, 1, 2, 3, 4, 5, 6, 7]);
        let u = slots.usage();
        assert_eq!((u.held, u.free, u.queued, u.lobby), (0, 1, 0, 0));
    }

    #[test]
    fn lobby_members_that_leave_do_not_strand_the_others() {
        let slots = Slots::<CriticalSectionRawMutex, 1>::new(1);
        let mut holder = Task::new(&slots);
        assert!(holder.poll());
        let mut tasks: Vec<_> = (0..6).map(|_| Task::new(&slots)).collect();
        for t in tasks.iter_mut() {
            assert!(!t.poll());
        }
        assert_eq!(slots.usage().lobby, 5);
        let mut seen = Vec::new();
        run(&mut tasks, &mut seen);
        // Cancel lobby members from the middle of the chain (its links live in them).
        let mut tasks: Vec<_> = tasks
            .into_iter()
            .enumerate()
            .filter(|(i, _)| *i != 2 && *i != 4)
            .map(|(_, t)| t)
            .collect();
        seen.clear();
        for t in tasks.iter_mut() {
            t.poll();
        }
        run(&mut tasks, &mut seen);
        assert_eq!(slots.usage().lobby, 3);
        holder.guard = None;
        let mut served = 0;
        for _ in 0..4 {
            run(&mut tasks, &mut seen);
            let i = tasks
                .iter()
                .position(|t| t.guard.is_some())
                .expect("someone holds the slot");
            tasks[i].guard = None;
            served += 1;
        }
        assert_eq!(served, 4);
        assert_eq!(slots.usage().lobby, 0);
        assert_eq!(slots.usage().free, 1);
    }

    #[test]
    fn a_generation_polls_each_lobby_member_about_once() {
        let slots = Slots::<CriticalSectionRawMutex, 1>::new(1);
        let mut tasks: Vec<_> = (0..42).map(|_| Task::new(&slots)).collect();
        for t in tasks.iter_mut() {
            t.poll();
        }
        assert_eq!(slots.usage().lobby, 40);
        let mut seen = Vec::new();
        run(&mut tasks, &mut seen);
        tasks[0].guard = None;
        let polls = run(&mut tasks, &mut seen);
        // One hand-off: the queued waiter runs, then one lobby generation
        // (each member once) admits the oldest lobby member, which starts one
        // more generation for the rest. Linear, not quadratic.
        assert!(polls <= 3 * 40, "{polls} polls for one hand-off");
        assert!(tasks[1].guard.is_some());
    }
}
