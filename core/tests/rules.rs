//! One test per rule of SPEC sections 2 to 5, on the virtual-time platform.
//! Each asserts exact integers and virtual times.

use core::cell::{Cell, RefCell};
use core::future::Future;
use core::time::Duration;

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use reqmod::sim::{Behavior, Executor, JoinHandle, SimPlatform};
use reqmod::{
    AllowAll, Config, Errno, KernelRet, KillSignal, Kmod, MODULE_NAME_LEN, Outcome, Platform,
    UmhWait, WaitStatus,
};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

/// Runs `fut` and records the virtual time it finished.
async fn timed<'a, F: Future<Output = Outcome> + 'a>(
    sim: &'a SimPlatform,
    fut: F,
) -> (i32, Duration) {
    let out = fut.await;
    (out.kernel_ret(), sim.now())
}

/// Starts `fut` at virtual time `at`.
async fn at<'a, T, F: Future<Output = T> + 'a>(sim: &'a SimPlatform, at: Duration, fut: F) -> T {
    sim.sleep_until(at).await;
    fut.await
}

fn helper(run: Duration, code: u8) -> impl Fn(&reqmod::HelperCommand) -> Behavior {
    move |_| Behavior::exits(code).lasting(run)
}

fn done<T>(h: &JoinHandle<T>) -> T {
    h.take().expect("task finished")
}

// ---------------------------------------------------------------- SPEC §2

#[test]
fn empty_path_is_checked_before_name_length_security_and_slots() {
    let asked = Cell::new(0);
    let deny = |_: &str| -> Result<(), Errno> {
        asked.set(asked.get() + 1);
        Err(Errno::EPERM)
    };
    // No slot at all: anything that reached step 5 would wait 5 s.
    let config = Config::DEFAULT.with_max_concurrent(0);
    let kmod: Kmod<SimPlatform, _> = Kmod::with_config(SimPlatform::new(), config, deny);
    let sim = kmod.platform();
    let too_long = "x".repeat(MODULE_NAME_LEN);
    let mut ex = Executor::new();

    kmod.set_modprobe_path(b"");
    let a = ex.spawn(timed(sim, kmod.request_module(format_args!("{too_long}"))));
    ex.run(sim).unwrap();
    assert_eq!(done(&a), (-2, Duration::ZERO), "empty path first: -ENOENT");
    assert_eq!(asked.get(), 0, "security hook not asked");

    kmod.set_modprobe_path(b"/sbin/modprobe");
    let b = ex.spawn(timed(sim, kmod.request_module(format_args!("{too_long}"))));
    ex.run(sim).unwrap();
    assert_eq!(
        done(&b),
        (-36, Duration::ZERO),
        "then the name: -ENAMETOOLONG"
    );
    assert_eq!(asked.get(), 0);

    let c = ex.spawn(timed(sim, kmod.request_module(format_args!("snd"))));
    ex.run(sim).unwrap();
    assert_eq!(
        done(&c),
        (-1, Duration::ZERO),
        "then security, before any slot wait"
    );
    assert_eq!(asked.get(), 1);

    assert!(sim.runs().is_empty());
    assert!(sim.events().is_empty(), "refused requests are not traced");
    let st = kmod.stats();
    assert_eq!((st.invalid, st.denied, st.busy_timeouts), (2, 1, 0));
}

#[test]
fn slot_wait_comes_after_security() {
    let config = Config::DEFAULT.with_max_concurrent(0);
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    let a = ex.spawn(timed(sim, kmod.request_module(format_args!("snd"))));
    ex.run(sim).unwrap();
    assert_eq!(done(&a), (-62, secs(5)));
}

#[cfg(target_pointer_width = "64")]
#[test]
fn names_of_55_bytes_pass_and_56_fail() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    let mut ex = Executor::new();
    let n55 = "m".repeat(55);
    let n56 = "m".repeat(56);
    let a = ex.spawn(kmod.request_module(format_args!("{n55}")));
    let b = ex.spawn(kmod.request_module(format_args!("{n56}")));
    ex.run(sim).unwrap();
    assert_eq!(done(&a).kernel_ret(), 0);
    assert_eq!(done(&b).kernel_ret(), -36);
    assert_eq!(sim.runs().len(), 1);
    assert_eq!(sim.runs()[0].command.name(), n55);
}

#[test]
fn argv_and_envp_are_exactly_the_kernels() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    let mut ex = Executor::new();
    for name in ["-rf /", "fs-ext4", "with space", ""] {
        ex.spawn(kmod.request_module(format_args!("{name}")));
    }
    ex.run(sim).unwrap();
    let runs = sim.runs();
    assert_eq!(runs.len(), 4);
    for (run, name) in runs.iter().zip(["-rf /", "fs-ext4", "with space", ""]) {
        assert_eq!(
            run.command.argv(),
            [&b"/sbin/modprobe"[..], b"-q", b"--", name.as_bytes()]
        );
        assert_eq!(
            run.command.envp(),
            [
                &b"HOME=/"[..],
                b"TERM=linux",
                b"PATH=/sbin:/usr/sbin:/bin:/usr/bin"
            ]
        );
        assert_eq!(run.command.path(), b"/sbin/modprobe");
    }
}

#[test]
fn wait_uses_umh_wait_proc_and_nowait_umh_wait_exec() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(|_| Behavior::exits(3).exec_taking(secs(1)).lasting(secs(9)));
    let mut ex = Executor::new();
    let w = ex.spawn(timed(sim, kmod.request_module(format_args!("a"))));
    let n = ex.spawn(timed(sim, kmod.request_module_nowait(format_args!("b"))));
    ex.run(sim).unwrap();
    let modes: Vec<UmhWait> = sim.runs().iter().map(|r| r.wait).collect();
    assert_eq!(modes, [UmhWait::Proc, UmhWait::Exec]);
    assert_eq!(
        done(&w),
        (3 << 8, secs(10)),
        "wait: the exit status, at exit"
    );
    assert_eq!(done(&n), (0, secs(1)), "nowait: 0 once executed");
}

#[test]
fn slots_are_handed_out_first_come_first_served() {
    let config = Config::DEFAULT.with_max_concurrent(2);
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 0));
    let mut ex = Executor::new();
    // Arrivals at 0, 1 ms, 2 ms, ...: names say the arrival order.
    for i in 0..7u64 {
        ex.spawn(at(sim, ms(i), kmod.request_module(format_args!("m{i}"))));
    }
    ex.run(sim).unwrap();
    let runs = sim.runs();
    let names: Vec<&str> = runs.iter().map(|r| r.command.name()).collect();
    assert_eq!(names, ["m0", "m1", "m2", "m3", "m4", "m5", "m6"]);
    let starts: Vec<u128> = runs.iter().map(|r| r.started.as_millis()).collect();
    assert_eq!(starts, [0, 1, 1000, 1001, 2000, 2001, 3000]);
    assert_eq!(kmod.stats().max_concurrent_seen, 2);
}

#[test]
fn busy_timeout_is_minus_62_at_exactly_5_s_and_not_before() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(10), 0));
    let mut ex = Executor::new();
    let holders: Vec<_> = (0..50)
        .map(|i| ex.spawn(timed(sim, kmod.request_module(format_args!("h{i}")))))
        .collect();
    let late = ex.spawn(timed(sim, kmod.request_module(format_args!("late"))));
    ex.run_until(sim, Duration::from_nanos(4_999_999_999))
        .unwrap();
    assert!(!late.is_finished(), "still waiting at 4.999999999 s");
    assert_eq!(kmod.stats().waiting_for_slot, 1);
    ex.run(sim).unwrap();
    assert_eq!(done(&late), (-62, secs(5)));
    for h in &holders {
        assert_eq!(done(h), (0, secs(10)));
    }
    let st = kmod.stats();
    assert_eq!(
        (st.busy_timeouts, st.max_concurrent_seen, st.helpers_started),
        (1, 50, 50)
    );
    let ev: Vec<_> = sim
        .events()
        .into_iter()
        .filter(|e| e.kind == "busy_timeout")
        .collect();
    assert_eq!(ev.len(), 1);
    assert_eq!((ev[0].name.as_str(), ev[0].at), ("late", secs(5)));
}

#[test]
fn a_slot_freed_just_before_the_deadline_is_taken() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(Duration::from_nanos(4_999_999_999), 0));
    let mut ex = Executor::new();
    for i in 0..50 {
        ex.spawn(kmod.request_module(format_args!("h{i}")));
    }
    let late = ex.spawn(timed(sim, kmod.request_module(format_args!("late"))));
    ex.run(sim).unwrap();
    assert_eq!(done(&late), (0, Duration::from_nanos(2 * 4_999_999_999)));
}

#[test]
fn overflowing_the_wait_queue_still_serves_every_waiter_in_time() {
    // 3 slots, a queue of 2: 45 requests, 40 in the overflow lobby.
    let config = Config::DEFAULT.with_max_concurrent(3);
    let kmod: Kmod<SimPlatform, AllowAll, CriticalSectionRawMutex, 3, 2, 3> =
        Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    sim.set_script(helper(ms(400), 0));
    let mut ex = Executor::new();
    let hs: Vec<_> = (0..45u64)
        .map(|i| {
            ex.spawn(at(
                sim,
                ms(i),
                timed(sim, kmod.request_module(format_args!("m{i}"))),
            ))
        })
        .collect();
    ex.run(sim).unwrap();
    // Request i arrives at i ms; served in order, it starts with batch i / 3
    // at (i / 3) * 400 ms. Requests 0..=38 start within 5 s of arriving (38
    // starts at 4.8 s, 4.762 s after it arrived); 39 would start at 5.2 s,
    // 5.161 s after: it and every later one fail exactly 5 s after arriving.
    let names: Vec<String> = sim
        .runs()
        .iter()
        .map(|r| r.command.name().to_string())
        .collect();
    let expected: Vec<String> = (0..names.len()).map(|i| format!("m{i}")).collect();
    assert_eq!(names, expected, "served in arrival order");
    for (i, h) in hs.iter().enumerate() {
        let (ret, t) = done(h);
        if i < names.len() {
            assert_eq!(ret, 0, "request {i}");
        } else {
            assert_eq!((ret, t), (-62, ms(i as u64) + secs(5)), "request {i}");
        }
    }
    assert_eq!(names.len(), 39);
    assert_eq!(kmod.stats().max_concurrent_seen, 3);
}

#[test]
fn module_request_is_traced_after_the_slot_and_for_duplicates() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 0));
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("dup")));
    ex.spawn(kmod.request_module(format_args!("dup")));
    ex.spawn(kmod.request_module_nowait(format_args!("dup")));
    ex.run(sim).unwrap();
    let kinds: Vec<(&str, bool)> = sim.events().iter().map(|e| (e.kind, e.wait)).collect();
    assert_eq!(
        kinds,
        [
            ("module_request", true),
            ("module_request", true),
            ("duplicate", true),
            ("module_request", false),
            ("duplicate", false),
        ]
    );
}

#[test]
fn trace_event_carries_the_callers_location() {
    struct Recorder {
        sim: SimPlatform,
        callers: RefCell<Vec<(String, u32)>>,
    }
    impl Platform for Recorder {
        fn now(&self) -> Duration {
            self.sim.now()
        }
        fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> {
            self.sim.sleep_until(deadline)
        }
        fn run_helper(
            &self,
            cmd: reqmod::HelperCommand,
            wait: UmhWait,
        ) -> impl Future<Output = Result<WaitStatus, Errno>> {
            self.sim.run_helper(cmd, wait)
        }
        fn trace(&self, event: &reqmod::Event<'_>) {
            if let reqmod::Event::ModuleRequest { caller, .. } = event {
                self.callers
                    .borrow_mut()
                    .push((caller.file().to_string(), caller.line()));
            }
        }
    }
    let kmod = Kmod::new(Recorder {
        sim: SimPlatform::new(),
        callers: RefCell::new(Vec::new()),
    });
    let mut ex = Executor::new();
    let line = line!() + 1;
    ex.spawn(reqmod::request_module!(kmod, "fs-{}", "xfs"));
    ex.run(&kmod.platform().sim).unwrap();
    assert_eq!(
        *kmod.platform().callers.borrow(),
        [(file!().to_string(), line)]
    );
}

#[test]
fn waiting_from_an_async_context_warns_once() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    let mut ex = Executor::new();
    sim.set_async(true);
    let a = ex.spawn(kmod.request_module_nowait(format_args!("a")));
    ex.run(sim).unwrap();
    assert_eq!(
        sim.events()
            .iter()
            .filter(|e| e.kind == "async_wait")
            .count(),
        0,
        "nowait: no warning"
    );
    let b = ex.spawn(kmod.request_module(format_args!("b")));
    let c = ex.spawn(kmod.request_module(format_args!("c")));
    ex.run(sim).unwrap();
    let warns: Vec<String> = sim
        .events()
        .iter()
        .filter(|e| e.kind == "async_wait")
        .map(|e| e.name.clone())
        .collect();
    assert_eq!(warns, ["b"], "warned once, and the requests carried on");
    assert_eq!(
        [done(&a), done(&b), done(&c)].map(|o| o.kernel_ret()),
        [0, 0, 0]
    );
}

// ------------------------------------------------------ return conventions

#[test]
fn every_outcome_has_the_kernels_integer() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(|cmd| match cmd.name().trim_end_matches("-nowait") {
        "ok" => Behavior::exits(0),
        "notfound" => Behavior::exits(1),
        "killed" => Behavior::killed_by(9),
        "eacces" => Behavior::fails_to_start(Errno::EACCES),
        "enoexec" => Behavior::fails_to_start(Errno::ENOEXEC),
        "enomem" => Behavior::fails_to_start(Errno::ENOMEM),
        "odd" => Behavior::fails_to_start(Errno::from_raw(95)),
        _ => Behavior::fails_to_start(Errno::ENOENT),
    });
    let mut ex = Executor::new();
    let cases = [
        ("ok", true, 0),
        ("notfound", true, 256),
        ("killed", true, 9),
        ("eacces", true, -13),
        ("enoexec", true, -8),
        ("enomem", true, -12),
        ("odd", true, -95),
        ("missing", true, -2),
        // Distinct names: a nowait request for a name already in the table is a
        // duplicate and returns 0.
        ("notfound-nowait", false, 0), // nowait: exec succeeded
        ("eacces-nowait", false, -13), // nowait: exec failed
    ];
    let hs: Vec<_> = cases
        .iter()
        .map(|(n, wait, _)| ex.spawn(kmod.request(*wait, format_args!("{n}"))))
        .collect();
    ex.run(sim).unwrap();
    for ((name, wait, want), h) in cases.iter().zip(&hs) {
        assert_eq!(done(h).kernel_ret(), *want, "{name} wait={wait}");
    }
    let st = kmod.stats();
    assert_eq!(st.failures, 8);
    assert_eq!(st.completed, 10);
}

#[test]
fn exit_one_is_256_and_typed() {
    let kmod = Kmod::new(SimPlatform::new());
    kmod.platform().set_script(helper(Duration::ZERO, 1));
    let mut ex = Executor::new();
    let h = ex.spawn(kmod.request_module(format_args!("nope")));
    ex.run(kmod.platform()).unwrap();
    let out = done(&h);
    assert_eq!(out, Ok(WaitStatus::exited(1)));
    assert_eq!(out.unwrap().exit_code(), Some(1));
    assert_eq!(out.kernel_ret(), 256);
}

// ---------------------------------------------------------------- SPEC §3

#[test]
fn wait_first_then_wait_duplicates_share_its_result() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(3), 1));
    let mut ex = Executor::new();
    let first = ex.spawn(timed(sim, kmod.request_module(format_args!("snd"))));
    let dups: Vec<_> = (0..5)
        .map(|i| {
            ex.spawn(at(
                sim,
                ms(500 * i),
                timed(sim, kmod.request_module(format_args!("snd"))),
            ))
        })
        .collect();
    ex.run(sim).unwrap();
    assert_eq!(done(&first), (256, secs(3)));
    for d in &dups {
        assert_eq!(
            done(d),
            (256, secs(3)),
            "released together, with the same integer"
        );
    }
    assert_eq!(sim.runs().len(), 1);
    assert_eq!(kmod.stats().duplicates, 5);
}

#[test]
fn nowait_duplicate_returns_zero_at_once_without_spawning() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(3), 1));
    let mut ex = Executor::new();
    let first = ex.spawn(timed(sim, kmod.request_module(format_args!("snd"))));
    let dup = ex.spawn(at(
        sim,
        secs(1),
        timed(sim, kmod.request_module_nowait(format_args!("snd"))),
    ));
    ex.run(sim).unwrap();
    assert_eq!(done(&first), (256, secs(3)));
    assert_eq!(done(&dup), (0, secs(1)));
    assert_eq!(sim.runs().len(), 1);
}

#[test]
fn nowait_first_request_is_not_tracked() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(3), 1));
    let mut ex = Executor::new();
    let a = ex.spawn(timed(sim, kmod.request_module_nowait(format_args!("snd"))));
    let b = ex.spawn(at(
        sim,
        ms(1),
        timed(sim, kmod.request_module_nowait(format_args!("snd"))),
    ));
    let c = ex.spawn(at(
        sim,
        ms(2),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    ex.run(sim).unwrap();
    assert_eq!(
        sim.runs().len(),
        3,
        "no entry was made by the nowait requests"
    );
    assert_eq!(done(&a), (0, Duration::ZERO));
    assert_eq!(done(&b), (0, ms(1)));
    assert_eq!(done(&c), (256, ms(2) + secs(3)));
}

#[test]
fn finished_entry_lingers_sixty_seconds() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 1));
    let mut ex = Executor::new();
    let first = ex.spawn(timed(sim, kmod.request_module(format_args!("snd"))));
    let inside = ex.spawn(at(
        sim,
        secs(61) - Duration::from_nanos(1),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    let nowait_inside = ex.spawn(at(
        sim,
        secs(60),
        timed(sim, kmod.request_module_nowait(format_args!("snd"))),
    ));
    let after = ex.spawn(at(
        sim,
        secs(61),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    ex.run(sim).unwrap();
    assert_eq!(done(&first), (256, secs(1)));
    assert_eq!(
        done(&inside),
        (256, secs(61) - Duration::from_nanos(1)),
        "answered from the table"
    );
    assert_eq!(done(&nowait_inside), (0, secs(60)));
    assert_eq!(done(&after), (256, secs(62)), "a new helper run after 60 s");
    assert_eq!(sim.runs().len(), 2);
}

#[test]
fn linger_time_is_a_parameter() {
    let config = Config::DEFAULT.with_dedup_linger(secs(2));
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("x")));
    ex.spawn(at(sim, secs(1), kmod.request_module(format_args!("x"))));
    ex.spawn(at(sim, secs(2), kmod.request_module(format_args!("x"))));
    ex.run(sim).unwrap();
    assert_eq!(sim.runs().len(), 2);
}

#[test]
fn an_untracked_request_that_finishes_first_completes_the_entry() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    // The first run (the nowait one) takes 2 s to exec and fails with EACCES;
    // the waiting run lasts 10 s and exits 1.
    let mode_script = |wait: bool| {
        if wait {
            Behavior::exits(1).lasting(secs(10))
        } else {
            Behavior::fails_to_start(Errno::EACCES).exec_taking(secs(2))
        }
    };
    let count = std::rc::Rc::new(Cell::new(0));
    let c2 = count.clone();
    sim.set_script(move |_| {
        c2.set(c2.get() + 1);
        mode_script(c2.get() != 1)
    });
    let mut ex = Executor::new();
    let n = ex.spawn(timed(sim, kmod.request_module_nowait(format_args!("snd"))));
    let first = ex.spawn(at(
        sim,
        secs(1),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    let dup = ex.spawn(at(
        sim,
        ms(1500),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    let later = ex.spawn(at(
        sim,
        secs(20),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    ex.run(sim).unwrap();
    assert_eq!(done(&n), (-13, secs(2)));
    assert_eq!(
        done(&dup),
        (-13, secs(2)),
        "the untracked result completed the entry"
    );
    assert_eq!(
        done(&first),
        (256, secs(11)),
        "the first request keeps its own result"
    );
    assert_eq!(
        done(&later),
        (-13, secs(20)),
        "the stored result is the first announced"
    );
    assert_eq!(count.get(), 2);
}

#[test]
fn a_killed_first_request_gives_its_waiters_erestartsys() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(10), 0));
    let kill = KillSignal::new();
    let mut ex = Executor::new();
    let first = ex.spawn(timed(
        sim,
        kmod.request_killable(true, &kill, format_args!("snd")),
    ));
    let dup = ex.spawn(at(
        sim,
        secs(1),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    ex.spawn(async {
        sim.sleep_until(secs(2)).await;
        kill.kill();
    });
    ex.run(sim).unwrap();
    assert_eq!(done(&first), (-512, secs(2)));
    assert_eq!(done(&dup), (-512, secs(2)));
    assert_eq!(
        sim.helpers_alive_at(secs(5)),
        1,
        "the helper itself runs on"
    );
    assert_eq!(kmod.stats().running_helpers, 0);
}

#[test]
fn dropping_the_first_request_gives_its_waiters_erestartsys() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(10), 0));
    let mut ex = Executor::new();
    let first = ex.spawn(kmod.request_module(format_args!("snd")));
    let dup = ex.spawn(at(
        sim,
        secs(1),
        timed(sim, kmod.request_module(format_args!("snd"))),
    ));
    ex.run_until(sim, secs(3)).unwrap();
    ex.cancel(&first);
    ex.run(sim).unwrap();
    assert_eq!(done(&dup), (-512, secs(3)));
    let st = kmod.stats();
    assert_eq!(
        (st.cancelled, st.completed, st.dup_pending, st.slots_in_use),
        (1, 1, 0, 0)
    );
}

#[test]
fn a_killed_duplicate_returns_erestartsys_and_the_first_goes_on() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(10), 1));
    let kill = KillSignal::new();
    let mut ex = Executor::new();
    let first = ex.spawn(timed(sim, kmod.request_module(format_args!("snd"))));
    let dup = ex.spawn(timed(
        sim,
        kmod.request_killable(true, &kill, format_args!("snd")),
    ));
    ex.spawn(async {
        sim.sleep_until(secs(4)).await;
        kill.kill();
    });
    ex.run(sim).unwrap();
    assert_eq!(done(&dup), (-512, secs(4)));
    assert_eq!(done(&first), (256, secs(10)));
    assert_eq!(kmod.stats().dup_waiters, 0);
}

#[test]
fn a_duplicate_whose_result_is_in_already_ignores_the_kill() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 1));
    let kill = KillSignal::new();
    kill.kill();
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("snd")));
    let late = ex.spawn(at(
        sim,
        secs(2),
        kmod.request_killable(true, &kill, format_args!("snd")),
    ));
    ex.run(sim).unwrap();
    assert_eq!(
        done(&late).kernel_ret(),
        256,
        "a completed entry answers even a killed caller"
    );
}

#[test]
fn a_full_table_drops_the_entry_that_finished_longest_ago() {
    // 2 slots, 2 table entries.
    let config = Config::DEFAULT.with_max_concurrent(2);
    let kmod: Kmod<SimPlatform, AllowAll, CriticalSectionRawMutex, 2, 2, 2> =
        Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 1));
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("a")));
    ex.spawn(at(sim, secs(2), kmod.request_module(format_args!("b"))));
    // Table {a (done 1 s), b (done 3 s)} is full: c drops a.
    ex.spawn(at(sim, secs(4), kmod.request_module(format_args!("c"))));
    let b_again = ex.spawn(at(sim, secs(10), kmod.request_module(format_args!("b"))));
    let a_again = ex.spawn(at(sim, secs(11), kmod.request_module(format_args!("a"))));
    ex.run(sim).unwrap();
    let names: Vec<String> = sim
        .runs()
        .iter()
        .map(|r| r.command.name().to_string())
        .collect();
    assert_eq!(
        names,
        ["a", "b", "c", "a"],
        "b was still in the table, a was not"
    );
    assert_eq!(done(&b_again).kernel_ret(), 256);
    assert_eq!(done(&a_again).kernel_ret(), 256);
}

#[test]
fn dedup_off_runs_every_request() {
    let config = Config::DEFAULT.with_dedup(false);
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 0));
    let mut ex = Executor::new();
    for _ in 0..5 {
        ex.spawn(kmod.request_module(format_args!("snd")));
        ex.spawn(kmod.request_module_nowait(format_args!("snd")));
    }
    ex.run(sim).unwrap();
    assert_eq!(sim.runs().len(), 10);
    assert_eq!(kmod.stats().duplicates, 0);
}

#[test]
fn names_are_compared_byte_for_byte() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 0));
    let mut ex = Executor::new();
    for n in ["snd", "SND", "snd ", "snd\u{0}x"] {
        ex.spawn(kmod.request_module(format_args!("{n}")));
    }
    ex.run(sim).unwrap();
    // "snd\0x" is "snd" as a C string would be, so it is a duplicate of "snd".
    assert_eq!(sim.runs().len(), 3);
}

// ---------------------------------------------------------------- SPEC §4

#[test]
fn disabled_helpers_give_ebusy() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    let mut ex = Executor::new();
    let d = ex.spawn(kmod.disable_helpers());
    ex.run(sim).unwrap();
    assert_eq!(done(&d), Ok(()));
    let a = ex.spawn(kmod.request_module(format_args!("a")));
    let b = ex.spawn(kmod.request_module_nowait(format_args!("b")));
    ex.run(sim).unwrap();
    assert_eq!([done(&a), done(&b)].map(|o| o.kernel_ret()), [-16, -16]);
    assert!(sim.runs().is_empty());
    assert_eq!(kmod.stats().helpers_refused, 2);
    kmod.enable_helpers();
    let c = ex.spawn(kmod.request_module(format_args!("c")));
    ex.run(sim).unwrap();
    assert_eq!(done(&c).kernel_ret(), 0);
}

#[test]
fn disabling_waits_for_running_helpers() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(3), 0));
    let mut ex = Executor::new();
    let r = ex.spawn(timed(sim, kmod.request_module(format_args!("a"))));
    let d = ex.spawn(at(sim, secs(1), async {
        let out = kmod.disable_helpers().await;
        (out, sim.now())
    }));
    ex.run(sim).unwrap();
    assert_eq!(done(&d), (Ok(()), secs(3)));
    assert_eq!(done(&r), (0, secs(3)));
    assert!(kmod.helpers_disabled());
}

#[test]
fn disabling_fails_with_eagain_after_5_s_and_enables_again() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(10), 0));
    let mut ex = Executor::new();
    let r = ex.spawn(timed(sim, kmod.request_module(format_args!("a"))));
    let refused = ex.spawn(at(sim, secs(2), kmod.request_module(format_args!("b"))));
    let d = ex.spawn(async {
        let out = kmod.disable_helpers().await;
        (out, sim.now())
    });
    let after = ex.spawn(at(sim, secs(6), kmod.request_module(format_args!("c"))));
    ex.run(sim).unwrap();
    assert_eq!(done(&d), (Err(Errno::EAGAIN), secs(5)));
    assert_eq!(
        done(&refused).kernel_ret(),
        -16,
        "refused while the drain ran"
    );
    assert_eq!(
        done(&after).kernel_ret(),
        0,
        "enabled again after the failure"
    );
    assert_eq!(done(&r), (0, secs(10)));
    assert!(!kmod.helpers_disabled());
}

#[test]
fn dropping_a_disable_enables_again() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(helper(secs(10), 0));
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("a")));
    let d = ex.spawn(kmod.disable_helpers());
    ex.run_until(sim, secs(1)).unwrap();
    assert!(kmod.helpers_disabled());
    ex.cancel(&d);
    assert!(!kmod.helpers_disabled());
}

// ---------------------------------------------------------------- SPEC §5

#[test]
fn helper_path_has_sysctl_write_semantics() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    sim.set_script(|_| Behavior::exits(0));
    let mut ex = Executor::new();

    kmod.set_modprobe_path(b"/usr/bin/kmod-load\n");
    assert_eq!(kmod.modprobe_path().as_bytes(), b"/usr/bin/kmod-load");
    assert_eq!(
        &kmod.modprobe_path().sysctl_read()[..],
        b"/usr/bin/kmod-load\n"
    );
    kmod.set_modprobe_path(b"/bin/a\0/bin/b");
    assert_eq!(kmod.modprobe_path().as_bytes(), b"/bin/a");
    let long = [b'p'; 300];
    kmod.set_modprobe_path(&long);
    assert_eq!(kmod.modprobe_path().as_bytes(), &long[..255]);
    let h = ex.spawn(kmod.request_module(format_args!("x")));
    ex.run(sim).unwrap();
    assert_eq!(done(&h).kernel_ret(), 0);
    assert_eq!(
        sim.runs()[0].command.path(),
        &long[..255],
        "the truncated path is what runs"
    );

    for empty in [&b""[..], b"\n"] {
        kmod.set_modprobe_path(empty);
        assert!(kmod.modprobe_path().is_empty());
        let h = ex.spawn(kmod.request_module(format_args!("x")));
        ex.run(sim).unwrap();
        assert_eq!(done(&h).kernel_ret(), -2);
    }
    assert_eq!(sim.runs().len(), 1, "nothing ran with the empty path");
}

#[test]
fn path_emptied_while_waiting_for_a_slot_fails_like_a_failed_exec() {
    let config = Config::DEFAULT.with_max_concurrent(1);
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    let sim = kmod.platform();
    sim.set_script(helper(secs(1), 0));
    let mut ex = Executor::new();
    ex.spawn(kmod.request_module(format_args!("a")));
    let b = ex.spawn(kmod.request_module(format_args!("b")));
    ex.run_until(sim, ms(500)).unwrap();
    kmod.set_modprobe_path(b"");
    ex.run(sim).unwrap();
    assert_eq!(done(&b).kernel_ret(), -2);
    assert_eq!(sim.runs().len(), 1);
}

// ------------------------------------------------------------ other API

#[test]
fn try_then_request_module_probes_requests_and_probes_again() {
    let kmod = Kmod::new(SimPlatform::new());
    let sim = kmod.platform();
    let present = Cell::new(false);
    let probes = Cell::new(0);
    sim.set_script(|_| Behavior::exits(0));
    let mut ex = Executor::new();
    let probe = || {
        probes.set(probes.get() + 1);
        present.get().then_some("vfat")
    };
    let h = ex.spawn(kmod.try_then_request_module(probe, format_args!("fs-vfat")));
    ex.run(sim).unwrap();
    assert_eq!(done(&h), None);
    assert_eq!((probes.get(), sim.runs().len()), (2, 1));
    present.set(true);
    let h = ex.spawn(kmod.try_then_request_module(probe, format_args!("fs-vfat")));
    ex.run(sim).unwrap();
    assert_eq!(done(&h), Some("vfat"));
    assert_eq!(
        (probes.get(), sim.runs().len()),
        (3, 1),
        "found at once: no request"
    );
}

#[test]
fn max_concurrent_is_capped_at_the_slot_capacity() {
    let config = Config::DEFAULT.with_max_concurrent(500);
    let kmod: Kmod<SimPlatform> = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    assert_eq!(kmod.config().max_concurrent, 50);
}

#[test]
fn request_futures_are_send_when_the_platforms_are() {
    // A platform whose futures are Send (and which is Sync, for a shared Kmod).
    struct Threads;
    impl Platform for Threads {
        fn now(&self) -> Duration {
            Duration::ZERO
        }
        async fn sleep_until(&self, _deadline: Duration) {}
        async fn run_helper(
            &self,
            _cmd: reqmod::HelperCommand,
            _wait: UmhWait,
        ) -> Result<WaitStatus, Errno> {
            Ok(WaitStatus::SUCCESS)
        }
    }
    fn assert_send<T: Send>(_: &T) {}
    fn assert_sync<T: Sync>(_: &T) {}
    static KMOD: Kmod<Threads> = Kmod::new(Threads);
    let kill = KillSignal::new();
    assert_sync(&KMOD);
    assert_send(&KMOD.request_module(format_args!("a")));
    assert_send(&KMOD.request_module_nowait(format_args!("a")));
    assert_send(&KMOD.request_killable(true, &kill, format_args!("a")));
    assert_send(&KMOD.disable_helpers());
    assert_send(&KMOD.try_then_request_module(|| None::<()>, format_args!("a")));
    // And one runs to completion on another thread.
    let out =
        std::thread::spawn(|| embassy_futures::block_on(KMOD.request_module(format_args!("snd"))))
            .join()
            .unwrap();
    assert_eq!(out.kernel_ret(), 0);
}
