//! The kernel's kmod selftest scenarios (SPEC §7, from
//! `tools/testing/selftests/kmod/kmod.sh` and `lib/test_kmod.c`) on the
//! virtual-time platform, with the duplicate table on (reqmod's default) and
//! off (the kernel's default build). The helper is a modprobe that knows one
//! module, `xfs`, and exits 1 for anything else; each run takes 100 ms.

use core::time::Duration;

use reqmod::sim::{Behavior, Executor, SimPlatform};
use reqmod::{AllowAll, Config, KernelRet, Kmod};

fn kmod(dedup: bool) -> Kmod<SimPlatform> {
    let config = Config::DEFAULT.with_dedup(dedup);
    let kmod = Kmod::with_config(SimPlatform::new(), config, AllowAll);
    kmod.platform().set_script(|cmd| {
        let found = cmd.path() == b"/sbin/modprobe" && cmd.name() == "xfs";
        Behavior::exits(if found { 0 } else { 1 }).lasting(Duration::from_millis(100))
    });
    kmod
}

/// `n` concurrent waiting requests for `name`: their integers, the helper
/// runs, the most helpers alive at once, and the virtual time taken.
fn run(kmod: &Kmod<SimPlatform>, n: usize, name: &str) -> (Vec<i32>, usize, usize, Duration) {
    let sim = kmod.platform();
    let start = sim.now();
    let runs_before = sim.runs().len();
    let mut ex = Executor::new();
    let hs: Vec<_> = (0..n)
        .map(|_| ex.spawn(kmod.request_module(format_args!("{name}"))))
        .collect();
    ex.run(sim).unwrap();
    let rets = hs.iter().map(|h| h.take().unwrap().kernel_ret()).collect();
    (
        rets,
        sim.runs().len() - runs_before,
        sim.max_helpers_alive(),
        sim.now() - start,
    )
}

#[test]
fn scenario_0001_empty_name_is_not_found() {
    for dedup in [true, false] {
        let (rets, runs, _, _) = run(&kmod(dedup), 1, "");
        assert_eq!((rets, runs), (vec![256], 1), "dedup={dedup}");
    }
}

#[test]
fn scenario_0002_missing_module_is_not_found() {
    for dedup in [true, false] {
        let (rets, _, _, _) = run(&kmod(dedup), 1, "this-module-does-not-exist");
        assert_eq!(rets, [256], "dedup={dedup}");
    }
}

#[test]
fn scenario_0005_fifty_concurrent_requests() {
    let (rets, runs, _, _) = run(&kmod(true), 50, "xfs");
    assert_eq!(
        (rets, runs),
        (vec![0; 50], 1),
        "one helper run, 49 duplicates"
    );
    let (rets, runs, alive, t) = run(&kmod(false), 50, "xfs");
    assert_eq!((rets, runs, alive), (vec![0; 50], 50, 50));
    assert_eq!(t, Duration::from_millis(100), "all 50 at once");
}

#[test]
fn scenarios_0008_and_0009_queue_beyond_fifty_without_timing_out() {
    for (n, batches) in [(50 + 50 / 6, 2), (50 + 50 / 4, 2)] {
        let (rets, runs, _, _) = run(&kmod(true), n, "xfs");
        assert_eq!((rets, runs), (vec![0; n], 1), "{n} with dedup");
        let k = kmod(false);
        let (rets, runs, alive, t) = run(&k, n, "xfs");
        assert_eq!(
            (rets, runs, alive),
            (vec![0; n], n, 50),
            "{n} without dedup: never more than 50"
        );
        assert_eq!(
            t,
            Duration::from_millis(100 * batches),
            "the extra ones waited one run, not 5 s"
        );
        assert_eq!(k.stats().busy_timeouts, 0);
    }
}

#[test]
fn scenario_0010_missing_helper_fails_with_enoent() {
    for dedup in [true, false] {
        let k = kmod(dedup);
        k.set_modprobe_path(b"/sbin/no-such-modprobe");
        k.platform()
            .set_script(|_| Behavior::fails_to_start(reqmod::Errno::ENOENT));
        let (rets, runs, _, _) = run(&k, 1, "xfs");
        assert_eq!((rets, runs), (vec![-2], 1), "the exec was tried and failed");
    }
}

#[test]
fn scenario_0011_empty_helper_path_fails_without_running_anything() {
    for dedup in [true, false] {
        let k = kmod(dedup);
        k.set_modprobe_path(b"");
        let (rets, runs, _, _) = run(&k, 1, "xfs");
        assert_eq!((rets, runs), (vec![-2], 0));
    }
}
