//! The duplicate-request table (`kernel/module/dups.c`, SPEC §3).
//!
//! Entries are keyed by the exact module name. A *first* request (a waiting
//! request whose name is not in the table) adds a pending entry and runs the
//! helper; duplicates either return 0 at once (nowait) or wait for the entry's
//! result. Every request that ran a helper announces its result; the first
//! announcement completes a pending entry, which then lingers for
//! `dedup_linger` answering every new request for that name.
//!
//! Storage is fixed: `N` entries and `W` waiter records. A pending entry exists
//! only while its first request holds a slot, so with `N >= max_concurrent`
//! there is always room: when the table is full the lingering entry that
//! finished longest ago is dropped early (which only costs an extra helper run).
//! A waiting duplicate also holds a slot, so `W >= max_concurrent` waiter
//! records always suffice. The result is written into each waiter's own record
//! when the entry completes, so a waiter never misses it, even if the entry is
//! dropped before the waiter runs again.

#[cfg(test)]
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

#[cfg(test)]
use embassy_sync::blocking_mutex::Mutex;
#[cfg(test)]
use embassy_sync::blocking_mutex::raw::RawMutex;

use crate::ModuleName;

struct Entry {
    name: ModuleName,
    id: u32,
    /// The kernel integer of the first announced result, and when it came.
    done: Option<(i32, Duration)>,
}

struct Record {
    key: u32,
    entry: u32,
    waker: Option<Waker>,
    result: Option<i32>,
}

/// Entries are only ever appended or replaced in place, so `hashes[i]` and
/// `order[i]` describe `entries[i]`; kept apart so the scans of a lookup and
/// of an eviction run over small contiguous arrays.
pub(crate) struct State<const N: usize, const W: usize> {
    entries: heapless::Vec<Entry, N>,
    /// [`name_hash`] of each entry's name, compared before the bytes.
    hashes: [u32; N],
    /// Completion number of each finished entry; `PENDING` while pending.
    order: [u32; N],
    /// `(index, completion number)` of finished entries, oldest first. An item
    /// whose entry has since been replaced (its `order` differs) is stale and
    /// skipped, so the oldest finished entry is found without a scan.
    completed: heapless::Deque<(u16, u32), N>,
    records: heapless::Vec<Record, W>,
    next_id: u32,
    next_key: u32,
    /// The next completion number.
    finished: u32,
}

/// `order` of an entry that has no result yet.
const PENDING: u32 = u32::MAX;

/// A first request's own entry, so that it announces without a search.
#[derive(Clone, Copy)]
pub(crate) struct First {
    index: usize,
    id: u32,
}

/// What step 7 decided for a request.
pub(crate) enum Lookup {
    /// Not a duplicate and not tracked (a nowait request, dedup off, or no room).
    Untracked,
    /// Not a duplicate; this request is the entry's first and must announce.
    First(First),
    /// A duplicate that returns at once with this kernel integer (nowait: 0, or
    /// an entry that already has its result).
    Done(i32),
    /// A duplicate that waits; poll [`Dups::wait`] with this key.
    Wait(u32),
}

/// The table under a mutex of its own, for the unit tests. `N` entries, `W`
/// waiter records. (`Kmod` keeps a [`State`] inside its one mutex, next to
/// the rest of its state, so that a request takes fewer locks: see
/// [`DupLock`].)
#[cfg(test)]
pub(crate) struct Dups<M: RawMutex, const N: usize, const W: usize> {
    state: Mutex<M, RefCell<State<N, W>>>,
}

/// Where a table's [`State`] lives and how it is locked: in its own mutex
/// ([`Dups`]), or as part of a larger state under one lock (`Kmod`).
pub(crate) trait DupLock<const N: usize, const W: usize> {
    /// Runs `f` on the state with the lock held.
    fn with_dups<R>(&self, f: impl FnOnce(&mut State<N, W>) -> R) -> R;
}

/// Wakers of the waiters an announcement released, to wake once unlocked.
pub(crate) type DupWakes<const W: usize> = heapless::Vec<Waker, W>;

/// Wakes every waker in `wakes`.
pub(crate) fn wake_all<const W: usize>(wakes: &mut DupWakes<W>) {
    // pop(), not `for w in wakes`: that would move the whole array first.
    while let Some(w) = wakes.pop() {
        w.wake();
    }
}

/// FNV-1a: a cheap filter so a lookup compares names only on a likely match.
pub(crate) fn name_hash(name: &ModuleName) -> u32 {
    name.as_bytes().iter().fold(0x811c_9dc5_u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

impl Entry {
    /// Whether the entry has lingered its time and is gone (the kernel's
    /// delayed delete). Expired entries are skipped by lookups and reused.
    fn expired(&self, now: Duration, linger: Duration) -> bool {
        matches!(self.done, Some((_, at)) if now.saturating_sub(at) >= linger)
    }
}

impl<const N: usize, const W: usize> State<N, W> {
    fn find(&self, hash: u32, name: &ModuleName) -> Option<usize> {
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
            .find(|&i| self.entries.get(i).is_some_and(|e| e.name == *name))
    }

    /// Where a new entry goes: a free place, or the place of the finished entry
    /// that finished longest ago (expired ones finished longest ago). `None` if
    /// every entry is still pending.
    fn place_for_new(&mut self) -> Option<usize> {
        if !self.entries.is_full() {
            return Some(self.entries.len());
        }
        while let Some((i, seq)) = self.completed.pop_front() {
            let i = usize::from(i);
            if self.order.get(i) == Some(&seq) {
                return Some(i);
            }
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
}

impl<const N: usize, const W: usize> State<N, W> {
    const INDEX_FITS: () = assert!(N <= 1 << 16, "at most 65536 duplicate-table entries");

    /// An empty table.
    pub(crate) const fn new() -> Self {
        let () = Self::INDEX_FITS;
        State {
            entries: heapless::Vec::new(),
            hashes: [0; N],
            order: [PENDING; N],
            completed: heapless::Deque::new(),
            records: heapless::Vec::new(),
            next_id: 0,
            next_key: 0,
            finished: 0,
        }
    }

    /// Step 7. `Untracked` if `name` is new and `wait` is false; `First` if it
    /// is new and `wait` is true (an entry is added); otherwise a duplicate.
    /// `hash` is [`name_hash`] of `name` (computed before taking the lock).
    pub(crate) fn lookup(
        &mut self,
        name: &ModuleName,
        hash: u32,
        wait: bool,
        now: Duration,
        linger: Duration,
    ) -> Lookup {
        let s = self;
        let found = s.find(hash, name);
        let live = found
            .and_then(|i| s.entries.get(i))
            .filter(|e| !e.expired(now, linger))
            .map(|e| (e.id, e.done));
        match live {
            None if !wait => Lookup::Untracked,
            None => {
                // An expired entry of this name is replaced in place.
                let Some(at) = found.or_else(|| s.place_for_new()) else {
                    // Every entry is pending: cannot happen while N >= the
                    // slots (each pending entry's first request holds one).
                    return Lookup::Untracked;
                };
                let id = s.next_id;
                s.next_id = s.next_id.wrapping_add(1);
                let entry = Entry {
                    name: name.clone(),
                    id,
                    done: None,
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
                Lookup::First(First { index: at, id })
            }
            Some(_) if !wait => Lookup::Done(0),
            Some((_, Some((ret, _)))) => Lookup::Done(ret),
            Some((id, None)) => {
                let key = s.next_key;
                s.next_key = s.next_key.wrapping_add(1);
                let record = Record {
                    key,
                    entry: id,
                    waker: None,
                    result: None,
                };
                match s.records.push(record) {
                    Ok(()) => Lookup::Wait(key),
                    // Unreachable while W >= max_concurrent: every waiting
                    // duplicate holds a slot. Degrade to an untracked run.
                    Err(_) => Lookup::Untracked,
                }
            }
        }
    }

    /// Step 9: the result of a helper run for `name` (from the entry's first
    /// request, or from an untracked one). Completes the entry if it is pending
    /// and hands its waiters' wakers to `wakes` (to wake once unlocked);
    /// ignored otherwise.
    pub(crate) fn announce(
        &mut self,
        name: &ModuleName,
        first: Option<First>,
        ret: i32,
        now: Duration,
        wakes: &mut DupWakes<W>,
    ) {
        let s = self;
        let index = match first {
            // A first request's entry cannot have been replaced: it is pending
            // until this very announcement.
            Some(f) => Some(f.index).filter(|&i| s.entries.get(i).is_some_and(|e| e.id == f.id)),
            None => s.find(name_hash(name), name),
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
        entry.done = Some((ret, now));
        let id = entry.id;
        s.finish(i);
        for r in s.records.iter_mut().filter(|r| r.entry == id) {
            r.result = Some(ret);
            if let Some(w) = r.waker.take() {
                // Cannot fail: at most W records.
                let _ = wakes.push(w);
            }
        }
    }

    /// `(live entries, pending entries, waiter records)` at `now`.
    pub(crate) fn usage(&self, now: Duration, linger: Duration) -> (usize, usize, usize) {
        let live = self
            .entries
            .iter()
            .filter(|e| !e.expired(now, linger))
            .count();
        let pending = self.entries.iter().filter(|e| e.done.is_none()).count();
        (live, pending, self.records.len())
    }

    /// One poll of a waiter with `key`: its result once announced (the record
    /// is then gone), else registers `waker`.
    fn poll_wait(&mut self, key: u32, waker: &Waker) -> Poll<i32> {
        let Some(i) = self.records.iter().position(|r| r.key == key) else {
            // Already taken (polled after completion).
            return Poll::Pending;
        };
        let Some(record) = self.records.get_mut(i) else {
            return Poll::Pending;
        };
        if let Some(ret) = record.result {
            self.records.swap_remove(i);
            return Poll::Ready(ret);
        }
        if !record.waker.as_ref().is_some_and(|w| w.will_wake(waker)) {
            record.waker = Some(waker.clone());
        }
        Poll::Pending
    }

    /// Withdraws the waiter with `key`, if it is still there.
    fn withdraw(&mut self, key: u32) {
        if let Some(i) = self.records.iter().position(|r| r.key == key) {
            self.records.swap_remove(i);
        }
    }
}

#[cfg(test)]
impl<M: RawMutex, const N: usize, const W: usize> Dups<M, N, W> {
    pub(crate) const fn new() -> Self {
        Dups {
            state: Mutex::new(RefCell::new(State::new())),
        }
    }

    /// [`State::lookup`] under this table's own lock.
    pub(crate) fn lookup(
        &self,
        name: &ModuleName,
        wait: bool,
        now: Duration,
        linger: Duration,
    ) -> Lookup {
        let hash = name_hash(name);
        self.with_dups(|s| s.lookup(name, hash, wait, now, linger))
    }

    /// [`State::announce`] under this table's own lock, then the wakes.
    pub(crate) fn announce(
        &self,
        name: &ModuleName,
        first: Option<First>,
        ret: i32,
        now: Duration,
    ) {
        let mut wakes = DupWakes::<W>::new();
        self.with_dups(|s| s.announce(name, first, ret, now, &mut wakes));
        wake_all(&mut wakes);
    }

    /// `(live entries, pending entries, waiter records)` at `now`.
    pub(crate) fn usage(&self, now: Duration, linger: Duration) -> (usize, usize, usize) {
        self.with_dups(|s| s.usage(now, linger))
    }
}

#[cfg(test)]
impl<M: RawMutex, const N: usize, const W: usize> DupLock<N, W> for Dups<M, N, W> {
    fn with_dups<R>(&self, f: impl FnOnce(&mut State<N, W>) -> R) -> R {
        self.state.lock(|s| f(&mut s.borrow_mut()))
    }
}

/// Waits for the result for a [`Lookup::Wait`] key in the table under
/// `lock`. Dropping the future withdraws the waiter.
pub(crate) fn wait<L: DupLock<N, W>, const N: usize, const W: usize>(
    lock: &L,
    key: u32,
) -> DupWait<'_, L, N, W> {
    DupWait { dups: lock, key }
}

/// The future of [`wait`].
pub(crate) struct DupWait<'a, L: DupLock<N, W>, const N: usize, const W: usize> {
    dups: &'a L,
    key: u32,
}

impl<L: DupLock<N, W>, const N: usize, const W: usize> Future for DupWait<'_, L, N, W> {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let key = self.key;
        self.dups.with_dups(|s| s.poll_wait(key, cx.waker()))
    }
}

impl<L: DupLock<N, W>, const N: usize, const W: usize> Drop for DupWait<'_, L, N, W> {
    fn drop(&mut self) {
        let key = self.key;
        self.dups.with_dups(|s| s.withdraw(key));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;

    type Table = Dups<CriticalSectionRawMutex, 3, 4>;
    const LINGER: Duration = Duration::from_secs(60);

    fn name(s: &str) -> ModuleName {
        ModuleName::new(s).unwrap()
    }

    fn secs(s: u64) -> Duration {
        Duration::from_secs(s)
    }

    #[test]
    fn nowait_first_request_is_not_tracked() {
        let t = Table::new();
        assert!(matches!(
            t.lookup(&name("a"), false, secs(0), LINGER),
            Lookup::Untracked
        ));
        assert!(matches!(
            t.lookup(&name("a"), true, secs(0), LINGER),
            Lookup::First(_)
        ));
        assert_eq!(t.usage(secs(0), LINGER), (1, 1, 0));
    }

    #[test]
    fn entry_lingers_sixty_seconds_then_goes() {
        let t = Table::new();
        assert!(matches!(
            t.lookup(&name("a"), true, secs(0), LINGER),
            Lookup::First(_)
        ));
        t.announce(&name("a"), None, 256, secs(1));
        assert!(matches!(
            t.lookup(&name("a"), true, secs(60), LINGER),
            Lookup::Done(256)
        ));
        assert!(matches!(
            t.lookup(&name("a"), false, secs(60), LINGER),
            Lookup::Done(0)
        ));
        assert!(matches!(
            t.lookup(&name("a"), true, secs(61), LINGER),
            Lookup::First(_)
        ));
    }

    #[test]
    fn only_the_first_announcement_counts() {
        let t = Table::new();
        assert!(matches!(
            t.lookup(&name("a"), true, secs(0), LINGER),
            Lookup::First(_)
        ));
        t.announce(&name("a"), None, -2, secs(0));
        t.announce(&name("a"), None, 0, secs(0));
        t.announce(&name("zzz"), None, 0, secs(0));
        assert!(matches!(
            t.lookup(&name("a"), true, secs(1), LINGER),
            Lookup::Done(-2)
        ));
    }

    #[test]
    fn full_table_drops_the_oldest_finished_entry() {
        let t = Table::new();
        for n in ["a", "b", "c"] {
            assert!(matches!(
                t.lookup(&name(n), true, secs(0), LINGER),
                Lookup::First(_)
            ));
        }
        t.announce(&name("c"), None, 0, secs(5));
        t.announce(&name("a"), None, 0, secs(8));
        // "c" finished first; pending "b" is never dropped.
        assert!(matches!(
            t.lookup(&name("d"), true, secs(11), LINGER),
            Lookup::First(_)
        ));
        assert!(matches!(
            t.lookup(&name("a"), false, secs(11), LINGER),
            Lookup::Done(0)
        ));
        assert!(matches!(
            t.lookup(&name("b"), false, secs(11), LINGER),
            Lookup::Done(0)
        ));
        assert!(matches!(
            t.lookup(&name("c"), false, secs(11), LINGER),
            Lookup::Untracked
        ));
    }

    #[test]
    fn a_replaced_entrys_completion_is_skipped_when_evicting() {
        let t = Table::new();
        let short = secs(10);
        for n in ["a", "b", "c"] {
            assert!(matches!(
                t.lookup(&name(n), true, secs(0), short),
                Lookup::First(_)
            ));
        }
        t.announce(&name("a"), None, 1, secs(1));
        t.announce(&name("b"), None, 2, secs(2));
        // "a" expired: a new "a" replaces it in place; its old completion is stale.
        assert!(matches!(
            t.lookup(&name("a"), true, secs(20), short),
            Lookup::First(_)
        ));
        t.announce(&name("c"), None, 3, secs(21));
        // Full: the oldest finished live entry is "b" (the stale "a" item is skipped).
        assert!(matches!(
            t.lookup(&name("d"), true, secs(22), LINGER),
            Lookup::First(_)
        ));
        assert!(matches!(
            t.lookup(&name("b"), false, secs(22), LINGER),
            Lookup::Untracked
        ));
        assert!(matches!(
            t.lookup(&name("a"), false, secs(22), LINGER),
            Lookup::Done(0)
        ));
        assert!(matches!(
            t.lookup(&name("c"), true, secs(22), LINGER),
            Lookup::Done(3)
        ));
    }

    #[test]
    fn completion_numbers_wrap_without_losing_the_order() {
        let t = Table::new();
        t.with_dups(|s| s.finished = PENDING - 2);
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            assert!(matches!(
                t.lookup(&name(n), true, secs(0), LINGER),
                Lookup::First(_)
            ));
            t.announce(&name(n), None, i as i32, secs(i as u64));
        }
        // a and b got the last two numbers, c wrapped: a is still the oldest.
        for (evicted, new) in [("a", "d"), ("b", "e"), ("c", "f")] {
            assert!(matches!(
                t.lookup(&name(new), true, secs(5), LINGER),
                Lookup::First(_)
            ));
            assert!(matches!(
                t.lookup(&name(evicted), false, secs(5), LINGER),
                Lookup::Untracked
            ));
            t.announce(&name(new), None, 0, secs(5));
        }
    }

    #[test]
    fn table_of_pending_entries_degrades_to_untracked() {
        let t = Table::new();
        for n in ["a", "b", "c"] {
            assert!(matches!(
                t.lookup(&name(n), true, secs(0), LINGER),
                Lookup::First(_)
            ));
        }
        assert!(matches!(
            t.lookup(&name("d"), true, secs(0), LINGER),
            Lookup::Untracked
        ));
    }
}
