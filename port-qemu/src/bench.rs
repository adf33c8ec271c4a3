//! `-append "bench [names=N] [repeat=R] [work=W] [workers=K] [seed=S]"`: the
//! SMP-scaling storm of `cargo xtask bench`.
//!
//! `names × repeat` waiting requests (default 500 × 20 = 10,000) for the
//! benchmark modules `bench-0` … `bench-{names-1}` (see
//! [`crate::modules::bench_index`]), in an order shuffled with a fixed seed,
//! go through [`KMOD_BENCH`]: reqmod's defaults (50 slots, duplicate table
//! on) with a duplicate table of 512 entries instead of 64, so that every
//! name's entry lingers through the storm as in the kernel's unbounded list
//! (with the system [`KMOD`]'s 64 entries, a name is usually evicted before
//! it comes again and most requests run modprobe again: `kmod=system` on the
//! command line measures that). `workers` tasks (default 64, more than the slots, like
//! that many kernel threads) each take the next request from the list until it
//! is empty. The first request of a name runs the built-in modprobe, which
//! loads the module: its init runs `work` iterations of
//! [`crate::modules::bench_work`], CPU work that takes no lock, so inits of
//! different modules run in parallel on different harts. The other requests
//! for that name are duplicates, answered from the duplicate table.
//!
//! Two text lines (not defmt, so the host needs no decoder to read them) frame
//! the storm: `bench-start` right before the first request, and
//! `bench-result key=value …` after the last one, with the storm's length in
//! `time` CSR ticks; the host also stamps both lines with its own clock. The
//! machine then exits with status 0, or 1 if any request did not return 0.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::String;
use alloc::sync::Arc;
use alloc::vec::Vec;
use core::sync::atomic::{AtomicUsize, Ordering};

use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use reqmod::{AllowAll, Config, Kmod, Outcome, kernel_ret};

use crate::machine::fdt::BootInfo;
use crate::machine::{MAX_HARTS, exit, logger, timer};
use crate::modules::{self, BENCH_MODULES};
use crate::os::executor::{self, COUNTERS};
use crate::os::task::spawn_join;
use crate::platform::{BoxFuture, HELPERS, KMOD, QemuPlatform, Requester, SystemKmod};

/// The benchmark's autoloader type: the system one with 512 duplicate-table
/// entries.
pub type BenchKmod = Kmod<QemuPlatform, AllowAll, CriticalSectionRawMutex, 50, 32, 512>;

/// The benchmark's autoloader (see the module docs).
pub static KMOD_BENCH: BenchKmod = Kmod::with_config(
    QemuPlatform::new("kmod-bench", &KMOD_BENCH),
    Config::DEFAULT,
    AllowAll,
);

impl Requester for BenchKmod {
    fn request(&'static self, wait: bool, name: &str) -> BoxFuture<Outcome> {
        Box::pin(Kmod::request(self, wait, format_args!("{name}")))
    }

    fn label(&self) -> &'static str {
        self.platform().label()
    }
}

/// Which autoloader the storm uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Target {
    /// [`KMOD_BENCH`] (512 duplicate-table entries).
    Bench,
    /// The system [`KMOD`] (64 entries).
    System,
}

/// The storm's shape, from the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Params {
    /// Distinct module names.
    pub names: usize,
    /// Requests per name.
    pub repeat: usize,
    /// Iterations of CPU work in each module's init.
    pub work: u32,
    /// Concurrent requesting tasks.
    pub workers: usize,
    /// Seed of the shuffle.
    pub seed: u64,
    /// The autoloader.
    pub kmod: Target,
}

impl Default for Params {
    fn default() -> Self {
        Params {
            names: 500,
            repeat: 20,
            work: 200_000,
            workers: 64,
            seed: 1,
            kmod: Target::Bench,
        }
    }
}

impl Params {
    /// Reads `key=value` words after the mode word; unknown keys or bad
    /// values are an error naming the word.
    pub fn parse(bootargs: &str) -> Result<Self, String> {
        let mut p = Params::default();
        for word in bootargs.split_whitespace().skip(1) {
            let (key, value) = word
                .split_once('=')
                .ok_or_else(|| format!("{word}: expected key=value"))?;
            let bad = || format!("{word}: not a valid value");
            match key {
                "names" => p.names = value.parse().map_err(|_| bad())?,
                "repeat" => p.repeat = value.parse().map_err(|_| bad())?,
                "work" => p.work = value.parse().map_err(|_| bad())?,
                "workers" => p.workers = value.parse().map_err(|_| bad())?,
                "seed" => p.seed = value.parse().map_err(|_| bad())?,
                "kmod" => {
                    p.kmod = match value {
                        "bench" => Target::Bench,
                        "system" => Target::System,
                        _ => return Err(bad()),
                    }
                }
                _ => return Err(format!("{word}: unknown key")),
            }
        }
        if p.names == 0 || p.names > BENCH_MODULES || p.repeat == 0 || p.workers == 0 {
            return Err(format!(
                "need 1 <= names <= {BENCH_MODULES}, repeat >= 1, workers >= 1"
            ));
        }
        Ok(p)
    }

    /// Every request's module number: each name `repeat` times, shuffled
    /// (Fisher-Yates with xorshift64*, so a seed always gives the same order).
    pub fn order(&self) -> Vec<u16> {
        let mut order: Vec<u16> = (0..self.names)
            .flat_map(|n| core::iter::repeat_n(n as u16, self.repeat))
            .collect();
        let mut x = self.seed.max(1);
        for i in (1..order.len()).rev() {
            x ^= x >> 12;
            x ^= x << 25;
            x ^= x >> 27;
            let j = (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % (i as u64 + 1)) as usize;
            order.swap(i, j);
        }
        order
    }
}

/// The shared work list of the requesting tasks.
struct Storm {
    kmod: Target,
    order: Vec<u16>,
    next: AtomicUsize,
    failures: AtomicUsize,
}

/// One requesting task: takes requests off the list until it is empty.
async fn worker(storm: Arc<Storm>) {
    loop {
        let i = storm.next.fetch_add(1, Ordering::Relaxed);
        let Some(&module) = storm.order.get(i) else {
            return;
        };
        // The name is formatted here; the futures hold no part of the format.
        let ret = match storm.kmod {
            Target::Bench => {
                let request = KMOD_BENCH.request(true, format_args!("bench-{module}"));
                kernel_ret(request.await)
            }
            Target::System => {
                let request = SystemKmod::request(&KMOD, true, format_args!("bench-{module}"));
                kernel_ret(request.await)
            }
        };
        if ret != 0 {
            storm.failures.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn per_hart(
    counters: &[core::sync::atomic::AtomicU64; MAX_HARTS],
    harts: usize,
) -> [u64; MAX_HARTS] {
    let mut v = [0; MAX_HARTS];
    for (slot, c) in v.iter_mut().zip(counters).take(harts) {
        *slot = c.load(Ordering::Relaxed);
    }
    v
}

fn list(values: &[u64]) -> String {
    values
        .iter()
        .map(|v| format!("{v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// Runs the storm, prints its figures, exits.
pub async fn run(info: BootInfo) {
    let params = match Params::parse(info.bootargs()) {
        Ok(p) => p,
        Err(e) => {
            defmt::error!("bench: {=str}", e.as_str());
            exit::exit_failure(2);
        }
    };
    // Every hart must be in the executor before the storm starts (on a busy
    // host a secondary can take longer than the boot's one-second wait).
    let expected = info.hart_count.min(MAX_HARTS);
    let t_wait = timer::ticks();
    while (executor::online_harts().count_ones() as usize) < expected
        && timer::ticks() - t_wait < 10 * timer::timebase()
    {
        crate::os::task::yield_now().await;
    }
    let harts = executor::online_harts().count_ones() as usize;
    modules::set_bench_work(params.work);
    let storm = Arc::new(Storm {
        kmod: params.kmod,
        order: params.order(),
        next: AtomicUsize::new(0),
        failures: AtomicUsize::new(0),
    });
    let requests = storm.order.len();
    let polls0 = per_hart(&COUNTERS.polls, harts);
    let programs0 = per_hart(&HELPERS.per_hart, harts);
    let sleeps0 = per_hart(&COUNTERS.sleeps, harts);
    let stats_now = || match params.kmod {
        Target::Bench => KMOD_BENCH.stats(),
        Target::System => KMOD.stats(),
    };
    let stats0 = stats_now();

    logger::write_text(&format!("bench-start harts={harts} expected={expected}"));
    let t0 = timer::ticks();
    let handles: Vec<_> = (0..params.workers)
        .map(|_| spawn_join(worker(Arc::clone(&storm))))
        .collect();
    for h in handles {
        h.await;
    }
    let ticks = timer::ticks() - t0;

    let stats = stats_now();
    let polls: Vec<u64> = per_hart(&COUNTERS.polls, harts)
        .iter()
        .zip(polls0)
        .map(|(a, b)| a - b)
        .take(harts)
        .collect();
    let programs: Vec<u64> = per_hart(&HELPERS.per_hart, harts)
        .iter()
        .zip(programs0)
        .map(|(a, b)| a - b)
        .take(harts)
        .collect();
    let sleeps: Vec<u64> = per_hart(&COUNTERS.sleeps, harts)
        .iter()
        .zip(sleeps0)
        .map(|(a, b)| a - b)
        .take(harts)
        .collect();
    let failures = storm.failures.load(Ordering::SeqCst);
    logger::write_text(&format!(
        "bench-result harts={harts} requests={requests} names={} repeat={} work={} workers={} \
         ticks={ticks} timebase={} failures={failures} helpers={} duplicates={} inits={} \
         max_slots={} programs_per_hart={} polls_per_hart={} idle_sleeps_per_hart={}",
        params.names,
        params.repeat,
        params.work,
        params.workers,
        timer::timebase(),
        stats.helpers_started - stats0.helpers_started,
        stats.duplicates - stats0.duplicates,
        modules::bench_inits(),
        stats.max_concurrent_seen,
        list(&programs),
        list(&polls),
        list(&sleeps),
    ));
    if failures == 0 && modules::bench_inits() as usize == params.names {
        exit::exit_success()
    } else {
        defmt::error!("bench: {} requests failed", failures);
        exit::exit_failure(1)
    }
}
