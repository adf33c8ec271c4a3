//! The `reqmod` command-line tool (feature `cli`).
//!
//! ```text
//! reqmod request [--nowait] [--modprobe PATH] [--no-dedup] [--max-concurrent N]
//!                [--busy-timeout SECS] [--json] [--stats] NAME…
//! ```
//!
//! Every NAME is requested concurrently through one `Kmod`, as if by that
//! many kernel threads, all multiplexed on the calling thread by
//! [`block_on_each`]. One line per request is printed, in
//! input order: `<kernel_ret>\t<name>` (or one JSON object with `--json`).
//! Exit status: 0 when every result is 0, 1 when any is not, 2 on a usage
//! error.
//!
//! [`main`] is the whole program; the `reqmod` binary only calls it.

use std::ffi::OsString;
use std::io::{self, BufRead, Write};
use std::os::unix::ffi::OsStrExt;
use std::process::ExitCode;
use std::time::Duration;

use clap::builder::TypedValueParser as _;
use clap::{Args, Parser, Subcommand};
use embassy_sync::blocking_mutex::raw::CriticalSectionRawMutex;
use reqmod::{AllowAll, Config, Errno, KernelRet, Kmod, Stats, WaitStatus};

use crate::{LinuxPlatform, block_on_each};

/// Most slots `--max-concurrent` accepts (the `SLOTS` capacity of the CLI's
/// `Kmod`).
pub const MAX_SLOTS: usize = 1024;
/// Requests that can wait for a slot in the core's FIFO queue; more still
/// work (the core's overflow lobby), only with more polling per hand-off.
pub const QUEUE: usize = 16384;
/// Duplicate-table entries (at least one per slot).
pub const DUPS: usize = 2048;

/// The CLI's `Kmod`: the Linux platform with room for [`MAX_SLOTS`] slots and
/// [`QUEUE`] queued waiters.
pub type CliKmod = Kmod<LinuxPlatform, AllowAll, CriticalSectionRawMutex, MAX_SLOTS, QUEUE, DUPS>;

const RETURN_VALUES: &str = "\
Output: one line per NAME, in input order: <ret><TAB><name>, where <ret> is what
the kernel's request_module() returns:
  0      the helper ran and exited 0 (the module was found; it does not prove
         that it is loaded now). With --nowait: the helper was executed.
  > 0    the helper's raw wait status: exit code * 256, or the number of the
         signal that killed it. 256 = modprobe exited 1 (module not found).
  -2     ENOENT: the helper path does not exist, or it is empty (autoloading
         disabled: nothing is run).
  -13    EACCES: the helper is not executable.  -8  ENOEXEC: not a program.
  -16    EBUSY: helpers are disabled.
  -36    ENAMETOOLONG: the name is 56 bytes or longer.
  -62    ETIME: every slot stayed busy for --busy-timeout seconds (default 5).
  -512   ERESTARTSYS: the request was killed while it waited.
  other negative values are -errno.
Requests for a name already in flight (or answered in the last 60 s) are
duplicates: they wait for and return the first one's result (0 with --nowait),
without running the helper again; --no-dedup turns that off.

Exit status: 0 if every result is 0, 1 if any is not, 2 on a usage error.
Names starting with '-' go after '--'. Set RUST_LOG=info (or debug, trace) for
more log lines on standard error; warnings (busy timeout, duplicate request)
are shown by default.";

/// Command line of `reqmod`.
#[derive(Debug, Parser)]
#[command(
    name = "reqmod",
    bin_name = "reqmod",
    version,
    about = "The Linux kernel's module autoloader (request_module) in user space",
    long_about = "The Linux kernel's module autoloader (request_module) in user space: \
                  runs the modprobe helper the way the kernel does, with its limits \
                  (50 concurrent requests, 5 s busy timeout, duplicate suppression).",
    after_long_help = RETURN_VALUES
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Request every NAME concurrently, like that many kernel threads calling
    /// request_module(), and print each result.
    #[command(after_help = RETURN_VALUES, after_long_help = RETURN_VALUES)]
    Request(RequestArgs),
}

/// Arguments of `reqmod request`.
#[derive(Debug, Args)]
pub struct RequestArgs {
    /// Do not wait for the helpers to exit: request_module_nowait(), which
    /// returns once each helper has been executed; they run on after reqmod
    /// exits.
    #[arg(long)]
    pub nowait: bool,
    /// The helper program (/proc/sys/kernel/modprobe); '' is the empty path,
    /// which disables autoloading (-2, nothing is run).
    #[arg(long, value_name = "PATH", default_value = "/sbin/modprobe")]
    pub modprobe: OsString,
    /// Run the helper for every request, also for duplicates.
    #[arg(long)]
    pub no_dedup: bool,
    /// Requests that may run at once (the kernel's 50); the others queue.
    #[arg(long, value_name = "N", allow_hyphen_values = true, default_value_t = reqmod::MAX_KMOD_CONCURRENT,
          value_parser = clap::value_parser!(u16).range(0..=MAX_SLOTS as i64).map(usize::from))]
    pub max_concurrent: usize,
    /// Longest wait for a free slot, in seconds (decimals allowed; the
    /// kernel's 5), then -62.
    #[arg(long, value_name = "SECS", default_value = "5", allow_hyphen_values = true, value_parser = parse_seconds)]
    pub busy_timeout: Duration,
    /// Print one JSON object per request (name, ret, ok, errno, exit_code,
    /// signal) instead of `<ret>\t<name>`.
    #[arg(long)]
    pub json: bool,
    /// Print the request counters to standard error at the end.
    #[arg(long)]
    pub stats: bool,
    /// Module names or aliases ("fs-ext4", "char-major-10-229"…); '-' reads
    /// names from standard input, one per line.
    #[arg(value_name = "NAME", required = true)]
    pub names: Vec<String>,
}

fn parse_seconds(text: &str) -> Result<Duration, String> {
    let seconds: f64 = text
        .trim()
        .parse()
        .map_err(|_| format!("'{text}' is not a number of seconds"))?;
    Duration::try_from_secs_f64(seconds)
        .map_err(|_| format!("'{text}' is not a duration (must be >= 0)"))
}

/// A usage error: printed as one line, exit status 2.
fn usage_error(message: &str) -> ExitCode {
    let _ = writeln!(
        io::stderr(),
        "reqmod: {message} (see 'reqmod request --help')"
    );
    ExitCode::from(2)
}

/// Runs `reqmod` with the process's arguments. The binary's `main`.
pub fn main() -> ExitCode {
    run(std::env::args_os())
}

/// Runs `reqmod` with `args` (the first one is the program name).
pub fn run<I, T>(args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<OsString> + Clone,
{
    let cli = match Cli::try_parse_from(args) {
        Ok(cli) => cli,
        Err(error) => {
            use clap::error::ErrorKind;
            return match error.kind() {
                ErrorKind::DisplayHelp | ErrorKind::DisplayVersion => {
                    let _ = error.print();
                    ExitCode::SUCCESS
                }
                ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
                | ErrorKind::MissingSubcommand => {
                    usage_error("missing subcommand: use 'reqmod request NAME…'")
                }
                ErrorKind::MissingRequiredArgument => usage_error(
                    "no NAME given: name at least one module, or '-' to read names from standard input",
                ),
                _ => {
                    let text = error.render().to_string();
                    let line = text
                        .lines()
                        .find(|l| !l.trim().is_empty())
                        .unwrap_or("invalid arguments");
                    usage_error(line.strip_prefix("error: ").unwrap_or(line))
                }
            };
        }
    };
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    match cli.command {
        Command::Request(args) => request(args),
    }
}

/// `reqmod request`.
fn request(args: RequestArgs) -> ExitCode {
    let names = match expand_names(&args.names) {
        Ok(names) => names,
        Err(message) => return usage_error(&message),
    };
    let config = Config::DEFAULT
        .with_max_concurrent(args.max_concurrent)
        .with_busy_timeout(args.busy_timeout)
        .with_dedup(!args.no_dedup);
    // Boxed: with room for QUEUE waiters the engine is too big for comfort
    // on a stack.
    let kmod: Box<CliKmod> = Box::new(Kmod::with_config(LinuxPlatform::new(), config, AllowAll));
    kmod.set_modprobe_path(args.modprobe.as_bytes());

    let wait = !args.nowait;
    let kmod = &*kmod;
    // Results are printed as soon as they and every one before them are in.
    let mut out = io::BufWriter::new(io::stdout().lock());
    let mut pending: Vec<Option<Result<WaitStatus, Errno>>> = vec![None; names.len()];
    let mut next = 0;
    let mut all_zero = true;
    let mut stdout_ok = true;
    block_on_each(
        names
            .iter()
            .map(|name| kmod.request(wait, format_args!("{name}"))),
        |index, result| {
            pending[index] = Some(result);
            let first = next;
            while let Some(result) = pending.get_mut(next).and_then(Option::take) {
                let name = &names[next];
                let ret = result.kernel_ret();
                all_zero &= ret == 0;
                if stdout_ok {
                    let written = if args.json {
                        writeln!(out, "{}", json_line(name, &result))
                    } else {
                        writeln!(out, "{ret}\t{name}")
                    };
                    // Standard output closed (e.g. `| head`): stop printing,
                    // let the requests finish.
                    stdout_ok = written.is_ok();
                }
                next += 1;
            }
            if next > first && stdout_ok {
                stdout_ok = out.flush().is_ok();
            }
        },
    );
    drop(out);
    if args.stats {
        print_stats(&kmod.stats());
    }
    if all_zero {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// The NAME list with every `-` replaced by the lines of standard input.
fn expand_names(names: &[String]) -> Result<Vec<String>, String> {
    let mut expanded = Vec::with_capacity(names.len());
    for name in names {
        if name == "-" {
            for line in io::stdin().lock().lines() {
                let line =
                    line.map_err(|e| format!("cannot read names from standard input: {e}"))?;
                expanded.push(line);
            }
        } else {
            expanded.push(name.clone());
        }
    }
    Ok(expanded)
}

/// One `--json` object.
fn json_line(name: &str, result: &Result<WaitStatus, Errno>) -> serde_json::Value {
    let ret = result.kernel_ret();
    let (errno, exit_code, signal) = match result {
        Ok(status) => (serde_json::Value::Null, status.exit_code(), status.signal()),
        Err(errno) => (
            errno
                .name()
                .map_or_else(|| serde_json::json!(errno.raw()), |n| serde_json::json!(n)),
            None,
            None,
        ),
    };
    serde_json::json!({
        "name": name,
        "ret": ret,
        "ok": ret == 0,
        "errno": errno,
        "exit_code": exit_code,
        "signal": signal,
    })
}

fn print_stats(stats: &Stats) {
    let lines = [
        ("requests", stats.requests),
        ("completed", stats.completed),
        ("cancelled", stats.cancelled),
        ("failures", stats.failures),
        ("invalid", stats.invalid),
        ("denied", stats.denied),
        ("busy_timeouts", stats.busy_timeouts),
        ("duplicates", stats.duplicates),
        ("helpers_started", stats.helpers_started),
        ("helpers_refused", stats.helpers_refused),
        ("max_concurrent_seen", stats.max_concurrent_seen as u64),
    ];
    let mut err = io::stderr().lock();
    for (key, value) in lines {
        let _ = writeln!(err, "{key}: {value}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `request` builds the engine on the main thread's stack before boxing
    /// it: keep it far below the 8 MiB default.
    #[test]
    fn engine_fits_on_the_main_stack() {
        assert!(std::mem::size_of::<CliKmod>() < 2 << 20);
    }

    #[test]
    fn seconds_parse() {
        assert_eq!(parse_seconds("5"), Ok(Duration::from_secs(5)));
        assert_eq!(parse_seconds("0.25"), Ok(Duration::from_millis(250)));
        assert!(parse_seconds("-1").is_err());
        assert!(parse_seconds("inf").is_err());
        assert!(parse_seconds("x").is_err());
    }

    #[test]
    fn the_interface_is_well_formed() {
        use clap::CommandFactory;
        Cli::command().debug_assert();
    }
}
