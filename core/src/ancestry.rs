//! Loop detection (SPEC §9): the requests whose helpers are running, each
//! with the request it runs on behalf of, so that a new request can walk its
//! ancestors and see its own name among them.
//!
//! An entry keeps no name of its own (that would be a name buffer per slot,
//! most of a `Kmod`'s memory): a waiting request with duplicate tracking on
//! is the first request of a duplicate-table entry, which holds its name
//! while it runs, so names are compared exactly there. Without the table
//! (dedup off) names are compared by a 64-bit hash, and the warning names
//! such an ancestor by its request id.

use core::fmt::Write as _;

use crate::RequestId;
use crate::dups::First;

/// A rendered ancestor chain for the warning: `fs-a -> fs-b -> fs-a`, cut
/// with `...` if longer than this.
pub(crate) type ChainText = heapless::String<256>;

struct Running {
    id: RequestId,
    parent: Option<RequestId>,
    hash: u64,
    /// Its duplicate-table entry, which holds its name.
    entry: Option<First>,
}

/// Requests running a helper (each holds a slot, so at most `SLOTS`).
pub(crate) struct Ancestry<const SLOTS: usize> {
    running: heapless::Vec<Running, SLOTS>,
}

/// FNV-1a, 64 bits.
pub(crate) fn hash64(name: &[u8]) -> u64 {
    name.iter().fold(0xcbf2_9ce4_8422_2325_u64, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

impl<const SLOTS: usize> Ancestry<SLOTS> {
    pub(crate) const fn new() -> Self {
        Ancestry {
            running: heapless::Vec::new(),
        }
    }

    /// Request `id` (made on behalf of `parent`) runs its helper now for
    /// `name`, whose duplicate-table entry is `entry` if it has one.
    pub(crate) fn enter(
        &mut self,
        id: RequestId,
        parent: Option<RequestId>,
        name: &str,
        entry: Option<First>,
    ) {
        // Cannot be full: every running helper's request holds one of the slots.
        let _ = self.running.push(Running {
            id,
            parent,
            hash: hash64(name.as_bytes()),
            entry,
        });
    }

    /// Request `id`'s helper call is over.
    pub(crate) fn leave(&mut self, id: RequestId) {
        if let Some(i) = self.running.iter().position(|r| r.id == id) {
            self.running.swap_remove(i);
        }
    }

    fn get(&self, id: RequestId) -> Option<&Running> {
        self.running.iter().find(|r| r.id == id)
    }

    /// If `name` is the name of `parent` or of one of its ancestors, the
    /// chain from the oldest such ancestor down to `name`. `names` gives the
    /// name of a duplicate-table entry.
    pub(crate) fn find_loop<'n>(
        &self,
        name: &str,
        parent: Option<RequestId>,
        names: impl Fn(First) -> Option<&'n str>,
    ) -> Option<ChainText> {
        let hash = hash64(name.as_bytes());
        let same = |r: &Running| match r.entry.and_then(&names) {
            Some(n) => n == name,
            None => r.hash == hash,
        };
        // Walk up; a cycle of parents cannot last longer than the table.
        let mut depth = 0;
        let mut at = parent;
        let mut found = None;
        while let Some(r) = at.and_then(|id| self.get(id)) {
            depth += 1;
            if same(r) {
                found = Some(depth);
            }
            if depth >= SLOTS {
                break;
            }
            at = r.parent;
        }
        let top = found?;
        // Oldest first: ancestors `top`, `top - 1`, ..., 1, then the request.
        let mut text = ChainText::new();
        for level in (1..=top).rev() {
            let mut at = parent;
            for _ in 1..level {
                at = at.and_then(|id| self.get(id)).and_then(|r| r.parent);
            }
            if let Some(r) = at.and_then(|id| self.get(id)) {
                match r.entry.and_then(&names) {
                    Some(n) => push(&mut text, format_args!("{n} -> ")),
                    None if level == top => push(&mut text, format_args!("{name} -> ")),
                    None => push(&mut text, format_args!("{} -> ", r.id)),
                }
            }
        }
        push(&mut text, format_args!("{name}"));
        Some(text)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }
}

/// Appends `s`, or `...` once the text is full.
fn push(text: &mut ChainText, s: core::fmt::Arguments<'_>) {
    if text.ends_with("...") {
        return;
    }
    let mut piece = heapless::String::<256>::new();
    let _ = piece.write_fmt(s);
    if text.push_str(&piece).is_err() {
        while text.len() > text.capacity() - 3 {
            text.pop();
        }
        let _ = text.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;
    use std::vec::Vec;

    fn id(n: u64) -> RequestId {
        RequestId::new(n)
    }

    /// A table whose entries all have names (as with duplicate tracking on).
    struct World {
        a: Ancestry<8>,
        names: Vec<String>,
    }

    impl World {
        fn new(chain: &[(u64, Option<u64>, &str)], named: bool) -> Self {
            let mut a = Ancestry::new();
            let mut names = Vec::new();
            for (i, &(n, p, name)) in chain.iter().enumerate() {
                let entry = named.then(|| First::for_tests(i as u16));
                a.enter(id(n), p.map(id), name, entry);
                names.push(String::from(name));
            }
            World { a, names }
        }
        fn find(&self, name: &str, parent: u64) -> Option<String> {
            self.a
                .find_loop(name, Some(id(parent)), |f| {
                    self.names
                        .get(usize::from(f.index_for_tests()))
                        .map(String::as_str)
                })
                .map(|t| String::from(t.as_str()))
        }
    }

    #[test]
    fn a_name_among_the_ancestors_is_a_loop() {
        // 1 fs-a runs; its helper asked for 2 fs-b; fs-b's asks for fs-a.
        let w = World::new(&[(1, None, "fs-a"), (2, Some(1), "fs-b")], true);
        assert_eq!(w.find("fs-a", 2).as_deref(), Some("fs-a -> fs-b -> fs-a"));
        assert_eq!(w.find("fs-c", 2), None);
        assert_eq!(w.a.find_loop("fs-a", None, |_| None), None);
        // A three-module loop, and the parent itself repeating.
        let w = World::new(
            &[(1, None, "x"), (2, Some(1), "y"), (3, Some(2), "z")],
            true,
        );
        assert_eq!(w.find("x", 3).as_deref(), Some("x -> y -> z -> x"));
        assert_eq!(w.find("z", 3).as_deref(), Some("z -> z"));
    }

    #[test]
    fn without_names_the_hash_decides_and_ids_stand_in() {
        let w = World::new(&[(1, None, "x"), (2, Some(1), "y")], false);
        assert_eq!(w.find("x", 2).as_deref(), Some("x -> #2 -> x"));
        assert_eq!(w.find("w", 2), None);
    }

    #[test]
    fn an_unknown_or_finished_parent_ends_the_walk() {
        let mut w = World::new(&[(1, None, "fs-a"), (2, Some(1), "fs-b")], true);
        w.a.leave(id(1));
        assert_eq!(w.find("fs-a", 2), None);
        assert_eq!(w.find("fs-b", 2).as_deref(), Some("fs-b -> fs-b"));
        assert_eq!(w.find("fs-b", 99), None);
        assert_eq!(w.a.len(), 1);
    }

    #[test]
    fn a_cycle_of_parents_ends() {
        // Parents that point at each other (a confused platform) do not hang.
        let w = World::new(&[(1, Some(2), "a"), (2, Some(1), "b")], true);
        assert!(w.find("a", 1).is_some());
        assert_eq!(w.find("c", 1), None);
    }

    #[test]
    fn a_long_chain_is_cut() {
        let long = "m".repeat(55);
        let chain: Vec<(u64, Option<u64>, &str)> = (1..=6u64)
            .map(|i| (i, (i > 1).then(|| i - 1), long.as_str()))
            .collect();
        let w = World::new(&chain, true);
        let text = w.find(&long, 6).unwrap();
        assert!(text.len() <= 256 && text.ends_with("..."), "{text}");
    }
}
