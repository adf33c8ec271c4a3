//! What the Linux port adds to the conformance kit's scenarios
//! (`tests/conformance.rs` runs the kit, SPEC §7 included): with real
//! processes and one kernel-like thread per request, 0008 and 0009 with
//! exactly 50 helper processes alive at once and never a 51st, the real 5 s
//! busy timeout, and the 5 s drain of `disable_helpers`.

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
