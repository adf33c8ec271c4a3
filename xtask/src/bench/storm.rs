//! Section 2, the storm on the host: 10,000 requests over 500 names through
//! the `reqmod` CLI, against `xargs -P 50` running the helper once per name
//! and against the CLI without duplicate suppression.

use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use super::report::{Report, Row, secs, thousands};
use super::{Options, Rng, echo, median, release_bin};

const NAMES: usize = 500;
const REPEAT: usize = 20;
const SEED: u64 = 1;
/// Goal: the CLI's storm at most this many times the xargs baseline.
const XARGS_GOAL: f64 = 1.15;
/// Goal: the storm without duplicate suppression at least this many times slower.
const NODEDUP_GOAL: f64 = 10.0;

/// One timed run: wall time from spawn to exit, and its standard output.
fn timed(program: &Path, args: &[&str], stdin: &[u8]) -> Result<(Duration, Vec<u8>), String> {
    let start = Instant::now();
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("cannot start {}: {e}", program.display()))?;
    let mut input = child.stdin.take().ok_or("no stdin")?;
    let mut output = child.stdout.take().ok_or("no stdout")?;
    let (out, wrote) = std::thread::scope(|s| {
        let writer = s.spawn(move || input.write_all(stdin));
        let mut out = Vec::new();
        let read = output.read_to_end(&mut out);
        (read.map(|_| out), writer.join())
    });
    let status = child
        .wait()
        .map_err(|e| format!("waiting for {}: {e}", program.display()))?;
    let took = start.elapsed();
    let out = out.map_err(|e| format!("reading {}: {e}", program.display()))?;
    match wrote {
        Ok(Ok(())) => {}
        _ => return Err(format!("writing to {}'s stdin failed", program.display())),
    }
    if !status.success() {
        return Err(format!(
            "{} {} failed ({status})",
            program.display(),
            args.join(" ")
        ));
    }
    Ok((took, out))
}

/// Checks that the CLI printed `0\t<name>` for every request, in order.
fn check_cli(out: &[u8], names: &[String]) -> Result<(), String> {
    let text = String::from_utf8_lossy(out);
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() != names.len() {
        return Err(format!(
            "reqmod printed {} lines for {} requests",
            lines.len(),
            names.len()
        ));
    }
    for (line, name) in lines.iter().zip(names) {
        if line.split_once('\t') != Some(("0", name.as_str())) {
            return Err(format!("reqmod printed {line:?} for {name}"));
        }
    }
    Ok(())
}

/// Runs the section.
pub fn run(opts: &Options, report: &mut Report) -> Result<(), String> {
    let reqmod = release_bin("reqmod");
    let distinct: Vec<String> = (0..NAMES).map(|i| format!("bench-{i:03}")).collect();
    let mut names: Vec<String> = distinct
        .iter()
        .flat_map(|n| std::iter::repeat_n(n.clone(), REPEAT))
        .collect();
    Rng::new(SEED).shuffle(&mut names);
    let storm_input = names.join("\n") + "\n";
    let distinct_input = distinct.join("\n") + "\n";

    let xargs = Path::new("/usr/bin/xargs");
    let xargs = if xargs.exists() {
        xargs.to_path_buf()
    } else {
        Path::new("xargs").to_path_buf()
    };
    let cli_args = [
        "request",
        "--modprobe",
        "/bin/true",
        "--busy-timeout",
        "600",
        "-",
    ];
    let nodedup_args = [
        "request",
        "--no-dedup",
        "--modprobe",
        "/bin/true",
        "--busy-timeout",
        "600",
        "-",
    ];
    let xargs_args = ["-P", "50", "-n", "1", "/bin/true"];
    report.command(
        "2",
        format!(
            "target/release/reqmod {} < storm.txt   # 10,000 names, stdout checked, stderr to /dev/null",
            cli_args.join(" ")
        ),
    );
    report.command(
        "2",
        format!(
            "xargs {} < names.txt            # the 500 distinct names",
            xargs_args.join(" ")
        ),
    );
    report.command(
        "2",
        format!(
            "target/release/reqmod {} < storm.txt",
            nodedup_args.join(" ")
        ),
    );

    let mut cli = Vec::new();
    let mut base = Vec::new();
    let mut nodedup = Vec::new();
    for round in 0..opts.reps {
        eprintln!("round {}/{}", round + 1, opts.reps);
        if round == 0 {
            echo(&reqmod, &cli_args.map(String::from));
        }
        let (t, out) = timed(&reqmod, &cli_args, storm_input.as_bytes())?;
        check_cli(&out, &names)?;
        cli.push(t.as_secs_f64());

        if round == 0 {
            echo(&xargs, &xargs_args.map(String::from));
        }
        let (t, _) = timed(&xargs, &xargs_args, distinct_input.as_bytes())?;
        base.push(t.as_secs_f64());

        if round == 0 {
            echo(&reqmod, &nodedup_args.map(String::from));
        }
        let (t, out) = timed(&reqmod, &nodedup_args, storm_input.as_bytes())?;
        check_cli(&out, &names)?;
        nodedup.push(t.as_secs_f64());
        eprintln!(
            "  reqmod {:.3} s, xargs {:.3} s, reqmod --no-dedup {:.3} s",
            cli[round], base[round], nodedup[round]
        );
        report.raw(
            "2",
            format!(
                "round {}: reqmod {:.3} s, xargs -P 50 {:.3} s, reqmod --no-dedup {:.3} s",
                round + 1,
                cli[round],
                base[round],
                nodedup[round]
            ),
        );
    }
    // How many helpers each variant ran (one extra run each, with --stats).
    let helpers = |args: &[&str]| -> Result<String, String> {
        let mut with_stats = vec![args[0], "--stats"];
        with_stats.extend_from_slice(&args[1..]);
        let out = Command::new(&reqmod)
            .args(&with_stats)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                if let Some(mut i) = c.stdin.take() {
                    i.write_all(storm_input.as_bytes())?;
                }
                c.wait_with_output()
            })
            .map_err(|e| format!("reqmod --stats: {e}"))?;
        let err = String::from_utf8_lossy(&out.stderr);
        let get = |key: &str| {
            err.lines()
                .find_map(|l| l.strip_prefix(key))
                .map(|v| v.trim().to_string())
                .unwrap_or_else(|| "?".into())
        };
        Ok(format!(
            "{} helpers started, {} duplicates, at most {} slots at once",
            get("helpers_started:"),
            get("duplicates:"),
            get("max_concurrent_seen:")
        ))
    };
    let dedup_stats = helpers(&cli_args)?;
    let nodedup_stats = helpers(&nodedup_args)?;

    let (c, b, n) = (median(&cli), median(&base), median(&nodedup));
    // Ratios: medians of the per-round ratios (each round runs the three
    // one right after the other, so a slow drift of the host cancels).
    let per_round: Vec<f64> = cli.iter().zip(&base).map(|(c, b)| c / b).collect();
    let r_xargs = median(&per_round);
    let r_nodedup = median(
        &nodedup
            .iter()
            .zip(&cli)
            .map(|(n, c)| n / c)
            .collect::<Vec<_>>(),
    );
    report.rows.push(Row {
        section: "2".into(),
        what: format!(
            "storm: {} requests, {NAMES} names, /bin/true, reqmod request -",
            thousands((NAMES * REPEAT) as u64)
        ),
        value: secs(c),
        baseline: format!("xargs -P 50 -n 1 /bin/true ×{NAMES}: {}", secs(b)),
        ratio: format!("{r_xargs:.2}x"),
        goal: format!("≤ {XARGS_GOAL}x"),
        met: Some(r_xargs <= XARGS_GOAL),
    });
    report.rows.push(Row {
        section: "2".into(),
        what: "storm without duplicate suppression (reqmod --no-dedup)".into(),
        value: secs(n),
        baseline: format!("reqmod request -: {}", secs(c)),
        ratio: format!("{r_nodedup:.1}x slower"),
        goal: format!("≥ {NODEDUP_GOAL}x"),
        met: Some(r_nodedup >= NODEDUP_GOAL),
    });
    report.note(
        "2",
        format!(
            "**Method.** {total} requests: the {NAMES} names `bench-000`…`bench-{last:03}`, \
             each {REPEAT} times, shuffled with a fixed seed (xorshift64*, seed {SEED}), one \
             per line on standard input of one `reqmod request` process (one `Kmod` with the \
             kernel's 50 slots; the CLI's table has 2,048 entries, so every name's entry \
             lingers through the storm), helper `/bin/true`, a busy timeout of 600 s (the \
             kernel's 5 s rule would rightly fail requests queued behind 50 slots for longer \
             than that: they are all issued at once). The baseline is the least work any \
             autoloader must do: `/bin/true` once per distinct name, 50 at a time, by \
             `xargs`. Wall time from spawn to exit of the process, {reps} rounds, each round \
             running the three one after the other; the values are medians, the ratios \
             medians of the per-round ratios. Standard output of `reqmod` is \
             read and checked (every line `0<TAB>name`, in input order); its standard error \
             (one `duplicate request` warning per duplicate, as the kernel prints) goes to \
             `/dev/null`. Per-round ratio reqmod/xargs: {per_round}. Counters from one more \
             run with `--stats`: dedup: {dedup_stats}; `--no-dedup`: {nodedup_stats}.",
            total = thousands((NAMES * REPEAT) as u64),
            last = NAMES - 1,
            reps = opts.reps,
            per_round = per_round
                .iter()
                .map(|r| format!("{r:.2}"))
                .collect::<Vec<_>>()
                .join(", "),
        ),
    );
    Ok(())
}
