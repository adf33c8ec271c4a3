//! A conformance kit for ports (feature `conformance`): the kernel's kmod
//! selftest scenarios (SPEC §7), the exec errors, the wait modes, exit
//! statuses and signals, the busy timeout, duplicates, killable waits,
//! disabled helpers and the helper watchdog, written once against a small
//! [`Harness`] a port implements. The sim, the Linux port and the riscv64
//! kernel run it; so can yours.
//!
//! `no_std`, no heap: it runs as one future on your executor, with your
//! platform's clock (real time: the whole kit takes a few seconds; the
//! scenarios use short helpers and a shortened busy timeout where the
//! kernel's 5 s is not the point). Its largest case holds 62 requests at
//! once, so its future is about 62 times your request future (on the sim,
//! 62 x 1.8 KB): spawn it as a heap-allocated task, and give the thread
//! that first polls it room for a copy (a release build moves it once or
//! twice; a debug build several times).
//!
//! # Running it on your port
//!
//! Give the kit a way to build your platform and the paths of a few helper
//! programs (any you cannot provide: `None`, and the cases that need it are
//! skipped, not failed):
//!
//! ```
//! use reqmod::conformance::{self, Harness, Program};
//! # use reqmod::sim::SimPlatform as MyPlatform;
//! # fn my_platform() -> MyPlatform { MyPlatform::new() }
//!
//! struct MyHarness;
//!
//! impl Harness for MyHarness {
//!     type Platform = MyPlatform; // your `Platform`
//!     fn platform(&self) -> MyPlatform {
//!         my_platform()
//!     }
//!     fn program(&self, program: Program) -> Option<&[u8]> {
//!         // Where your kernel has each helper (an initramfs, a program table…).
//!         Some(match program {
//!             Program::Exit(0) => b"/test/exit-0",
//!             Program::Exit(1) => b"/test/exit-1",
//!             Program::Exit(3) => b"/test/exit-3",
//!             Program::Missing => b"/test/no-such-file",
//!             _ => return None,
//!         })
//!     }
//! }
//!
//! // On your executor, e.g. in a kernel task at boot:
//! async fn selftest() -> bool {
//!     let summary = conformance::run(&MyHarness, |case| println!("{case}")).await;
//!     println!("{summary}");
//!     summary.ok()
//! }
//! ```
//!
//! The sim's harness is [`SimHarness`](crate::sim::SimHarness) (features
//! `sim` and `conformance`); the Linux port's is in `tests/tests/conformance.rs`.
//!
//! A passing port prints one line per case and a summary:
//!
//! ```text
//! conformance 0001      empty name: modprobe says not found           ok
//! conformance 0002      a module that does not exist                  ok
//! ...
//! conformance watchdog  a hung helper is killed: 9 for all waiting    ok
//! conformance: 19 passed, 0 failed, 0 skipped
//! ```
//!
//! A failed case names its check and the integers: `FAILED: results (expected
//! 256, got -2)`.

use core::fmt;
use core::time::Duration;

use embassy_futures::join::join_array;
use embassy_futures::select::{Either, select};

use crate::{AllowAll, Config, KernelRet, KillSignal, Kmod, Platform};

/// What a port supplies to the kit.
pub trait Harness {
    /// The port's platform.
    type Platform: Platform;

    /// A fresh platform for a new `Kmod` (one per case).
    fn platform(&self) -> Self::Platform;

    /// The path of a helper that behaves as `program` says, or `None` if the
    /// port has none (the cases that need it are skipped).
    fn program(&self, program: Program) -> Option<&[u8]>;

    /// Helper processes alive now (started, not yet reaped), whether or not
    /// a request still waits for them, if the port can tell. Default: `None`.
    fn live_helpers(&self) -> Option<usize> {
        None
    }
}

/// A helper program a case needs. Every one gets the kernel's argv
/// (`path -q -- name`) and environment, and ignores them.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
#[non_exhaustive]
pub enum Program {
    /// Exits with this code at once. The kit asks for 0, 1 (modprobe's "not
    /// found") and 3.
    Exit(u8),
    /// Sleeps `ms` milliseconds, then exits with `code`. The kit asks for
    /// `{100, 0}`, `{300, 3}`, `{400, 0}`, `{500, 0}` and `{1000, 0}`.
    SleepThenExit {
        /// How long it sleeps.
        ms: u32,
        /// Its exit code.
        code: u8,
    },
    /// Kills itself with this signal (the kit asks for 9 and 11).
    Signal(u8),
    /// Never exits unless killed.
    Hang,
    /// A path where there is no file (`-ENOENT`).
    Missing,
    /// A file without the execute bit (`-EACCES`).
    NotExecutable,
    /// An executable file that is not a program the kernel can run (`-ENOEXEC`).
    NotAProgram,
}

/// One case's outcome.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum Verdict {
    /// Every check held.
    Passed,
    /// A check failed: what it checked, and the integers.
    Failed {
        /// The check.
        check: &'static str,
        /// What SPEC says.
        expected: i64,
        /// What the port gave.
        got: i64,
    },
    /// The harness has no program the case needs.
    Skipped(Program),
}

/// A case and its verdict.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Case {
    /// The short id (`0001`, `busy-timeout`, …).
    pub id: &'static str,
    /// What it checks.
    pub title: &'static str,
    /// How it went.
    pub verdict: Verdict,
}

impl fmt::Display for Case {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "conformance {:<13} {:<52} ", self.id, self.title)?;
        match self.verdict {
            Verdict::Passed => f.write_str("ok"),
            Verdict::Failed {
                check,
                expected,
                got,
            } => write!(f, "FAILED: {check} (expected {expected}, got {got})"),
            Verdict::Skipped(p) => write!(f, "skipped (no {p:?} program)"),
        }
    }
}

/// How many cases passed, failed and were skipped.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Summary {
    /// Cases whose every check held.
    pub passed: usize,
    /// Cases with a failed check.
    pub failed: usize,
    /// Cases the harness could not run.
    pub skipped: usize,
}

impl Summary {
    /// Whether nothing failed.
    pub fn ok(&self) -> bool {
        self.failed == 0
    }
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "conformance: {} passed, {} failed, {} skipped",
            self.passed, self.failed, self.skipped
        )
    }
}

/// The cases, in order.
const CASES: &[(&str, &str)] = &[
    ("0001", "empty name: modprobe says not found"),
    ("0002", "a module that does not exist"),
    ("0005", "50 concurrent requests for one module"),
    (
        "0005-nodedup",
        "50 concurrent requests, no duplicate table: 50 runs",
    ),
    ("0008", "58 concurrent requests queue for slots"),
    ("0009", "62 concurrent requests queue for slots"),
    ("0010", "a helper path where no file is: -ENOENT"),
    ("0011", "the empty helper path: -ENOENT, nothing run"),
    ("exec-eacces", "a helper without the execute bit: -EACCES"),
    ("exec-enoexec", "a helper that is not a program: -ENOEXEC"),
    ("exit-status", "exit 3 is 768; a duplicate gets the same"),
    ("signals", "killed by SIGSEGV is 11, by SIGKILL 9"),
    ("wait-modes", "nowait returns at the exec, wait at the exit"),
    (
        "busy-timeout",
        "2 slots, 300 ms: the 2 that wait get -ETIME",
    ),
    ("duplicates", "10 waits for one name: one helper run"),
    (
        "killable",
        "a killed wait is -ERESTARTSYS; its helper runs on",
    ),
    ("disabled", "disabled helpers: -EBUSY; enabled again: 0"),
    ("watchdog", "a hung helper is killed: 9 for all waiting"),
];

type Result = core::result::Result<(), Verdict>;

/// Fails with `check` unless `got == expected`.
fn expect(check: &'static str, expected: i64, got: i64) -> Result {
    if expected == got {
        Ok(())
    } else {
        Err(Verdict::Failed {
            check,
            expected,
            got,
        })
    }
}

/// Fails with `check` unless `ok`; the integers are `got` against `bound`.
fn expect_that(check: &'static str, ok: bool, bound: i64, got: i64) -> Result {
    if ok {
        Ok(())
    } else {
        Err(Verdict::Failed {
            check,
            expected: bound,
            got,
        })
    }
}

fn ms(m: u64) -> Duration {
    Duration::from_millis(m)
}

fn millis(d: Duration) -> i64 {
    d.as_millis() as i64
}

/// Runs every case in order, calls `report` with each, returns the summary.
pub async fn run<H: Harness>(harness: &H, mut report: impl FnMut(&Case)) -> Summary {
    let mut summary = Summary::default();
    for &(id, title) in CASES {
        let verdict = match run_case(harness, id).await {
            Ok(()) => Verdict::Passed,
            Err(v) => v,
        };
        match verdict {
            Verdict::Passed => summary.passed += 1,
            Verdict::Failed { .. } => summary.failed += 1,
            Verdict::Skipped(_) => summary.skipped += 1,
        }
        report(&Case { id, title, verdict });
    }
    summary
}

/// A `Kmod` on a fresh platform with `config`, its helper at `program`.
fn kmod_with<H: Harness>(
    h: &H,
    config: Config,
    program: Program,
) -> core::result::Result<Kmod<H::Platform>, Verdict> {
    let path = h.program(program).ok_or(Verdict::Skipped(program))?;
    let kmod = Kmod::with_config(h.platform(), config, AllowAll);
    kmod.set_modprobe_path(path);
    Ok(kmod)
}

async fn run_case<H: Harness>(h: &H, id: &str) -> Result {
    let d = Config::DEFAULT;
    match id {
        "0001" => {
            let k = kmod_with(h, d, Program::Exit(1))?;
            expect(
                "result",
                256,
                k.request_module(format_args!("")).await.kernel_ret().into(),
            )
        }
        "0002" => {
            let k = kmod_with(h, d, Program::Exit(1))?;
            let ret = k
                .request_module(format_args!("reqmod-no-such-module"))
                .await;
            expect("result", 256, ret.kernel_ret().into())
        }
        "0005" => concurrent::<H, 50>(h, d, Program::Exit(0), None).await,
        "0005-nodedup" => {
            concurrent::<H, 50>(h, d.with_dedup(false), Program::Exit(0), Some(50)).await
        }
        "0008" => {
            concurrent::<H, 58>(h, d, Program::SleepThenExit { ms: 100, code: 0 }, None).await
        }
        "0009" => {
            concurrent::<H, 62>(h, d, Program::SleepThenExit { ms: 100, code: 0 }, None).await
        }
        "0010" => {
            let k = kmod_with(h, d, Program::Missing)?;
            expect(
                "wait",
                -2,
                k.request_module(format_args!("m"))
                    .await
                    .kernel_ret()
                    .into(),
            )?;
            let nowait = k.request_module_nowait(format_args!("n")).await;
            expect("nowait", -2, nowait.kernel_ret().into())?;
            expect("exec attempts", 2, k.stats().helpers_started as i64)
        }
        "0011" => {
            let k = kmod_with(h, d, Program::Exit(0))?;
            k.set_modprobe_path(b"");
            expect(
                "wait",
                -2,
                k.request_module(format_args!("m"))
                    .await
                    .kernel_ret()
                    .into(),
            )?;
            let nowait = k.request_module_nowait(format_args!("m")).await;
            expect("nowait", -2, nowait.kernel_ret().into())?;
            expect("helpers started", 0, k.stats().helpers_started as i64)
        }
        "exec-eacces" => exec_error(h, Program::NotExecutable, -13).await,
        "exec-enoexec" => exec_error(h, Program::NotAProgram, -8).await,
        "exit-status" => {
            let k = kmod_with(h, d, Program::SleepThenExit { ms: 300, code: 3 })?;
            let [a, b] = join_array([
                k.request_module(format_args!("m")),
                k.request_module(format_args!("m")),
            ])
            .await;
            expect("first", 768, a.kernel_ret().into())?;
            expect("duplicate", 768, b.kernel_ret().into())?;
            let k = kmod_with(h, d, Program::Exit(3))?;
            expect(
                "exit 3",
                768,
                k.request_module(format_args!("m"))
                    .await
                    .kernel_ret()
                    .into(),
            )
        }
        "signals" => {
            for sig in [11, 9] {
                let k = kmod_with(h, d, Program::Signal(sig))?;
                let ret = k.request_module(format_args!("m")).await.kernel_ret();
                expect("signal number", sig.into(), ret.into())?;
            }
            Ok(())
        }
        "wait-modes" => {
            let k = kmod_with(h, d, Program::SleepThenExit { ms: 400, code: 0 })?;
            let p = k.platform();
            let t0 = p.now();
            expect(
                "nowait",
                0,
                k.request_module_nowait(format_args!("a"))
                    .await
                    .kernel_ret()
                    .into(),
            )?;
            let nowait = p.now().saturating_sub(t0);
            expect_that(
                "nowait returns before the exit (ms)",
                nowait < ms(400),
                400,
                millis(nowait),
            )?;
            let t0 = p.now();
            expect(
                "wait",
                0,
                k.request_module(format_args!("b"))
                    .await
                    .kernel_ret()
                    .into(),
            )?;
            let wait = p.now().saturating_sub(t0);
            expect_that(
                "wait returns after the exit (ms)",
                wait >= ms(400),
                400,
                millis(wait),
            )
        }
        "busy-timeout" => {
            let config = d.with_max_concurrent(2).with_busy_timeout(ms(300));
            let k = kmod_with(h, config, Program::SleepThenExit { ms: 1000, code: 0 })?;
            let p = k.platform();
            let t0 = p.now();
            let timed = |name: &'static str| {
                let request = k.request_module(format_args!("{name}"));
                async move {
                    let ret = request.await.kernel_ret();
                    (ret, p.now().saturating_sub(t0))
                }
            };
            let results = join_array([timed("a"), timed("b"), timed("c"), timed("d")]).await;
            let served = results.iter().filter(|r| r.0 == 0).count();
            let timed_out = results.iter().filter(|r| r.0 == -62).count();
            expect("served", 2, served as i64)?;
            expect("-ETIME", 2, timed_out as i64)?;
            for (ret, took) in results {
                if ret == -62 {
                    expect_that(
                        "-ETIME after the timeout (ms)",
                        took >= ms(300),
                        300,
                        millis(took),
                    )?;
                    expect_that(
                        "-ETIME before the helper ends (ms)",
                        took < ms(1000),
                        1000,
                        millis(took),
                    )?;
                }
            }
            expect("busy timeouts counted", 2, k.stats().busy_timeouts as i64)
        }
        "duplicates" => {
            let k = kmod_with(h, d, Program::SleepThenExit { ms: 300, code: 3 })?;
            let waits: [_; 10] = core::array::from_fn(|_| k.request_module(format_args!("dup")));
            let nowait = async {
                // Once the first request runs, a nowait duplicate returns 0 at once.
                k.platform().sleep_until(k.platform().now() + ms(50)).await;
                k.request_module_nowait(format_args!("dup")).await
            };
            let (results, nowait) = embassy_futures::join::join(join_array(waits), nowait).await;
            for r in results {
                expect("each wait", 768, r.kernel_ret().into())?;
            }
            expect("the nowait duplicate", 0, nowait.kernel_ret().into())?;
            let st = k.stats();
            expect("helper runs", 1, st.helpers_started as i64)?;
            expect("duplicates served", 10, st.duplicates as i64)
        }
        "killable" => {
            let k = kmod_with(h, d, Program::SleepThenExit { ms: 500, code: 0 })?;
            let p = k.platform();
            let kill = KillSignal::new();
            let t0 = p.now();
            let request = k.request_killable(true, &kill, format_args!("m"));
            let killer = async {
                p.sleep_until(t0 + ms(100)).await;
                kill.kill();
            };
            let (ret, ()) = embassy_futures::join::join(request, killer).await;
            let took = p.now().saturating_sub(t0);
            expect("result", -512, ret.kernel_ret().into())?;
            expect_that(
                "killed before the helper ended (ms)",
                took < ms(500),
                500,
                millis(took),
            )?;
            if let Some(alive) = h.live_helpers() {
                expect_that("the helper runs on", alive >= 1, 1, alive as i64)?;
                // Reaped once it exits (bounded wait).
                let deadline = p.now() + Duration::from_secs(10);
                while h.live_helpers().unwrap_or(0) > 0 && p.now() < deadline {
                    p.sleep_until(p.now() + ms(20)).await;
                }
                expect("helpers left", 0, h.live_helpers().unwrap_or(0) as i64)?;
            }
            Ok(())
        }
        "disabled" => {
            let k = kmod_with(h, d, Program::Exit(0))?;
            expect(
                "disable",
                0,
                k.disable_helpers()
                    .await
                    .map_or_else(|e| -i64::from(e.raw()), |()| 0),
            )?;
            expect(
                "while disabled",
                -16,
                k.request_module(format_args!("m"))
                    .await
                    .kernel_ret()
                    .into(),
            )?;
            k.enable_helpers();
            // Another name: the first one's -EBUSY answers duplicates for 60 s.
            expect(
                "enabled again",
                0,
                k.request_module(format_args!("m2"))
                    .await
                    .kernel_ret()
                    .into(),
            )
        }
        "watchdog" => {
            let config = d.with_helper_timeout(Some(ms(300)));
            let k = kmod_with(h, config, Program::Hang)?;
            let p = k.platform();
            let t0 = p.now();
            let both = join_array([
                k.request_module(format_args!("hung")),
                k.request_module(format_args!("hung")),
            ]);
            // A port that cannot kill would hang here: give up after 10 s.
            let limit = p.sleep_until(t0 + Duration::from_secs(10));
            let [a, b] = match select(both, limit).await {
                Either::First(results) => results,
                Either::Second(()) => {
                    return expect("killed within 10 s", 1, 0);
                }
            };
            let took = p.now().saturating_sub(t0);
            expect("the request", 9, a.kernel_ret().into())?;
            expect("its duplicate", 9, b.kernel_ret().into())?;
            expect_that(
                "killed after the timeout (ms)",
                took >= ms(300),
                300,
                millis(took),
            )?;
            expect("helpers killed", 1, k.stats().helpers_killed as i64)
        }
        _ => Ok(()),
    }
}

/// `N` concurrent waiting requests for one module, each 0, none waiting the
/// 5 s busy timeout, slots never above 50; `runs` helper runs if given.
async fn concurrent<H: Harness, const N: usize>(
    h: &H,
    config: Config,
    program: Program,
    runs: Option<u64>,
) -> Result {
    let k = kmod_with(h, config, program)?;
    let p = k.platform();
    let t0 = p.now();
    let requests: [_; N] = core::array::from_fn(|_| k.request_module(format_args!("test_module")));
    let results = join_array(requests).await;
    let took = p.now().saturating_sub(t0);
    for r in results {
        expect("each result", 0, r.kernel_ret().into())?;
    }
    let st = k.stats();
    expect_that(
        "no request waited 5 s (ms)",
        took < Duration::from_secs(5),
        5000,
        millis(took),
    )?;
    expect_that(
        "slots at once",
        st.max_concurrent_seen <= 50,
        50,
        st.max_concurrent_seen as i64,
    )?;
    expect("busy timeouts", 0, st.busy_timeouts as i64)?;
    if let Some(runs) = runs {
        expect("helper runs", runs as i64, st.helpers_started as i64)?;
    }
    Ok(())
}

/// An exec error, in both wait modes.
async fn exec_error<H: Harness>(h: &H, program: Program, errno: i64) -> Result {
    let k = kmod_with(h, Config::DEFAULT, program)?;
    expect(
        "wait",
        errno,
        k.request_module(format_args!("m"))
            .await
            .kernel_ret()
            .into(),
    )?;
    let nowait = k.request_module_nowait(format_args!("n")).await;
    expect("nowait", errno, nowait.kernel_ret().into())
}
