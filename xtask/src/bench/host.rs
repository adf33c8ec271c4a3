//! Section 1, core overhead on the host: nanoseconds per request (virtual
//! time and real threads) against one helper spawn, and instructions per
//! request under callgrind.

use std::collections::HashMap;
use std::process::Command;

use super::report::{Report, Row, ns, thousands};
use super::{Options, echo, median, release_bin};

/// Requests in the callgrind loop (all distinct names).
const ICOUNT_REQUESTS: usize = 2000;
/// Goal: instructions per uncontended first request.
const ICOUNT_GOAL: f64 = 2000.0;
/// Goal: core overhead as a share of one helper spawn.
const SHARE_GOAL: f64 = 0.2;

/// Runs the section.
pub fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let overhead = core_overhead(opts, report)?;
    let icount = instructions(report);
    let get = |k: &str| -> Result<f64, String> {
        overhead
            .get(k)
            .map(|(m, _)| *m)
            .ok_or_else(|| format!("core_overhead printed no {k}"))
    };
    let spawn = get("spawn")?;
    let threads = get("threads")? as usize;
    let rounds = |k: &str| -> Vec<f64> {
        overhead
            .get(k)
            .map(|(_, all)| all.split(',').filter_map(|v| v.parse().ok()).collect())
            .unwrap_or_default()
    };
    let spawn_rounds = rounds("spawn");
    let kinds = [
        ("sim_first", "core, virtual time: first request"),
        ("sim_dup", "core, virtual time: duplicate from the table"),
        ("sim_wait", "core, virtual time: waits for a slot"),
        (
            "threads_first",
            "core, {t} threads, Linux clock/locks: first request",
        ),
        (
            "threads_dup",
            "core, {t} threads, Linux clock/locks: duplicate from the table",
        ),
        (
            "threads_wait",
            "core, {t} threads, Linux clock/locks: waits for a slot",
        ),
    ];
    for (key, what) in kinds {
        let v = get(key)?;
        // The share: median of the per-round shares (each round measures the
        // spawn and this kind one right after the other).
        let shares: Vec<f64> = rounds(key)
            .iter()
            .zip(&spawn_rounds)
            .map(|(v, s)| 100.0 * v / s)
            .collect();
        let share = median(&shares);
        report.rows.push(Row {
            section: "1".into(),
            what: what.replace("{t}", &threads.to_string()),
            value: format!("{}/request", ns(v)),
            baseline: format!("spawn+wait /bin/true {}", ns(spawn)),
            ratio: format!("{share:.3}%"),
            goal: format!("< {SHARE_GOAL}%"),
            met: Some(share < SHARE_GOAL),
        });
    }
    match icount {
        Ok(counts) => {
            for (mutex, kind, label, per_request) in counts {
                let first = kind == "first";
                report.rows.push(Row {
                    section: "1".into(),
                    what: if first {
                        format!("instructions per first request (callgrind), {label}")
                    } else {
                        format!("instructions per duplicate (callgrind), {label}")
                    },
                    value: thousands(per_request.round() as u64),
                    baseline: String::new(),
                    ratio: String::new(),
                    goal: if first {
                        format!("≤ {}", thousands(ICOUNT_GOAL as u64))
                    } else {
                        "(info)".into()
                    },
                    met: first.then_some(per_request <= ICOUNT_GOAL),
                });
                report.raw(
                    "1",
                    format!("callgrind {mutex} {kind}: {per_request:.1} instructions per request"),
                );
            }
        }
        Err(e) => report.rows.push(Row::failed("1 (callgrind)", &e)),
    }
    if let Some((size, _)) = overhead.get("kmod_size") {
        report.note(
            "1",
            format!(
                "`size_of::<Kmod<_>>()` of a default `Kmod` (50 slots, 32 queued waiters, \
                 64 table entries) on this 64-bit host: {} bytes.",
                thousands(*size as u64)
            ),
        );
    }
    report.note(
        "1",
        format!(
            "**Method.** `bench/src/bin/core_overhead.rs`, {reps} interleaved rounds, medians. \
             Baseline: one helper run of `/bin/true` through `LinuxPlatform::run_helper` \
             (the Linux port's own spawn: `clone(CLONE_VM|CLONE_VFORK)` + `execve`, pidfd, \
             epoll reactor, reaping), waited for with `reqmod_linux::block_on`, \
             {spawn} per run. *Virtual time*: a default `Kmod` (`CriticalSectionRawMutex`) \
             on `reqmod::sim` with recording off and a helper that exits 0 at once, driven \
             by `embassy_futures::block_on` (wait: batches of 32 tasks on the simulator's \
             executor, `max_concurrent` 1, helper lasting 1 ns of virtual time, so 31 of \
             32 requests wait in the slot queue; this row includes the executor's task \
             spawn, wakes and timer). *Threads*: {threads} threads (one per host CPU) \
             requesting at once through one default `Kmod` whose platform uses \
             `reqmod_linux`'s clock and timers and whose helper returns at once, each \
             request driven by `reqmod_linux::block_on` (wait: `max_concurrent` 1, each \
             thread runs batches of 16 with `block_on_all`, the helper yields once so the \
             slot is held across a poll: requests queue for it from both threads). \
             The share is the median of the per-round shares (this kind ÷ the spawn \
             measured in the same round). \
             Thread figures are CPU time of the requesting threads per request (the \
             work a request costs; the median wall time × threads ÷ requests, which \
             adds time spent parked or preempted, is in the raw figures). First \
             requests use distinct names, so the 64-entry table evicts an entry on \
             every request; duplicates hit one lingering entry.",
            reps = opts.reps + 4,
            spawn = ns(spawn),
        ),
    );
    for (k, (m, all)) in &overhead {
        if k != "threads" && k != "kmod_size" {
            report.raw("1", format!("{k}: median {m:.1} ns; rounds {all}"));
        }
    }
    Ok(())
}

type Figures = HashMap<String, (f64, String)>;

fn core_overhead(opts: &Options, report: &mut Report) -> Result<Figures, String> {
    let bin = release_bin("core_overhead");
    let reps = opts.reps + 4;
    let scale = if opts.quick { "0.3" } else { "2" };
    let args = vec![
        "--reps".to_string(),
        reps.to_string(),
        "--scale".into(),
        scale.into(),
    ];
    echo(&bin, &args);
    report.command(
        "1",
        format!("target/release/core_overhead {}", args.join(" ")),
    );
    let out = Command::new(&bin)
        .args(&args)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", bin.display()))?;
    if !out.status.success() {
        return Err(format!(
            "core_overhead failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let mut figures = Figures::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        eprintln!("  {line}");
        let mut words = line.split_whitespace();
        if let (Some(k), Some(v)) = (words.next(), words.next())
            && let Ok(v) = v.parse::<f64>()
        {
            figures.insert(k.to_string(), (v, words.collect::<Vec<_>>().join(" ")));
        }
    }
    Ok(figures)
}

/// `(mutex, kind, label, instructions per request)`.
type Count = (&'static str, &'static str, &'static str, f64);

/// Instructions per request for both mutex kinds, first requests and duplicates.
fn instructions(report: &mut Report) -> Result<Vec<Count>, String> {
    let bin = release_bin("icount");
    let dir = bin.parent().ok_or("no target dir")?.join("bench-callgrind");
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let mut out = Vec::new();
    for (mutex, label, kind) in [
        ("noop", "NoopRawMutex (uniprocessor kernel)", "first"),
        (
            "cs",
            "CriticalSectionRawMutex (default, host std impl)",
            "first",
        ),
        ("noop", "NoopRawMutex", "dup"),
        ("cs", "CriticalSectionRawMutex", "dup"),
    ] {
        let file = dir.join(format!("callgrind.{mutex}.{kind}.out"));
        let args = vec![
            "--tool=callgrind".to_string(),
            "--toggle-collect=icount::measured*".into(),
            format!("--callgrind-out-file={}", file.display()),
            bin.display().to_string(),
            mutex.into(),
            ICOUNT_REQUESTS.to_string(),
            kind.into(),
        ];
        echo(std::path::Path::new("valgrind"), &args);
        report.command(
            "1",
            format!(
                "valgrind --tool=callgrind --toggle-collect='icount::measured*' \
                 target/release/icount {mutex} {ICOUNT_REQUESTS} {kind}"
            ),
        );
        let run = Command::new("valgrind")
            .args(&args)
            .output()
            .map_err(|e| format!("cannot run valgrind (apt-get install valgrind): {e}"))?;
        let stderr = String::from_utf8_lossy(&run.stderr);
        if !run.status.success() {
            return Err(format!("valgrind failed ({}): {stderr}", run.status));
        }
        let collected = stderr
            .lines()
            .find_map(|l| l.split_once("Collected :").map(|(_, n)| n.trim()))
            .and_then(|n| n.replace(',', "").parse::<f64>().ok())
            .ok_or_else(|| format!("no 'Collected' line in valgrind's output: {stderr}"))?;
        out.push((mutex, kind, label, collected / ICOUNT_REQUESTS as f64));
    }
    report.note(
        "1",
        format!(
            "**Instructions.** `bench/src/bin/icount.rs` makes {ICOUNT_REQUESTS} waiting \
             requests for distinct pre-built names (`bench-000000`…) on `reqmod::sim` \
             (recording off, helper exits 0 at once), each driven by \
             `embassy_futures::block_on(kmod.request_module(format_args!(\"{{name}}\")))`; \
             callgrind counts only the loop (`--toggle-collect`), so the figure is the \
             request alone: name formatting, checks, slot, trace, duplicate table (with an \
             eviction: 64 entries), command, the simulator's `run_helper`, announce, \
             release, counters (`dup`: {ICOUNT_REQUESTS} requests for one name whose \
             finished entry lingers, each answered from the table). Built without a logging backend (`--no-default-features`: \
             no `log`/`defmt`). `NoopRawMutex` is what a uniprocessor kernel's lock costs \
             (next to nothing); `CriticalSectionRawMutex` on the host is `critical-section`'s \
             `std` implementation, a global `std::sync::Mutex` plus a thread-local flag, \
             about 60 instructions per lock round trip."
        ),
    );
    Ok(out)
}
