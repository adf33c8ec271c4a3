//! Leaks: after 2,000 requests (wait, nowait, and cancelled ones at every
//! stage) the process has no child left (no zombie), and as many open
//! descriptors and threads as before.
//!
//! One test in this binary, so no other test's helpers or threads disturb
//! the counts.

use std::os::unix::ffi::OsStrExt;
use std::time::Duration;

use embassy_futures::select::{Either, select};
use reqmod::{AllowAll, Config, KernelRet};
use reqmod_linux::{LinuxKmod, LinuxPlatform, block_on, block_on_all, live_helpers, sleep};
use reqmod_tests::{Sandbox, child_pids, open_fds, threads, wait_until, zombie_children};

#[test]
fn no_zombie_descriptor_or_thread_after_2000_requests() {
    let sandbox = Sandbox::new("leaks");
    // Names ending in "slow" take a while; the others exit at once; "fail"
    // exits 1.
    let script = sandbox.script(
        "modprobe",
        "#!/bin/sh\ncase \"$3\" in\n  *slow) sleep 0.2 ;;\n  *fail) exit 1 ;;\nesac\nexit 0\n",
    );
    let kmod = LinuxKmod::with_config(
        LinuxPlatform::new(),
        Config::DEFAULT.with_busy_timeout(Duration::from_secs(60)),
        AllowAll,
    );
    kmod.set_modprobe_path(script.as_os_str().as_bytes());

    // Warm up: the reactor thread and its descriptors exist from here on.
    assert_eq!(
        block_on(kmod.request_module(format_args!("warm-up"))).kernel_ret(),
        0
    );
    wait_until("warm-up reaped", Duration::from_secs(10), || {
        child_pids().is_empty()
    });
    let fds_before = open_fds();
    let threads_before = threads();

    let start = std::time::Instant::now();
    let mut cancelled = 0;
    for batch in 0..10 {
        let outcomes = block_on_all((0..200).map(|i| {
            let kmod = &kmod;
            async move {
                let n = batch * 200 + i;
                let (wait, name, cancel_after) = match n % 8 {
                    0 => (true, format!("m{n}"), None),
                    1 => (true, format!("m{n}-fail"), None),
                    2 => (false, format!("m{n}-slow"), None),
                    3 => (false, format!("m{n}"), None),
                    // Cancelled while its helper runs (or before).
                    4 => (true, format!("m{n}-slow"), Some(Duration::from_millis(20))),
                    // Cancelled at its first await point.
                    5 => (true, format!("m{n}-slow"), Some(Duration::ZERO)),
                    // Duplicates of a name in flight; some cancelled.
                    6 => (
                        true,
                        format!("m{}-slow", n - 2),
                        Some(Duration::from_millis(50)),
                    ),
                    _ => (true, format!("m{}-slow", n - 3), None),
                };
                let request = kmod.request(wait, format_args!("{name}"));
                match cancel_after {
                    None => Some((n, wait, name, request.await.kernel_ret())),
                    Some(after) => match select(request, sleep(after)).await {
                        Either::First(result) => Some((n, wait, name, result.kernel_ret())),
                        Either::Second(()) => None,
                    },
                }
            }
        }));
        for outcome in outcomes {
            match outcome {
                None => cancelled += 1,
                Some((n, wait, name, ret)) => {
                    let expected = if wait && name.ends_with("fail") {
                        256
                    } else {
                        0
                    };
                    // Duplicates of a request that was cancelled while its
                    // helper ran get what it announced: -ERESTARTSYS.
                    let dup_of_cancelled = n % 8 >= 6 && ret == -512;
                    assert!(
                        ret == expected || dup_of_cancelled,
                        "{name} (wait {wait}): {ret}"
                    );
                }
            }
        }
    }
    assert!(cancelled >= 250, "only {cancelled} requests were cancelled");
    let stats = kmod.stats();
    eprintln!(
        "2000 requests in {:?}, {cancelled} cancelled: {stats:?}",
        start.elapsed()
    );
    assert_eq!(stats.requests, 2001);
    assert_eq!(stats.in_flight, 0);
    assert_eq!(stats.slots_in_use, 0);

    // Every helper, cancelled and nowait ones too, runs to its end and is
    // reaped: no child of ours is left, zombie or not.
    wait_until("every helper reaped", Duration::from_secs(60), || {
        live_helpers() == 0 && child_pids().is_empty()
    });
    assert!(zombie_children().is_empty());
    assert_eq!(open_fds(), fds_before, "descriptors leaked");
    assert_eq!(threads(), threads_before, "threads leaked");
}
