//! Cancellation is an input: a request future dropped at any of its await
//! points (waiting for a slot, in the queue or in the overflow lobby; waiting
//! as a duplicate; waiting for its helper to be executed or to exit) leaves no
//! slot, entry or waiter behind, and every other request still completes.
//!
//! Each scenario is run once to count the victim's polls, then once for every
//! k, dropping the victim instead of polling it the k-th time.

use core::cell::Cell;
use core::future::Future;
use core::pin::Pin;
use core::task::{Context, Poll};
use core::time::Duration;
use std::rc::Rc;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use reqmod::sim::{Behavior, Executor, JoinHandle, SimPlatform};
use reqmod::{AllowAll, Config, KernelRet, Kmod, Platform, Security};

/// Polls `fut` until it is ready, except that at its `cancel_at`-th poll it is
/// dropped instead (`None`). Counts polls.
struct CancelAt<F> {
    fut: Option<Pin<Box<F>>>,
    cancel_at: Option<usize>,
    polls: Rc<Cell<usize>>,
}

impl<F: Future> Future for CancelAt<F> {
    type Output = Option<F::Output>;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        if self.cancel_at == Some(self.polls.get()) {
            self.fut = None;
            return Poll::Ready(None);
        }
        self.polls.set(self.polls.get() + 1);
        match self.fut.as_mut() {
            Some(f) => f.as_mut().poll(cx).map(Some),
            None => Poll::Ready(None),
        }
    }
}

fn cancel_at<F: Future>(fut: F, k: Option<usize>, polls: &Rc<Cell<usize>>) -> CancelAt<F> {
    CancelAt {
        fut: Some(Box::pin(fut)),
        cancel_at: k,
        polls: polls.clone(),
    }
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

async fn at<'a, T, F: Future<Output = T> + 'a>(sim: &'a SimPlatform, t: Duration, fut: F) -> T {
    sim.sleep_until(t).await;
    fut.await
}

/// After a scenario: nothing held, nothing waiting, stats add up, and the
/// autoloader still works.
fn assert_clean<S: Security, const A: usize, const B: usize, const C: usize>(
    kmod: &Kmod<SimPlatform, S, CriticalSectionRawMutex, A, B, C>,
    what: &str,
) {
    let st = kmod.stats();
    assert_eq!(st.slots_in_use, 0, "{what}: slot leaked: {st:?}");
    assert_eq!(st.waiting_for_slot, 0, "{what}: waiter left: {st:?}");
    assert_eq!(st.dup_pending, 0, "{what}: unfinished entry: {st:?}");
    assert_eq!(st.dup_waiters, 0, "{what}: duplicate waiter left: {st:?}");
    assert_eq!(st.running_helpers, 0, "{what}: helper count leaked: {st:?}");
    assert_eq!(st.in_flight, 0, "{what}");
    assert_eq!(st.requests, st.completed + st.cancelled, "{what}: {st:?}");
    assert_eq!(
        kmod.platform().pending_timers(),
        0,
        "{what}: timer left armed"
    );
    // And it still serves fresh requests, taking every slot at once.
    kmod.platform().set_script(|_| Behavior::exits(0));
    let mut ex = Executor::new();
    let fresh: Vec<_> = (0..kmod.config().max_concurrent)
        .map(|i| ex.spawn(kmod.request_module(format_args!("fresh{i}"))))
        .collect();
    ex.run(kmod.platform()).unwrap();
    for h in fresh {
        assert_eq!(
            h.take().map(|o| o.kernel_ret()),
            Some(0),
            "{what}: fresh request"
        );
    }
}

/// Runs `scenario(k)` for every k until the victim completes without being
/// cancelled; returns how many cancellation points were covered.
fn for_every_cancel_point(
    name: &str,
    mut scenario: impl FnMut(Option<usize>) -> (usize, bool),
) -> usize {
    let (total_polls, completed) = scenario(None);
    assert!(completed, "{name}: the victim completes when not cancelled");
    for k in 0..total_polls {
        let (_, completed) = scenario(Some(k));
        assert!(!completed, "{name}: cancelled at poll {k}");
    }
    total_polls
}

fn take_all<T>(hs: &[JoinHandle<T>]) -> Vec<T> {
    hs.iter()
        .map(|h| h.take().expect("companion finished"))
        .collect()
}

#[test]
fn cancel_while_waiting_for_a_slot_in_the_queue() {
    let points = for_every_cancel_point("queued", |k| {
        let config = Config::DEFAULT.with_max_concurrent(1);
        let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
        let sim = kmod.platform();
        sim.set_script(|_| Behavior::exits(0).lasting(secs(2)));
        let polls = Rc::new(Cell::new(0));
        let mut ex = Executor::new();
        let holder = ex.spawn(kmod.request_module(format_args!("holder")));
        let victim = ex.spawn(cancel_at(
            kmod.request_module(format_args!("victim")),
            k,
            &polls,
        ));
        let after = ex.spawn(kmod.request_module(format_args!("after")));
        ex.run(sim).unwrap();
        assert_eq!(
            take_all(&[holder, after])
                .iter()
                .map(|o| o.kernel_ret())
                .collect::<Vec<_>>(),
            [0, 0]
        );
        let completed = victim.take().flatten().is_some();
        assert_clean(&kmod, "queued");
        (polls.get(), completed)
    });
    assert!(points >= 2, "{points}");
}

#[test]
fn cancel_while_waiting_for_a_slot_in_the_overflow_lobby() {
    let points = for_every_cancel_point("lobby", |k| {
        let config = Config::DEFAULT.with_max_concurrent(1);
        // One slot, a queue of one: the victim and the two after it overflow.
        let kmod: Kmod<SimPlatform, AllowAll, CriticalSectionRawMutex, 1, 1, 1> =
            Kmod::with_config(SimPlatform::new(), config, AllowAll);
        let sim = kmod.platform();
        sim.set_script(|_| Behavior::exits(0).lasting(Duration::from_millis(500)));
        let polls = Rc::new(Cell::new(0));
        let mut ex = Executor::new();
        let mut companions = vec![
            ex.spawn(kmod.request_module(format_args!("holder"))),
            ex.spawn(kmod.request_module(format_args!("queued"))),
        ];
        let victim = ex.spawn(cancel_at(
            kmod.request_module(format_args!("victim")),
            k,
            &polls,
        ));
        companions.push(ex.spawn(kmod.request_module(format_args!("lobby1"))));
        companions.push(ex.spawn(kmod.request_module(format_args!("lobby2"))));
        ex.run(sim).unwrap();
        let results: Vec<i32> = take_all(&companions)
            .iter()
            .map(|o| o.kernel_ret())
            .collect();
        assert_eq!(results, [0, 0, 0, 0], "k={k:?}");
        let completed = victim.take().flatten().is_some();
        assert_clean(&kmod, "lobby");
        (polls.get(), completed)
    });
    assert!(points >= 3, "{points}");
}

#[test]
fn cancel_while_waiting_as_a_duplicate() {
    let points = for_every_cancel_point("duplicate", |k| {
        let kmod = Kmod::new(SimPlatform::new());
        let sim = kmod.platform();
        sim.set_script(|_| Behavior::exits(1).lasting(secs(2)));
        let polls = Rc::new(Cell::new(0));
        let mut ex = Executor::new();
        let first = ex.spawn(kmod.request_module(format_args!("snd")));
        let victim = ex.spawn(at(
            sim,
            secs(1),
            cancel_at(kmod.request_module(format_args!("snd")), k, &polls),
        ));
        let other = ex.spawn(at(sim, secs(1), kmod.request_module(format_args!("snd"))));
        ex.run(sim).unwrap();
        let results: Vec<i32> = take_all(&[first, other])
            .iter()
            .map(|o| o.kernel_ret())
            .collect();
        assert_eq!(results, [256, 256]);
        let out = victim.take().flatten();
        if let Some(out) = out {
            assert_eq!(out.kernel_ret(), 256);
        }
        assert_eq!(sim.runs().len(), 1);
        assert_clean(&kmod, "duplicate");
        (polls.get(), out.is_some())
    });
    assert!(points >= 2, "{points}");
}

#[test]
fn cancel_while_waiting_for_the_helper_to_exit() {
    let points = for_every_cancel_point("helper", |k| {
        let kmod = Kmod::new(SimPlatform::new());
        let sim = kmod.platform();
        sim.set_script(|_| Behavior::exits(1).lasting(secs(2)));
        let polls = Rc::new(Cell::new(0));
        let mut ex = Executor::new();
        let victim = ex.spawn(cancel_at(
            kmod.request_module(format_args!("snd")),
            k,
            &polls,
        ));
        let dup = ex.spawn(at(sim, secs(1), kmod.request_module(format_args!("snd"))));
        ex.run(sim).unwrap();
        let out = victim.take().flatten();
        let dup = dup.take().expect("duplicate finished").kernel_ret();
        let victim_ran = sim.runs().iter().any(|r| r.task == Some(victim.id()));
        match out {
            Some(out) => {
                assert_eq!((out.kernel_ret(), dup), (256, 256));
            }
            None if !victim_ran => {
                // Dropped before it ran anything: the duplicate became a first request.
                assert_eq!(dup, 256);
            }
            None => {
                // Killed while its helper ran: the entry holds -ERESTARTSYS.
                assert_eq!(dup, -512, "k={k:?}");
                assert_eq!(sim.runs().len(), 1);
                assert_eq!(
                    sim.helpers_alive_at(Duration::from_millis(1500)),
                    1,
                    "helper runs on"
                );
            }
        }
        assert_clean(&kmod, "helper");
        (polls.get(), out.is_some())
    });
    assert!(points >= 2, "{points}");
}

#[test]
fn cancel_while_waiting_for_the_exec() {
    let points = for_every_cancel_point("exec", |k| {
        let kmod = Kmod::new(SimPlatform::new());
        let sim = kmod.platform();
        sim.set_script(|_| Behavior::exits(0).exec_taking(secs(1)).lasting(secs(5)));
        let polls = Rc::new(Cell::new(0));
        let mut ex = Executor::new();
        let victim = ex.spawn(cancel_at(
            kmod.request_module_nowait(format_args!("snd")),
            k,
            &polls,
        ));
        let other = ex.spawn(kmod.request_module_nowait(format_args!("other")));
        ex.run(sim).unwrap();
        assert_eq!(other.take().map(|o| o.kernel_ret()), Some(0));
        let out = victim.take().flatten();
        if let Some(out) = out {
            assert_eq!(out.kernel_ret(), 0);
        }
        assert_clean(&kmod, "exec");
        (polls.get(), out.is_some())
    });
    assert!(points >= 2, "{points}");
}

#[test]
fn cancel_every_request_of_a_crowd_at_every_point() {
    // 6 requests over 2 names with 2 slots and a queue of 1: the victim is each
    // one in turn, cancelled at each of its polls.
    for victim_index in 0..6 {
        for_every_cancel_point("crowd", |k| {
            let config = Config::DEFAULT.with_max_concurrent(2);
            let kmod: Kmod<SimPlatform, AllowAll, CriticalSectionRawMutex, 2, 1, 2> =
                Kmod::with_config(SimPlatform::new(), config, AllowAll);
            let sim = kmod.platform();
            sim.set_script(|cmd| {
                Behavior::exits(if cmd.name() == "a" { 1 } else { 0 }).lasting(secs(1))
            });
            let polls = Rc::new(Cell::new(0));
            let mut ex = Executor::new();
            let mut hs = Vec::new();
            for i in 0..6 {
                let wait = i % 3 != 2;
                let name = if i % 2 == 0 { "a" } else { "b" };
                let k = if i == victim_index { k } else { None };
                let p = if i == victim_index {
                    polls.clone()
                } else {
                    Rc::new(Cell::new(0))
                };
                hs.push(ex.spawn(cancel_at(kmod.request(wait, format_args!("{name}")), k, &p)));
            }
            ex.run(sim).unwrap();
            let mut victim_done = false;
            for (i, h) in hs.iter().enumerate() {
                let out = h.take().expect("task finished");
                if i == victim_index {
                    victim_done = out.is_some();
                }
                if let Some(out) = out {
                    assert!([0, 256, -512].contains(&out.kernel_ret()), "{i}: {out:?}");
                } else {
                    assert_eq!(i, victim_index, "only the victim is cancelled");
                }
            }
            assert_clean(&kmod, "crowd");
            (polls.get(), victim_done)
        });
    }
}
