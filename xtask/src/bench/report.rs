//! The table and `BENCH.md`.

use std::fmt::Write as _;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::Options;

/// One line of the table.
#[derive(Debug, Clone, Default)]
pub struct Row {
    /// Section number (`1`…`4`).
    pub section: String,
    /// What was measured.
    pub what: String,
    /// The measured value (median).
    pub value: String,
    /// What it is compared with, measured in the same run.
    pub baseline: String,
    /// value ÷ baseline (or the quantity the goal is about).
    pub ratio: String,
    /// The goal.
    pub goal: String,
    /// Whether the goal was met (`None`: informational row).
    pub met: Option<bool>,
}

impl Row {
    /// A row for a section that could not be measured.
    pub fn failed(section: &str, why: &str) -> Self {
        Row {
            section: section.chars().take(1).collect(),
            what: format!("{section}: NOT MEASURED"),
            value: why.chars().take(120).collect(),
            met: Some(false),
            ..Row::default()
        }
    }
}

/// Everything `BENCH.md` says.
#[derive(Debug)]
pub struct Report {
    /// `key: value` facts about the machine and toolchain.
    pub machine: Vec<(String, String)>,
    /// `(section, command)`: every command whose output is in the table.
    pub commands: Vec<(String, String)>,
    /// The table.
    pub rows: Vec<Row>,
    /// `(section, paragraph)`: method and findings.
    pub notes: Vec<(String, String)>,
    /// Per-round raw figures, `(section, line)`.
    pub raw: Vec<(String, String)>,
    /// Wall time of the whole run.
    pub took: Duration,
    /// The options of the run.
    pub options: String,
    /// How many host CPUs.
    pub cpus: usize,
}

fn read(path: &str) -> String {
    std::fs::read_to_string(path).unwrap_or_default()
}

fn first_line_of(program: &str, args: &[&str]) -> String {
    std::process::Command::new(program)
        .args(args)
        .output()
        .ok()
        .map(|o| {
            let text = if o.stdout.is_empty() {
                o.stderr
            } else {
                o.stdout
            };
            String::from_utf8_lossy(&text)
                .lines()
                .next()
                .unwrap_or("")
                .trim()
                .to_string()
        })
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| format!("({program} not found)"))
}

/// UTC date and time of now, `YYYY-MM-DD HH:MM UTC`.
pub fn utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02} UTC",
        rem / 3600,
        (rem % 3600) / 60
    )
}

impl Report {
    /// Collects the machine facts.
    pub fn new(opts: &Options) -> Self {
        let cpuinfo = read("/proc/cpuinfo");
        let model = cpuinfo
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .and_then(|l| l.split_once(':'))
            .map_or("unknown".to_string(), |(_, m)| m.trim().to_string());
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let machine = vec![
            ("date".into(), utc_now()),
            ("host CPUs (nproc)".into(), cpus.to_string()),
            ("CPU model".into(), model),
            (
                "kernel".into(),
                format!("Linux {}", read("/proc/sys/kernel/osrelease").trim()),
            ),
            (
                "load average at start".into(),
                read("/proc/loadavg")
                    .split_whitespace()
                    .take(3)
                    .collect::<Vec<_>>()
                    .join(" "),
            ),
            ("rustc".into(), first_line_of("rustc", &["-V"])),
            (
                "QEMU".into(),
                first_line_of("qemu-system-riscv64", &["--version"]),
            ),
            ("valgrind".into(), first_line_of("valgrind", &["--version"])),
            ("llvm-size".into(), {
                let v = first_line_of("llvm-size", &["--version"]);
                if v.contains("not found") {
                    v
                } else {
                    std::process::Command::new("llvm-size")
                        .arg("--version")
                        .output()
                        .ok()
                        .and_then(|o| {
                            String::from_utf8_lossy(&o.stdout)
                                .lines()
                                .find(|l| l.contains("version"))
                                .map(|l| l.trim().to_string())
                        })
                        .unwrap_or(v)
                }
            }),
        ];
        Report {
            machine,
            commands: Vec::new(),
            rows: Vec::new(),
            notes: Vec::new(),
            raw: Vec::new(),
            took: Duration::ZERO,
            options: format!(
                "reps {}, work {}{}{}",
                opts.reps,
                opts.work,
                if opts.quick { ", --quick" } else { "" },
                if opts.no_qemu { ", --no-qemu" } else { "" }
            ),
            cpus,
        }
    }

    /// Records a command of `section`.
    pub fn command(&mut self, section: &str, command: impl Into<String>) {
        self.commands.push((section.into(), command.into()));
    }

    /// Adds a paragraph to `section`'s notes.
    pub fn note(&mut self, section: &str, text: impl Into<String>) {
        self.notes.push((section.into(), text.into()));
    }

    /// Adds a line of raw figures to `section`.
    pub fn raw(&mut self, section: &str, text: impl Into<String>) {
        self.raw.push((section.into(), text.into()));
    }

    /// The table, as Markdown (also readable as plain text).
    pub fn table(&self) -> String {
        let header = [
            "#",
            "measurement",
            "value",
            "baseline",
            "ratio",
            "goal",
            "met",
        ];
        let rows: Vec<[String; 7]> = self
            .rows
            .iter()
            .map(|r| {
                [
                    r.section.clone(),
                    r.what.clone(),
                    r.value.clone(),
                    r.baseline.clone(),
                    r.ratio.clone(),
                    r.goal.clone(),
                    match r.met {
                        Some(true) => "yes".into(),
                        Some(false) => "**NO**".into(),
                        None => String::new(),
                    },
                ]
            })
            .collect();
        let mut width = header.map(|h| h.chars().count());
        for r in &rows {
            for (w, c) in width.iter_mut().zip(r) {
                *w = (*w).max(c.chars().count());
            }
        }
        let line = |cells: &[String]| {
            let mut s = String::from("|");
            for (c, w) in cells.iter().zip(width) {
                let pad = w - c.chars().count();
                let _ = write!(s, " {c}{} |", " ".repeat(pad));
            }
            s
        };
        let mut out = String::new();
        let _ = writeln!(out, "{}", line(&header.map(String::from)));
        let _ = writeln!(
            out,
            "|{}",
            width
                .iter()
                .map(|w| format!("{}|", "-".repeat(w + 2)))
                .collect::<String>()
        );
        for r in &rows {
            let _ = writeln!(out, "{}", line(r));
        }
        out
    }

    /// The whole of `BENCH.md`.
    pub fn markdown(&self) -> String {
        let mut md = String::new();
        let _ = writeln!(md, "# reqmod benchmarks\n");
        let _ = writeln!(
            md,
            "Written by `cargo xtask bench` ({}; the whole run took {:.0} s). \
             Every figure is the median of interleaved rounds, and every ratio \
             is taken between figures measured side by side in this one run: \
             the machine is shared and noisy, ratios are what carries over.\n",
            self.options,
            self.took.as_secs_f64()
        );
        let _ = writeln!(md, "## Machine\n");
        for (k, v) in &self.machine {
            let _ = writeln!(md, "- {k}: {v}");
        }
        let _ = writeln!(md, "\n## Results\n");
        md.push_str(&self.table());
        let met: Vec<&Row> = self.rows.iter().filter(|r| r.met.is_some()).collect();
        let missed: Vec<&&Row> = met.iter().filter(|r| r.met == Some(false)).collect();
        let _ = writeln!(
            md,
            "\nGoals: {} of {} met.{}",
            met.len() - missed.len(),
            met.len(),
            if missed.is_empty() {
                String::new()
            } else {
                format!(
                    " Missed: {}.",
                    missed
                        .iter()
                        .map(|r| format!("{} ({} {})", r.what, r.value, r.ratio))
                        .collect::<Vec<_>>()
                        .join("; ")
                )
            }
        );
        for section in ["1", "2", "3", "4"] {
            let title = match section {
                "1" => "1. Core overhead (host)",
                "2" => "2. Storm (host, real processes)",
                "3" => "3. Footprint (riscv64, opt-level \"s\")",
                _ => "4. SMP scaling (QEMU, multi-threaded TCG)",
            };
            let _ = writeln!(md, "\n## {title}\n");
            for (_, n) in self.notes.iter().filter(|(s, _)| s == section) {
                let _ = writeln!(md, "{n}\n");
            }
            let cmds: Vec<&String> = self
                .commands
                .iter()
                .filter(|(s, _)| s == section)
                .map(|(_, c)| c)
                .collect();
            if !cmds.is_empty() {
                let _ = writeln!(md, "Commands:\n\n```sh");
                for c in cmds {
                    let _ = writeln!(md, "{c}");
                }
                let _ = writeln!(md, "```\n");
            }
            let raw: Vec<&String> = self
                .raw
                .iter()
                .filter(|(s, _)| s == section)
                .map(|(_, c)| c)
                .collect();
            if !raw.is_empty() {
                let _ = writeln!(md, "Raw figures (every round):\n\n```text");
                for r in raw {
                    let _ = writeln!(md, "{r}");
                }
                let _ = writeln!(md, "```");
            }
        }
        md
    }
}

/// `1234567` → `1,234,567`.
pub fn thousands(n: u64) -> String {
    let s = n.to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// Nanoseconds, readably: `812 ns`, `1.23 µs`, `627 µs`, `1.20 ms`.
pub fn ns(v: f64) -> String {
    if v < 1_000.0 {
        format!("{v:.0} ns")
    } else if v < 100_000.0 {
        format!("{:.2} µs", v / 1_000.0)
    } else if v < 1_000_000.0 {
        format!("{:.0} µs", v / 1_000.0)
    } else {
        format!("{:.2} ms", v / 1_000_000.0)
    }
}

/// Seconds with three decimals.
pub fn secs(v: f64) -> String {
    format!("{v:.3} s")
}
