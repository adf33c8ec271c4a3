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
    let overhead = core_overhead(opts, report, &[])?;
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
    // The same slot waits with both threads on one CPU: what is left without
    // waking a thread parked on the other CPU at every hand-off.
    let pinned = if std::path::Path::new("/usr/bin/taskset").exists() && threads >= 2 {
        match core_overhead(opts, report, &["--only", "threads_wait"]) {
            Ok(p) => p.get("threads_wait").map(|(m, _)| *m),
            Err(e) => {
                eprintln!("xtask bench: pinned run failed: {e}");
                None
            }
        }
    } else {
        None
    };
    if let Some(v) = pinned {
        report.rows.push(Row {
            section: "1".into(),
            what: format!(
                "core, {threads} threads pinned to one CPU (taskset -c 0): waits for a slot"
            ),
            value: format!("{}/request", ns(v)),
            baseline: format!("spawn+wait /bin/true {}", ns(spawn)),
            ratio: format!("{:.3}%", 100.0 * v / spawn),
            goal: "(info)".into(),
            met: None,
        });
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
             slot is held across a poll: requests queue for it from both threads, and \
             each waits with the port's 5 s timer armed). The share is the median of the \
             per-round shares (this kind ÷ the spawn measured in the same round). Thread \
             figures are CPU time of the requesting threads per request (the work a \
             request costs; the median wall time × threads ÷ requests, which adds time \
             spent parked or preempted, is in the raw figures). First requests use \
             distinct names, so the 64-entry table evicts an entry on every request; \
             duplicates hit one lingering entry. The thread figures are bimodal on this \
             machine (rounds where the two threads contend for the host's global \
             `critical-section` mutex and wake each other through futexes, and rounds \
             where they mostly do not): see the raw figures.",
            reps = opts.reps + 4,
            spawn = ns(spawn),
        ),
    );
    if pinned.is_some() {
        report.note(
            "1",
            "**Slot waits across threads.** Profiled once with `perf record -g` \
             (`core_overhead --only threads_wait`): about half of the CPU time of the \
             threaded slot waits was the kernel waking the other thread (`futex_wake` → \
             `try_to_wake_up` from the slot hand-off's waker, and the woken thread's \
             context switch): handing a slot to a request parked on another CPU costs a \
             thread wake-up, as the kernel's `up()` on its semaphore does. The pinned row \
             runs the same measurement with both threads on one CPU (`taskset -c 0`), \
             where most hand-offs find the other thread not yet parked; its share is \
             against the median spawn of the main run."
                .to_string(),
        );
    }
    let icount = instructions(report);
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
    let mut keys: Vec<&String> = overhead.keys().collect();
    keys.sort();
    for k in keys {
        if let Some((m, all)) = overhead.get(k)
            && !matches!(k.as_str(), "threads" | "kmod_size" | "reps")
        {
            report.raw("1", format!("{k}: median {m:.1} ns; rounds {all}"));
        }
    }
    Ok(())
}

type Figures = HashMap<String, (f64, String)>;

/// Runs `core_overhead` (pinned to CPU 0 with `taskset` when `extra` is
/// not empty) and reads its `key median rounds` lines.
fn core_overhead(opts: &Options, report: &mut Report, extra: &[&str]) -> Result<Figures, String> {
    let bin = release_bin("core_overhead");
    let reps = opts.reps + 4;
    let scale = if opts.quick { "0.3" } else { "2" };
    let mut args = vec![
        "--reps".to_string(),
        reps.to_string(),
        "--scale".into(),
        scale.into(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let (program, shown) = if extra.is_empty() {
        (bin.clone(), "target/release/core_overhead".to_string())
    } else {
        args.splice(
            0..0,
            ["-c".to_string(), "0".into(), bin.display().to_string()],
        );
        (
            std::path::PathBuf::from("/usr/bin/taskset"),
            "taskset -c 0 target/release/core_overhead".to_string(),
        )
    };
    echo(&program, &args);
    let shown_args: Vec<&String> = args
        .iter()
        .skip(if extra.is_empty() { 0 } else { 3 })
        .collect();
    report.command(
        "1",
        format!(
            "{shown} {}",
            shown_args
                .iter()
                .map(|a| a.as_str())
                .collect::<Vec<_>>()
                .join(" ")
        ),
    );
    let out = Command::new(&program)
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
        ("noop", "NoopRawMutex (no lock: the core alone)", "first"),
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
             no `log`/`defmt`). `NoopRawMutex` takes no lock at all, so its figure \
             is the core alone (it is not `Sync`: a `static` `Kmod` uses \
             `CriticalSectionRawMutex`, which on a single-hart kernel is an interrupts-off \
             pair); `CriticalSectionRawMutex` on the host is `critical-section`'s \
             `std` implementation, a global `std::sync::Mutex` plus a thread-local flag, \
             about 60 instructions per lock round trip."
        ),
    );
    Ok(out)
}
