//! Building and booting the riscv64 kernel of `port-qemu/` under QEMU.
//!
//! `cargo xtask qemu <command>`: `build`, `demo`, `selftest`, `run`, `size`
//! (`cargo xtask qemu --help` says what each does, and `--help` after one
//! gives its options).
//!
//! Every run has a timeout (`--timeout SECS`); a QEMU still running then is
//! killed and the run fails. QEMU is never skipped: [`crate::setup::qemu`]
//! finds or installs it, or the command fails and says what to install.
//!
//! The kernel logs through `defmt` on its one UART; this module decodes the
//! frames with `defmt-decoder` (plain text and frames share the UART, each
//! chunk ended by a `0x00` byte, see `port-qemu/src/machine/logger.rs`).

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// The kernel's target triple.
const TARGET: &str = "riscv64gc-unknown-none-elf";
/// The line the selftest prints when every check passed.
const SELFTEST_PASSED: &str = "selftest: all checks passed";
/// The arguments every boot of a kernel here shares: QEMU's `virt` machine
/// under OpenSBI, no display, the one UART on standard output, no monitor,
/// and a guest reset ends QEMU instead of rebooting.
pub const VIRT_ARGS: &[&str] = &[
    "-machine",
    "virt",
    "-bios",
    "default",
    "-display",
    "none",
    "-serial",
    "stdio",
    "-monitor",
    "none",
    "-no-reboot",
];

/// Default wall-clock limit of one boot.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(180);

/// `cargo xtask qemu <command>`.
#[derive(Debug, clap::Args)]
pub struct QemuArgs {
    #[command(subcommand)]
    command: QemuCommand,
}

#[derive(Debug, clap::Subcommand)]
enum QemuCommand {
    /// Build the kernel (release unless --debug) and print the ELF's path.
    Build(BuildArgs),
    /// Boot the demo: six virtio devices (two of one kind), their drivers
    /// autoloaded through the core, a table of the requests.
    Demo(BootArgs),
    /// Boot the selftest (the SPEC's kmod scenarios, the busy timeout, stress
    /// on every hart); exit status 0 only if every check passed.
    Selftest(BootArgs),
    /// Boot with any kernel command line and print the decoded log.
    Run(RunArgs),
    /// Print `llvm-size -A` of the kernel.
    Size(BuildArgs),
}

/// Which build of the kernel.
#[derive(Debug, Clone, clap::Args)]
struct BuildArgs {
    /// The debug build instead of the release one.
    #[arg(long)]
    debug: bool,
}

/// A boot of the kernel.
#[derive(Debug, Clone, clap::Args)]
pub struct BootArgs {
    /// Harts (-smp), 1 to 8 [default: 4; `run`: 1].
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..=8))]
    smp: Option<u32>,
    #[command(flatten)]
    build: BuildArgs,
    /// Kill QEMU and fail after this many seconds [default: 180; demo: 60].
    #[arg(long, value_name = "SECS")]
    timeout: Option<u64>,
}

#[derive(Debug, Clone, clap::Args)]
struct RunArgs {
    /// The kernel command line (`demo`, `selftest`, `bench …`).
    #[arg(long, value_name = "ARGS")]
    append: String,
    /// A QEMU device to attach (`-device`), e.g. virtio-rng-device; repeatable.
    #[arg(long = "device", value_name = "DEV")]
    devices: Vec<String>,
    #[command(flatten)]
    boot: BootArgs,
}

impl BootArgs {
    fn timeout_or(&self, default: Duration) -> Duration {
        self.timeout.map_or(default, Duration::from_secs)
    }
}

/// `cargo xtask qemu …`
pub fn main(args: QemuArgs) -> ExitCode {
    match args.command {
        QemuCommand::Build(b) => match kernel_elf(!b.debug) {
            Ok(elf) => {
                println!("{}", elf.display());
                ExitCode::SUCCESS
            }
            Err(e) => fail(&e),
        },
        QemuCommand::Demo(b) => run_demo(&b),
        QemuCommand::Selftest(b) => run_selftest(&b),
        QemuCommand::Run(r) => {
            let boot = Boot {
                release: !r.boot.build.debug,
                smp: r.boot.smp.unwrap_or(1),
                append: r.append,
                devices: r.devices,
                timeout: r.boot.timeout_or(DEFAULT_TIMEOUT),
            };
            match boot.run() {
                Ok(out) => out.exit_code(),
                Err(e) => fail(&e),
            }
        }
        QemuCommand::Size(b) => match kernel_elf(!b.debug).and_then(|elf| size(&elf)) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => fail(&e),
        },
    }
}

fn fail(e: &str) -> ExitCode {
    eprintln!("xtask qemu: error: {e}");
    ExitCode::FAILURE
}

/// The devices the demo attaches: five kinds, two of one kind (so the second
/// request for the same modalias is served as a duplicate).
const DEMO_DEVICES: &[&str] = &[
    "virtio-rng-device",
    "virtio-keyboard-device",
    "virtio-keyboard-device",
    "virtio-balloon-device",
    "virtio-gpu-device",
    "virtio-serial-device",
];

/// Builds the kernel and boots the demo (`-smp 4`, several virtio devices,
/// two of one kind), printing the decoded log.
pub fn demo() -> ExitCode {
    run_demo(&BootArgs {
        smp: None,
        build: BuildArgs { debug: false },
        timeout: None,
    })
}

fn run_demo(opts: &BootArgs) -> ExitCode {
    let boot = Boot {
        release: !opts.build.debug,
        smp: opts.smp.unwrap_or(4),
        append: "demo".into(),
        devices: DEMO_DEVICES.iter().map(|d| d.to_string()).collect(),
        timeout: opts.timeout_or(Duration::from_secs(60)),
    };
    match boot.run() {
        Ok(out) => out.exit_code(),
        Err(e) => fail(&e),
    }
}

/// Boots the selftest on `smp` harts. Success only if QEMU exits with status
/// 0 (from the `sifive_test` device) and the log says every check passed; a
/// QEMU still running after the timeout is killed and counts as failure.
pub fn selftest(smp: u32) -> ExitCode {
    run_selftest(&BootArgs {
        smp: Some(smp),
        build: BuildArgs { debug: false },
        timeout: None,
    })
}

fn run_selftest(opts: &BootArgs) -> ExitCode {
    let boot = Boot {
        release: !opts.build.debug,
        smp: opts.smp.unwrap_or(4),
        append: "selftest".into(),
        devices: vec!["virtio-rng-device".into()],
        timeout: opts.timeout_or(DEFAULT_TIMEOUT),
    };
    let out = match boot.run() {
        Ok(out) => out,
        Err(e) => return fail(&e),
    };
    let saw_pass = out.lines.iter().any(|l| l.contains(SELFTEST_PASSED));
    if out.status == Some(0) && saw_pass {
        println!(
            "xtask qemu: selftest --smp {} PASSED in {:.2} s",
            boot.smp,
            out.elapsed.as_secs_f64()
        );
        ExitCode::SUCCESS
    } else {
        let why = match (out.timed_out, out.status, saw_pass) {
            (true, _, _) => format!("QEMU killed after the {} s timeout", boot.timeout.as_secs()),
            (_, Some(0), false) => "exit status 0 but no pass line in the log".to_string(),
            (_, Some(s), _) => format!("exit status {s}"),
            (_, None, _) => "QEMU was killed by a signal".to_string(),
        };
        eprintln!("xtask qemu: selftest --smp {} FAILED: {why}", boot.smp);
        ExitCode::FAILURE
    }
}

/// The repository root (parent of `xtask/`).
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the repository")
        .to_path_buf()
}

/// Builds the kernel (`cargo build` inside `port-qemu/`, which has its own
/// workspace, target and linker flags) and returns the ELF path.
pub fn kernel_elf(release: bool) -> Result<PathBuf, String> {
    let dir = repo_root().join("port-qemu");
    let mut cmd = crate::proc::bare_metal_cargo(&dir);
    cmd.arg("build");
    if release {
        cmd.arg("--release");
    }
    println!(
        "+ (cd {}; cargo build{})",
        dir.display(),
        if release { " --release" } else { "" }
    );
    let status = cmd.status().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building the kernel failed ({status})"));
    }
    let elf = dir
        .join("target")
        .join(TARGET)
        .join(if release { "release" } else { "debug" })
        .join("reqmod-qemu");
    if elf.is_file() {
        Ok(elf)
    } else {
        Err(format!("{} was not built", elf.display()))
    }
}

/// Prints `llvm-size -A` of the kernel.
fn size(elf: &Path) -> Result<(), String> {
    let tool = crate::setup::find_in_path("llvm-size")
        .ok_or("llvm-size not found (Debian: apt-get install llvm)")?;
    println!("+ llvm-size -A {}", elf.display());
    let status = Command::new(tool)
        .arg("-A")
        .arg(elf)
        .status()
        .map_err(|e| format!("cannot run llvm-size: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("llvm-size failed ({status})"))
    }
}

/// One boot of the kernel.
#[derive(Debug)]
struct Boot {
    release: bool,
    smp: u32,
    append: String,
    devices: Vec<String>,
    timeout: Duration,
}

/// What a boot left behind.
#[derive(Debug)]
struct BootOutput {
    /// QEMU's exit status (`None`: killed).
    status: Option<i32>,
    timed_out: bool,
    /// From starting QEMU to its exit.
    elapsed: Duration,
    /// Decoded log lines.
    lines: Vec<String>,
}

impl BootOutput {
    fn exit_code(&self) -> ExitCode {
        match self.status {
            Some(0) if !self.timed_out => ExitCode::SUCCESS,
            _ => ExitCode::FAILURE,
        }
    }
}

impl Boot {
    fn run(&self) -> Result<BootOutput, String> {
        let qemu = crate::setup::qemu()?;
        let elf = kernel_elf(self.release)?;
        let elf_bytes = std::fs::read(&elf).map_err(|e| format!("{}: {e}", elf.display()))?;
        let table = defmt_decoder::Table::parse(&elf_bytes)
            .map_err(|e| format!("reading defmt data of {}: {e}", elf.display()))?
            .ok_or_else(|| format!("{} has no defmt data", elf.display()))?;
        let locations = table.get_locations(&elf_bytes).unwrap_or_default();

        let mut cmd = qemu.command();
        cmd.args(VIRT_ARGS)
            .args(["-m", "128M", "-smp", &self.smp.to_string()])
            .args(["-append", &self.append])
            .arg("-kernel")
            .arg(&elf);
        for d in &self.devices {
            cmd.args(["-device", d]);
        }
        println!(
            "+ {} -machine virt -bios default -m 128M -smp {} -display none -serial stdio \
             -monitor none -no-reboot -append {:?} -kernel {}{}",
            qemu.program().display(),
            self.smp,
            self.append,
            elf.display(),
            self.devices
                .iter()
                .map(|d| format!(" -device {d}"))
                .collect::<String>()
        );
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let start = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", qemu.program().display()))?;
        let mut stdout = child.stdout.take().expect("stdout is piped");

        let lines = Arc::new(Mutex::new(Vec::new()));
        let (status, timed_out, elapsed) = std::thread::scope(|s| {
            let sink = Arc::clone(&lines);
            let table = &table;
            let locations = &locations;
            let reader = s.spawn(move || {
                let mut console = Console::new(table, locations, start);
                let mut buf = [0u8; 4096];
                loop {
                    match stdout.read(&mut buf) {
                        Ok(0) | Err(_) => break,
                        Ok(n) => {
                            for line in console.feed(&buf[..n]) {
                                sink.lock().expect("no panics hold it").push(line);
                            }
                        }
                    }
                }
                for line in console.finish() {
                    sink.lock().expect("no panics hold it").push(line);
                }
            });
            let result = match crate::proc::wait_or_kill(&mut child, self.timeout) {
                Ok(Some(st)) => (st.code(), false, start.elapsed()),
                Ok(None) => {
                    eprintln!(
                        "xtask qemu: QEMU still running after {} s: killed",
                        self.timeout.as_secs()
                    );
                    (None, true, start.elapsed())
                }
                Err(e) => {
                    eprintln!("xtask qemu: {e}");
                    (None, true, start.elapsed())
                }
            };
            let _ = reader.join();
            result
        });
        let lines = std::mem::take(&mut *lines.lock().expect("reader is done"));
        println!(
            "xtask qemu: QEMU exited with status {} after {:.2} s (boot to exit, -smp {}, -append {:?})",
            status.map_or("(killed)".to_string(), |s| s.to_string()),
            elapsed.as_secs_f64(),
            self.smp,
            self.append
        );
        Ok(BootOutput {
            status,
            timed_out,
            elapsed,
            lines,
        })
    }
}

/// Splits the console stream at `0x00` bytes and prints every chunk: decoded
/// as a defmt frame when it is one, as text otherwise.
struct Console<'t> {
    table: &'t defmt_decoder::Table,
    locations: &'t defmt_decoder::Locations,
    pending: Vec<u8>,
    start: Instant,
}

impl<'t> Console<'t> {
    fn new(
        table: &'t defmt_decoder::Table,
        locations: &'t defmt_decoder::Locations,
        start: Instant,
    ) -> Self {
        Console {
            table,
            locations,
            pending: Vec::new(),
            start,
        }
    }

    fn feed(&mut self, bytes: &[u8]) -> Vec<String> {
        let mut out = Vec::new();
        for &b in bytes {
            if b == 0 {
                let chunk = std::mem::take(&mut self.pending);
                out.extend(self.chunk(&chunk));
            } else {
                self.pending.push(b);
            }
        }
        out
    }

    fn finish(&mut self) -> Vec<String> {
        let chunk = std::mem::take(&mut self.pending);
        self.chunk(&chunk)
    }

    fn chunk(&self, chunk: &[u8]) -> Vec<String> {
        if chunk.is_empty() {
            return Vec::new();
        }
        let mut decoder = self.table.new_stream_decoder();
        decoder.received(chunk);
        decoder.received(&[0]);
        let lines = match decoder.decode() {
            Ok(frame) => {
                let ts = frame
                    .display_timestamp()
                    .map(|t| t.to_string())
                    .unwrap_or_default();
                let level = frame
                    .level()
                    .map(|l| l.as_str().to_uppercase())
                    .unwrap_or_else(|| "PRINT".into());
                let mut line = format!("{ts:>18} {level:<5} {}", frame.display_message());
                // The core logs through a shim macro, so its frames carry the
                // shim's location (`core/src/fmt.rs`), not the caller's: omit it.
                if matches!(level.as_str(), "WARN" | "ERROR")
                    && let Some(loc) = self.locations.get(&frame.index())
                    && !loc.file.ends_with("core/src/fmt.rs")
                {
                    let root = repo_root();
                    let file = loc.file.strip_prefix(&root).unwrap_or(&loc.file);
                    line.push_str(&format!("  ({}:{})", file.display(), loc.line));
                }
                vec![line]
            }
            Err(_) => String::from_utf8_lossy(chunk)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(|l| {
                    format!(
                        "{:>18} {}",
                        format!("[{:.3}s host]", self.start.elapsed().as_secs_f64()),
                        l
                    )
                })
                .collect(),
        };
        let mut stdout = std::io::stdout().lock();
        for l in &lines {
            let _ = writeln!(stdout, "{l}");
        }
        lines
    }
}
