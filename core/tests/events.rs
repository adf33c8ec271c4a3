//! The event stream alone is enough to follow a storm: slot occupancy and the
//! number of requests waiting for a slot, rebuilt from the events, equal the
//! core's own counters at every step; every request's events come in order.

use core::cell::RefCell;
use core::time::Duration;
use std::collections::HashSet;
use std::rc::Rc;

use embassy_futures::select::{Either, select};
use reqmod::sim::{Behavior, Executor, SimPlatform};
use reqmod::{AllowAll, Config, Event, Kmod, Platform, RequestId};

/// What the events say, kept up to date by an observer.
#[derive(Default, Debug)]
struct Rebuilt {
    /// Requests holding a slot.
    holding: HashSet<RequestId>,
    /// Requests waiting for a slot.
    waiting: HashSet<RequestId>,
    /// Requests that ended (finished or cancelled).
    ended: HashSet<RequestId>,
    /// Requests that began.
    began: HashSet<RequestId>,
    errors: Vec<String>,
}

impl Rebuilt {
    fn see(&mut self, event: &Event<'_>) {
        let Some(id) = event.id() else { return };
        if self.ended.contains(&id) {
            self.errors.push(format!("event after the end: {event:?}"));
        }
        match *event {
            Event::Request { .. } => {
                let first = self.began.insert(id);
                if !first {
                    self.errors.push(format!("two starts: {event:?}"));
                }
            }
            Event::SlotWait { .. } => {
                self.waiting.insert(id);
            }
            Event::SlotGranted { .. } => {
                self.waiting.remove(&id);
                self.holding.insert(id);
            }
            Event::BusyTimeout { .. } => {
                self.waiting.remove(&id);
            }
            Event::SlotReleased { .. } => {
                let held = self.holding.remove(&id);
                if !held {
                    self.errors
                        .push(format!("released without a slot: {event:?}"));
                }
            }
            Event::Finished { .. } => {
                if self.holding.contains(&id) || self.waiting.contains(&id) {
                    self.errors
                        .push(format!("finished holding or waiting: {event:?}"));
                }
                self.ended.insert(id);
            }
            Event::Cancelled { .. } => {
                // A cancelled request gives back whatever it held.
                self.waiting.remove(&id);
                self.holding.remove(&id);
                self.ended.insert(id);
            }
            _ => {}
        }
        if !self.began.contains(&id) {
            self.errors
                .push(format!("event before the start: {event:?}"));
        }
    }
}

fn storm(config: Config) {
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    let rebuilt = Rc::new(RefCell::new(Rebuilt::default()));
    {
        let rebuilt = rebuilt.clone();
        sim.observe(move |_, event| rebuilt.borrow_mut().see(event));
    }
    let mut rng = fastrand::Rng::with_seed(7);
    sim.set_script(move |cmd| {
        let n = cmd.name().len() as u64;
        Behavior::exits((n % 3) as u8).lasting(Duration::from_millis(300 * (n % 7)))
    });
    let mut ex = Executor::new();
    let mut expected = 0;
    for i in 0..300u64 {
        let name = format!("mod-{}", "x".repeat(rng.usize(0..20)));
        let start = Duration::from_millis(rng.u64(0..4000));
        let cancel = Duration::from_millis(if i % 11 == 0 {
            rng.u64(0..9000)
        } else {
            u64::MAX / 2
        });
        let wait = i % 5 != 0;
        let request = kmod.request(wait, format_args!("{name}"));
        expected += 1;
        ex.spawn(async move {
            sim.sleep_until(start).await;
            match select(request, sim.sleep_until(start + cancel)).await {
                Either::First(_) | Either::Second(()) => {}
            }
        });
    }
    // Step by step: after every burst of polls at one instant (when every
    // woken task has run), the rebuilt counts equal the core's.
    let mut steps = 0;
    loop {
        ex.run_until_stalled();
        let st = kmod.stats();
        let r = rebuilt.borrow();
        assert!(r.errors.is_empty(), "{:?}", r.errors);
        assert_eq!(r.holding.len(), st.slots_in_use, "slots at {:?}", sim.now());
        assert_eq!(
            r.waiting.len(),
            st.waiting_for_slot,
            "waiting at {:?}",
            sim.now()
        );
        drop(r);
        steps += 1;
        if ex.live_tasks() == 0 {
            break;
        }
        let next = sim.next_deadline().expect("a timer is armed");
        sim.advance_to(next);
    }
    let r = rebuilt.borrow();
    assert_eq!(r.began.len(), expected);
    assert_eq!(r.ended.len(), expected, "every request ended");
    assert!(steps > 20, "{steps} steps");
    // It was a storm: slots filled and requests queued.
    assert!(kmod.stats().max_concurrent_seen == config.max_concurrent);
}

#[test]
fn occupancy_rebuilt_from_events_matches_the_core() {
    storm(Config::DEFAULT.with_max_concurrent(8));
}

#[test]
fn occupancy_rebuilt_from_events_matches_the_core_with_policies() {
    storm(Config::WITH_POLICIES.with_max_concurrent(8));
}

#[test]
fn the_rebuilder_catches_a_lost_release() {
    // The check can fail: a stream without one release does not add up.
    let mut r = Rebuilt::default();
    let id = RequestId::new(1);
    let caller = core::panic::Location::caller();
    r.see(&Event::Request {
        id,
        name: "a",
        wait: true,
        caller,
        parent: None,
    });
    r.see(&Event::SlotGranted {
        id,
        name: "a",
        waited: Duration::ZERO,
        waiting: 0,
        in_use: 1,
    });
    assert_eq!(r.holding.len(), 1);
    r.see(&Event::SlotReleased {
        id: RequestId::new(2),
        in_use: 0,
        waiting: 0,
    });
    assert!(!r.errors.is_empty());
}
