//! The guards of one request: each undoes its part of the state if the
//! request's future is dropped at an await point (cancellation is an input).
//! They reach the `Kmod` through [`Engine`], so each has one type parameter.

use crate::RequestId;
use crate::dups::First;
use crate::trace::Event;
use crate::{Errno, Outcome, Stats};

/// What the guards need of a `Kmod`.
pub(crate) trait Engine {
    /// The state type under the lock.
    type Inner;
    /// Runs `f` with the lock held.
    fn with_inner<R>(&self, f: impl FnOnce(&mut Self::Inner) -> R) -> R;
    /// The request's stats.
    fn stats_of(inner: &mut Self::Inner) -> &mut Stats;
    /// Reports an event (log and platform), with no lock held.
    fn emit(&self, event: Event<'_>);
    /// Announces `ret` for `name` (its entry `first`) to the duplicate table.
    fn announce(&self, name: &str, first: Option<First>, ret: i32);
    /// The helper of request `id` is no longer running.
    fn helper_gone(&self, id: RequestId);
    /// Enables helpers.
    fn enable_helpers(&self);
}

/// Counts a request from its start; a drop before `finish` counts it
/// cancelled and reports [`Event::Cancelled`].
pub(crate) struct InFlight<'a, K: Engine> {
    kmod: Option<&'a K>,
    id: RequestId,
    name: &'a str,
}

impl<'a, K: Engine> InFlight<'a, K> {
    /// Counts the request (its id is the new count); `f` reads what else the
    /// first step needs under the same lock.
    pub(crate) fn begin<R>(
        kmod: &'a K,
        name: &'a str,
        f: impl FnOnce(&mut K::Inner) -> R,
    ) -> (Self, R) {
        let (id, r) = kmod.with_inner(|i| {
            let stats = K::stats_of(i);
            stats.requests += 1;
            let id = RequestId::new(stats.requests);
            (id, f(i))
        });
        (
            InFlight {
                kmod: Some(kmod),
                id,
                name,
            },
            r,
        )
    }

    pub(crate) fn id(&self) -> RequestId {
        self.id
    }

    /// The request's module name.
    pub(crate) fn name(&self) -> &'a str {
        self.name
    }

    /// Counts it completed with the lock held (`inner` is the locked state).
    pub(crate) fn finish_in(
        mut self,
        inner: &mut K::Inner,
        outcome: Outcome,
        count: impl FnOnce(&mut Stats),
    ) {
        if self.kmod.take().is_some() {
            let stats = K::stats_of(inner);
            stats.completed += 1;
            if outcome != Ok(crate::WaitStatus::SUCCESS) {
                stats.failures += 1;
            }
            count(stats);
        }
    }
}

impl<K: Engine> Drop for InFlight<'_, K> {
    fn drop(&mut self) {
        if let Some(kmod) = self.kmod.take() {
            kmod.with_inner(|i| K::stats_of(i).cancelled += 1);
            kmod.emit(Event::Cancelled {
                id: self.id,
                name: self.name,
            });
        }
    }
}

/// Announces a helper run's result to the duplicate table; dropped without
/// announcing (the request was killed), it announces `-ERESTARTSYS`.
pub(crate) struct Announcer<'a, K: Engine> {
    kmod: &'a K,
    name: &'a str,
    first: Option<First>,
}

impl<'a, K: Engine> Announcer<'a, K> {
    pub(crate) fn new(kmod: &'a K, name: &'a str, first: Option<First>) -> Self {
        Announcer { kmod, name, first }
    }

    /// The entry this request is the first of, if any.
    pub(crate) fn first(&self) -> Option<First> {
        self.first
    }

    /// The name announced for.
    pub(crate) fn name(&self) -> &'a str {
        self.name
    }

    /// Done: the caller announces under its own lock.
    pub(crate) fn disarm(self) {
        core::mem::forget(self);
    }

    /// Announces `ret` now (its own lock).
    pub(crate) fn announce(self, ret: i32) {
        self.kmod.announce(self.name, self.first, ret);
        core::mem::forget(self);
    }
}

impl<K: Engine> Drop for Announcer<'_, K> {
    fn drop(&mut self) {
        self.kmod
            .announce(self.name, self.first, -Errno::ERESTARTSYS.raw());
    }
}

/// One running helper (`running_helpers` in `umh.c`).
pub(crate) struct RunningHelper<'a, K: Engine> {
    kmod: &'a K,
    id: RequestId,
}

impl<'a, K: Engine> RunningHelper<'a, K> {
    pub(crate) fn new(kmod: &'a K, id: RequestId) -> Self {
        RunningHelper { kmod, id }
    }

    /// The request whose helper it is.
    pub(crate) fn id(&self) -> RequestId {
        self.id
    }

    /// Done: the caller uncounts it under its own lock.
    pub(crate) fn disarm(self) {
        core::mem::forget(self);
    }
}

impl<K: Engine> Drop for RunningHelper<'_, K> {
    fn drop(&mut self) {
        self.kmod.helper_gone(self.id);
    }
}

/// Enables helpers again when a `disable_helpers` call fails or is dropped.
pub(crate) struct ReenableOnDrop<'a, K: Engine>(pub(crate) Option<&'a K>);

impl<K: Engine> Drop for ReenableOnDrop<'_, K> {
    fn drop(&mut self) {
        if let Some(kmod) = self.0.take() {
            kmod.enable_helpers();
        }
    }
}
