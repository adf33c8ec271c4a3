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

use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;

use embassy_sync::blocking_mutex::Mutex;
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

struct State<const N: usize, const W: usize> {
    entries: heapless::Vec<Entry, N>,
    records: heapless::Vec<Record, W>,
    next_id: u32,
    next_key: u32,
}

/// What step 7 decided for a request.
pub(crate) enum Lookup {
    /// Not a duplicate and not tracked (a nowait request, dedup off, or no room).
    Untracked,
    /// Not a duplicate; this request is the entry's first and must announce.
    First,
    /// A duplicate that returns at once with this kernel integer (nowait: 0, or
    /// an entry that already has its result).
    Done(i32),
    /// A duplicate that waits; poll [`Dups::wait`] with this key.
    Wait(u32),
}

/// The table. `N` entries, `W` waiter records.
pub(crate) struct Dups<M: RawMutex, const N: usize, const W: usize> {
    state: Mutex<M, RefCell<State<N, W>>>,
}

impl<M: RawMutex, const N: usize, const W: usize> Dups<M, N, W> {
    pub(crate) const fn new() -> Self {
        Dups {
            state: Mutex::new(RefCell::new(State {
                entries: heapless::Vec::new(),
                records: heapless::Vec::new(),
                next_id: 0,
                next_key: 0,
            })),
        }
    }

    /// Step 7. `Untracked` if `name` is new and `wait` is false; `First` if it
    /// is new and `wait` is true (an entry is added); otherwise a duplicate.
    pub(crate) fn lookup(
        &self,
        name: &ModuleName,
        wait: bool,
        now: Duration,
        linger: Duration,
    ) -> Lookup {
        self.state.lock(|s| {
            let mut s = s.borrow_mut();
            // Entries whose linger is over are gone (the kernel's delayed delete).
            s.entries
                .retain(|e| !matches!(e.done, Some((_, at)) if now.saturating_sub(at) >= linger));
            let found = s
                .entries
                .iter()
                .find(|e| e.name == *name)
                .map(|e| (e.id, e.done));
            match found {
                None if !wait => Lookup::Untracked,
                None => {
                    if s.entries.is_full() {
                        // Drop the lingering entry that finished longest ago.
                        let oldest = s
                            .entries
                            .iter()
                            .enumerate()
                            .filter_map(|(i, e)| e.done.map(|(_, at)| (at, i)))
                            .min()
                            .map(|(_, i)| i);
                        match oldest {
                            Some(i) => {
                                s.entries.swap_remove(i);
                            }
                            None => return Lookup::Untracked,
                        }
                    }
                    let id = s.next_id;
                    s.next_id = s.next_id.wrapping_add(1);
                    let entry = Entry {
                        name: name.clone(),
                        id,
                        done: None,
                    };
                    match s.entries.push(entry) {
                        Ok(()) => Lookup::First,
                        Err(_) => Lookup::Untracked,
                    }
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
        })
    }

    /// Step 9: the result of a helper run for `name`. Completes the entry if it
    /// is pending and wakes its waiters; ignored otherwise.
    pub(crate) fn announce(&self, name: &ModuleName, ret: i32, now: Duration) {
        let mut wakes: heapless::Vec<Waker, W> = heapless::Vec::new();
        self.state.lock(|s| {
            let mut s = s.borrow_mut();
            let Some(entry) = s
                .entries
                .iter_mut()
                .find(|e| e.name == *name && e.done.is_none())
            else {
                return;
            };
            entry.done = Some((ret, now));
            let id = entry.id;
            for r in s.records.iter_mut().filter(|r| r.entry == id) {
                r.result = Some(ret);
                if let Some(w) = r.waker.take() {
                    // Cannot fail: at most W records.
                    let _ = wakes.push(w);
                }
            }
        });
        for w in wakes {
            w.wake();
        }
    }

    /// Waits for the result for a [`Lookup::Wait`] key. Dropping the future
    /// withdraws the waiter.
    pub(crate) fn wait(&self, key: u32) -> DupWait<'_, M, N, W> {
        DupWait { dups: self, key }
    }

    /// `(entries, pending entries, waiter records)`.
    pub(crate) fn usage(&self) -> (usize, usize, usize) {
        self.state.lock(|s| {
            let s = s.borrow();
            let pending = s.entries.iter().filter(|e| e.done.is_none()).count();
            (s.entries.len(), pending, s.records.len())
        })
    }
}

/// The future of [`Dups::wait`].
pub(crate) struct DupWait<'a, M: RawMutex, const N: usize, const W: usize> {
    dups: &'a Dups<M, N, W>,
    key: u32,
}

impl<M: RawMutex, const N: usize, const W: usize> Future for DupWait<'_, M, N, W> {
    type Output = i32;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<i32> {
        let key = self.key;
        self.dups.state.lock(|s| {
            let mut s = s.borrow_mut();
            let Some(i) = s.records.iter().position(|r| r.key == key) else {
                // Already taken (polled after completion).
                return Poll::Pending;
            };
            let Some(record) = s.records.get_mut(i) else {
                return Poll::Pending;
            };
            if let Some(ret) = record.result {
                s.records.swap_remove(i);
                return Poll::Ready(ret);
            }
            if !record
                .waker
                .as_ref()
                .is_some_and(|w| w.will_wake(cx.waker()))
            {
                record.waker = Some(cx.waker().clone());
            }
            Poll::Pending
        })
    }
}

impl<M: RawMutex, const N: usize, const W: usize> Drop for DupWait<'_, M, N, W> {
    fn drop(&mut self) {
        let key = self.key;
        self.dups.state.lock(|s| {
            let mut s = s.borrow_mut();
            if let Some(i) = s.records.iter().position(|r| r.key == key) {
                s.records.swap_remove(i);
            }
        });
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
            Lookup::First
        ));
        assert_eq!(t.usage(), (1, 1, 0));
    }

    #[test]
    fn entry_lingers_sixty_seconds_then_goes() {
        let t = Table::new();
        assert!(matches!(
            t.lookup(&name("a"), true, secs(0), LINGER),
            Lookup::First
        ));
        t.announce(&name("a"), 256, secs(1));
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
            Lookup::First
        ));
    }

    #[test]
    fn only_the_first_announcement_counts() {
        let t = Table::new();
        assert!(matches!(
            t.lookup(&name("a"), true, secs(0), LINGER),
            Lookup::First
        ));
        t.announce(&name("a"), -2, secs(0));
        t.announce(&name("a"), 0, secs(0));
        t.announce(&name("zzz"), 0, secs(0));
        assert!(matches!(
            t.lookup(&name("a"), true, secs(1), LINGER),
            Lookup::Done(-2)
        ));
    }

    #[test]
    fn full_table_drops_the_oldest_finished_entry() {
        let t = Table::new();
        for (i, n) in ["a", "b", "c"].iter().enumerate() {
            assert!(matches!(
                t.lookup(&name(n), true, secs(0), LINGER),
                Lookup::First
            ));
            if *n != "b" {
                t.announce(&name(n), 0, secs(10 - i as u64));
            }
        }
        // "c" finished at 8 s, before "a" at 10 s: "c" goes; pending "b" stays.
        assert!(matches!(
            t.lookup(&name("d"), true, secs(11), LINGER),
            Lookup::First
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
    fn table_of_pending_entries_degrades_to_untracked() {
        let t = Table::new();
        for n in ["a", "b", "c"] {
            assert!(matches!(
                t.lookup(&name(n), true, secs(0), LINGER),
                Lookup::First
            ));
        }
        assert!(matches!(
            t.lookup(&name("d"), true, secs(0), LINGER),
            Lookup::Untracked
        ));
    }
}
