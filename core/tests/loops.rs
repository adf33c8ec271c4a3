//! Loop detection on random module graphs: every module's init requests some
//! others (itself too, sometimes) in order. With the policy on, a request is
//! refused with `-ELOOP` exactly when its name is among its ancestors, and no
//! graph hangs; the verdicts are checked against the ancestors the event
//! stream reports, not against the core's own table.

use core::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::Instant;

use reqmod::sim::{Body, Executor, SimPlatform};
use reqmod::{AllowAll, Config, Event, HelperCommand, KernelRet, Kmod, RequestId, WaitStatus};

type SimKmod = Kmod<SimPlatform>;

#[derive(Default)]
struct Seen {
    /// Every request: its name and parent.
    requests: HashMap<RequestId, (String, Option<RequestId>)>,
    /// Requests refused as loops.
    loops: Vec<RequestId>,
}

fn world(seed: u64, dedup: bool) -> (usize, usize) {
    let mut rng = fastrand::Rng::with_seed(seed);
    let n = rng.usize(2..8);
    let graph: Vec<Vec<String>> = (0..n)
        .map(|_| {
            (0..rng.usize(0..4))
                .map(|_| format!("m{}", rng.usize(0..n)))
                .collect()
        })
        .collect();
    let config = Config::DEFAULT.with_loop_detection(true).with_dedup(dedup);
    let kmod: &'static SimKmod = Box::leak(Box::new(Kmod::with_config(
        SimPlatform::new(),
        config,
        AllowAll,
    )));
    let seen = Rc::new(RefCell::new(Seen::default()));
    {
        let seen = seen.clone();
        kmod.platform().observe(move |_, event| {
            let mut s = seen.borrow_mut();
            match *event {
                Event::Request {
                    id, name, parent, ..
                } => {
                    s.requests.insert(id, (name.to_string(), parent));
                }
                Event::LoopRefused { id, .. } => s.loops.push(id),
                _ => {}
            }
        });
    }
    let graph = Rc::new(graph);
    kmod.platform().set_bodies(move |cmd: &HelperCommand| {
        let i: usize = cmd.name().strip_prefix('m')?.parse().ok()?;
        let deps = graph.get(i)?.clone();
        let body: Body = Box::pin(async move {
            let mut ok = true;
            for dep in &deps {
                ok &= kmod
                    .request_module(format_args!("{dep}"))
                    .await
                    .kernel_ret()
                    == 0;
            }
            WaitStatus::exited(u8::from(!ok))
        });
        Some(body)
    });
    let mut ex = Executor::new();
    let root = format!("m{}", rng.usize(0..n));
    ex.spawn(kmod.request_module(format_args!("{root}")));
    ex.run(kmod.platform())
        .unwrap_or_else(|s| panic!("seed {seed}: a graph hung: {s}"));

    let seen = seen.borrow();
    let mut refused = 0;
    for (&id, (name, parent)) in &seen.requests {
        let mut ancestors = Vec::new();
        let mut at = *parent;
        while let Some(p) = at {
            let (pname, pparent) = &seen.requests[&p];
            ancestors.push(pname.as_str());
            at = *pparent;
        }
        let is_loop = ancestors.contains(&name.as_str());
        let refused_here = seen.loops.contains(&id);
        assert_eq!(
            refused_here, is_loop,
            "seed {seed}: request {id} for {name} with ancestors {ancestors:?}"
        );
        refused += usize::from(refused_here);
    }
    let st = kmod.stats();
    assert_eq!(st.loops as usize, refused);
    assert_eq!(
        (st.in_flight, st.slots_in_use, st.running_helpers),
        (0, 0, 0)
    );
    (seen.requests.len(), refused)
}

#[test]
fn loops_in_random_graphs_are_refused_exactly_and_nothing_hangs() {
    let began = Instant::now();
    let (mut requests, mut loops) = (0, 0);
    let seeds = if cfg!(miri) { 3 } else { 2000 };
    for seed in 0..seeds {
        for dedup in [true, false] {
            let (r, l) = world(seed, dedup);
            requests += r;
            loops += l;
        }
    }
    eprintln!(
        "loops: {seeds} graphs x 2: {requests} requests, {loops} loops refused, in {:.2?}",
        began.elapsed()
    );
    assert!(
        seeds < 100 || loops > 500,
        "the graphs must have loops: {loops}"
    );
}
