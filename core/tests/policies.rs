//! The policies of SPEC §9, each on the virtual clock: a test that fails if
//! the policy is broken, and one that shows the default (Linux) behaviour is
//! unchanged.

use core::future::Future;
use core::time::Duration;
use std::time::Instant;

use reqmod::sim::{Behavior, Body, Executor, JoinHandle, SimPlatform};
use reqmod::{
    AllowAll, Config, Errno, HelperCommand, KernelRet, Kmod, Outcome, Platform, WaitStatus,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

type SimKmod = Kmod<SimPlatform>;

/// A `Kmod` that lives for the test (helper bodies need `'static` access).
fn leaked(config: Config) -> &'static SimKmod {
    Box::leak(Box::new(Kmod::with_config(
        SimPlatform::new(),
        config,
        AllowAll,
    )))
}

async fn timed<'a, F: Future<Output = Outcome> + 'a>(
    sim: &'a SimPlatform,
    fut: F,
) -> (i32, Duration) {
    let out = fut.await;
    (out.kernel_ret(), sim.now())
}

async fn at<'a, T, F: Future<Output = T> + 'a>(sim: &'a SimPlatform, t: Duration, fut: F) -> T {
    sim.sleep_until(t).await;
    fut.await
}

fn done<T>(h: &JoinHandle<T>) -> T {
    h.take().expect("task finished")
}

// ---------------------------------------------------------------- loops

/// Module inits that request other modules: the helper for `m` makes a
/// waiting request for each name in `deps(m)` (on behalf of its request, as
/// a module init triggered by modprobe does), then exits 0 if all gave 0,
/// else 1.
fn with_inits(kmod: &'static SimKmod, deps: fn(&str) -> &'static [&'static str]) {
    kmod.platform().set_bodies(move |cmd: &HelperCommand| {
        let wants = deps(cmd.name());
        if wants.is_empty() {
            return None;
        }
        let body: Body = Box::pin(async move {
            let mut ok = true;
            for dep in wants {
                ok &= kmod
                    .request_module(format_args!("{dep}"))
                    .await
                    .kernel_ret()
                    == 0;
            }
            WaitStatus::exited(if ok { 0 } else { 1 })
        });
        Some(body)
    });
}

fn two_loop(name: &str) -> &'static [&'static str] {
    match name {
        "fs-a" => &["fs-b"],
        "fs-b" => &["fs-a"],
        _ => &[],
    }
}

fn three_loop(name: &str) -> &'static [&'static str] {
    match name {
        "x" => &["y"],
        "y" => &["z"],
        "z" => &["x"],
        _ => &[],
    }
}

fn loop_refusals(kmod: &SimKmod) -> Vec<String> {
    kmod.platform()
        .events()
        .iter()
        .filter(|e| e.kind == "loop_refused")
        .map(|e| e.detail.clone())
        .collect()
}

#[test]
fn a_two_module_loop_ends_with_eloop_at_once() {
    let kmod = leaked(Config::DEFAULT.with_loop_detection(true));
    with_inits(kmod, two_loop);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    let real = Instant::now();
    let a = ex.spawn(timed(sim, kmod.request_module(format_args!("fs-a"))));
    ex.run(sim).expect("no deadlock");
    // fs-b's init got -ELOOP, so fs-b's modprobe failed, so fs-a's did.
    assert_eq!(done(&a), (256, Duration::ZERO));
    assert!(real.elapsed() < Duration::from_secs(1));
    let refused = loop_refusals(kmod);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].contains(r#"chain: "fs-a -> fs-b -> fs-a""#),
        "{refused:?}"
    );
    let st = kmod.stats();
    assert_eq!(
        (st.loops, st.helpers_started, st.max_concurrent_seen),
        (1, 2, 2)
    );
    assert_eq!(st.in_flight, 0);
}

#[test]
fn a_three_module_loop_ends_with_eloop_at_once() {
    let kmod = leaked(Config::DEFAULT.with_loop_detection(true));
    with_inits(kmod, three_loop);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    let x = ex.spawn(timed(sim, kmod.request_module(format_args!("x"))));
    ex.run(sim).expect("no deadlock");
    assert_eq!(done(&x), (256, Duration::ZERO));
    let refused = loop_refusals(kmod);
    assert_eq!(refused.len(), 1);
    assert!(
        refused[0].contains(r#"chain: "x -> y -> z -> x""#),
        "{refused:?}"
    );
    // -ELOOP took no slot: three helpers, never more than three slots.
    let st = kmod.stats();
    assert_eq!(
        (st.loops, st.helpers_started, st.max_concurrent_seen),
        (1, 3, 3)
    );
}

#[test]
fn without_loop_detection_a_loop_deadlocks_on_the_duplicate_table_as_in_linux() {
    let kmod = leaked(Config::DEFAULT);
    with_inits(kmod, two_loop);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("fs-a")));
    let stalled = ex.run(sim).expect_err("the kernel deadlocks here");
    assert_eq!(stalled.tasks, 1);
    assert_eq!(kmod.stats().dup_waiters, 1);
    assert!(loop_refusals(kmod).is_empty());
}

#[test]
fn without_loop_detection_or_dedup_a_loop_ends_by_the_five_second_rule() {
    let kmod = leaked(Config::DEFAULT.with_dedup(false));
    with_inits(kmod, two_loop);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    let a = ex.spawn(timed(sim, kmod.request_module(format_args!("fs-a"))));
    ex.run(sim).expect("ends");
    // 50 nested helpers fill every slot; the 51st request waits 5 s: -ETIME.
    assert_eq!(done(&a), (256, secs(5)));
    let st = kmod.stats();
    assert_eq!((st.busy_timeouts, st.helpers_started, st.loops), (1, 50, 0));
}

#[test]
fn loop_detection_sees_only_ancestors() {
    // A diamond (a needs b and c, both need d) is no loop.
    fn diamond(name: &str) -> &'static [&'static str] {
        match name {
            "a" => &["b", "c"],
            "b" | "c" => &["d"],
            _ => &[],
        }
    }
    let kmod = leaked(Config::DEFAULT.with_loop_detection(true));
    with_inits(kmod, diamond);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    let a = ex.spawn(timed(sim, kmod.request_module(format_args!("a"))));
    ex.run(sim).unwrap();
    assert_eq!(done(&a), (0, Duration::ZERO));
    assert_eq!(kmod.stats().loops, 0);
    // d was requested twice (from b and from c): the second is a duplicate.
    assert_eq!(kmod.stats().helpers_started, 4);
}

// ---------------------------------------------------------------- duplicates hold no slot

/// 2 slots; 10 requests for a slow module (3 s), then 5 for fast ones.
fn slow_storm(config: Config) -> (Vec<(i32, Duration)>, &'static SimKmod) {
    let kmod = leaked(config.with_max_concurrent(2));
    let sim = kmod.platform();
    sim.set_script(|cmd| match cmd.name() {
        "slow" => Behavior::exits(0).lasting(secs(3)),
        _ => Behavior::exits(0),
    });
    let mut ex = Executor::new();
    for _ in 0..10 {
        ex.spawn(kmod.request_module(format_args!("slow")));
    }
    let fast: Vec<_> = (0..5)
        .map(|i| {
            ex.spawn(at(
                sim,
                ms(1),
                timed(sim, kmod.request_module(format_args!("fast-{i}"))),
            ))
        })
        .collect();
    ex.run(sim).unwrap();
    (fast.iter().map(done).collect(), kmod)
}

#[test]
fn with_duplicates_holding_no_slot_other_modules_do_not_wait_behind_them() {
    let (fast, kmod) = slow_storm(Config::DEFAULT.with_dups_hold_no_slot(true));
    assert!(fast.iter().all(|&r| r == (0, ms(1))), "{fast:?}");
    // Never more than one slot for "slow": its nine duplicates held none.
    let st = kmod.stats();
    assert_eq!((st.duplicates, st.helpers_started), (9, 6));
    for e in kmod.platform().events() {
        if e.kind == "slot_granted" {
            assert!(
                !kmod
                    .platform()
                    .events()
                    .iter()
                    .any(|d| d.kind == "duplicate" && d.id == e.id),
                "a duplicate got a slot: {e:?}"
            );
        }
    }
}

#[test]
fn by_default_duplicates_hold_slots_and_others_wait_as_in_linux() {
    let (fast, kmod) = slow_storm(Config::DEFAULT);
    // The first slow request and its first duplicate hold both slots for 3 s.
    assert!(fast.iter().all(|&r| r == (0, secs(3))), "{fast:?}");
    assert_eq!(kmod.stats().max_concurrent_seen, 2);
}

#[test]
fn a_first_request_that_times_out_waiting_gives_its_duplicates_etime() {
    let config = Config::DEFAULT
        .with_dups_hold_no_slot(true)
        .with_max_concurrent(1);
    let kmod = leaked(config);
    let sim = kmod.platform();
    sim.set_script(|cmd| match cmd.name() {
        "hog" => Behavior::exits(0).lasting(secs(10)),
        _ => Behavior::exits(0),
    });
    let mut ex = Executor::new();
    let hog = ex.spawn(timed(sim, kmod.request_module(format_args!("hog"))));
    let first = ex.spawn(at(
        sim,
        ms(1),
        timed(sim, kmod.request_module(format_args!("m"))),
    ));
    let dup = ex.spawn(at(
        sim,
        ms(2),
        timed(sim, kmod.request_module(format_args!("m"))),
    ));
    ex.run(sim).unwrap();
    assert_eq!(done(&hog), (0, secs(10)));
    let at_timeout = ms(1) + secs(5);
    assert_eq!(done(&first), (-62, at_timeout));
    assert_eq!(
        done(&dup),
        (-62, at_timeout),
        "answered when its first timed out"
    );
    assert_eq!(kmod.stats().busy_timeouts, 1);
}

// ---------------------------------------------------------------- transient results

/// A first request for "a" (helper 2 s) is cancelled at 1 s while a duplicate
/// waits; a new request for "a" comes at 1.5 s.
fn killed_first(config: Config) -> ((i32, Duration), (i32, Duration), usize) {
    let kmod = leaked(config);
    let sim = kmod.platform();
    sim.set_script(|_| Behavior::exits(0).lasting(secs(2)));
    let mut ex = Executor::new();
    let first = ex.spawn(kmod.request_module(format_args!("a")));
    let dup = ex.spawn(at(
        sim,
        ms(10),
        timed(sim, kmod.request_module(format_args!("a"))),
    ));
    let late = ex.spawn(at(
        sim,
        ms(1500),
        timed(sim, kmod.request_module(format_args!("a"))),
    ));
    ex.run_until(sim, secs(1)).unwrap();
    ex.cancel(&first);
    ex.run(sim).unwrap();
    (done(&dup), done(&late), sim.runs().len())
}

#[test]
fn without_transient_caching_a_killed_first_requests_result_is_not_kept() {
    let (dup, late, runs) = killed_first(Config::DEFAULT.with_no_transient_caching(true));
    assert_eq!(dup, (-512, secs(1)), "the duplicate waiting then gets it");
    assert_eq!(late, (0, ms(3500)), "a later request runs its own helper");
    assert_eq!(runs, 2);
}

#[test]
fn by_default_a_killed_first_requests_result_lingers_as_in_linux() {
    let (dup, late, runs) = killed_first(Config::DEFAULT);
    assert_eq!(dup, (-512, secs(1)));
    assert_eq!(late, (-512, ms(1500)), "served -ERESTARTSYS from the table");
    assert_eq!(runs, 1);
}

/// Helper exits 1; requests for "m" at 0, 5 s, 20 s and 70 s.
fn failure_lingers(config: Config) -> Vec<(i32, Duration)> {
    let kmod = leaked(config);
    let sim = kmod.platform();
    sim.set_script(|_| Behavior::exits(1));
    let mut ex = Executor::new();
    let hs: Vec<_> = [0, 5, 20, 70]
        .map(|t| {
            ex.spawn(at(
                sim,
                secs(t),
                timed(sim, kmod.request_module(format_args!("m"))),
            ))
        })
        .into_iter()
        .collect();
    ex.run(sim).unwrap();
    let runs: Vec<Duration> = sim.runs().iter().map(|r| r.started).collect();
    let mut out: Vec<(i32, Duration)> = hs.iter().map(done).collect();
    out.push((runs.len() as i32, Duration::ZERO));
    out
}

#[test]
fn without_transient_caching_failures_linger_their_own_time() {
    let config = Config::DEFAULT
        .with_no_transient_caching(true)
        .with_failure_linger(secs(10));
    let out = failure_lingers(config);
    // 5 s: within 10 s, a duplicate; 20 s: a new run; 70 s: a new run.
    assert_eq!(
        out,
        [
            (256, secs(0)),
            (256, secs(5)),
            (256, secs(20)),
            (256, secs(70)),
            (3, Duration::ZERO)
        ]
    );
}

#[test]
fn by_default_failures_linger_sixty_seconds_as_in_linux() {
    let out = failure_lingers(Config::DEFAULT.with_failure_linger(secs(10)));
    // 5 s and 20 s are duplicates; 70 s is past 60 s: a new run.
    assert_eq!(
        out,
        [
            (256, secs(0)),
            (256, secs(5)),
            (256, secs(20)),
            (256, secs(70)),
            (2, Duration::ZERO)
        ]
    );
}

#[test]
fn without_transient_caching_successes_still_linger_dedup_linger() {
    let config = Config::DEFAULT
        .with_no_transient_caching(true)
        .with_failure_linger(secs(1));
    let kmod = leaked(config);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("ok")));
    let later = ex.spawn(at(
        sim,
        secs(30),
        timed(sim, kmod.request_module(format_args!("ok"))),
    ));
    ex.run(sim).unwrap();
    assert_eq!(done(&later), (0, secs(30)));
    assert_eq!(sim.runs().len(), 1);
}

// ---------------------------------------------------------------- watchdog

/// A helper that never exits; a waiting request and two duplicates.
fn hung(config: Config, can_kill: bool) -> (Vec<(i32, Duration)>, &'static SimKmod) {
    let kmod = leaked(config);
    let sim = kmod.platform();
    sim.set_can_kill(can_kill);
    sim.set_script(|cmd| match cmd.name() {
        "hang" => Behavior::exits(0).lasting(secs(100)),
        _ => Behavior::exits(0),
    });
    let mut ex = Executor::new();
    let hs: Vec<_> = (0..3)
        .map(|i| {
            ex.spawn(at(
                sim,
                ms(i),
                timed(sim, kmod.request_module(format_args!("hang"))),
            ))
        })
        .collect();
    ex.run(sim).unwrap();
    (hs.iter().map(done).collect(), kmod)
}

#[test]
fn the_watchdog_kills_a_hung_helper_and_everyone_gets_9() {
    let (out, kmod) = hung(Config::DEFAULT.with_helper_timeout(Some(secs(2))), true);
    assert_eq!(out, [(9, secs(2)), (9, secs(2)), (9, secs(2))]);
    let sim = kmod.platform();
    assert_eq!(sim.killed().len(), 1);
    let run = &sim.runs()[0];
    assert!(run.killed && run.ends == secs(2));
    let st = kmod.stats();
    assert_eq!(
        (st.helpers_killed, st.running_helpers, st.duplicates),
        (1, 0, 2)
    );
    let killed: Vec<_> = sim
        .events()
        .into_iter()
        .filter(|e| e.kind == "helper_killed")
        .collect();
    assert_eq!(killed.len(), 1);
    assert!(killed[0].detail.contains("after: 2s") && killed[0].detail.contains("killed: true"));
}

#[test]
fn by_default_a_slow_helper_is_waited_for_as_in_linux() {
    let (out, kmod) = hung(Config::DEFAULT, true);
    assert_eq!(out, [(0, secs(100)), (0, secs(100)), (0, secs(100))]);
    assert!(kmod.platform().killed().is_empty());
    assert_eq!(kmod.stats().helpers_killed, 0);
}

#[test]
fn a_platform_that_cannot_kill_keeps_waiting_and_says_so() {
    let (out, kmod) = hung(Config::DEFAULT.with_helper_timeout(Some(secs(2))), false);
    assert_eq!(out, [(0, secs(100)), (0, secs(100)), (0, secs(100))]);
    let st = kmod.stats();
    assert_eq!(st.helpers_killed, 0);
    let ev: Vec<_> = kmod
        .platform()
        .events()
        .into_iter()
        .filter(|e| e.kind == "helper_killed")
        .collect();
    assert!(ev.len() == 1 && ev[0].detail.contains("killed: false"));
}

#[test]
fn the_watchdog_does_not_touch_helpers_that_end_in_time_or_nowait_ones() {
    let kmod = leaked(Config::DEFAULT.with_helper_timeout(Some(secs(2))));
    let sim = kmod.platform();
    sim.set_script(|cmd| match cmd.name() {
        "quick" => Behavior::exits(3).lasting(ms(1999)),
        _ => Behavior::exits(0).lasting(secs(10)),
    });
    let mut ex = Executor::new();
    let q = ex.spawn(timed(sim, kmod.request_module(format_args!("quick"))));
    let n = ex.spawn(timed(
        sim,
        kmod.request_module_nowait(format_args!("detached")),
    ));
    ex.run(sim).unwrap();
    assert_eq!(done(&q), (768, ms(1999)));
    assert_eq!(done(&n), (0, Duration::ZERO));
    assert!(sim.killed().is_empty());
}

// ---------------------------------------------------------------- all on

#[test]
fn the_preset_turns_every_policy_on_and_the_default_none() {
    let on = Config::WITH_POLICIES;
    assert!(on.loop_detection && on.dups_hold_no_slot && on.no_transient_caching);
    assert!(on.helper_timeout.is_some());
    let off = Config::DEFAULT;
    assert!(!off.loop_detection && !off.dups_hold_no_slot && !off.no_transient_caching);
    assert_eq!(off.helper_timeout, None);
    // The preset keeps the kernel's limits.
    assert_eq!(
        (
            on.max_concurrent,
            on.busy_timeout,
            on.dedup,
            on.dedup_linger
        ),
        (
            off.max_concurrent,
            off.busy_timeout,
            off.dedup,
            off.dedup_linger
        )
    );
    let _ = Errno::ELOOP;
}
