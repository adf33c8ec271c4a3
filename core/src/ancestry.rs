//! Loop detection (SPEC §9): the requests whose helpers are running, each
//! with the request it runs on behalf of, so that a new request can walk its
//! ancestors and see its own name among them.

use core::fmt::Write as _;

use crate::{ModuleName, RequestId};

/// A rendered ancestor chain for the warning: `fs-a -> fs-b -> fs-a`, cut
/// with `...` if longer than this.
pub(crate) type ChainText = heapless::String<256>;

struct Running<const NAME: usize> {
    id: RequestId,
    parent: Option<RequestId>,
    name: ModuleName<NAME>,
}

/// Requests running a helper (each holds a slot, so at most `SLOTS`).
pub(crate) struct Ancestry<const SLOTS: usize, const NAME: usize> {
    running: heapless::Vec<Running<NAME>, SLOTS>,
}

impl<const SLOTS: usize, const NAME: usize> Ancestry<SLOTS, NAME> {
    pub(crate) const fn new() -> Self {
        Ancestry {
            running: heapless::Vec::new(),
        }
    }

    /// Request `id` (made on behalf of `parent`) runs its helper now.
    pub(crate) fn enter(
        &mut self,
        id: RequestId,
        parent: Option<RequestId>,
        name: &ModuleName<NAME>,
    ) {
        // Cannot be full: every running helper's request holds one of the slots.
        let _ = self.running.push(Running {
            id,
            parent,
            name: name.clone(),
        });
    }

    /// Request `id`'s helper call is over.
    pub(crate) fn leave(&mut self, id: RequestId) {
        if let Some(i) = self.running.iter().position(|r| r.id == id) {
            self.running.swap_remove(i);
        }
    }

    fn get(&self, id: RequestId) -> Option<&Running<NAME>> {
        self.running.iter().find(|r| r.id == id)
    }

    /// If `name` is the name of `parent` or of one of its ancestors, the
    /// chain from the oldest such ancestor down to `name`.
    pub(crate) fn find_loop(&self, name: &str, parent: Option<RequestId>) -> Option<ChainText> {
        // Walk up; every step visits a different running request (a cycle of
        // parents cannot last longer than the table).
        let mut depth = 0;
        let mut at = parent;
        let mut found = None;
        while let Some(r) = at.and_then(|id| self.get(id)) {
            depth += 1;
            if r.name.as_str() == name {
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
                push(&mut text, r.name.as_str());
                push(&mut text, " -> ");
            }
        }
        push(&mut text, name);
        Some(text)
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.running.len()
    }
}

/// Appends `s`, or `...` once the text is full.
fn push(text: &mut ChainText, s: &str) {
    if text.write_str(s).is_err() && !text.ends_with("...") {
        while text.len() > text.capacity() - 3 {
            text.pop();
        }
        let _ = text.push_str("...");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> RequestId {
        RequestId::new(n)
    }

    fn table(chain: &[(u64, Option<u64>, &str)]) -> Ancestry<8, 56> {
        let mut a = Ancestry::new();
        for &(i, p, n) in chain {
            a.enter(id(i), p.map(id), &ModuleName::new_bounded(n).unwrap());
        }
        a
    }

    #[test]
    fn a_name_among_the_ancestors_is_a_loop() {
        // 1 fs-a runs; its helper asked for 2 fs-b; fs-b's asks for fs-a.
        let a = table(&[(1, None, "fs-a"), (2, Some(1), "fs-b")]);
        assert_eq!(
            a.find_loop("fs-a", Some(id(2))).as_deref(),
            Some("fs-a -> fs-b -> fs-a")
        );
        assert_eq!(a.find_loop("fs-c", Some(id(2))), None);
        assert_eq!(a.find_loop("fs-a", None), None);
        // A three-module loop, and the parent itself repeating.
        let a = table(&[(1, None, "x"), (2, Some(1), "y"), (3, Some(2), "z")]);
        assert_eq!(
            a.find_loop("x", Some(id(3))).as_deref(),
            Some("x -> y -> z -> x")
        );
        assert_eq!(a.find_loop("z", Some(id(3))).as_deref(), Some("z -> z"));
    }

    #[test]
    fn an_unknown_or_finished_parent_ends_the_walk() {
        let mut a = table(&[(1, None, "fs-a"), (2, Some(1), "fs-b")]);
        a.leave(id(1));
        assert_eq!(a.find_loop("fs-a", Some(id(2))), None);
        assert_eq!(
            a.find_loop("fs-b", Some(id(2))).as_deref(),
            Some("fs-b -> fs-b")
        );
        assert_eq!(a.find_loop("fs-b", Some(id(99))), None);
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn a_cycle_of_parents_ends() {
        // Parents that point at each other (a confused platform) do not hang.
        let a = table(&[(1, Some(2), "a"), (2, Some(1), "b")]);
        assert!(a.find_loop("a", Some(id(1))).is_some());
        assert_eq!(a.find_loop("c", Some(id(1))), None);
    }

    #[test]
    fn a_long_chain_is_cut() {
        let long = "m".repeat(55);
        let mut a: Ancestry<8, 56> = Ancestry::new();
        for i in 1..=6u64 {
            a.enter(
                id(i),
                (i > 1).then(|| id(i - 1)),
                &ModuleName::new_bounded(&long).unwrap(),
            );
        }
        let text = a.find_loop(&long, Some(id(6))).unwrap();
        assert!(text.len() <= 256 && text.ends_with("..."), "{text}");
    }
}
