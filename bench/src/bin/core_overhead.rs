//! What the core adds to each request, next to what one helper costs.
//!
//! `core_overhead [--reps N] [--scale F] [--only KIND]` prints `key value` lines (medians of
//! `N` interleaved repetitions, nanoseconds per request):
//!
//! - `spawn`: one helper run of `/bin/true` through `LinuxPlatform::run_helper`
//!   (the Linux port's spawn, reactor and reaping code, exactly what a request
//!   runs), waited for with [`reqmod_linux::block_on`]: the baseline.
//! - `sim_first`, `sim_dup`, `sim_wait`: a default `Kmod` (50 slots,
//!   `CriticalSectionRawMutex`) on the virtual-time platform with recording
//!   off and a helper that exits 0 at once. `first`: every name distinct
//!   (each request runs the helper and enters the duplicate table); `dup`:
//!   one name whose finished entry lingers, so every request is served from
//!   the table; `wait`: `max_concurrent` 1 and batches of 32 concurrent
//!   requests on the simulator's executor, the helper taking 1 ns of virtual
//!   time, so every request but the first of a batch waits in the slot queue
//!   (this one includes the executor's task spawn, wakes and timer).
//! - `threads_first`, `threads_dup`, `threads_wait`: the same three kinds on
//!   `threads` real threads with the Linux port's clock, timers and locks (a
//!   platform that uses `reqmod_linux`'s clock and sleep but whose helper
//!   returns at once), each request driven by `reqmod_linux::block_on`. For
//!   `wait`, each thread runs batches of 16 requests with
//!   `reqmod_linux::block_on_all` against one shared slot, and the helper
//!   yields once, so the slot is held across a poll: the others queue for it,
//!   from this thread and from the others. Nanoseconds per request are the
//!   CPU time of the requesting threads ÷ requests (what a request costs);
//!   `threads_*_wall` are `wall time × threads ÷ requests` (that plus the
//!   time threads spent parked or preempted).
//! - `kmod_size`: `size_of` of a default `Kmod` (50 slots) on this host.

use std::future::{Future, poll_fn};
use std::hint::black_box;
use std::process::ExitCode;
use std::task::Poll;
use std::time::{Duration, Instant};

use reqmod::sim::{Behavior, Executor, SimPlatform};
use reqmod::{
    AllowAll, Config, Errno, HelperCommand, KernelRet, Kmod, ModprobePath, ModuleName, Platform,
    UmhWait, WaitStatus,
};
use reqmod_bench::{median, names, names_with_prefix};
use reqmod_linux::{LinuxPlatform, block_on, block_on_all};

/// The Linux port's clock and timers, and a helper that returns at once
/// (after yielding once when `yield_once` is set).
#[derive(Debug, Clone, Copy)]
struct InstantHelper {
    yield_once: bool,
}

impl Platform for InstantHelper {
    fn now(&self) -> Duration {
        reqmod_linux::now()
    }

    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> {
        reqmod_linux::sleep_until(deadline)
    }

    async fn run_helper(&self, cmd: HelperCommand, _: UmhWait) -> Result<WaitStatus, Errno> {
        black_box(&cmd);
        if self.yield_once {
            let mut yielded = false;
            poll_fn(|cx| {
                if yielded {
                    Poll::Ready(())
                } else {
                    yielded = true;
                    cx.waker().wake_by_ref();
                    Poll::Pending
                }
            })
            .await;
        }
        Ok(WaitStatus::SUCCESS)
    }
}

fn pair((a, b): (f64, f64)) -> Vec<f64> {
    vec![a, b]
}

/// A platform of no size, for `size_of::<Kmod<_>>()` (the `Kmod` alone).
struct Zst;

impl Platform for Zst {
    fn now(&self) -> Duration {
        Duration::ZERO
    }

    async fn sleep_until(&self, _: Duration) {}

    async fn run_helper(&self, _: HelperCommand, _: UmhWait) -> Result<WaitStatus, Errno> {
        Err(Errno::ENOENT)
    }
}

struct Options {
    reps: usize,
    scale: f64,
    /// Run only the measurement whose first key is this (for profiling).
    only: Option<String>,
}

fn parse() -> Result<Options, String> {
    let mut o = Options {
        reps: 5,
        scale: 1.0,
        only: None,
    };
    let args: Vec<String> = std::env::args().skip(1).collect();
    let mut it = args.iter();
    while let Some(a) = it.next() {
        let mut value = || it.next().ok_or(format!("{a} needs a value"));
        match a.as_str() {
            "--reps" => o.reps = value()?.parse().map_err(|e| format!("--reps: {e}"))?,
            "--scale" => o.scale = value()?.parse().map_err(|e| format!("--scale: {e}"))?,
            "--only" => o.only = Some(value()?.clone()),
            other => return Err(format!("unknown argument {other:?}")),
        }
    }
    if o.reps == 0 || o.scale <= 0.0 {
        return Err("--reps and --scale must be positive".into());
    }
    Ok(o)
}

fn main() -> ExitCode {
    let o = match parse() {
        Ok(o) => o,
        Err(e) => {
            eprintln!(
                "core_overhead: {e}\nusage: core_overhead [--reps N] [--scale F] [--only KIND]"
            );
            return ExitCode::from(2);
        }
    };
    let scale = o.scale;
    let n = move |count: usize| ((count as f64 * scale) as usize).max(64);
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get().max(2));
    let sim_names = names(n(100_000));
    let thread_names: Vec<Vec<String>> = (0..threads)
        .map(|t| names_with_prefix(&format!("t{t}"), n(100_000) / threads))
        .collect();

    /// A measurement: one figure, or (CPU, wall) for the threaded ones.
    type Run = Box<dyn Fn() -> Vec<f64>>;
    let rows: Vec<(&'static [&'static str], Run)> = vec![
        (&["spawn"], Box::new(move || vec![spawn(n(200))])),
        (
            &["sim_first"],
            Box::new(move || vec![sim_first(&sim_names)]),
        ),
        (&["sim_dup"], Box::new(move || vec![sim_dup(n(100_000))])),
        (&["sim_wait"], Box::new(move || vec![sim_wait(n(20_000))])),
        (
            &["threads_first", "threads_first_wall"],
            Box::new(move || pair(threads_first(&thread_names))),
        ),
        (
            &["threads_dup", "threads_dup_wall"],
            Box::new(move || pair(threads_dup(threads, n(100_000)))),
        ),
        (
            &["threads_wait", "threads_wait_wall"],
            Box::new(move || pair(threads_wait(threads, n(20_000)))),
        ),
    ];
    let rows: Vec<_> = rows
        .into_iter()
        .filter(|(keys, _)| {
            o.only
                .as_ref()
                .is_none_or(|only| keys.first() == Some(&only.as_str()))
        })
        .collect();
    let mut samples: Vec<Vec<Vec<f64>>> = rows
        .iter()
        .map(|(keys, _)| vec![Vec::new(); keys.len()])
        .collect();
    // Interleaved: every kind once per round, so slow phases of a noisy
    // machine hit all of them alike.
    for _ in 0..o.reps {
        for (i, (_, run)) in rows.iter().enumerate() {
            for (j, v) in run().into_iter().enumerate() {
                samples[i][j].push(v);
            }
        }
    }
    println!("threads {threads}");
    println!("reps {}", o.reps);
    println!("kmod_size {}", core::mem::size_of::<Kmod<Zst>>());
    for (i, (keys, _)) in rows.iter().enumerate() {
        for (j, key) in keys.iter().enumerate() {
            let all: Vec<String> = samples[i][j].iter().map(|v| format!("{v:.1}")).collect();
            println!("{key} {:.1} {}", median(&samples[i][j]), all.join(","));
        }
    }
    ExitCode::SUCCESS
}

fn per_request(elapsed: Duration, requests: usize) -> f64 {
    elapsed.as_nanos() as f64 / requests as f64
}

/// One helper run of `/bin/true` with the Linux port's code, `count` times
/// in a row; nanoseconds per run.
fn spawn(count: usize) -> f64 {
    let platform = LinuxPlatform::new();
    let path = ModprobePath::from_sysctl_write(b"/bin/true");
    let name = ModuleName::new("bench").expect("short name");
    let start = Instant::now();
    for _ in 0..count {
        let cmd = HelperCommand::modprobe(path.clone(), name.clone());
        let status = block_on(platform.run_helper(cmd, UmhWait::Proc));
        assert_eq!(status, Ok(WaitStatus::SUCCESS), "/bin/true failed");
    }
    per_request(start.elapsed(), count)
}

fn sim_kmod(max_concurrent: usize) -> Kmod<SimPlatform> {
    let kmod = Kmod::with_config(
        SimPlatform::new(),
        Config::DEFAULT.with_max_concurrent(max_concurrent),
        AllowAll,
    );
    kmod.platform().set_script(|_| Behavior::exits(0));
    kmod.platform().set_recording(false);
    kmod
}

fn sim_first(names: &[String]) -> f64 {
    let kmod = sim_kmod(50);
    let start = Instant::now();
    for name in names {
        let ret = embassy_futures::block_on(kmod.request_module(format_args!("{name}")));
        assert_eq!(ret.kernel_ret(), 0);
    }
    let took = start.elapsed();
    assert_eq!(kmod.stats().helpers_started, names.len() as u64);
    per_request(took, names.len())
}

fn sim_dup(count: usize) -> f64 {
    let kmod = sim_kmod(50);
    let name = "bench-dup";
    assert_eq!(
        embassy_futures::block_on(kmod.request_module(format_args!("{name}"))).kernel_ret(),
        0
    );
    let start = Instant::now();
    for _ in 0..count {
        let ret = embassy_futures::block_on(kmod.request_module(format_args!("{name}")));
        assert_eq!(ret.kernel_ret(), 0);
    }
    let took = start.elapsed();
    assert_eq!(kmod.stats().duplicates, count as u64);
    per_request(took, count)
}

fn sim_wait(count: usize) -> f64 {
    const BATCH: usize = 32;
    let kmod = sim_kmod(1);
    kmod.platform()
        .set_script(|_| Behavior::exits(0).lasting(Duration::from_nanos(1)));
    let names = names(BATCH);
    let batches = count.div_ceil(BATCH);
    let start = Instant::now();
    for _ in 0..batches {
        let mut ex = Executor::new();
        let handles: Vec<_> = names
            .iter()
            .map(|name| ex.spawn(kmod.request_module(format_args!("{name}"))))
            .collect();
        ex.run(kmod.platform()).expect("no stall");
        for h in handles {
            assert_eq!(h.take().map(|r| r.kernel_ret()), Some(0));
        }
        // Let the entries expire, so the next batch runs helpers again.
        let later = kmod.platform().now() + Config::DEFAULT.dedup_linger;
        kmod.platform().advance_to(later);
    }
    let took = start.elapsed();
    assert_eq!(kmod.stats().helpers_started, (batches * BATCH) as u64);
    per_request(took, batches * BATCH)
}

type ThreadKmod = Kmod<InstantHelper>;

fn thread_kmod(max_concurrent: usize, yield_once: bool) -> ThreadKmod {
    Kmod::with_config(
        InstantHelper { yield_once },
        Config::DEFAULT.with_max_concurrent(max_concurrent),
        AllowAll,
    )
}

/// CPU time of the calling thread.
fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec.max(0) as u64, t.tv_nsec.max(0) as u32)
}

/// Wall time and the threads' total CPU time of one multi-threaded run.
#[derive(Debug, Clone, Copy)]
struct Threaded {
    wall: Duration,
    cpu: Duration,
    threads: usize,
}

impl Threaded {
    /// `(CPU ns per request, wall × threads ns per request)`.
    fn per_request(self, requests: usize) -> (f64, f64) {
        (
            per_request(self.cpu, requests),
            per_request(self.wall * self.threads as u32, requests),
        )
    }
}

/// Runs `work(thread index)` on `threads` threads at once.
fn on_threads(threads: usize, work: impl Fn(usize) + Sync) -> Threaded {
    let barrier = std::sync::Barrier::new(threads + 1);
    let cpu_ns = std::sync::atomic::AtomicU64::new(0);
    let wall = std::thread::scope(|s| {
        for t in 0..threads {
            let (work, barrier, cpu_ns) = (&work, &barrier, &cpu_ns);
            s.spawn(move || {
                barrier.wait();
                let c0 = thread_cpu();
                work(t);
                let used = thread_cpu().saturating_sub(c0);
                cpu_ns.fetch_add(used.as_nanos() as u64, std::sync::atomic::Ordering::Relaxed);
                barrier.wait();
            });
        }
        barrier.wait();
        let start = Instant::now();
        barrier.wait();
        start.elapsed()
    });
    Threaded {
        wall,
        cpu: Duration::from_nanos(cpu_ns.into_inner()),
        threads,
    }
}

fn threads_first(names: &[Vec<String>]) -> (f64, f64) {
    let kmod = thread_kmod(50, false);
    let run = on_threads(names.len(), |t| {
        for name in &names[t] {
            let ret = block_on(kmod.request_module(format_args!("{name}")));
            assert_eq!(ret.kernel_ret(), 0);
        }
    });
    let total: usize = names.iter().map(Vec::len).sum();
    assert_eq!(kmod.stats().helpers_started, total as u64);
    run.per_request(total)
}

fn threads_dup(threads: usize, count: usize) -> (f64, f64) {
    let kmod = thread_kmod(50, false);
    let name = "bench-dup";
    assert_eq!(
        block_on(kmod.request_module(format_args!("{name}"))).kernel_ret(),
        0
    );
    let each = count / threads;
    let run = on_threads(threads, |_| {
        for _ in 0..each {
            let ret = block_on(kmod.request_module(format_args!("{name}")));
            assert_eq!(ret.kernel_ret(), 0);
        }
    });
    assert_eq!(kmod.stats().duplicates, (each * threads) as u64);
    run.per_request(each * threads)
}

fn threads_wait(threads: usize, count: usize) -> (f64, f64) {
    const BATCH: usize = 16;
    let kmod = thread_kmod(1, true);
    let batches = (count / threads).div_ceil(BATCH);
    let names: Vec<Vec<String>> = (0..threads)
        .map(|t| names_with_prefix(&format!("w{t}"), batches * BATCH))
        .collect();
    let run = on_threads(threads, |t| {
        for batch in names[t].chunks(BATCH) {
            let rets = block_on_all(
                batch
                    .iter()
                    .map(|name| kmod.request_module(format_args!("{name}"))),
            );
            assert!(rets.iter().all(|r| r.kernel_ret() == 0));
        }
    });
    let total = batches * BATCH * threads;
    assert_eq!(kmod.stats().helpers_started, total as u64);
    run.per_request(total)
}
