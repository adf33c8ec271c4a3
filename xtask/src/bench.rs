//! `cargo xtask bench`: overhead, storm, footprint and SMP-scaling benchmarks,
//! each against a baseline measured in the same run, printed as one table
//! and written to `BENCH.md`.
//!
//! `cargo xtask bench [--quick] [--no-qemu] [--reps N] [--work N] [--out PATH]`
//! (`--help` explains each).
//!
//! 1. [`host`]: nanoseconds per request on the virtual-time platform and on
//!    real threads (`bench/src/bin/core_overhead.rs`), next to one helper
//!    spawn of `/bin/true` with the Linux port's code; instructions per
//!    request under callgrind (`bench/src/bin/icount.rs`).
//! 2. [`storm`]: 10,000 requests over 500 names through the `reqmod` CLI,
//!    against `xargs -P 50` and `reqmod --no-dedup`.
//! 3. [`footprint`]: two riscv64 kernels (`bench/footprint/`), with and
//!    without a `Kmod`; `llvm-size` of the difference.
//! 4. [`smp`]: the storm inside the QEMU kernel (`-append bench`) on 1, 2
//!    and 4 harts under multi-threaded TCG.
//!
//! Every repeated measurement is interleaved with its baseline (one of each
//! per round) and reported as the median of the rounds; ratios are taken
//! between medians of the same run. Nothing here asserts timings: a missed
//! goal is reported, and the command fails only if a measurement could not
//! be made.

mod footprint;
mod host;
mod report;
mod smp;
mod storm;

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Instant;

use report::{Report, Row};

/// One section of the benchmark: measures, adds rows and notes.
type Section = fn(&Options, &mut Report) -> Result<(), String>;

/// Command-line options of `cargo xtask bench`.
#[derive(Debug, Clone)]
pub struct Options {
    /// Fewer rounds and smaller batches (a smoke test of the benchmark).
    pub quick: bool,
    /// Skip everything that boots QEMU (the footprint sizes are still built).
    pub no_qemu: bool,
    /// Rounds of each repeated measurement.
    pub reps: usize,
    /// Iterations of CPU work per module init in the SMP storm.
    pub work: u32,
    /// Where the report goes.
    pub out: PathBuf,
}

/// `cargo xtask bench`: release benchmarks, each against a baseline measured
/// in the same run; prints one table and writes BENCH.md.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// 3 rounds and smaller batches (about a minute): a smoke test.
    #[arg(long)]
    quick: bool,
    /// Skip the QEMU boots (SMP scaling, the footprint's smoke boot).
    #[arg(long)]
    no_qemu: bool,
    /// Rounds of each repeated measurement [default: 5; --quick: 3].
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    reps: Option<u64>,
    /// Iterations of CPU work per module init in the QEMU storm.
    #[arg(long, value_name = "N", default_value_t = smp::DEFAULT_WORK)]
    work: u32,
    /// The report file [default: BENCH.md at the repository root].
    #[arg(long, value_name = "PATH")]
    out: Option<PathBuf>,
}

impl BenchArgs {
    /// Whether the QEMU boots are skipped.
    pub fn no_qemu(&self) -> bool {
        self.no_qemu
    }
}

/// `cargo xtask bench …`
pub fn main(args: BenchArgs) -> ExitCode {
    let opts = Options {
        quick: args.quick,
        no_qemu: args.no_qemu,
        reps: args
            .reps
            .map_or(if args.quick { 3 } else { 5 }, |n| n as usize),
        work: args.work,
        out: args
            .out
            .unwrap_or_else(|| crate::repo_root().join("BENCH.md")),
    };
    let began = Instant::now();
    let mut report = Report::new(&opts);
    let mut failed = Vec::new();

    let root = crate::repo_root();
    if let Err(e) = build_host(&root) {
        eprintln!("xtask bench: {e}");
        return ExitCode::FAILURE;
    }
    let sections: [(&str, Section); 4] = [
        ("1. core overhead", host::run),
        ("2. storm", storm::run),
        ("3. footprint", footprint::run),
        ("4. SMP scaling", smp::run),
    ];
    for (name, section) in sections {
        eprintln!("\n=== xtask bench: {name} ===");
        let t = Instant::now();
        if let Err(e) = section(&opts, &mut report) {
            eprintln!("xtask bench: {name} FAILED: {e}");
            report.rows.push(Row::failed(name, &e));
            failed.push(name);
        }
        eprintln!("({name}: {:.0} s)", t.elapsed().as_secs_f64());
    }
    report.took = began.elapsed();
    let table = report.table();
    println!("\n{table}");
    match std::fs::write(&opts.out, report.markdown()) {
        Ok(()) => println!("xtask bench: wrote {}", opts.out.display()),
        Err(e) => {
            eprintln!("xtask bench: cannot write {}: {e}", opts.out.display());
            return ExitCode::FAILURE;
        }
    }
    println!("xtask bench: took {:.0} s", report.took.as_secs_f64());
    if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        eprintln!("xtask bench: could not measure: {}", failed.join(", "));
        ExitCode::FAILURE
    }
}

/// Release builds of the host programs: the `reqmod` CLI and the benchmark
/// binaries (with the Linux port), then `icount` again without it, so the
/// core it measures has no logging backend compiled in (as in a kernel
/// built without `defmt`/`log`).
fn build_host(root: &Path) -> Result<(), String> {
    crate::run(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "reqmod-linux",
            "-p",
            "reqmod-bench",
        ],
        &[],
    )?;
    crate::run(
        root,
        "cargo",
        &[
            "build",
            "--release",
            "-p",
            "reqmod-bench",
            "--no-default-features",
            "--bin",
            "icount",
        ],
        &[],
    )
}

/// `target/release/<name>` (or under `CARGO_TARGET_DIR`).
fn release_bin(name: &str) -> PathBuf {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::repo_root().join("target"));
    target.join("release").join(name)
}

/// Runs `program args` and returns its standard output; `Err` with its
/// standard error if it fails.
fn output(program: &str, args: &[&str]) -> Result<String, String> {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot run {program}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{program} {} failed ({}): {}",
            args.join(" "),
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// Prints the command it is about to run, like `crate::run` does.
fn echo(program: &Path, args: &[String]) {
    eprintln!("$ {} {}", program.display(), args.join(" "));
}

/// The median of `v` (mean of the two middle values for an even count).
fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    match v.len() {
        0 => f64::NAN,
        n if n % 2 == 1 => v[n / 2],
        n => (v[n / 2 - 1] + v[n / 2]) / 2.0,
    }
}

/// A small deterministic generator (xorshift64*) for shuffles that repeat.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.max(1))
    }

    fn below(&mut self, bound: usize) -> usize {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) % bound as u64) as usize
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}
