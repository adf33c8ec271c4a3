//! Duplicate requests (SPEC §3): one helper serves every concurrent wait
//! request for a name; nowait duplicates return 0 at once; `--no-dedup` runs
//! the helper every time.

use std::os::unix::ffi::OsStrExt;
use std::time::{Duration, Instant};

use reqmod::KernelRet;
use reqmod_linux::{LinuxKmod, LinuxPlatform, block_on, block_on_all, request_module_blocking};
use std::process::Stdio;

use reqmod_tests::{FakeModprobe, Sandbox, parse_lines, reqmod_cli, wait_until};

const CLI: &str = env!("CARGO_BIN_EXE_reqmod-cli");

#[test]
fn forty_wait_requests_run_the_helper_once() {
    let sandbox = Sandbox::new("dups-wait");
    let path = sandbox.modprobe(&FakeModprobe::exiting(1).gated());
    let kmod = LinuxKmod::new(LinuxPlatform::new());
    kmod.set_modprobe_path(path.as_os_str().as_bytes());
    std::thread::scope(|scope| {
        let _release = sandbox.release_on_drop();
        let threads: Vec<_> = (0..40)
            .map(|_| {
                scope.spawn(|| request_module_blocking(&kmod, format_args!("dupmod")).kernel_ret())
            })
            .collect();
        // All 40 are in: one runs the helper, 39 wait for its result.
        wait_until("39 duplicates waiting", Duration::from_secs(20), || {
            kmod.stats().dup_waiters == 39
        });
        // (The helper is gated: its first line comes, the second does not.)
        wait_until("the helper", Duration::from_secs(20), || {
            sandbox.starts() == 1
        });
        sandbox.release();
        for thread in threads {
            assert_eq!(thread.join().expect("request thread"), 256);
        }
    });
    assert_eq!(sandbox.starts(), 1);
    // The result lingers: a later request is a duplicate too.
    assert_eq!(
        request_module_blocking(&kmod, format_args!("dupmod")).kernel_ret(),
        256
    );
    assert_eq!(sandbox.starts(), 1);
}

#[test]
fn nowait_duplicates_return_zero_at_once() {
    let sandbox = Sandbox::new("dups-nowait");
    let path = sandbox.modprobe(&FakeModprobe::exiting(1).gated());
    let kmod = LinuxKmod::new(LinuxPlatform::new());
    kmod.set_modprobe_path(path.as_os_str().as_bytes());
    std::thread::scope(|scope| {
        let _release = sandbox.release_on_drop();
        let first =
            scope.spawn(|| request_module_blocking(&kmod, format_args!("slowmod")).kernel_ret());
        wait_until("the first helper", Duration::from_secs(20), || {
            sandbox.starts() == 1
        });
        // The helper is held at its gate: these can only finish now if they
        // do not wait for it.
        let start = Instant::now();
        let results =
            block_on_all((0..40).map(|_| kmod.request_module_nowait(format_args!("slowmod"))));
        assert!(
            start.elapsed() < Duration::from_secs(3),
            "{:?}",
            start.elapsed()
        );
        assert!(results.iter().all(|r| r.kernel_ret() == 0), "{results:?}");
        assert_eq!(sandbox.ends(), 0, "the helper is still running");
        sandbox.release();
        assert_eq!(first.join().expect("first request"), 256);
    });
    assert_eq!(sandbox.starts(), 1);
    assert_eq!(kmod.stats().duplicates, 40);
    // Once answered, a nowait duplicate still returns 0 (not the status).
    assert_eq!(
        block_on(kmod.request_module_nowait(format_args!("slowmod"))).kernel_ret(),
        0
    );
}

/// Runs the CLI with a gated helper: waits until `starts` helpers run,
/// releases them, returns the output.
fn cli_gated(sandbox: &Sandbox, args: &[&str], starts: usize) -> std::process::Output {
    let child = reqmod_cli(CLI)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    wait_until("helpers started", Duration::from_secs(20), || {
        sandbox.starts() >= starts
    });
    assert_eq!(sandbox.starts(), starts);
    sandbox.release();
    child.wait_with_output().expect("CLI output")
}

#[test]
fn cli_forty_duplicates_run_the_helper_once() {
    let sandbox = Sandbox::new("dups-cli");
    let path = sandbox.modprobe(&FakeModprobe::exiting(1).gated());
    let mut args = vec!["request", "--modprobe", path.to_str().unwrap()];
    args.extend(vec!["dupmod"; 40]);
    let output = cli_gated(&sandbox, &args, 1);
    assert_eq!(output.status.code(), Some(1));
    let lines = parse_lines(&output.stdout);
    assert_eq!(lines.len(), 40);
    assert!(
        lines
            .iter()
            .all(|(ret, name)| *ret == 256 && name == "dupmod"),
        "{lines:?}"
    );
    assert_eq!(sandbox.starts(), 1);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        stderr
            .matches("module-autoload: duplicate request for module dupmod")
            .count(),
        39,
        "{stderr}"
    );
}

#[test]
fn cli_no_dedup_runs_the_helper_forty_times() {
    let sandbox = Sandbox::new("nodedup-cli");
    let path = sandbox.modprobe(&FakeModprobe::exiting(1).gated());
    let mut args = vec![
        "request",
        "--no-dedup",
        "--modprobe",
        path.to_str().unwrap(),
    ];
    args.extend(vec!["dupmod"; 40]);
    // All 40 helpers run at once (then they are released).
    let output = cli_gated(&sandbox, &args, 40);
    assert_eq!(output.status.code(), Some(1));
    let lines = parse_lines(&output.stdout);
    assert_eq!(lines.len(), 40);
    assert!(lines.iter().all(|(ret, _)| *ret == 256), "{lines:?}");
    assert_eq!(sandbox.starts(), 40);
    assert_eq!(sandbox.max_concurrent(), 40);
    assert!(!String::from_utf8_lossy(&output.stderr).contains("duplicate"));
}

/// `UMH_KILLABLE`: a killed first request returns -ERESTARTSYS at once and
/// announces it to its duplicates; its helper is not killed but runs to its
/// end (and is reaped).
#[test]
fn killed_request_returns_erestartsys_and_its_helper_runs_on() {
    let sandbox = Sandbox::new("killed");
    let path = sandbox.modprobe(&FakeModprobe::exiting(0).gated());
    let kmod = LinuxKmod::new(LinuxPlatform::new());
    kmod.set_modprobe_path(path.as_os_str().as_bytes());
    let kill = reqmod::KillSignal::new();
    std::thread::scope(|scope| {
        let _release = sandbox.release_on_drop();
        let first = scope
            .spawn(|| block_on(kmod.request_killable(true, &kill, format_args!("k"))).kernel_ret());
        wait_until("the helper", Duration::from_secs(20), || {
            sandbox.starts() == 1
        });
        let duplicate =
            scope.spawn(|| request_module_blocking(&kmod, format_args!("k")).kernel_ret());
        wait_until("the duplicate waiting", Duration::from_secs(20), || {
            kmod.stats().dup_waiters == 1
        });
        kill.kill();
        assert_eq!(first.join().expect("first"), -512);
        assert_eq!(duplicate.join().expect("duplicate"), -512);
        // The helper is still held at its gate: it was not killed.
        assert_eq!(sandbox.ends(), 0);
        sandbox.release();
        wait_until("the helper's end", Duration::from_secs(20), || {
            sandbox.ends() == 1
        });
    });
}
