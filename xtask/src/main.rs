//! `cargo xtask demo | test | bench | qemu …`: project automation.
//!
//! - `demo`: boot the riscv64 kernel under QEMU with several virtio devices on
//!   4 harts; it autoloads their drivers through the core and prints a table.
//! - `test`: formatting, lints and docs (host and riscv64), the core built for
//!   bare-metal targets, every host test, then the QEMU selftest on 1 and 4 harts.
//! - `qemu …`: the kernel's own runner (`cargo xtask qemu --help`).
//!
//! Only `std`; every step prints the command it runs.

mod bench;
mod proc;
mod qemu;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => qemu::demo(),
        Some("test") => test(args.get(1..).unwrap_or_default()),
        Some("bench") => bench::main(args.get(1..).unwrap_or_default()),
        Some("qemu") => qemu::main(args.get(1..).unwrap_or_default()),
        Some("-h" | "--help" | "help") => {
            usage();
            ExitCode::SUCCESS
        }
        _ => {
            usage();
            ExitCode::from(2)
        }
    }
}

fn usage() {
    eprintln!(
        "usage: cargo xtask <command>\n\
         \n  demo              boot the riscv64 kernel in QEMU (-smp 4, virtio devices) and autoload their drivers\
         \n  test [--no-qemu]  lints, docs, every host test, then the QEMU selftest with -smp 1 and -smp 4\
         \n  bench             release benchmarks against baselines; writes BENCH.md\
         \n  qemu …            build and boot the kernel by hand (cargo xtask qemu --help)"
    );
}

/// The repository root (xtask lives in `xtask/`).
fn repo_root() -> std::path::PathBuf {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest).to_path_buf()
}

/// Runs a command from the repository root, echoing it; `Err` names it.
fn run(dir: &Path, program: &str, args: &[&str], env: &[(&str, &str)]) -> Result<(), String> {
    let shown = std::iter::once(program)
        .chain(args.iter().copied())
        .collect::<Vec<_>>()
        .join(" ");
    let env_shown: String = env.iter().map(|(k, v)| format!("{k}={v} ")).collect();
    eprintln!("\n$ {env_shown}{shown}");
    let began = Instant::now();
    let status = Command::new(program)
        .args(args)
        .envs(env.iter().copied())
        .current_dir(dir)
        .status()
        .map_err(|e| format!("{shown}: cannot start: {e}"))?;
    eprintln!("  ({:.1?})", began.elapsed());
    if status.success() {
        Ok(())
    } else {
        Err(format!("`{env_shown}{shown}` failed ({status})"))
    }
}

fn test(args: &[String]) -> ExitCode {
    let qemu = !args.iter().any(|a| a == "--no-qemu");
    let root = repo_root();
    let kernel = root.join("port-qemu");
    let footprint = root.join("bench/footprint");
    let step =
        |dir: &Path, args: Vec<&'static str>, env: &'static [(&'static str, &'static str)]| Step {
            dir: dir.to_path_buf(),
            args,
            env,
        };
    const DENY: &[(&str, &str)] = &[("RUSTDOCFLAGS", "-D warnings")];
    let steps = [
        step(&root, vec!["fmt", "--all", "--check"], &[]),
        step(&kernel, vec!["fmt", "--check"], &[]),
        step(&footprint, vec!["fmt", "--check"], &[]),
        step(
            &root,
            vec![
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ],
            &[],
        ),
        // The core on a bare-metal target, with each logging backend.
        step(
            &root,
            core_on("riscv64gc-unknown-none-elf", "clippy", None),
            &[],
        ),
        step(
            &root,
            core_on("riscv64gc-unknown-none-elf", "clippy", Some("defmt")),
            &[],
        ),
        step(
            &root,
            core_on("riscv64gc-unknown-none-elf", "clippy", Some("log")),
            &[],
        ),
        step(&root, core_on("x86_64-unknown-none", "build", None), &[]),
        step(
            &root,
            core_on("x86_64-unknown-none", "build", Some("defmt")),
            &[],
        ),
        step(&kernel, vec!["clippy", "--", "-D", "warnings"], &[]),
        step(&footprint, vec!["clippy", "--", "-D", "warnings"], &[]),
        step(&root, vec!["doc", "--workspace", "--no-deps"], DENY),
        step(
            &root,
            vec!["doc", "-p", "reqmod", "--no-deps", "--features", "sim"],
            DENY,
        ),
        step(&kernel, vec!["doc", "--no-deps"], DENY),
        step(&root, vec!["test", "--workspace"], &[]),
    ];
    let began = Instant::now();
    for s in &steps {
        if let Err(e) = run(&s.dir, "cargo", &s.args, s.env) {
            eprintln!("\nxtask test: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    }
    if qemu {
        for smp in [1, 4] {
            eprintln!("\n$ cargo xtask qemu selftest --smp {smp}");
            if qemu::selftest(smp) != ExitCode::SUCCESS {
                eprintln!("\nxtask test: FAILED: the QEMU selftest with -smp {smp}");
                return ExitCode::FAILURE;
            }
        }
    } else {
        eprintln!("\nxtask test: QEMU selftests skipped (--no-qemu)");
    }
    eprintln!("\nxtask test: all passed in {:.0?}", began.elapsed());
    ExitCode::SUCCESS
}

/// One `cargo` invocation of `cargo xtask test`.
struct Step {
    dir: std::path::PathBuf,
    args: Vec<&'static str>,
    env: &'static [(&'static str, &'static str)],
}

/// `cargo <verb> -p reqmod --target <target> [--features <f>] [-- -D warnings]`
fn core_on(
    target: &'static str,
    verb: &'static str,
    feature: Option<&'static str>,
) -> Vec<&'static str> {
    let mut v = vec![verb, "-p", "reqmod", "--target", target];
    if let Some(f) = feature {
        v.extend(["--features", f]);
    }
    if verb == "clippy" {
        v.extend(["--", "-D", "warnings"]);
    }
    v
}
