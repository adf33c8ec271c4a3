//! `cargo xtask <command>`: project automation (`cargo xtask --help`).
//!
//! - `demo`: boot the riscv64 kernel under QEMU with several virtio devices on
//!   4 harts; it autoloads their drivers through the core and prints a table.
//! - `test`: formatting, lints and docs (host and riscv64), the core built for
//!   bare-metal targets, the quick start built for riscv64, every host test,
//!   then the QEMU selftest on 1 and 4 harts.
//! - `bench`: release benchmarks; writes BENCH.md.
//! - `qemu …`: the kernel's own runner.
//! - `setup`: install what the others need (they check it themselves first).
//!
//! Every step prints the command it runs.

mod bench;
mod proc;
mod qemu;
mod setup;

use std::path::Path;
use std::process::{Command, ExitCode};
use std::time::Instant;

use clap::{Parser, Subcommand};

/// reqmod's project automation. Before its first step every command checks
/// that what it needs is installed (Rust targets and components, QEMU) and
/// installs what is missing, saying so.
#[derive(Debug, Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Boot the riscv64 kernel in QEMU on 4 harts with six virtio devices:
    /// it autoloads their drivers through reqmod and prints what it loaded.
    Demo,
    /// Everything CI checks: fmt, clippy and rustdoc (host and riscv64, warnings
    /// denied), the core on bare-metal targets, the quick start built for
    /// riscv64, every host test, then the QEMU selftest on 1 and 4 harts.
    Test(TestArgs),
    /// Release benchmarks against baselines measured in the same run; prints a
    /// table and writes BENCH.md (about 3 1/2 minutes).
    Bench(bench::BenchArgs),
    /// Build and boot the riscv64 kernel by hand (`cargo xtask qemu --help`).
    Qemu(qemu::QemuArgs),
    /// Install what the other commands need: the Rust targets and components
    /// of rust-toolchain.toml, QEMU and the Debian tools the tests run.
    /// Never removes a package.
    Setup(SetupArgs),
}

#[derive(Debug, clap::Args)]
struct TestArgs {
    /// Skip the QEMU selftests (everything else still runs).
    #[arg(long)]
    no_qemu: bool,
}

#[derive(Debug, clap::Args)]
struct SetupArgs {
    /// Unpack Debian's QEMU into target/tools/qemu instead of installing the
    /// package (what happens anyway when the package would remove another).
    #[arg(long)]
    local_qemu: bool,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // What each command needs, before its first step.
    const RISCV: &[&str] = &["riscv64gc-unknown-none-elf"];
    let needs = match &cli.command {
        Cmd::Test(t) => setup::rust(setup::TARGETS, true)
            .and_then(|()| setup::tools())
            .and_then(|()| {
                if t.no_qemu {
                    Ok(())
                } else {
                    setup::qemu().map(drop)
                }
            }),
        Cmd::Setup(_) => setup::rust(setup::TARGETS, true),
        Cmd::Bench(b) => setup::rust(RISCV, false).and_then(|()| {
            if b.no_qemu() {
                Ok(())
            } else {
                setup::qemu().map(drop)
            }
        }),
        Cmd::Demo | Cmd::Qemu(_) => {
            setup::rust(RISCV, false).and_then(|()| setup::qemu().map(drop))
        }
    };
    if let Err(e) = needs {
        eprintln!("xtask: {e}");
        return ExitCode::FAILURE;
    }
    match cli.command {
        Cmd::Demo => qemu::demo(),
        Cmd::Test(t) => test(&t),
        Cmd::Bench(b) => bench::main(b),
        Cmd::Qemu(q) => qemu::main(q),
        Cmd::Setup(s) => setup_all(&s),
    }
}

/// `cargo xtask setup`.
fn setup_all(args: &SetupArgs) -> ExitCode {
    let qemu = if args.local_qemu {
        setup::install_qemu(true)
    } else {
        setup::qemu()
    };
    match qemu.and_then(|q| setup::tools().map(|()| q)) {
        Ok(q) => {
            eprintln!("xtask setup: ready (QEMU: {})", q.program().display());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask setup: {e}");
            ExitCode::FAILURE
        }
    }
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

fn test(args: &TestArgs) -> ExitCode {
    let qemu = !args.no_qemu;
    let root = repo_root();
    let kernel = root.join("port-qemu");
    let footprint = root.join("bench/footprint");
    let quickstart = root.join("examples/quickstart");
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
        step(&quickstart, vec!["fmt", "--check"], &[]),
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
        // The quick start of README and the crate docs, built and linked
        // exactly as a reader's new crate (`tests/tests/docs_quickstart.rs`
        // checks the docs show this code).
        step(
            &quickstart,
            vec!["clippy", "--lib", "--bins", "--", "-D", "warnings"],
            &[],
        ),
        step(&quickstart, vec!["build"], &[]),
        step(&root, vec!["doc", "--workspace", "--no-deps"], DENY),
        // What docs.rs builds (`[package.metadata.docs.rs]`: every feature).
        step(
            &root,
            vec![
                "doc",
                "-p",
                "reqmod",
                "-p",
                "reqmod-linux",
                "--no-deps",
                "--all-features",
            ],
            DENY,
        ),
        step(&kernel, vec!["doc", "--no-deps"], DENY),
        step(&root, vec!["test", "--workspace"], &[]),
    ];
    // The core's minimum supported Rust (its `rust-version`), on the host and
    // on a bare-metal target, and the Linux port's.
    let msrv = match setup::msrv() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("\nxtask test: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    };
    let plus_msrv: &'static str = Box::leak(format!("+{msrv}").into_boxed_str());
    let mut steps = steps.to_vec();
    match setup::toolchain(&msrv, &["riscv64gc-unknown-none-elf"]) {
        Ok(true) => {
            for args in [
                vec![
                    plus_msrv,
                    "check",
                    "-p",
                    "reqmod",
                    "--all-targets",
                    "--features",
                    "sim",
                ],
                vec![
                    plus_msrv,
                    "check",
                    "-p",
                    "reqmod",
                    "--target",
                    "riscv64gc-unknown-none-elf",
                ],
                vec![plus_msrv, "check", "-p", "reqmod-linux", "--all-targets"],
            ] {
                steps.push(step(&root, args, &[]));
            }
        }
        Ok(false) => {}
        Err(e) => {
            eprintln!("\nxtask test: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    }
    // docs.rs renders with nightly and `--cfg docsrs` (the `doc(cfg)` badges).
    if setup::toolchain_present("nightly") {
        steps.push(step(
            &root,
            vec![
                "+nightly",
                "doc",
                "-p",
                "reqmod",
                "-p",
                "reqmod-linux",
                "--no-deps",
                "--all-features",
            ],
            &[("RUSTDOCFLAGS", "--cfg docsrs -D warnings")],
        ));
    } else {
        eprintln!(
            "xtask test: no nightly toolchain: the docs.rs rendering (--cfg docsrs) is not checked"
        );
    }
    let began = Instant::now();
    for s in &steps {
        if let Err(e) = run(&s.dir, "cargo", &s.args, s.env) {
            eprintln!("\nxtask test: FAILED: {e}");
            return ExitCode::FAILURE;
        }
    }
    if let Err(e) = packaged_tests(&root) {
        eprintln!("\nxtask test: FAILED: {e}");
        return ExitCode::FAILURE;
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

/// The published crates as crates.io would have them: `cargo package` (which
/// builds each from its `.crate`), then the core's tests and doctests run from
/// its unpacked `.crate`, outside this workspace, as a user of the published
/// crate would run them.
fn packaged_tests(root: &Path) -> Result<(), String> {
    run(
        root,
        "cargo",
        &[
            "package",
            "-p",
            "reqmod",
            "-p",
            "reqmod-linux",
            "--allow-dirty",
        ],
        &[],
    )?;
    let version = env!("CARGO_PKG_VERSION");
    let crate_file = root.join(format!("target/package/reqmod-{version}.crate"));
    let dir = std::env::temp_dir().join(format!("reqmod-packaged-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(|e| format!("{}: {e}", dir.display()))?;
    let crate_path = crate_file.display().to_string();
    let result = run(&dir, "tar", &["xzf", &crate_path], &[]).and_then(|()| {
        let unpacked = dir.join(format!("reqmod-{version}"));
        let target = root.join("target/packaged-tests").display().to_string();
        run(
            &unpacked,
            "cargo",
            &["test", "--features", "sim", "--target-dir", &target],
            &[],
        )
    });
    let _ = std::fs::remove_dir_all(&dir);
    result
}

/// One `cargo` invocation of `cargo xtask test`.
#[derive(Clone)]
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
