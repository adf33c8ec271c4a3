//! `cargo xtask demo | test | bench | qemu …`: project automation.
//!
//! - `demo`: boot the riscv64 kernel under QEMU with several virtio devices on
//!   4 harts; it autoloads their drivers through the core and prints a table.
//! - `test`: formatting, lints and docs (host and riscv64), the core built for
//!   bare-metal targets, every host test, then the QEMU selftest on 1 and 4 harts.
//! - `qemu …`: the kernel's own runner (`cargo xtask qemu --help`).
//!
//! Only `std`; every step prints the command it runs.

mod qemu;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("demo") => qemu::demo(),
        Some("test") => test(args.get(1..).unwrap_or_default()),
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
    let shown = std::iter::once(program).chain(args.iter().copied()).collect::<Vec<_>>().join(" ");
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
    let deny = [("RUSTDOCFLAGS", "-D warnings")];
    let steps: Vec<(&Path, &str, Vec<&str>, &[(&str, &str)])> = vec![
        (&root, "cargo", vec!["fmt", "--all", "--check"], &[]),
        (&kernel, "cargo", vec!["fmt", "--check"], &[]),
        (&root, "cargo", vec!["clippy", "--workspace", "--all-targets", "--", "-D", "warnings"], &[]),
        // The core on a bare-metal target, with each logging backend.
        (&root, "cargo", core_on("riscv64gc-unknown-none-elf", "clippy", None), &[]),
        (&root, "cargo", core_on("riscv64gc-unknown-none-elf", "clippy", Some("defmt")), &[]),
        (&root, "cargo", core_on("riscv64gc-unknown-none-elf", "clippy", Some("log")), &[]),
        (&root, "cargo", core_on("x86_64-unknown-none", "build", None), &[]),
        (&root, "cargo", core_on("x86_64-unknown-none", "build", Some("defmt")), &[]),
        (&kernel, "cargo", vec!["clippy", "--", "-D", "warnings"], &[]),
        (&root, "cargo", vec!["doc", "--workspace", "--no-deps"], &deny),
        (&root, "cargo", vec!["doc", "-p", "reqmod", "--no-deps", "--features", "sim"], &deny),
        (&kernel, "cargo", vec!["doc", "--no-deps"], &deny),
        (&root, "cargo", vec!["test", "--workspace"], &[]),
    ];
    let began = Instant::now();
    for (dir, program, args, env) in &steps {
        if let Err(e) = run(dir, program, args, env) {
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

/// `cargo <verb> -p reqmod --target <target> [--features <f>] [-- -D warnings]`
fn core_on(target: &'static str, verb: &'static str, feature: Option<&'static str>) -> Vec<&'static str> {
    let mut v = vec![verb, "-p", "reqmod", "--target", target];
    if let Some(f) = feature {
        v.extend(["--features", f]);
    }
    if verb == "clippy" {
        v.extend(["--", "-D", "warnings"]);
    }
    v
}
