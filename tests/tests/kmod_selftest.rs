//! The kernel's kmod selftest scenarios (SPEC §7, from
//! `tools/testing/selftests/kmod/kmod.sh` + `lib/test_kmod.c`), with real
//! helper processes and one kernel-like thread per request, plus the real
//! 5 s busy timeout.
//!
//! The fake modprobe knows `test_module` (exit 0); any other name, the empty
//! one too, is "not found" (exit 1, so the request returns 256).

use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use reqmod::{AllowAll, Config, KernelRet};
use reqmod_linux::{LinuxKmod, LinuxPlatform, request_module_blocking};
use reqmod_tests::{FakeModprobe, Sandbox, wait_until};

fn new_kmod(path: &Path, config: Config) -> LinuxKmod {
    let kmod = LinuxKmod::with_config(LinuxPlatform::new(), config, AllowAll);
    kmod.set_modprobe_path(path.as_os_str().as_bytes());
    kmod
}

/// Requests every name at once, one thread each (like the kernel's test
/// threads); returns each result and how long it took, in input order.
fn concurrent(kmod: &LinuxKmod, names: &[String]) -> Vec<(i32, Duration)> {
    let barrier = Barrier::new(names.len());
    std::thread::scope(|scope| {
        let threads: Vec<_> = names
            .iter()
            .map(|name| {
                let barrier = &barrier;
                scope.spawn(move || {
                    barrier.wait();
                    let start = Instant::now();
                    let ret = request_module_blocking(kmod, format_args!("{name}")).kernel_ret();
                    (ret, start.elapsed())
                })
            })
            .collect();
        threads
            .into_iter()
            .map(|t| t.join().expect("request thread"))
            .collect()
    })
}

fn names(name: &str, count: usize) -> Vec<String> {
    vec![name.to_owned(); count]
}

#[test]
fn scenario_0001_empty_name_is_not_found() {
    let sandbox = Sandbox::new("0001");
    let kmod = new_kmod(
        &sandbox.modprobe(&FakeModprobe::kernel_like()),
        Config::DEFAULT,
    );
    assert_eq!(
        request_module_blocking(&kmod, format_args!("")).kernel_ret(),
        256
    );
    // The helper really ran, with the empty name.
    let events = sandbox.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(events[0].name, "");
}

#[test]
fn scenario_0002_missing_module_is_not_found() {
    let sandbox = Sandbox::new("0002");
    let kmod = new_kmod(
        &sandbox.modprobe(&FakeModprobe::kernel_like()),
        Config::DEFAULT,
    );
    let ret = request_module_blocking(&kmod, format_args!("{}", "this_module_does_not_exist"));
    assert_eq!(ret.kernel_ret(), 256);
    assert_eq!(ret.map(|s| s.exit_code()), Ok(Some(1)));
    assert_eq!(sandbox.starts(), 1);
}

#[test]
fn scenario_0005_fifty_concurrent_requests_succeed() {
    let sandbox = Sandbox::new("0005");
    let path = sandbox.modprobe(&FakeModprobe::kernel_like().sleeping(0.2));
    let kmod = new_kmod(&path, Config::DEFAULT);
    let results = concurrent(&kmod, &names("test_module", 50));
    assert!(results.iter().all(|&(ret, _)| ret == 0), "{results:?}");
    // Duplicates of one name share the first request's helper.
    assert_eq!(sandbox.starts(), 1);
    assert_eq!(kmod.stats().duplicates, 49);
}

#[test]
fn scenario_0005_without_dedup_runs_fifty_helpers() {
    let sandbox = Sandbox::new("0005-nodedup");
    let path = sandbox.modprobe(&FakeModprobe::kernel_like().gated());
    let kmod = new_kmod(&path, Config::DEFAULT.with_dedup(false));
    std::thread::scope(|scope| {
        let _release = sandbox.release_on_drop();
        let runner = scope.spawn(|| concurrent(&kmod, &names("test_module", 50)));
        // All 50 helpers run at once: none has to wait for a slot.
        wait_until("50 helpers running", Duration::from_secs(20), || {
            sandbox.starts() == 50
        });
        assert_eq!(kmod.stats().waiting_for_slot, 0);
        sandbox.release();
        let results = runner.join().expect("runner");
        assert!(results.iter().all(|&(ret, _)| ret == 0), "{results:?}");
    });
    assert_eq!(sandbox.max_concurrent(), 50);
}

/// 0008 and 0009: more requests than slots for one module, every one 0,
/// none waiting 5 s; with the kernel's default build (no dedup) exactly 50
/// helpers run at once, never more.
fn over_subscribed(id: &str, count: usize) {
    // As configured by default here (dedup on): one helper serves all.
    let sandbox = Sandbox::new(id);
    let path = sandbox.modprobe(&FakeModprobe::kernel_like().sleeping(0.3));
    let kmod = new_kmod(&path, Config::DEFAULT);
    let results = concurrent(&kmod, &names("test_module", count));
    for &(ret, took) in &results {
        assert_eq!(ret, 0, "{results:?}");
        assert!(took < Duration::from_secs(5), "a request waited {took:?}");
    }
    assert_eq!(sandbox.starts(), 1);
    assert!(kmod.stats().max_concurrent_seen <= 50);

    // As the kernel runs it (no dedup): 50 helpers, the rest queue for slots.
    // The helpers are held until all 50 run and the rest are seen queued; a
    // long busy timeout keeps a slow machine from turning that wait into
    // -ETIME (the 5 s bound is checked above).
    let sandbox = Sandbox::new(id);
    let path = sandbox.modprobe(&FakeModprobe::kernel_like().gated());
    let config = Config::DEFAULT
        .with_dedup(false)
        .with_busy_timeout(Duration::from_secs(60));
    let kmod = new_kmod(&path, config);
    std::thread::scope(|scope| {
        let _release = sandbox.release_on_drop();
        let runner = scope.spawn(|| concurrent(&kmod, &names("test_module", count)));
        wait_until("50 helpers running", Duration::from_secs(20), || {
            sandbox.starts() == 50
        });
        wait_until(
            "the others queued for slots",
            Duration::from_secs(20),
            || kmod.stats().waiting_for_slot == count - 50,
        );
        // Every slot is held by a gated helper: no 51st can have started.
        assert_eq!(sandbox.starts(), 50);
        sandbox.release();
        let results = runner.join().expect("runner");
        assert!(results.iter().all(|&(ret, _)| ret == 0), "{results:?}");
    });
    assert_eq!(sandbox.starts(), count);
    assert_eq!(sandbox.ends(), count);
    assert_eq!(
        sandbox.max_concurrent(),
        50,
        "never more than 50 helpers at once"
    );
    assert_eq!(kmod.stats().max_concurrent_seen, 50);
    assert_eq!(kmod.stats().busy_timeouts, 0);
}

#[test]
fn scenario_0008_58_concurrent_requests_queue_for_slots() {
    over_subscribed("0008", 50 + 50 / 6);
}

#[test]
fn scenario_0009_62_concurrent_requests_queue_for_slots() {
    over_subscribed("0009", 50 + 50 / 4);
}

#[test]
fn scenario_0010_missing_helper_is_enoent() {
    let sandbox = Sandbox::new("0010");
    let kmod = new_kmod(&sandbox.path().join("no-such-modprobe"), Config::DEFAULT);
    let wait = request_module_blocking(&kmod, format_args!("test_module"));
    assert_eq!(wait.kernel_ret(), -2);
    let nowait = reqmod_linux::block_on(kmod.request_module_nowait(format_args!("other")));
    assert_eq!(nowait.kernel_ret(), -2);
    assert_eq!(kmod.stats().helpers_started, 2, "the exec was attempted");
}

#[test]
fn scenario_0011_empty_helper_path_is_enoent_without_exec() {
    let sandbox = Sandbox::new("0011");
    let kmod = new_kmod(
        &sandbox.modprobe(&FakeModprobe::kernel_like()),
        Config::DEFAULT,
    );
    kmod.set_modprobe_path(b"");
    assert_eq!(
        request_module_blocking(&kmod, format_args!("test_module")).kernel_ret(),
        -2
    );
    assert_eq!(
        reqmod_linux::block_on(kmod.request_module_nowait(format_args!("test_module")))
            .kernel_ret(),
        -2
    );
    // Also through the sysctl's "bare newline" write.
    kmod.set_modprobe_path(b"\n");
    assert_eq!(
        request_module_blocking(&kmod, format_args!("x")).kernel_ret(),
        -2
    );
    assert_eq!(kmod.stats().helpers_started, 0);
    assert_eq!(sandbox.starts(), 0, "nothing may be run");
}

/// A helper slower than the 5 s busy timeout and more callers than slots:
/// the 10 that cannot get a slot in 5 s get -ETIME, the 50 others the
/// helper's status.
#[test]
fn busy_timeout_for_real() {
    let sandbox = Sandbox::new("busy");
    let path = sandbox.modprobe(&FakeModprobe::exiting(3).sleeping(7.0));
    let kmod = new_kmod(&path, Config::DEFAULT);
    let names: Vec<String> = (0..60).map(|i| format!("slow-{i}")).collect();
    let results = concurrent(&kmod, &names);
    let served: Vec<_> = results.iter().filter(|r| r.0 == 3 << 8).collect();
    let timed_out: Vec<_> = results.iter().filter(|r| r.0 == -62).collect();
    assert_eq!(served.len(), 50, "{results:?}");
    assert_eq!(timed_out.len(), 10, "{results:?}");
    for &&(_, took) in &timed_out {
        assert!(
            took >= Duration::from_millis(4900) && took < Duration::from_millis(6900),
            "timed out after {took:?}"
        );
    }
    for &&(_, took) in &served {
        assert!(took >= Duration::from_secs(7), "served after {took:?}");
    }
    assert_eq!(sandbox.starts(), 50);
    assert_eq!(kmod.stats().busy_timeouts, 10);
}

/// Helpers disabled (suspend, early boot): disabling waits up to 5 s for a
/// running helper and fails with -EAGAIN; while disabled, requests get
/// -EBUSY without running anything.
#[test]
fn disabled_helpers() {
    let sandbox = Sandbox::new("disabled");
    let path = sandbox.modprobe(&FakeModprobe::exiting(0).gated());
    let kmod = new_kmod(&path, Config::DEFAULT);
    std::thread::scope(|scope| {
        let _release = sandbox.release_on_drop();
        let running =
            scope.spawn(|| request_module_blocking(&kmod, format_args!("a")).kernel_ret());
        wait_until("the helper", Duration::from_secs(20), || {
            sandbox.starts() == 1
        });
        let start = Instant::now();
        let disabled = reqmod_linux::block_on(kmod.disable_helpers());
        let took = start.elapsed();
        assert_eq!(disabled.map_err(|e| e.raw()), Err(11), "EAGAIN");
        assert!(
            took >= Duration::from_millis(4900) && took < Duration::from_secs(7),
            "{took:?}"
        );
        sandbox.release();
        assert_eq!(running.join().expect("request"), 0);
    });
    assert_eq!(reqmod_linux::block_on(kmod.disable_helpers()), Ok(()));
    assert_eq!(
        request_module_blocking(&kmod, format_args!("b")).kernel_ret(),
        -16
    );
    assert_eq!(
        reqmod_linux::block_on(kmod.request_module_nowait(format_args!("c"))).kernel_ret(),
        -16
    );
    kmod.enable_helpers();
    assert_eq!(
        request_module_blocking(&kmod, format_args!("d")).kernel_ret(),
        0
    );
    assert_eq!(sandbox.starts(), 2);
}
