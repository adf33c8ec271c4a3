//! What a helper sees (SPEC §4), and how exec failures come back.
//!
//! This binary deliberately dirties its own process state first (signals
//! ignored and blocked, a descriptor without close-on-exec, a strange umask,
//! extra environment variables) so that a helper inheriting any of it fails
//! the checks.

use std::os::fd::AsRawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::sync::Once;

use reqmod::{KernelRet, Kmod};
use reqmod_linux::{LinuxKmod, LinuxPlatform, block_on, request_module_blocking};
use reqmod_tests::{FakeModprobe, Sandbox, parse_lines, run_cli};

const CLI: &str = env!("CARGO_BIN_EXE_reqmod-cli");

/// The descriptor deliberately left open without close-on-exec.
static mut LEAKY_FD: i32 = -1;

/// Makes this process a hostile parent, once.
fn dirty_parent() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let leaky = std::fs::File::open("/proc/self/status").expect("open");
        let fd = leaky.as_raw_fd();
        // SAFETY: plain libc calls on valid arguments, made once before any
        // helper starts; `fd` is kept open for the process's life.
        unsafe {
            assert_eq!(libc::fcntl(fd, libc::F_SETFD, 0), 0, "clear FD_CLOEXEC");
            LEAKY_FD = fd;
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            libc::signal(libc::SIGUSR2, libc::SIG_IGN);
            libc::signal(libc::SIGINT, libc::SIG_IGN);
            libc::umask(0o077);
            // SIGPIPE is already ignored by the Rust runtime.
        }
        std::mem::forget(leaky);
        // SAFETY: set once, before this binary's tests start helpers; no
        // other thread reads the environment concurrently in these tests.
        unsafe { std::env::set_var("REQMOD_SHOULD_NOT_LEAK", "1") };
    });
}

/// Blocks SIGUSR1 and SIGTERM in the calling thread (helpers are started by
/// the requesting thread, so they would inherit its mask).
fn block_signals_in_this_thread() {
    // SAFETY: initialises and installs a signal set for this thread only.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
    }
}

fn kmod_for(path: &Path) -> LinuxKmod {
    let kmod = Kmod::new(LinuxPlatform::new());
    kmod.set_modprobe_path(path.as_os_str().as_bytes());
    kmod
}

/// Checks one helper's view; `script` is the helper's path.
fn assert_clean_view(sandbox: &Sandbox, script: &Path, name: &str) {
    let events = sandbox.events();
    let pid = events
        .iter()
        .find(|e| e.started && e.name == name)
        .unwrap_or_else(|| panic!("no helper ran for {name:?}: {events:?}"))
        .pid;
    let view = sandbox.view(pid);
    let script_bytes = script.as_os_str().as_bytes().to_vec();
    assert_eq!(
        view.argv,
        vec![
            script_bytes,
            b"-q".to_vec(),
            b"--".to_vec(),
            name.as_bytes().to_vec()
        ],
        "argv of {name:?}"
    );
    assert_eq!(
        view.env,
        vec![
            b"HOME=/".to_vec(),
            b"TERM=linux".to_vec(),
            b"PATH=/sbin:/usr/sbin:/bin:/usr/bin".to_vec()
        ],
        "environment of {name:?}"
    );
    assert_eq!(view.cwd, "/");
    assert_eq!(view.umask, "0022");
    assert_eq!(view.sig_blocked, 0, "blocked signals");
    assert_eq!(view.sig_ignored, 0, "ignored signals");
    for fd in 0..3 {
        assert_eq!(
            view.fds.get(&fd).map(String::as_str),
            Some("/dev/null"),
            "fd {fd}: {:?}",
            view.fds
        );
    }
    // Beyond 0-2 only the shell's own descriptor of the script it reads.
    let script_text = script.display().to_string();
    for (fd, target) in &view.fds {
        assert!(
            *fd < 3 || *target == script_text,
            "inherited fd {fd} -> {target}: {:?}",
            view.fds
        );
    }
    // SAFETY: read of a value written once before.
    let leaky = unsafe { LEAKY_FD } as u32;
    assert!(!view.fds.contains_key(&leaky) || view.fds[&leaky] == script_text);
}

#[test]
fn helper_sees_exactly_the_kernel_environment() {
    dirty_parent();
    block_signals_in_this_thread();
    let sandbox = Sandbox::new("view");
    let script = sandbox.modprobe(&FakeModprobe::exiting(0).recording());
    let kmod = kmod_for(&script);
    for name in ["plain", "-leading-dash", "with space", "--", ""] {
        assert_eq!(
            request_module_blocking(&kmod, format_args!("{name}")).kernel_ret(),
            0
        );
        assert_clean_view(&sandbox, &script, name);
    }
    // nowait helpers get the same treatment.
    assert_eq!(
        block_on(kmod.request_module_nowait(format_args!("nowait-one"))).kernel_ret(),
        0
    );
    reqmod_tests::wait_until(
        "the nowait helper",
        std::time::Duration::from_secs(20),
        || sandbox.ends() == 6,
    );
    assert_clean_view(&sandbox, &script, "nowait-one");
}

#[test]
fn helper_view_through_the_cli() {
    dirty_parent();
    let sandbox = Sandbox::new("view-cli");
    let script = sandbox.modprobe(&FakeModprobe::exiting(0).recording());
    let output = run_cli(
        CLI,
        &[
            "request",
            "--modprobe",
            script.to_str().unwrap(),
            "--",
            "-x",
            "a b",
            "fs-ext4",
        ],
        "",
    );
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(
        parse_lines(&output.stdout),
        vec![
            (0, "-x".to_owned()),
            (0, "a b".to_owned()),
            (0, "fs-ext4".to_owned())
        ]
    );
    for name in ["-x", "a b", "fs-ext4"] {
        assert_clean_view(&sandbox, &script, name);
    }
}

#[test]
fn exec_failures_are_negative_errnos() {
    dirty_parent();
    let sandbox = Sandbox::new("exec");
    let not_executable = sandbox.file("not-executable", b"#!/bin/sh\nexit 0\n", 0o644);
    let not_a_program = sandbox.file("not-a-program", b"no interpreter line here\n", 0o755);
    let bad_elf = sandbox.file("bad-elf", b"\x7fELF\x02\x01\x01garbage", 0o755);
    let cases: [(&Path, i32); 5] = [
        (&sandbox.path().join("missing"), -2),
        (&not_executable, -13),
        (&not_a_program, -8),
        (&bad_elf, -8),
        (sandbox.path(), -13), // a directory
    ];
    for (path, expected) in cases {
        let kmod = kmod_for(path);
        let wait = request_module_blocking(&kmod, format_args!("m"));
        assert_eq!(wait.kernel_ret(), expected, "wait, {}", path.display());
        let nowait = block_on(kmod.request_module_nowait(format_args!("n")));
        assert_eq!(nowait.kernel_ret(), expected, "nowait, {}", path.display());
        assert_eq!(kmod.stats().helpers_started, 2);
    }
    // A relative path is relative to `/`, and no PATH search happens.
    let kmod = kmod_for(Path::new("bin/true"));
    assert_eq!(
        request_module_blocking(&kmod, format_args!("m")).kernel_ret(),
        0
    );
    let kmod = kmod_for(Path::new("true"));
    assert_eq!(
        request_module_blocking(&kmod, format_args!("m")).kernel_ret(),
        -2
    );

    // The empty path: -ENOENT without any exec attempt.
    let kmod = kmod_for(Path::new(""));
    assert_eq!(
        request_module_blocking(&kmod, format_args!("m")).kernel_ret(),
        -2
    );
    assert_eq!(
        block_on(kmod.request_module_nowait(format_args!("m"))).kernel_ret(),
        -2
    );
    assert_eq!(kmod.stats().helpers_started, 0);
}

#[test]
fn exit_statuses_are_raw_wait_statuses() {
    dirty_parent();
    let sandbox = Sandbox::new("status");
    let script = sandbox.script(
        "modprobe",
        "#!/bin/sh\ncase \"$3\" in\n  kill) kill -9 $$ ;;\n  term) kill -TERM $$ ;;\n  *) exit \"$3\" ;;\nesac\n",
    );
    let kmod = Kmod::with_config(
        LinuxPlatform::new(),
        reqmod::Config::DEFAULT.with_dedup(false),
        reqmod::AllowAll,
    );
    let kmod: LinuxKmod = kmod;
    kmod.set_modprobe_path(script.as_os_str().as_bytes());
    for (name, expected) in [
        ("0", 0),
        ("1", 256),
        ("2", 512),
        ("255", 255 << 8),
        ("kill", 9),
        ("term", 15),
    ] {
        let result = request_module_blocking(&kmod, format_args!("{name}"));
        assert_eq!(result.kernel_ret(), expected, "{name}");
    }
    let killed = request_module_blocking(&kmod, format_args!("kill")).expect("a status");
    assert_eq!((killed.signal(), killed.exit_code()), (Some(9), None));
}
