//! Stress: 150 plain threads x 20 requests each through the blocking API.
//! Every result must be the one its name calls for.

use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

use reqmod::{AllowAll, Config, KernelRet};
use reqmod_linux::{LinuxKmod, LinuxPlatform, request_module_blocking};
use reqmod_tests::Sandbox;

const THREADS: usize = 150;
const PER_THREAD: usize = 20;

/// Names ending in an even number load (0); odd ones are not found (256).
const SCRIPT: &str = "#!/bin/sh\necho \"start $$ $3\" >> \"${0%/*}/events\"\n\
case \"$3\" in\n  *[02468]) code=0 ;;\n  *) code=1 ;;\nesac\n\
echo \"end $$ $3\" >> \"${0%/*}/events\"\nexit $code\n";

fn expected(name: &str) -> i32 {
    let last = name.bytes().last().unwrap_or(b'1');
    if (last - b'0').is_multiple_of(2) {
        0
    } else {
        256
    }
}

fn stress(
    dedup: bool,
    name_of: impl Fn(usize, usize) -> String + Sync,
) -> (Sandbox, reqmod::Stats) {
    let sandbox = Sandbox::new(if dedup { "stress-dedup" } else { "stress" });
    let script = sandbox.script("modprobe", SCRIPT);
    let kmod = LinuxKmod::with_config(
        LinuxPlatform::new(),
        Config::DEFAULT.with_dedup(dedup),
        AllowAll,
    );
    kmod.set_modprobe_path(script.as_os_str().as_bytes());
    let start = Instant::now();
    std::thread::scope(|scope| {
        let threads: Vec<_> = (0..THREADS)
            .map(|t| {
                let (kmod, name_of) = (&kmod, &name_of);
                scope.spawn(move || {
                    for j in 0..PER_THREAD {
                        let name = name_of(t, j);
                        let ret =
                            request_module_blocking(kmod, format_args!("{name}")).kernel_ret();
                        assert_eq!(ret, expected(&name), "thread {t} request {j}: {name}");
                    }
                })
            })
            .collect();
        for thread in threads {
            thread.join().expect("a request thread failed");
        }
    });
    let stats = kmod.stats();
    eprintln!(
        "dedup {dedup}: {} requests in {:?}: {stats:?}",
        THREADS * PER_THREAD,
        start.elapsed()
    );
    assert_eq!(stats.requests, (THREADS * PER_THREAD) as u64);
    assert_eq!(stats.completed, stats.requests);
    assert!(stats.max_concurrent_seen <= 50);
    assert!(
        sandbox.max_concurrent() <= 50,
        "{} helpers at once",
        sandbox.max_concurrent()
    );
    (sandbox, stats)
}

#[test]
fn stress_150_threads_distinct_names() {
    let (sandbox, stats) = stress(false, |t, j| format!("mod{t}x{j}"));
    assert_eq!(stats.helpers_started, (THREADS * PER_THREAD) as u64);
    assert_eq!(sandbox.starts(), THREADS * PER_THREAD);
    assert_eq!(stats.busy_timeouts, 0);
}

#[test]
fn stress_150_threads_shared_names_with_dedup() {
    // 97 names shared by every thread: mostly duplicates.
    let (sandbox, stats) = stress(true, |t, j| format!("shared{}", (t * PER_THREAD + j) % 97));
    assert_eq!(stats.helpers_started + stats.duplicates, stats.requests);
    assert!(stats.helpers_started >= 97);
    assert_eq!(sandbox.starts() as u64, stats.helpers_started);
}
