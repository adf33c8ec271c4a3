//! Support for reqmod's integration tests (the tests are in `tests/`).
//!
//! Tests run real helper processes: a [`Sandbox`] is a temporary directory
//! holding a fake `modprobe` shell script ([`FakeModprobe`]) that appends
//! `start`/`end` lines to an event log (`O_APPEND` writes of one short line are
//! atomic, so the log is an exact history of the helpers' lives), can record
//! what the helper sees (argv, environment, cwd, umask, descriptors, signal
//! state), can wait for a "release" file, sleeps, and exits with a code chosen
//! by module name.
//!
//! Nothing here sleeps and hopes: [`wait_until`] polls a real condition with a
//! bounded timeout and fails the test when it does not come true.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

/// A temporary directory, removed on drop.
#[derive(Debug)]
pub struct Sandbox {
    dir: PathBuf,
}

impl Sandbox {
    /// A fresh empty directory under the system's temporary directory.
    pub fn new(tag: &str) -> Self {
        static COUNTER: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "reqmod-test-{}-{}-{}",
            tag,
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create sandbox");
        Sandbox { dir }
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Writes `fake` as an executable script `modprobe` here; returns its path.
    pub fn modprobe(&self, fake: &FakeModprobe) -> PathBuf {
        self.script("modprobe", &fake.script(&self.dir))
    }

    /// Writes an executable file `name` with `content`; returns its path.
    pub fn script(&self, name: &str, content: &str) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).expect("write script");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
        path
    }

    /// Writes a file `name` with `content` and `mode`; returns its path.
    pub fn file(&self, name: &str, content: &[u8], mode: u32) -> PathBuf {
        let path = self.dir.join(name);
        std::fs::write(&path, content).expect("write file");
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(mode)).expect("chmod");
        path
    }

    /// Lets helpers waiting for the release file go on.
    pub fn release(&self) {
        std::fs::write(self.dir.join("release"), b"").expect("release");
    }

    /// A guard that releases gated helpers when dropped, also when a test
    /// fails: keep it alive in a `thread::scope` closure whose threads wait
    /// for gated helpers, so that a failing assertion does not leave them
    /// (and the scope's join) waiting forever.
    pub fn release_on_drop(&self) -> ReleaseGuard<'_> {
        ReleaseGuard(self)
    }

    /// The helpers' event log so far.
    pub fn events(&self) -> Vec<HelperEvent> {
        let text = std::fs::read_to_string(self.dir.join("events")).unwrap_or_default();
        text.lines()
            .filter_map(|line| {
                let mut parts = line.splitn(3, ' ');
                let kind = parts.next()?;
                let pid = parts.next()?.parse().ok()?;
                let name = parts.next().unwrap_or("").to_owned();
                Some(HelperEvent {
                    started: kind == "start",
                    pid,
                    name,
                })
            })
            .collect()
    }

    /// How many helpers have started.
    pub fn starts(&self) -> usize {
        self.events().iter().filter(|e| e.started).count()
    }

    /// How many helpers have ended (reached their last line).
    pub fn ends(&self) -> usize {
        self.events().iter().filter(|e| !e.started).count()
    }

    /// The most helpers that were between their `start` and `end` lines at
    /// once, from the exact order of the log.
    pub fn max_concurrent(&self) -> usize {
        let mut now = 0usize;
        let mut max = 0;
        for event in self.events() {
            if event.started {
                now += 1;
                max = max.max(now);
            } else {
                now = now.saturating_sub(1);
            }
        }
        max
    }

    /// What the helper with `pid` recorded (needs [`FakeModprobe::record`]).
    pub fn view(&self, pid: u32) -> HelperView {
        let read =
            |what: &str| std::fs::read(self.dir.join(format!("{what}.{pid}"))).unwrap_or_default();
        let split0 = |bytes: Vec<u8>| -> Vec<Vec<u8>> {
            let mut items: Vec<Vec<u8>> = bytes.split(|&b| b == 0).map(<[u8]>::to_vec).collect();
            if items.last().is_some_and(Vec::is_empty) {
                items.pop();
            }
            items
        };
        let text = |what: &str| String::from_utf8_lossy(&read(what)).trim_end().to_owned();
        let fds = text("fds")
            .lines()
            .filter_map(|line| {
                let (left, target) = line.split_once(" -> ")?;
                let fd = left.rsplit(' ').next()?.parse().ok()?;
                Some((fd, target.to_owned()))
            })
            .collect();
        let sig = text("sig");
        let mask = |key: &str| {
            sig.lines()
                .find_map(|l| l.strip_prefix(key))
                .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
                .unwrap_or(u64::MAX)
        };
        HelperView {
            argv: split0(read("argv")),
            env: split0(read("env")),
            cwd: text("cwd"),
            umask: text("umask"),
            fds,
            sig_blocked: mask("SigBlk:"),
            sig_ignored: mask("SigIgn:"),
        }
    }
}

impl Drop for Sandbox {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// See [`Sandbox::release_on_drop`].
#[derive(Debug)]
pub struct ReleaseGuard<'a>(&'a Sandbox);

impl Drop for ReleaseGuard<'_> {
    fn drop(&mut self) {
        let _ = std::fs::write(self.0.dir.join("release"), b"");
    }
}

/// One line of the helpers' event log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HelperEvent {
    /// `start` (true) or `end` (false).
    pub started: bool,
    /// The helper's pid.
    pub pid: u32,
    /// The module name it was asked for (`$3`).
    pub name: String,
}

/// What one helper saw of its process state.
#[derive(Debug, Clone, Default)]
pub struct HelperView {
    /// `$0 "$@"`: the argv as executed (`argv[0]` is the path as given to
    /// `execve`; the kernel passes the script path to the interpreter).
    pub argv: Vec<Vec<u8>>,
    /// `/proc/self/environ` of the helper: the envp given to `execve`.
    pub env: Vec<Vec<u8>>,
    /// Its working directory.
    pub cwd: String,
    /// `umask` as the shell prints it.
    pub umask: String,
    /// Open descriptors and their targets.
    pub fds: BTreeMap<u32, String>,
    /// Blocked signals (bit n-1 for signal n).
    pub sig_blocked: u64,
    /// Ignored signals.
    pub sig_ignored: u64,
}

/// A fake `modprobe` (a `/bin/sh` script) and how it behaves.
#[derive(Debug, Clone)]
pub struct FakeModprobe {
    /// Exit code for names not in `codes`.
    pub default_code: u8,
    /// Exit code by module name.
    pub codes: Vec<(String, u8)>,
    /// Seconds to sleep before exiting.
    pub sleep: f64,
    /// Wait for [`Sandbox::release`] before going on.
    pub gate: bool,
    /// Record argv, environment, cwd, umask, descriptors and signal state.
    pub record: bool,
}

impl FakeModprobe {
    /// Like the kernel selftest's world: `test_module` (and `xfs`) exist and
    /// load (exit 0); every other name, the empty one too, is "not found"
    /// (exit 1).
    pub fn kernel_like() -> Self {
        FakeModprobe {
            default_code: 1,
            codes: vec![("test_module".into(), 0), ("xfs".into(), 0)],
            sleep: 0.0,
            gate: false,
            record: false,
        }
    }

    /// Every name exits with `code`.
    pub fn exiting(code: u8) -> Self {
        FakeModprobe {
            default_code: code,
            codes: Vec::new(),
            sleep: 0.0,
            gate: false,
            record: false,
        }
    }

    /// Sleeps `seconds` before exiting.
    pub fn sleeping(mut self, seconds: f64) -> Self {
        self.sleep = seconds;
        self
    }

    /// Waits for the sandbox's release file.
    pub fn gated(mut self) -> Self {
        self.gate = true;
        self
    }

    /// Records what it sees.
    pub fn recording(mut self) -> Self {
        self.record = true;
        self
    }

    fn script(&self, dir: &Path) -> String {
        let d = dir.display();
        let mut s = String::new();
        let _ = writeln!(
            s,
            "#!/bin/sh\n# fake modprobe written by reqmod-tests\nD='{d}'"
        );
        let _ = writeln!(s, "echo \"start $$ $3\" >> \"$D/events\"");
        if self.record {
            // Signal state first, read by the shell itself: dash blocks every
            // signal around its own forks, which a child would see. The
            // descriptors are listed by background children: dash applies
            // redirections of a foreground command in the shell itself,
            // which would add descriptors to what we list.
            let _ = writeln!(
                s,
                "while read -r key value; do\n\
                 \x20 case \"$key\" in SigBlk:|SigIgn:) echo \"$key $value\" ;; esac\n\
                 done < /proc/$$/status > \"$D/sig.$$\"\n\
                 printf '%s\\0' \"$0\" \"$@\" > \"$D/argv.$$\"\n\
                 cat /proc/$$/environ > \"$D/env.$$\" &\n\
                 ls -l /proc/$$/fd/ > \"$D/fds.$$\" &\n\
                 wait\n\
                 readlink /proc/$$/cwd > \"$D/cwd.$$\"\n\
                 umask > \"$D/umask.$$\""
            );
        }
        if self.gate {
            // Also gives up once the sandbox is gone (a failed test).
            let _ = writeln!(
                s,
                "while [ ! -e \"$D/release\" ] && [ -d \"$D\" ]; do sleep 0.02; done"
            );
        }
        if self.sleep > 0.0 {
            let _ = writeln!(s, "sleep {}", self.sleep);
        }
        let _ = writeln!(s, "code={}\ncase \"$3\" in", self.default_code);
        for (name, code) in &self.codes {
            let _ = writeln!(s, "  '{name}') code={code} ;;");
        }
        let _ = writeln!(s, "esac\necho \"end $$ $3\" >> \"$D/events\"\nexit $code");
        s
    }
}

/// Polls `condition` every few milliseconds until it holds; panics with
/// `what` after `limit`.
pub fn wait_until(what: &str, limit: Duration, mut condition: impl FnMut() -> bool) {
    let start = Instant::now();
    while !condition() {
        assert!(
            start.elapsed() < limit,
            "timed out after {limit:?} waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The `reqmod` CLI under test: pass `env!("CARGO_BIN_EXE_reqmod-cli")`
/// (only integration tests see that variable). `RUST_LOG` is cleared.
pub fn reqmod_cli(exe: &str) -> Command {
    let mut cmd = Command::new(exe);
    cmd.env_remove("RUST_LOG");
    cmd
}

/// Runs the CLI `exe` with `args`, feeding `stdin`; returns its output.
pub fn run_cli(exe: &str, args: &[&str], stdin: &str) -> Output {
    use std::io::Write;
    let mut child = reqmod_cli(exe)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the reqmod CLI");
    let mut input = child.stdin.take().expect("stdin");
    let stdin = stdin.to_owned();
    let writer = std::thread::spawn(move || {
        let _ = input.write_all(stdin.as_bytes());
    });
    let output = child.wait_with_output().expect("wait for the reqmod CLI");
    writer.join().expect("stdin writer");
    output
}

/// Parses `<ret>\t<name>` lines.
pub fn parse_lines(stdout: &[u8]) -> Vec<(i32, String)> {
    String::from_utf8_lossy(stdout)
        .lines()
        .map(|line| {
            let (ret, name) = line
                .split_once('\t')
                .unwrap_or_else(|| panic!("bad line {line:?}"));
            (
                ret.parse()
                    .unwrap_or_else(|_| panic!("bad ret in {line:?}")),
                name.to_owned(),
            )
        })
        .collect()
}

/// Children of this process (all threads) that still exist, zombies included.
pub fn child_pids() -> HashSet<u32> {
    let mut pids = HashSet::new();
    if let Ok(tasks) = std::fs::read_dir("/proc/self/task") {
        for task in tasks.flatten() {
            if let Ok(children) = std::fs::read_to_string(task.path().join("children")) {
                pids.extend(
                    children
                        .split_whitespace()
                        .filter_map(|p| p.parse::<u32>().ok()),
                );
            }
        }
    }
    pids
}

/// Children of this process that are zombies (exited, not reaped).
pub fn zombie_children() -> Vec<u32> {
    child_pids()
        .into_iter()
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|stat| {
                    stat.rsplit_once(") ")
                        .map(|(_, rest)| rest.starts_with('Z'))
                })
                .unwrap_or(false)
        })
        .collect()
}

/// Number of open descriptors of this process.
pub fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").map_or(0, Iterator::count)
}

/// Number of threads of this process.
pub fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").map_or(0, Iterator::count)
}
