//! `-append selftest`: SPEC §7's scenarios and the stress tests, on every hart
//! with real timer interrupts. Each check asserts exact integers, counts and
//! time windows; the first line of a failing check's log names it, and the
//! machine exits with status 1 (0 when every check passed).

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};
use core::time::Duration;

use reqmod::{
    Errno, HelperCommand, ModprobePath, ModuleName, Platform, UmhWait, WaitStatus, kernel_ret,
};

use crate::machine::fdt::BootInfo;
use crate::machine::{MAX_HARTS, exit, trap};
use crate::modules::{self, ModuleState};
use crate::os::executor::{self, COUNTERS};
use crate::os::task::{spawn_join, timeout};
use crate::os::time;
use crate::platform::{
    self, BoxFuture, HELPERS, KMOD, KMOD_NODEDUP, SystemKmod, reset_max_running,
};
use crate::programs::modprobe::parse_args;

type CheckResult = Result<(), String>;

/// Fails the check with a message unless `cond`.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(format!($($fmt)+));
        }
    };
}

/// Fails the check unless `got == expected`.
macro_rules! ensure_eq {
    ($got:expr, $expected:expr, $what:expr) => {{
        let (got, expected) = ($got, $expected);
        if got != expected {
            return Err(format!("{}: got {:?}, expected {:?}", $what, got, expected));
        }
    }};
}

/// `MAX_KMOD_CONCURRENT`.
const SLOTS: usize = 50;
/// `MAX_KMOD_ALL_BUSY_TIMEOUT`.
const BUSY: Duration = Duration::from_secs(5);
/// Slack allowed after a deadline (QEMU's TCG on a loaded host is not a
/// real-time system), still well under the next event it must precede.
const SLACK: Duration = Duration::from_millis(900);

static HARTS: AtomicUsize = AtomicUsize::new(1);

type Check = (&'static str, fn() -> BoxFuture<CheckResult>);

/// Every check, in the order run.
const CHECKS: &[Check] = &[
    ("boot: every hart runs the executor", || {
        Box::pin(harts_online())
    }),
    ("timer: sleep 100 ms on timer interrupts", || {
        Box::pin(timer_sleep())
    }),
    ("umh: wait modes, missing path, dropped caller", || {
        Box::pin(umh_modes())
    }),
    ("modprobe: argv parsing and alias globs", || {
        Box::pin(modprobe_parsing())
    }),
    ("0001: empty name gives 256", || Box::pin(spec_0001())),
    ("0002: missing module gives 256", || Box::pin(spec_0002())),
    ("0005: 50 concurrent requests give 0", || {
        Box::pin(spec_concurrent("0005", 50))
    }),
    ("0008: 58 concurrent requests give 0", || {
        Box::pin(spec_concurrent("0008", 58))
    }),
    ("0009: 62 concurrent requests give 0, <= 50 helpers", || {
        Box::pin(spec_concurrent("0009", 62))
    }),
    ("0010: missing helper path gives -2", || {
        Box::pin(spec_0010())
    }),
    ("0011: empty helper path gives -2", || Box::pin(spec_0011())),
    ("names: 55 bytes ok, 56 bytes -36", || {
        Box::pin(name_lengths())
    }),
    ("modules: deps, nested requests, init once", || {
        Box::pin(module_loading())
    }),
    ("dups: waiters share the first result", || {
        Box::pin(duplicates())
    }),
    (
        "kill: a dropped first request, its helper, its duplicate",
        || Box::pin(dropped_request()),
    ),
    ("disable: drain, -EBUSY, enable", || {
        Box::pin(disable_helpers())
    }),
    ("busy: 60 requests, 6 s helpers, 10 x -62 at 5 s", || {
        Box::pin(busy_timeout())
    }),
    ("loop: self-requesting helper ends by the 5 s rule", || {
        Box::pin(request_loop())
    }),
    ("stress: 1000 requests on every hart, no dedup", || {
        Box::pin(stress(&KMOD_NODEDUP, "stress-", 25))
    }),
    ("stress: 1000 requests on every hart, dedup", || {
        Box::pin(stress(&KMOD, "stress-d", 10))
    }),
    ("leaks: no task, slot, waiter or helper left", || {
        Box::pin(no_leaks())
    }),
];

/// Runs every check, then exits QEMU.
pub async fn run(info: BootInfo) {
    HARTS.store(info.hart_count, Ordering::SeqCst);
    let t0 = time::now();
    let mut failed = 0;
    for (i, (name, check)) in CHECKS.iter().enumerate() {
        let started = time::now();
        let result = check().await;
        let ms = (time::now() - started).as_millis() as u64;
        match result {
            Ok(()) => defmt::info!("PASS {=usize} {=str} ({} ms)", i + 1, name, ms),
            Err(why) => {
                failed += 1;
                defmt::error!("FAIL {=usize} {=str}: {=str}", i + 1, name, why.as_str());
            }
        }
    }
    let secs = (time::now() - t0).as_millis() as u64;
    if failed == 0 {
        defmt::info!(
            "selftest: all checks passed ({=usize} checks, {} harts, {} ms)",
            CHECKS.len(),
            info.hart_count,
            secs
        );
        exit::exit_success()
    } else {
        defmt::error!(
            "selftest: {} of {=usize} checks FAILED",
            failed,
            CHECKS.len()
        );
        exit::exit_failure(1)
    }
}

// ----------------------------------------------------------------- helpers

fn timer_irqs() -> u64 {
    trap::IRQS
        .timer
        .iter()
        .map(|c| c.load(Ordering::Relaxed))
        .sum()
}

fn hart_counts(counters: &[core::sync::atomic::AtomicU64; MAX_HARTS]) -> [u64; MAX_HARTS] {
    core::array::from_fn(|i| counters[i].load(Ordering::Relaxed))
}

/// `n` requests at once, one task each; returns (kernel integer, time from
/// the common start to the result) per request, in spawn order.
async fn concurrent(
    kmod: &'static SystemKmod,
    n: usize,
    name: impl Fn(usize) -> String,
    wait: impl Fn(usize) -> bool,
) -> Vec<(i32, Duration)> {
    let start = time::now();
    let handles: Vec<_> = (0..n)
        .map(|i| {
            let name = name(i);
            let wait = wait(i);
            spawn_join(async move {
                let ret = kernel_ret(platform::request(kmod, wait, &name).await);
                (ret, time::now() - start)
            })
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    for h in handles {
        out.push(h.await);
    }
    out
}

async fn request(kmod: &'static SystemKmod, wait: bool, name: &str) -> i32 {
    kernel_ret(platform::request(kmod, wait, name).await)
}

/// Waits (at most `limit`) until no helper runs and both autoloaders are idle.
async fn drain(limit: Duration) -> CheckResult {
    let deadline = time::now() + limit;
    loop {
        let idle = |k: &SystemKmod| {
            let s = k.stats();
            s.in_flight == 0 && s.slots_in_use == 0 && s.running_helpers == 0
        };
        if HELPERS.running.load(Ordering::SeqCst) == 0 && idle(&KMOD) && idle(&KMOD_NODEDUP) {
            return Ok(());
        }
        ensure!(
            time::now() < deadline,
            "still busy after {} ms: {} helpers running, kmod {:?}",
            limit.as_millis(),
            HELPERS.running.load(Ordering::SeqCst),
            KMOD.stats()
        );
        time::sleep(Duration::from_millis(1)).await;
    }
}

fn set_path(path: &str) {
    KMOD.set_modprobe_path(path.as_bytes());
    KMOD_NODEDUP.set_modprobe_path(path.as_bytes());
}

fn cmd(path: &str, name: &str) -> HelperCommand {
    HelperCommand::modprobe(
        ModprobePath::from_sysctl_write(path.as_bytes()),
        ModuleName::new(name).expect("short test names"),
    )
}

// ------------------------------------------------------------------ checks

async fn harts_online() -> CheckResult {
    let expected = HARTS.load(Ordering::SeqCst);
    // Secondaries may still be on their way into the executor.
    for _ in 0..100 {
        if executor::online_harts().count_ones() as usize == expected {
            return Ok(());
        }
        time::sleep(Duration::from_millis(1)).await;
    }
    ensure_eq!(
        executor::online_harts().count_ones() as usize,
        expected,
        "harts online"
    );
    Ok(())
}

async fn timer_sleep() -> CheckResult {
    let irqs = timer_irqs();
    let t0 = time::now();
    time::sleep(Duration::from_millis(100)).await;
    let took = time::now() - t0;
    ensure!(
        took >= Duration::from_millis(100),
        "woke early, after {took:?}"
    );
    ensure!(
        took < Duration::from_millis(100) + SLACK,
        "woke late, after {took:?}"
    );
    ensure!(
        timer_irqs() > irqs,
        "no timer interrupt during a 100 ms sleep"
    );
    // The platform's clock is the same clock.
    let p = KMOD.platform();
    let d = p.now();
    p.sleep_until(d + Duration::from_millis(20)).await;
    ensure!(
        p.now() >= d + Duration::from_millis(20),
        "sleep_until returned early"
    );
    Ok(())
}

async fn umh_modes() -> CheckResult {
    let p = KMOD.platform();
    ensure_eq!(
        p.run_helper(cmd("/sbin/no-such-helper", "x"), UmhWait::Exec)
            .await,
        Err(Errno::ENOENT),
        "Exec of a missing path"
    );
    ensure_eq!(
        p.run_helper(cmd("/sbin/no-such-helper", "x"), UmhWait::Proc)
            .await,
        Err(Errno::ENOENT),
        "Proc of a missing path"
    );
    ensure_eq!(
        p.run_helper(cmd("/sbin/no-such-helper", "x"), UmhWait::NoWait)
            .await,
        Ok(WaitStatus::SUCCESS),
        "NoWait of a missing path"
    );
    ensure_eq!(
        p.run_helper(cmd("/sbin/modprobe-fail", "x"), UmhWait::Proc)
            .await
            .map(|s| s.raw()),
        Ok(256),
        "Proc of a helper exiting 1"
    );
    ensure_eq!(
        p.run_helper(cmd("/sbin/modprobe-env", "x"), UmhWait::Proc)
            .await
            .map(|s| s.raw()),
        Ok(0),
        "argv and envp seen by the helper"
    );

    // Exec returns once started, not once exited.
    let exited = HELPERS.exited.load(Ordering::SeqCst);
    let t0 = time::now();
    ensure_eq!(
        p.run_helper(cmd("/sbin/modprobe-slow", "sleep300-exec"), UmhWait::Exec)
            .await,
        Ok(WaitStatus::SUCCESS),
        "Exec of a slow helper"
    );
    ensure!(
        time::now() - t0 < Duration::from_millis(150),
        "Exec waited for the exit"
    );
    ensure_eq!(
        HELPERS.exited.load(Ordering::SeqCst),
        exited,
        "helpers exited right after Exec"
    );
    time::sleep(Duration::from_millis(400)).await;
    ensure_eq!(
        HELPERS.exited.load(Ordering::SeqCst),
        exited + 1,
        "helpers exited 400 ms later"
    );

    // NoWait returns at once too.
    let t0 = time::now();
    ensure_eq!(
        p.run_helper(
            cmd("/sbin/modprobe-slow", "sleep300-nowait"),
            UmhWait::NoWait
        )
        .await,
        Ok(WaitStatus::SUCCESS),
        "NoWait of a slow helper"
    );
    ensure!(
        time::now() - t0 < Duration::from_millis(150),
        "NoWait waited"
    );
    time::sleep(Duration::from_millis(400)).await;

    // Proc waits for the exit; a dropped caller leaves the helper running to its end.
    let t0 = time::now();
    ensure_eq!(
        p.run_helper(cmd("/sbin/modprobe-slow", "sleep150-proc"), UmhWait::Proc)
            .await,
        Ok(WaitStatus::SUCCESS),
        "Proc of a slow helper"
    );
    ensure!(
        time::now() - t0 >= Duration::from_millis(150),
        "Proc returned before the exit"
    );
    let exited = HELPERS.exited.load(Ordering::SeqCst);
    let dropped = timeout(
        Duration::from_millis(20),
        p.run_helper(cmd("/sbin/modprobe-slow", "sleep500-drop"), UmhWait::Proc),
    )
    .await;
    ensure!(dropped.is_none(), "the 500 ms helper finished within 20 ms");
    ensure_eq!(
        HELPERS.running.load(Ordering::SeqCst),
        1,
        "helpers running after the caller left"
    );
    time::sleep(Duration::from_millis(700)).await;
    ensure_eq!(
        HELPERS.exited.load(Ordering::SeqCst),
        exited + 1,
        "the orphaned helper's exit"
    );
    ensure_eq!(
        HELPERS.running.load(Ordering::SeqCst),
        0,
        "helpers running at the end"
    );
    Ok(())
}

async fn modprobe_parsing() -> CheckResult {
    let a = parse_args(["-q", "--", "-weird"]).map_err(String::from)?;
    ensure_eq!(
        (a.quiet, a.name, a.params),
        (true, "-weird", 0),
        "-q -- -weird"
    );
    let a = parse_args(["-v", "snd", "index=1", "id=x"]).map_err(String::from)?;
    ensure_eq!(
        (a.verbose, a.name, a.params),
        (true, "snd", 2),
        "-v snd index=1 id=x"
    );
    let a = parse_args(["-q", "--", ""]).map_err(String::from)?;
    ensure_eq!(a.name, "", "the empty name");
    ensure_eq!(parse_args(["-q"]), Err("missing module name"), "no name");
    ensure_eq!(parse_args(["-z", "x"]), Err("-z"), "unknown option");

    ensure!(
        modules::glob_match("virtio:d00000004v*", "virtio:d00000004v554D4551"),
        "virtio glob"
    );
    ensure!(
        !modules::glob_match("virtio:d00000004v*", "virtio:d00000005v554D4551"),
        "virtio glob miss"
    );
    ensure!(modules::glob_match("fs-ext4", "fs_ext4"), "- and _ alike");
    ensure!(
        modules::glob_match("snd-[a-c]?x*", "snd-bzx"),
        "class and ?"
    );
    ensure!(
        !modules::glob_match("snd-[!a-c]*", "snd-b"),
        "negated class"
    );
    ensure!(
        !modules::glob_match("kmodtest-*", "kmodtest"),
        "* needs the dash"
    );
    ensure_eq!(
        modules::resolve("fs-ext4").map(|m| m.name),
        Some("ext4"),
        "fs-ext4"
    );
    ensure_eq!(
        modules::resolve("nls_cp437").map(|m| m.name),
        Some("nls_cp437"),
        "by name"
    );
    ensure_eq!(
        modules::resolve("crc32c").map(|m| m.name),
        Some("crc32c_generic"),
        "plain alias"
    );
    ensure_eq!(modules::resolve("").map(|m| m.name), None, "empty name");
    Ok(())
}

async fn spec_0001() -> CheckResult {
    ensure_eq!(request(&KMOD, true, "").await, 256, "request_module(\"\")");
    ensure_eq!(
        request(&KMOD_NODEDUP, true, "").await,
        256,
        "request_module(\"\") without dedup"
    );
    Ok(())
}

async fn spec_0002() -> CheckResult {
    let name = "reqmod-no-such-module";
    ensure_eq!(request(&KMOD, true, name).await, 256, name);
    ensure_eq!(request(&KMOD_NODEDUP, true, name).await, 256, name);
    Ok(())
}

async fn spec_concurrent(id: &str, n: usize) -> CheckResult {
    let name = format!("kmodtest-{id}");

    // Duplicate table on: one helper, every other request is a duplicate.
    let before = KMOD.stats();
    let results = concurrent(&KMOD, n, |_| name.clone(), |_| true).await;
    let after = KMOD.stats();
    ensure_eq!(
        results.iter().filter(|r| r.0 == 0).count(),
        n,
        "requests returning 0 (dedup)"
    );
    ensure_eq!(
        after.requests - before.requests,
        n as u64,
        "requests (dedup)"
    );
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        1,
        "helpers started (dedup)"
    );
    ensure_eq!(
        after.duplicates - before.duplicates,
        n as u64 - 1,
        "duplicates (dedup)"
    );
    ensure!(
        after.max_concurrent_seen <= SLOTS,
        "{} slots at once",
        after.max_concurrent_seen
    );

    // The kernel's default build: every request runs its own helper.
    reset_max_running();
    let before = KMOD_NODEDUP.stats();
    let results = concurrent(&KMOD_NODEDUP, n, |_| name.clone(), |_| true).await;
    let after = KMOD_NODEDUP.stats();
    ensure_eq!(
        results.iter().filter(|r| r.0 == 0).count(),
        n,
        "requests returning 0"
    );
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        n as u64,
        "helpers started"
    );
    ensure_eq!(after.duplicates - before.duplicates, 0, "duplicates");
    ensure_eq!(
        after.busy_timeouts - before.busy_timeouts,
        0,
        "busy timeouts"
    );
    let max = HELPERS.max_running.load(Ordering::SeqCst);
    ensure!(max <= SLOTS, "{max} helpers ran at once");
    ensure!(
        after.max_concurrent_seen <= SLOTS,
        "{} slots at once",
        after.max_concurrent_seen
    );
    let slowest = results.iter().map(|r| r.1).max().unwrap_or_default();
    ensure!(
        slowest < BUSY,
        "a request waited {slowest:?} (none should wait 5 s)"
    );
    defmt::info!(
        "  {=str}: {} requests, at most {} helpers at once, slowest {} us",
        id,
        n,
        max,
        slowest.as_micros() as u64
    );
    drain(Duration::from_secs(1)).await
}

async fn spec_0010() -> CheckResult {
    let missing = HELPERS.missing.load(Ordering::SeqCst);
    let spawned = HELPERS.spawned.load(Ordering::SeqCst);
    set_path("/sbin/no-such-modprobe");
    let wait = request(&KMOD, true, "kmodtest-0010").await;
    let nowait = request(&KMOD_NODEDUP, false, "kmodtest-0010").await;
    set_path("/sbin/modprobe");
    ensure_eq!(wait, -2, "request_module with a missing helper");
    ensure_eq!(nowait, -2, "request_module_nowait with a missing helper");
    ensure_eq!(
        HELPERS.missing.load(Ordering::SeqCst) - missing,
        2,
        "exec attempts"
    );
    ensure_eq!(
        HELPERS.spawned.load(Ordering::SeqCst),
        spawned,
        "helpers spawned"
    );
    Ok(())
}

async fn spec_0011() -> CheckResult {
    let missing = HELPERS.missing.load(Ordering::SeqCst);
    let before = KMOD.stats();
    KMOD.set_modprobe_path(b"");
    ensure!(
        KMOD.modprobe_path().is_empty(),
        "the path reads back non-empty"
    );
    let wait = request(&KMOD, true, "kmodtest-0011").await;
    let nowait = request(&KMOD, false, "kmodtest-0011").await;
    KMOD.set_modprobe_path(b"\n");
    let newline = request(&KMOD, true, "kmodtest-0011").await;
    KMOD.set_modprobe_path(b"/sbin/modprobe\nignored");
    let path = KMOD.modprobe_path();
    ensure_eq!(
        path.as_bytes(),
        b"/sbin/modprobe",
        "path after a write with a newline"
    );
    let after = KMOD.stats();
    ensure_eq!(
        (wait, nowait, newline),
        (-2, -2, -2),
        "requests with an empty path"
    );
    ensure_eq!(
        HELPERS.missing.load(Ordering::SeqCst),
        missing,
        "exec attempts"
    );
    ensure_eq!(
        after.helpers_started,
        before.helpers_started,
        "helpers started"
    );
    ensure_eq!(
        request(&KMOD, true, "kmodtest-0011").await,
        0,
        "request after restoring the path"
    );
    Ok(())
}

async fn name_lengths() -> CheckResult {
    let longest = "n".repeat(reqmod::MODULE_NAME_LEN - 1);
    let too_long = "n".repeat(reqmod::MODULE_NAME_LEN);
    ensure_eq!(longest.len(), 55, "MODULE_NAME_LEN - 1 on riscv64");
    ensure_eq!(
        request(&KMOD, true, &longest).await,
        256,
        "a 55-byte name (no such module)"
    );
    ensure_eq!(request(&KMOD, true, &too_long).await, -36, "a 56-byte name");
    Ok(())
}

async fn module_loading() -> CheckResult {
    let before = KMOD.stats();
    ensure_eq!(request(&KMOD, true, "fs-ext4").await, 0, "fs-ext4");
    for m in ["ext4", "jbd2", "mbcache", "crc16", "crc32c_generic"] {
        ensure_eq!(modules::state(m), Some(ModuleState::Live), m);
        ensure_eq!(modules::init_runs(m), Some(1), m);
    }
    // ext4's init requested crypto-crc32c: two requests, two helpers.
    let after = KMOD.stats();
    ensure_eq!(
        after.requests - before.requests,
        2,
        "requests for fs-ext4 (incl. nested)"
    );
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        2,
        "helpers for fs-ext4"
    );
    // Already loaded: modprobe succeeds without running the init again.
    ensure_eq!(
        request(&KMOD_NODEDUP, true, "ext2").await,
        0,
        "ext2 (alias of loaded ext4)"
    );
    ensure_eq!(modules::init_runs("ext4"), Some(1), "ext4 init runs");

    ensure_eq!(
        request(&KMOD, true, "virtio:d00000004v554D4551").await,
        0,
        "virtio-rng modalias"
    );
    ensure_eq!(
        modules::state("virtio_rng"),
        Some(ModuleState::Live),
        "virtio_rng"
    );
    ensure_eq!(
        modules::state("rng_core"),
        Some(ModuleState::Live),
        "rng_core (dependency)"
    );
    ensure_eq!(
        request(&KMOD, true, "virtio:d000000FFv554D4551").await,
        256,
        "unknown modalias"
    );

    ensure_eq!(
        request(&KMOD, true, "kmod-badinit").await,
        256,
        "failing init"
    );
    ensure_eq!(
        modules::state("bad_init"),
        Some(ModuleState::Unloaded),
        "bad_init state"
    );
    ensure_eq!(
        request(&KMOD_NODEDUP, true, "kmod-badinit").await,
        256,
        "failing init again"
    );
    ensure_eq!(
        modules::init_runs("bad_init"),
        Some(2),
        "bad_init init runs"
    );

    ensure_eq!(
        request(&KMOD, true, "kmod-chained").await,
        0,
        "init with a nowait request"
    );
    for _ in 0..200 {
        if modules::state("chained_dep") == Some(ModuleState::Live) {
            break;
        }
        time::sleep(Duration::from_millis(1)).await;
    }
    ensure_eq!(
        modules::state("chained_dep"),
        Some(ModuleState::Live),
        "chained_dep"
    );
    drain(Duration::from_secs(1)).await
}

async fn duplicates() -> CheckResult {
    set_path("/sbin/modprobe-slow");
    let before = KMOD.stats();
    let name = "sleep300-dups";
    let start = time::now();
    let first = spawn_join(async move { (request(&KMOD, true, name).await, time::now()) });
    time::sleep(Duration::from_millis(30)).await;
    let waiters: Vec<_> = (0..3)
        .map(|_| spawn_join(async move { (request(&KMOD, true, name).await, time::now()) }))
        .collect();
    let t0 = time::now();
    let nowait = request(&KMOD, false, name).await;
    let nowait_took = time::now() - t0;
    let (first, first_at) = first.await;
    let mut shared = Vec::new();
    for w in waiters {
        shared.push(w.await);
    }
    set_path("/sbin/modprobe");
    ensure_eq!(first, 0, "first request");
    ensure!(
        first_at - start >= Duration::from_millis(300),
        "first returned before its helper"
    );
    ensure_eq!(nowait, 0, "nowait duplicate");
    ensure!(
        nowait_took < Duration::from_millis(150),
        "nowait duplicate waited {nowait_took:?}"
    );
    for (ret, at) in &shared {
        ensure_eq!(*ret, 0, "waiting duplicate");
        ensure!(
            *at >= first_at.saturating_sub(Duration::from_millis(5)),
            "a duplicate returned before the first"
        );
        ensure!(
            *at - start >= Duration::from_millis(300),
            "a duplicate returned before the helper exited"
        );
    }
    // Lingering: the stored result answers at once.
    let t0 = time::now();
    ensure_eq!(request(&KMOD, true, name).await, 0, "lingering duplicate");
    ensure!(
        time::now() - t0 < Duration::from_millis(150),
        "the lingering duplicate waited"
    );
    let after = KMOD.stats();
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        1,
        "helpers started"
    );
    ensure_eq!(after.duplicates - before.duplicates, 5, "duplicates served");

    // A failing helper's status is shared too.
    set_path("/sbin/modprobe-fail");
    let before = KMOD.stats();
    let results = concurrent(&KMOD, 4, |_| String::from("dupfail"), |_| true).await;
    set_path("/sbin/modprobe");
    let after = KMOD.stats();
    ensure!(
        results.iter().all(|r| r.0 == 256),
        "results {:?}",
        results.iter().map(|r| r.0).collect::<Vec<_>>()
    );
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        1,
        "helpers started (failing)"
    );
    ensure_eq!(
        after.duplicates - before.duplicates,
        3,
        "duplicates served (failing)"
    );
    Ok(())
}

async fn dropped_request() -> CheckResult {
    set_path("/sbin/modprobe-slow");
    let name = "sleep400-kill";
    let exited = HELPERS.exited.load(Ordering::SeqCst);
    let before = KMOD.stats();
    let first = spawn_join(timeout(
        Duration::from_millis(100),
        request(&KMOD, true, name),
    ));
    time::sleep(Duration::from_millis(30)).await;
    let dup = spawn_join(async move { (request(&KMOD, true, name).await, time::now()) });
    let t0 = time::now();
    let first = first.await;
    let (dup, dup_at) = dup.await;
    set_path("/sbin/modprobe");
    ensure!(
        first.is_none(),
        "the first request finished within 100 ms: {first:?}"
    );
    // The killed first request announces -ERESTARTSYS to its duplicates (SPEC §3).
    ensure_eq!(dup, -512, "the duplicate of a killed request");
    ensure!(
        dup_at - t0 < Duration::from_millis(150),
        "the duplicate waited for the helper instead"
    );
    // The helper was not killed: it runs to its end and is reaped.
    ensure_eq!(
        HELPERS.exited.load(Ordering::SeqCst),
        exited,
        "helpers exited at the kill"
    );
    time::sleep(Duration::from_millis(500)).await;
    ensure_eq!(
        HELPERS.exited.load(Ordering::SeqCst),
        exited + 1,
        "the helper's exit"
    );
    let after = KMOD.stats();
    ensure_eq!(after.cancelled - before.cancelled, 1, "cancelled requests");
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        1,
        "helpers started"
    );
    drain(Duration::from_secs(1)).await
}

async fn disable_helpers() -> CheckResult {
    set_path("/sbin/modprobe-slow");
    let running = spawn_join(async { request(&KMOD_NODEDUP, true, "sleep300-drain").await });
    time::sleep(Duration::from_millis(30)).await;
    let t0 = time::now();
    let disabled = KMOD_NODEDUP.disable_helpers().await;
    let waited = time::now() - t0;
    set_path("/sbin/modprobe");
    ensure_eq!(disabled, Ok(()), "disable_helpers");
    ensure!(
        waited >= Duration::from_millis(200),
        "disable_helpers did not wait for the helper ({waited:?})"
    );
    ensure_eq!(running.await, 0, "the helper that was running");
    ensure_eq!(
        request(&KMOD_NODEDUP, true, "kmodtest-disabled").await,
        -16,
        "request while disabled"
    );
    KMOD_NODEDUP.enable_helpers();
    ensure_eq!(
        request(&KMOD_NODEDUP, true, "kmodtest-disabled").await,
        0,
        "request after enable"
    );
    Ok(())
}

async fn busy_timeout() -> CheckResult {
    const N: usize = 60;
    set_path("/sbin/modprobe-slow");
    reset_max_running();
    let irqs = timer_irqs();
    let before = KMOD.stats();
    let results = concurrent(&KMOD, N, |i| format!("slowbusy-{i:02}"), |_| true).await;
    set_path("/sbin/modprobe");
    let after = KMOD.stats();
    let timed_out: Vec<_> = results.iter().filter(|r| r.0 == -62).collect();
    let ok: Vec<_> = results.iter().filter(|r| r.0 == 0).collect();
    ensure_eq!(timed_out.len(), N - SLOTS, "requests failing with -ETIME");
    ensure_eq!(ok.len(), SLOTS, "requests returning 0");
    for (_, at) in &timed_out {
        ensure!(*at >= BUSY, "-ETIME after only {at:?}");
        ensure!(*at < BUSY + SLACK, "-ETIME only after {at:?}");
    }
    let helper = crate::programs::test_programs::SLOW_DEFAULT;
    for (_, at) in &ok {
        ensure!(*at >= helper, "a 6 s helper returned after {at:?}");
        ensure!(
            *at < helper + SLACK,
            "a 6 s helper returned only after {at:?}"
        );
    }
    ensure_eq!(
        HELPERS.max_running.load(Ordering::SeqCst),
        SLOTS,
        "most helpers at once"
    );
    ensure_eq!(
        after.busy_timeouts - before.busy_timeouts,
        (N - SLOTS) as u64,
        "busy timeouts"
    );
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        SLOTS as u64,
        "helpers started"
    );
    ensure_eq!(after.max_concurrent_seen, SLOTS, "most slots at once");
    ensure!(timer_irqs() > irqs, "no timer interrupt in 6 s");
    drain(Duration::from_secs(1)).await
}

async fn request_loop() -> CheckResult {
    set_path("/sbin/modprobe-loop");
    let before = KMOD.stats();
    let t0 = time::now();
    let ret = request(&KMOD, true, "loop-0").await;
    let took = time::now() - t0;
    set_path("/sbin/modprobe");
    let after = KMOD.stats();
    ensure_eq!(ret, 256, "the loop's first request");
    ensure!(took >= BUSY, "the loop ended after only {took:?}");
    ensure!(took < BUSY + SLACK, "the loop ended only after {took:?}");
    ensure_eq!(
        after.helpers_started - before.helpers_started,
        SLOTS as u64,
        "helpers in the loop"
    );
    ensure_eq!(
        after.busy_timeouts - before.busy_timeouts,
        1,
        "busy timeouts"
    );
    drain(Duration::from_secs(1)).await?;
    ensure_eq!(
        request(&KMOD, true, "kmodtest-after-loop").await,
        0,
        "a request after the loop"
    );
    Ok(())
}

async fn stress(kmod: &'static SystemKmod, prefix: &'static str, names: usize) -> CheckResult {
    const N: usize = 1000;
    let polls = hart_counts(&COUNTERS.polls);
    let programs = hart_counts(&HELPERS.per_hart);
    let spawned = HELPERS.spawned.load(Ordering::SeqCst);
    reset_max_running();
    let before = kmod.stats();
    let t0 = time::now();
    let results = concurrent(
        kmod,
        N,
        |i| format!("{prefix}{}", i % names),
        |i| i % 4 != 3,
    )
    .await;
    drain(Duration::from_secs(5)).await?;
    let took = time::now() - t0;
    let after = kmod.stats();
    let bad: Vec<i32> = results.iter().map(|r| r.0).filter(|&r| r != 0).collect();
    ensure!(
        bad.is_empty(),
        "{} requests failed, e.g. {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    ensure_eq!(after.requests - before.requests, N as u64, "requests");
    ensure_eq!(
        after.completed - before.completed,
        N as u64,
        "requests completed"
    );
    let helpers = after.helpers_started - before.helpers_started;
    let dups = after.duplicates - before.duplicates;
    if kmod.config().dedup {
        ensure_eq!(helpers + dups, N as u64, "helpers + duplicates");
        ensure!(
            helpers >= names as u64,
            "only {helpers} helpers for {names} names"
        );
    } else {
        ensure_eq!(helpers, N as u64, "helpers started");
        ensure_eq!(dups, 0, "duplicates");
    }
    ensure_eq!(
        HELPERS.spawned.load(Ordering::SeqCst) - spawned,
        helpers,
        "helper tasks spawned"
    );
    // A quarter of the requests do not wait (`UMH_WAIT_EXEC`): their slot is
    // released once the helper has started and the helper runs on, as in the
    // kernel, so more than 50 helpers may be alive at once here. What is
    // bounded is the slots (0008 and 0009, where every request waits, bound
    // the helpers too).
    let max = HELPERS.max_running.load(Ordering::SeqCst);
    ensure!(
        after.max_concurrent_seen <= SLOTS,
        "{} slots at once",
        after.max_concurrent_seen
    );

    // Every online hart must take part: poll request tasks, and (without the
    // duplicate table, where every request runs a helper) run helpers. Under
    // QEMU a vCPU is a host thread that a loaded host may not schedule during
    // one short burst, so more bursts follow until every hart has taken part,
    // within 10 s: a hart that never does fails the check.
    let online = executor::online_harts();
    let deadline = t0 + Duration::from_secs(10);
    let mut extra_bursts = 0u32;
    let spread = loop {
        let polls_after = hart_counts(&COUNTERS.polls);
        let programs_after = hart_counts(&HELPERS.per_hart);
        let mut spread = String::new();
        let mut missing = None;
        for hart in (0..MAX_HARTS).filter(|h| online & (1 << h) != 0) {
            let p = polls_after[hart] - polls[hart];
            let h = programs_after[hart] - programs[hart];
            spread.push_str(&format!(" h{hart}:{p}/{h}"));
            if p == 0 {
                missing.get_or_insert(format!("hart {hart} polled no task"));
            } else if h == 0 && !kmod.config().dedup {
                // With the duplicate table only a few dozen helpers run: no spread asked.
                missing.get_or_insert(format!("hart {hart} ran no helper"));
            }
        }
        let Some(missing) = missing else {
            break spread;
        };
        ensure!(
            time::now() < deadline,
            "{} in 10 s of stress ({} extra bursts; polls/helpers per hart:{})",
            missing,
            extra_bursts,
            spread
        );
        extra_bursts += 1;
        let burst = concurrent(
            kmod,
            200,
            |i| format!("{prefix}x{extra_bursts}-{}", i % names),
            |_| true,
        )
        .await;
        drain(Duration::from_secs(5)).await?;
        ensure!(
            burst.iter().all(|r| r.0 == 0),
            "a request of an extra burst failed"
        );
    };
    if extra_bursts > 0 {
        defmt::warn!(
            "  {=str}: {} extra burst(s) of 200 requests before every hart took part",
            kmod.platform().label(),
            extra_bursts
        );
    }
    defmt::info!(
        "  {=str}: {} requests in {} ms, {} helpers ({} at once), {} dups; polls/helpers per hart:{=str}",
        kmod.platform().label(),
        N,
        took.as_millis() as u64,
        helpers,
        max,
        dups,
        spread.as_str()
    );
    Ok(())
}

async fn no_leaks() -> CheckResult {
    drain(Duration::from_secs(2)).await?;
    // Let finished tasks' last wakes settle.
    time::sleep(Duration::from_millis(10)).await;
    let spawned = COUNTERS.spawned.load(Ordering::SeqCst);
    let finished = COUNTERS.finished.load(Ordering::SeqCst);
    // The only unfinished task is this selftest itself.
    ensure_eq!(spawned - finished, 1, "tasks alive");
    for k in [&KMOD, &KMOD_NODEDUP] {
        let s = k.stats();
        ensure_eq!(
            (
                s.in_flight,
                s.slots_in_use,
                s.waiting_for_slot,
                s.running_helpers,
                s.dup_waiters,
                s.dup_pending
            ),
            (0, 0, 0, 0, 0, 0),
            "in flight, slots, slot waiters, helpers, dup waiters, pending dups"
        );
        ensure_eq!(
            s.requests,
            s.completed + s.cancelled,
            "requests == completed + cancelled"
        );
    }
    ensure_eq!(
        HELPERS.spawned.load(Ordering::SeqCst),
        HELPERS.exited.load(Ordering::SeqCst),
        "helpers reaped"
    );
    defmt::info!(
        "  {} tasks run, {} helpers, heap in use {=usize} bytes",
        spawned,
        HELPERS.spawned.load(Ordering::SeqCst),
        crate::machine::heap::used()
    );
    Ok(())
}
