//! The duplicate-request table (`kernel/module/dups.c`, SPEC §3).
//!
//! Entries are keyed by the exact module name. A *first* request (a waiting
//! request whose name is not in the table) adds a pending entry and runs the
//! helper; duplicates either return 0 at once (nowait) or wait for the entry's
//! result. Every request that ran a helper announces its result; the first
//! announcement completes a pending entry, which then lingers for the time
//! the announcer gives (`dedup_linger`; with the "no caching of transient
//! results" policy, zero for a transient result and `failure_linger` for a
//! failure), answering every new request for that name.
//!
//! Storage is fixed: `ENTRIES` entries. Any number of duplicates can wait for
//! one entry: their wakers form a [`Chain`] that lives in the waiting futures,
//! and the entry counts them. An entry whose result has been announced keeps
//! it until every duplicate that waited has read it, whatever its linger
//! time, so a waiter never misses its result. A pending entry exists only
//! while its first request runs (or, with duplicates holding no slot, waits
//! for a slot); when the table is full, the finished entry that finished
//! longest ago and has no waiter left is dropped early, which only costs an
//! extra helper run. If every entry is pending or still being read, a new
//! name is not tracked (it runs its own helper).

#[cfg(test)]
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;

#[cfg(test)]
use embassy_sync::blocking_mutex::Mutex;
#[cfg(test)]
use embassy_sync::blocking_mutex::raw::RawMutex;

use crate::chain::{Chain, Link};
use crate::wakes::Wakes;
use crate::{ModuleName, RequestId};

struct Entry<const NAME: usize> {
    name: ModuleName<NAME>,
    id: u32,
    /// The request that made it, whose result it gives.
    first: RequestId,
    /// The kernel integer of the first announced result, and until when it
    /// answers new requests.
    done: Option<(i32, Duration)>,
    /// Duplicates waiting for (or woken with, and not yet having read) the result.
    waiting: u32,
    /// Their wakers.
    chain: Chain,
}

/// Entries are only ever appended or replaced in place, so `hashes[i]` and
/// `order[i]` describe `entries[i]`; kept apart so the scans of a lookup and
/// of an eviction run over small contiguous arrays.
pub(crate) struct State<const ENTRIES: usize, const NAME: usize> {
    entries: heapless::Vec<Entry<NAME>, ENTRIES>,
    /// [`name_hash`] of each entry's name, compared before the bytes.
    hashes: [u32; ENTRIES],
    /// Completion number of each finished entry; `PENDING` while pending.
    order: [u32; ENTRIES],
    /// `(index, completion number)` of finished entries, oldest first. An item
    /// whose entry has since been replaced (its `order` differs) is stale and
    /// skipped, so the oldest finished entry is found without a scan.
    completed: heapless::Deque<(u16, u32), ENTRIES>,
    next_id: u32,
    /// The next completion number.
    finished: u32,
}

/// `order` of an entry that has no result yet.
const PENDING: u32 = u32::MAX;

/// A first request's own entry, so that it announces without a search.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct First {
    index: u16,
    id: u32,
}

#[cfg(test)]
impl First {
    pub(crate) fn for_tests(index: u16) -> Self {
        First { index, id: 0 }
    }
    pub(crate) fn index_for_tests(self) -> u16 {
        self.index
    }
}

/// A waiting duplicate's entry.
#[derive(Clone, Copy)]
pub(crate) struct Waiting {
    index: u16,
    id: u32,
}

/// What step 7 decided for a request.
pub(crate) enum Lookup {
    /// Not a duplicate and not tracked (a nowait request, dedup off, or no room).
    Untracked,
    /// Not a duplicate; this request is the entry's first and must announce.
    First(First),
    /// A duplicate of request `first` that returns at once with this kernel
    /// integer (nowait: 0, or an entry that already has its result).
    Done(i32, RequestId),
    /// A duplicate of request `first` that waits: poll [`wait`] with this.
    Wait(Waiting, RequestId),
}

/// The table under a mutex of its own, for the unit tests. (`Kmod` keeps a
/// [`State`] inside its one mutex, next to the rest of its state: see
/// [`DupLock`].)
#[cfg(test)]
pub(crate) struct Dups<M: RawMutex, const ENTRIES: usize> {
    state: Mutex<M, RefCell<State<ENTRIES, { crate::MODULE_NAME_LEN }>>>,
}

/// Where a table's [`State`] lives and how it is locked: in its own mutex
/// ([`Dups`]), or as part of a larger state under one lock (`Kmod`).
pub(crate) trait DupLock<const ENTRIES: usize, const NAME: usize> {
    /// Runs `f` on the state with the lock held.
    fn with_dups<R>(&self, f: impl FnOnce(&mut State<ENTRIES, NAME>) -> R) -> R;
}

/// The name of the entry a first request made (loop detection reads it).
pub(crate) fn name_of<const E: usize, const N: usize>(
    s: &State<E, N>,
    first: First,
) -> Option<&str> {
    s.entries
        .get(usize::from(first.index))
        .filter(|e| e.id == first.id)
        .map(|e| e.name.as_str())
}

/// FNV-1a: a cheap filter so a lookup compares names only on a likely match.
pub(crate) fn name_hash(name: &[u8]) -> u32 {
    name.iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl<const NAME: usize> Entry<NAME> {
    /// Whether the entry no longer answers new requests (the kernel's
    /// delayed delete).
    fn expired(&self, now: Duration) -> bool {
        matches!(self.done, Some((_, until)) if now >= until)
    }

    /// Whether its place may be given to another entry.
    fn reusable(&self, now: Duration) -> bool {
        self.expired(now) && self.waiting == 0
    }
}

impl<const ENTRIES: usize, const NAME: usize> State<ENTRIES, NAME> {
    /// The index of an entry named `name` for which `keep` holds.
    fn find(&self, hash: u32, name: &str, keep: impl Fn(&Entry<NAME>) -> bool) -> Option<usize> {
        let hashes = self.hashes.get(..self.entries.len()).unwrap_or_default();
        // One branch-free pass over every hash (vectorised): most lookups
        // are for a name that is not there. Only on a hit, find it and
        // compare the bytes of the candidates.
        if !hashes.iter().fold(false, |hit, &h| hit | (h == hash)) {
            return None;
        }
        hashes
            .iter()
            .enumerate()
            .filter(|&(_, &h)| h == hash)
            .map(|(i, _)| i)
            .find(|&i| {
                self.entries
                    .get(i)
                    .is_some_and(|e| e.name.as_str() == name && keep(e))
            })
    }

    /// Where a new entry goes: a free place, or the place of the finished
    /// entry that finished longest ago and has no waiter left. `None` if there
    /// is none.
    fn place_for_new(&mut self) -> Option<usize> {
        if !self.entries.is_full() {
            return Some(self.entries.len());
        }
        // Each item is looked at once: one still being read goes to the back.
        for _ in 0..self.completed.len() {
            let (i, seq) = self.completed.pop_front()?;
            let i = usize::from(i);
            if self.order.get(i) != Some(&seq) {
                continue;
            }
            if self.entries.get(i).is_some_and(|e| e.waiting > 0) {
                let _ = self.completed.push_back((i as u16, seq));
                continue;
            }
            return Some(i);
        }
        None
    }

    /// Marks entry `i` finished, in completion order.
    fn finish(&mut self, i: usize) {
        let Ok(index) = u16::try_from(i) else {
            return;
        };
        if self.finished == PENDING {
            // After 2^32 - 1 completions: renumber from 0, keeping the order.
            self.finished = 0;
            let completed = core::mem::take(&mut self.completed);
            for (j, old) in completed {
                if let Some(o) = self.order.get_mut(usize::from(j)).filter(|o| **o == old) {
                    *o = self.finished;
                    let _ = self.completed.push_back((j, self.finished));
                    self.finished += 1;
                }
            }
        }
        if self.completed.is_full() {
            // Only stale items can fill it: at most N - 1 entries are finished
            // while this one was pending. Drop the stale ones.
            for (j, seq) in core::mem::take(&mut self.completed) {
                if self.order.get(usize::from(j)) == Some(&seq) {
                    let _ = self.completed.push_back((j, seq));
                }
            }
        }
        if let Some(o) = self.order.get_mut(i) {
            *o = self.finished;
            let _ = self.completed.push_back((index, self.finished));
            self.finished += 1;
        }
    }

    const INDEX_FITS: () = assert!(ENTRIES <= 1 << 16, "at most 65536 duplicate-table entries");

    /// An empty table.
    pub(crate) const fn new() -> Self {
        let () = Self::INDEX_FITS;
        State {
            entries: heapless::Vec::new(),
            hashes: [0; ENTRIES],
            order: [PENDING; ENTRIES],
            completed: heapless::Deque::new(),
            next_id: 0,
            finished: 0,
        }
    }

    /// Step 7 for request `request`. `Untracked` if `name` is new and `wait`
    /// is false; `First` if it is new and `wait` is true (an entry is added);
    /// otherwise a duplicate. `hash` is [`name_hash`] of `name` (computed
    /// before taking the lock).
    pub(crate) fn lookup(
        &mut self,
        name: &ModuleName<NAME>,
        hash: u32,
        wait: bool,
        now: Duration,
        request: RequestId,
    ) -> Lookup {
        let s = self;
        let live = s
            .find(hash, name.as_str(), |e| !e.expired(now))
            .and_then(|i| Some((i, s.entries.get(i)?.done, s.entries.get(i)?.first)));
        match live {
            None if !wait => Lookup::Untracked,
            None => {
                // An old entry of this name that nobody reads is reused in place.
                let place = s
                    .find(hash, name.as_str(), |e| e.reusable(now))
                    .or_else(|| s.place_for_new());
                let Some(at) = place else {
                    return Lookup::Untracked;
                };
                let Ok(index) = u16::try_from(at) else {
                    return Lookup::Untracked;
                };
                let id = s.next_id;
                s.next_id = s.next_id.wrapping_add(1);
                let entry = Entry {
                    name: name.clone(),
                    id,
                    first: request,
                    done: None,
                    waiting: 0,
                    chain: Chain::new(),
                };
                match s.entries.get_mut(at) {
                    Some(slot) => *slot = entry,
                    None => {
                        if s.entries.push(entry).is_err() {
                            return Lookup::Untracked;
                        }
                    }
                }
                if let Some(h) = s.hashes.get_mut(at) {
                    *h = hash;
                }
                if let Some(o) = s.order.get_mut(at) {
                    // Any completion item of the replaced entry is now stale.
                    *o = PENDING;
                }
                Lookup::First(First { index, id })
            }
            Some((_, _, first)) if !wait => Lookup::Done(0, first),
            Some((_, Some((ret, _)), first)) => Lookup::Done(ret, first),
            Some((i, None, first)) => {
                let Some(e) = s.entries.get_mut(i) else {
                    return Lookup::Untracked;
                };
                e.waiting += 1;
                Lookup::Wait(
                    Waiting {
                        index: i as u16,
                        id: e.id,
                    },
                    first,
                )
            }
        }
    }

    /// Step 9: the result of a helper run for `name` (from the entry's first
    /// request, or from an untracked one). Completes the entry if it is
    /// pending, to answer new requests for `linger`, and wakes its waiters
    /// (into `wakes`, to wake once unlocked); ignored otherwise.
    pub(crate) fn announce(
        &mut self,
        name: &str,
        first: Option<First>,
        ret: i32,
        now: Duration,
        linger: Duration,
        wakes: &mut Wakes,
    ) {
        let s = self;
        let index = match first {
            // A first request's entry cannot have been replaced: it is pending
            // until this very announcement.
            Some(f) => Some(usize::from(f.index))
                .filter(|&i| s.entries.get(i).is_some_and(|e| e.id == f.id)),
            None => s.find(name_hash(name.as_bytes()), name, |e| e.done.is_none()),
        };
        let Some(i) = index else {
            return;
        };
        let Some(entry) = s.entries.get_mut(i) else {
            return;
        };
        if entry.done.is_some() {
            return;
        }
        entry.done = Some((ret, now.saturating_add(linger)));
        entry.chain.broadcast(wakes);
        s.finish(i);
    }

    /// `(live entries, pending entries, waiting duplicates)` at `now`.
    pub(crate) fn usage(&self, now: Duration) -> (usize, usize, usize) {
        let live = self.entries.iter().filter(|e| !e.expired(now)).count();
        let pending = self.entries.iter().filter(|e| e.done.is_none()).count();
        let waiting = self.entries.iter().map(|e| e.waiting as usize).sum();
        (live, pending, waiting)
    }

    fn entry_mut(&mut self, at: Waiting) -> Option<&mut Entry<NAME>> {
        self.entries
            .get_mut(usize::from(at.index))
            .filter(|e| e.id == at.id)
    }
}

#[cfg(test)]
impl<M: RawMutex, const ENTRIES: usize> Dups<M, ENTRIES> {
    pub(crate) const fn new() -> Self {
        Dups {
            state: Mutex::new(RefCell::new(State::new())),
        }
    }

    /// [`State::lookup`] under this table's own lock.
    pub(crate) fn lookup(&self, name: &ModuleName, wait: bool, now: Duration) -> Lookup {
        let hash = name_hash(name.as_bytes());
        self.with_dups(|s| s.lookup(name, hash, wait, now, RequestId::new(0)))
    }

    /// [`State::announce`] under this table's own lock, then the wakes.
    pub(crate) fn announce(
        &self,
        name: &ModuleName,
        first: Option<First>,
        ret: i32,
        now: Duration,
        linger: Duration,
    ) {
        let mut wakes = Wakes::new();
        self.with_dups(|s| s.announce(name.as_str(), first, ret, now, linger, &mut wakes));
        wakes.wake();
    }

    /// `(live entries, pending entries, waiting duplicates)` at `now`.
    pub(crate) fn usage(&self, now: Duration) -> (usize, usize, usize) {
        self.with_dups(|s| s.usage(now))
    }
}

#[cfg(test)]
impl<M: RawMutex, const ENTRIES: usize> DupLock<ENTRIES, { crate::MODULE_NAME_LEN }>
    for Dups<M, ENTRIES>
{
    fn with_dups<R>(
        &self,
        f: impl FnOnce(&mut State<ENTRIES, { crate::MODULE_NAME_LEN }>) -> R,
    ) -> R {
        self.state.lock(|s| f(&mut s.borrow_mut()))
    }
}

/// Waits for the result of the entry a [`Lookup::Wait`] named, in the table
/// under `lock`. Dropping the future withdraws the waiter.
pub(crate) fn wait<L: DupLock<ENTRIES, NAME>, const ENTRIES: usize, const NAME: usize>(
    lock: &L,
    at: Waiting,
) -> DupWait<'_, L, ENTRIES, NAME> {
    DupWait {
        dups: lock,
        at,
        link: Link::default(),
        done: false,
    }
}

/// The future of [`wait`]: the kernel integer the entry's first request announced.
pub(crate) struct DupWait<'a, L: DupLock<ENTRIES, NAME>, const ENTRIES: usize, const NAME: usize> {
    dups: &'a L,
    at: Waiting,
    link: Link,
    done: bool,
}

impl<L: DupLock<E, N>, const E: usize, const N: usize> Future for DupWait<'_, L, E, N> {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let this = self.get_mut();
        if this.done {
            return Poll::Pending;
        }
        let mut wakes = Wakes::new();
        let (at, link) = (this.at, &mut this.link);
        let ready = this.dups.with_dups(|s| {
            // Cannot be gone: an entry someone waits for is never reused.
            let e = s.entry_mut(at)?;
            link.on_poll(&e.chain, &mut wakes);
            match e.done {
                Some((ret, _)) => {
                    e.waiting -= 1;
                    link.leave(&mut e.chain, &mut wakes);
                    Some(ret)
                }
                None => {
                    link.register(&mut e.chain, cx.waker());
                    None
                }
            }
        });
        wakes.wake();
        match ready {
            Some(ret) => {
                this.done = true;
                Poll::Ready(ret)
            }
            None => Poll::Pending,
        }
    }
}

impl<L: DupLock<E, N>, const E: usize, const N: usize> Drop for DupWait<'_, L, E, N> {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        let mut wakes = Wakes::new();
        let (at, link) = (self.at, &mut self.link);
        self.dups.with_dups(|s| {
            if let Some(e) = s.entry_mut(at) {
                e.waiting -= 1;
                link.leave(&mut e.chain, &mut wakes);
            }
        });
        wakes.wake();
    }
}

#[cfg(test)]
mod tests {
    extern crate std;

    use super::*;
    use core::task::Waker;
    use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::task::Wake;
    use std::vec::Vec;

    type Table = Dups<CriticalSectionRawMutex, 3>;
    const LINGER: Duration = Duration::from_secs(60);

    fn name(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    fn first(t: &Table, n: &str, now: Duration) -> First {
        match t.lookup(&name(n), true, now) {
            Lookup::First(f) => f,
            _ => panic!("{n} is not new"),
        }
    }

    fn waiting(t: &Table, n: &str, now: Duration) -> Waiting {
        match t.lookup(&name(n), true, now) {
            Lookup::Wait(w, _) => w,
            _ => panic!("{n} is not pending"),
        }
    }

    struct Counter(AtomicUsize);
    impl Wake for Counter {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Polls `fut` once with a fresh waker counting into `c`.
    fn poll_once<F: Future + Unpin>(fut: &mut F, c: &Arc<Counter>) -> Poll<F::Output> {
        struct Fresh(Arc<Counter>);
        impl Wake for Fresh {
            fn wake(self: Arc<Self>) {
                self.0.0.fetch_add(1, Ordering::SeqCst);
            }
        }
        let waker = Waker::from(Arc::new(Fresh(c.clone())));
        Pin::new(fut).poll(&mut Context::from_waker(&waker))
    }

    #[test]
    fn nowait_first_request_is_not_tracked() {
        let t = Table::new();
        assert!(matches!(
            t.lookup(&name("a"), false, secs(0)),
            Lookup::Untracked
        ));
        first(&t, "a", secs(0));
        assert_eq!(t.usage(secs(0)), (1, 1, 0));
    }

    #[test]
    fn entry_lingers_its_time_then_goes() {
        let t = Table::new();
        first(&t, "a", secs(0));
        t.announce(&name("a"), None, 256, secs(1), LINGER);
        assert!(matches!(
            t.lookup(&name("a"), true, secs(60)),
            Lookup::Done(256, _)
        ));
        assert!(matches!(
            t.lookup(&name("a"), false, secs(60)),
            Lookup::Done(0, _)
        ));
        first(&t, "a", secs(61));
        // A linger of zero: gone at once.
        t.announce(&name("a"), None, -62, secs(61), Duration::ZERO);
        first(&t, "a", secs(61));
    }

    #[test]
    fn only_the_first_announcement_counts() {
        let t = Table::new();
        first(&t, "a", secs(0));
        t.announce(&name("a"), None, -2, secs(0), LINGER);
        t.announce(&name("a"), None, 0, secs(0), LINGER);
        t.announce(&name("zzz"), None, 0, secs(0), LINGER);
        assert!(matches!(
            t.lookup(&name("a"), true, secs(1)),
            Lookup::Done(-2, _)
        ));
    }

    #[test]
    fn any_number_of_waiters_get_the_result_even_if_it_lingers_zero() {
        let t = Table::new();
        let f = first(&t, "a", secs(0));
        let counters: Vec<Arc<Counter>> = (0..100)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let mut waits: Vec<_> = (0..100)
            .map(|_| wait(&t, waiting(&t, "a", secs(0))))
            .collect();
        for (w, c) in waits.iter_mut().zip(&counters) {
            assert!(poll_once(w, c).is_pending());
            // Polled again (a fresh waker each time): no storm, no wake.
            assert!(poll_once(w, c).is_pending());
        }
        assert!(counters.iter().all(|c| c.0.load(Ordering::SeqCst) == 0));
        assert_eq!(t.usage(secs(0)).2, 100);
        // A transient result: gone for new requests at once, but every waiter reads it.
        t.announce(&name("a"), Some(f), -512, secs(1), Duration::ZERO);
        first(&t, "a", secs(1));
        let mut polls = 0;
        let mut results = std::vec![None; 100];
        while results.iter().any(Option::is_none) {
            for (i, (w, c)) in waits.iter_mut().zip(&counters).enumerate() {
                if results[i].is_none() && c.0.swap(0, Ordering::SeqCst) > 0 {
                    polls += 1;
                    if let Poll::Ready(r) = poll_once(w, c) {
                        results[i] = Some(r);
                    }
                }
            }
            assert!(polls <= 100, "each waiter is woken once");
        }
        assert!(results.iter().all(|r| *r == Some(-512)));
        assert_eq!(t.usage(secs(1)).2, 0);
    }

    #[test]
    fn a_waiter_that_leaves_strands_nobody_and_frees_its_count() {
        let t = Table::new();
        let f = first(&t, "a", secs(0));
        let c: Vec<Arc<Counter>> = (0..3)
            .map(|_| Arc::new(Counter(AtomicUsize::new(0))))
            .collect();
        let mut w0 = wait(&t, waiting(&t, "a", secs(0)));
        let mut w1 = wait(&t, waiting(&t, "a", secs(0)));
        let mut w2 = wait(&t, waiting(&t, "a", secs(0)));
        assert!(poll_once(&mut w0, &c[0]).is_pending());
        assert!(poll_once(&mut w1, &c[1]).is_pending());
        assert!(poll_once(&mut w2, &c[2]).is_pending());
        drop(w1); // from the middle of the chain
        assert_eq!(t.usage(secs(0)).2, 2);
        // Those woken by the leave re-register.
        for (w, i) in [(&mut w0, 0), (&mut w2, 2)] {
            if c[i].0.swap(0, Ordering::SeqCst) > 0 {
                assert!(poll_once(w, &c[i]).is_pending());
            }
        }
        t.announce(&name("a"), Some(f), 7, secs(1), LINGER);
        let mut done = [false; 2];
        for _ in 0..4 {
            for (k, (w, i)) in [(&mut w0, 0), (&mut w2, 2)].into_iter().enumerate() {
                if !done[k] && c[i].0.swap(0, Ordering::SeqCst) > 0 {
                    done[k] = poll_once(w, &c[i]) == Poll::Ready(7);
                }
            }
        }
        assert_eq!(done, [true, true]);
    }

    #[test]
    fn an_entry_being_read_is_not_reused() {
        let t = Table::new();
        let fa = first(&t, "a", secs(0));
        let mut w = wait(&t, waiting(&t, "a", secs(0)));
        first(&t, "b", secs(0));
        first(&t, "c", secs(0));
        t.announce(&name("a"), Some(fa), 1, secs(1), Duration::ZERO);
        t.announce(&name("b"), None, 2, secs(1), LINGER);
        // Full: "a" finished first but its waiter has not read it; "b" goes.
        first(&t, "d", secs(2));
        assert!(matches!(
            t.lookup(&name("b"), false, secs(2)),
            Lookup::Untracked
        ));
        let c = Arc::new(Counter(AtomicUsize::new(0)));
        assert_eq!(poll_once(&mut w, &c), Poll::Ready(1));
    }

    #[test]
    fn full_table_drops_the_oldest_finished_entry() {
        let t = Table::new();
        for n in ["a", "b", "c"] {
            first(&t, n, secs(0));
        }
        t.announce(&name("c"), None, 0, secs(5), LINGER);
        t.announce(&name("a"), None, 0, secs(8), LINGER);
        // "c" finished first; pending "b" is never dropped.
        first(&t, "d", secs(11));
        assert!(matches!(
            t.lookup(&name("a"), false, secs(11)),
            Lookup::Done(0, _)
        ));
        assert!(matches!(
            t.lookup(&name("b"), false, secs(11)),
            Lookup::Done(0, _)
        ));
        assert!(matches!(
            t.lookup(&name("c"), false, secs(11)),
            Lookup::Untracked
        ));
    }

    #[test]
    fn a_replaced_entrys_completion_is_skipped_when_evicting() {
        let t = Table::new();
        let short = secs(10);
        for n in ["a", "b", "c"] {
            first(&t, n, secs(0));
        }
        t.announce(&name("a"), None, 1, secs(1), short);
        t.announce(&name("b"), None, 2, secs(2), LINGER);
        // "a" expired: a new "a" replaces it in place; its old completion is stale.
        first(&t, "a", secs(20));
        t.announce(&name("c"), None, 3, secs(21), LINGER);
        // Full: the oldest finished live entry is "b" (the stale "a" item is skipped).
        first(&t, "d", secs(22));
        assert!(matches!(
            t.lookup(&name("b"), false, secs(22)),
            Lookup::Untracked
        ));
        assert!(matches!(
            t.lookup(&name("a"), false, secs(22)),
            Lookup::Done(0, _)
        ));
        assert!(matches!(
            t.lookup(&name("c"), true, secs(22)),
            Lookup::Done(3, _)
        ));
    }

    #[test]
    fn completion_numbers_wrap_without_losing_the_order() {
        let t = Table::new();
        t.with_dups(|s| s.finished = PENDING - 2);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            first(&t, n, secs(0));
            t.announce(&name(n), None, i as i32, secs(i as u64), LINGER);
        }
        // a and b got the last two numbers, c wrapped: a is still the oldest.
        for (evicted, new) in [("a", "d"), ("b", "e"), ("c", "f")] {
            first(&t, new, secs(5));
            assert!(matches!(
                t.lookup(&name(evicted), false, secs(5)),
                Lookup::Untracked
            ));
            t.announce(&name(new), None, 0, secs(5), LINGER);
        }
    }

    #[test]
    fn table_of_pending_entries_degrades_to_untracked() {
        let t = Table::new();
        for n in ["a", "b", "c"] {
            first(&t, n, secs(0));
        }
        assert!(matches!(
            t.lookup(&name("d"), true, secs(0)),
            Lookup::Untracked
        ));
    }
}
