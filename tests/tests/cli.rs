//! The `reqmod request` command line (DESIGN.md): output format and order,
//! exit statuses, usage errors, `--json`, `-` (names from standard input),
//! `--stats`, `--nowait`, `--max-concurrent`, `--busy-timeout`, and thousands
//! of names on a handful of threads.

use std::process::Stdio;
use std::time::{Duration, Instant};

use reqmod_tests::{FakeModprobe, Sandbox, parse_lines, reqmod_cli, run_cli, wait_until};

const CLI: &str = env!("CARGO_BIN_EXE_reqmod-cli");

fn stderr(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

#[test]
fn usage_errors_exit_2_with_one_line() {
    let cases: &[&[&str]] = &[
        &[],
        &["load", "x"],
        &["request"],
        &["request", "--bogus", "x"],
        &["request", "--max-concurrent", "abc", "x"],
        &["request", "--max-concurrent", "100000", "x"],
        &["request", "--max-concurrent", "-1", "x"],
        &["request", "--busy-timeout", "-1", "x"],
        &["request", "--busy-timeout", "soon", "x"],
        &["request", "--modprobe"],
        &["request", "--json=yes", "x"],
    ];
    for args in cases {
        let output = run_cli(CLI, args, "");
        assert_eq!(output.status.code(), Some(2), "{args:?}: {output:?}");
        assert!(output.stdout.is_empty(), "{args:?}");
        let text = stderr(&output);
        assert_eq!(text.lines().count(), 1, "{args:?}: {text:?}");
        assert!(text.starts_with("reqmod: "), "{args:?}: {text:?}");
    }
}

#[test]
fn help_explains_the_return_integers() {
    for args in [
        &["request", "--help"][..],
        &["--help"][..],
        &["request", "-h"][..],
    ] {
        let output = run_cli(CLI, args, "");
        assert_eq!(output.status.code(), Some(0));
        let text = String::from_utf8_lossy(&output.stdout);
        for needle in [
            "256",
            "-2",
            "-62",
            "ETIME",
            "ENOENT",
            "Exit status: 0 if every result is 0",
        ] {
            assert!(
                text.contains(needle),
                "{args:?} help lacks {needle:?}:\n{text}"
            );
        }
    }
    let output = run_cli(CLI, &["request", "--help"], "");
    let text = String::from_utf8_lossy(&output.stdout);
    for flag in [
        "--nowait",
        "--modprobe",
        "--no-dedup",
        "--max-concurrent",
        "--busy-timeout",
        "--json",
        "--stats",
    ] {
        assert!(text.contains(flag), "request help lacks {flag}");
    }
    assert!(text.contains("Usage: reqmod request"), "{text}");
}

#[test]
fn results_in_input_order_and_exit_status() {
    let sandbox = Sandbox::new("cli-order");
    // Later names finish first: output must still follow the input order.
    let script = sandbox.script(
        "modprobe",
        "#!/bin/sh\ncase \"$3\" in\n  a) sleep 0.3 ;;\n  b) sleep 0.1; exit 1 ;;\nesac\nexit 0\n",
    );
    let path = script.to_str().unwrap();
    let output = run_cli(CLI, &["request", "--modprobe", path, "a", "b", "c"], "");
    assert_eq!(output.status.code(), Some(1), "{output:?}");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "0\ta\n256\tb\n0\tc\n"
    );

    let output = run_cli(CLI, &["request", "--modprobe", path, "a", "c"], "");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(
        parse_lines(&output.stdout),
        vec![(0, "a".into()), (0, "c".into())]
    );
}

#[test]
fn kernel_selftest_scenarios_through_the_cli() {
    let sandbox = Sandbox::new("cli-scenarios");
    let path = sandbox.modprobe(&FakeModprobe::kernel_like());
    let path = path.to_str().unwrap();
    // 0001, 0002 and a module that exists.
    let output = run_cli(
        CLI,
        &["request", "--modprobe", path, "", "nope", "test_module"],
        "",
    );
    assert_eq!(
        parse_lines(&output.stdout),
        vec![
            (256, String::new()),
            (256, "nope".into()),
            (0, "test_module".into())
        ]
    );
    // 0010: a helper that does not exist.
    let missing = sandbox.path().join("missing");
    let output = run_cli(
        CLI,
        &["request", "--modprobe", missing.to_str().unwrap(), "x"],
        "",
    );
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(parse_lines(&output.stdout), vec![(-2, "x".into())]);
    // 0011: the empty path; nothing runs.
    let output = run_cli(
        CLI,
        &["request", "--modprobe", "", "--nowait", "x", "y"],
        "",
    );
    assert_eq!(
        parse_lines(&output.stdout),
        vec![(-2, "x".into()), (-2, "y".into())]
    );
    // A name too long for MODULE_NAME_LEN.
    let long = "n".repeat(56);
    let output = run_cli(
        CLI,
        &["request", "--modprobe", path, &long, &long[..55]],
        "",
    );
    assert_eq!(
        parse_lines(&output.stdout),
        vec![(-36, long.clone()), (256, long[..55].to_owned())]
    );
    assert_eq!(sandbox.starts(), 4);
}

#[test]
fn json_output_parses() {
    let sandbox = Sandbox::new("cli-json");
    let path = sandbox.modprobe(&FakeModprobe::kernel_like());
    let output = run_cli(
        CLI,
        &[
            "request",
            "--json",
            "--modprobe",
            path.to_str().unwrap(),
            "test_module",
            "nope",
            "-",
        ],
        "from-stdin\n",
    );
    assert_eq!(output.status.code(), Some(1));
    let objects: Vec<serde_json::Value> = String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object per line"))
        .collect();
    assert_eq!(objects.len(), 3);
    assert_eq!(objects[0]["name"], "test_module");
    assert_eq!(objects[0]["ret"], 0);
    assert_eq!(objects[0]["ok"], true);
    assert_eq!(objects[0]["exit_code"], 0);
    assert_eq!(objects[1]["name"], "nope");
    assert_eq!(objects[1]["ret"], 256);
    assert_eq!(objects[1]["ok"], false);
    assert_eq!(objects[1]["exit_code"], 1);
    assert_eq!(objects[1]["signal"], serde_json::Value::Null);
    assert_eq!(objects[1]["errno"], serde_json::Value::Null);
    assert_eq!(objects[2]["name"], "from-stdin");

    let output = run_cli(CLI, &["request", "--json", "--modprobe", "", "x"], "");
    let object: serde_json::Value = serde_json::from_slice(&output.stdout).expect("JSON");
    assert_eq!(object["ret"], -2);
    assert_eq!(object["errno"], "ENOENT");
    assert_eq!(object["exit_code"], serde_json::Value::Null);
}

#[test]
fn dash_reads_names_from_stdin() {
    let sandbox = Sandbox::new("cli-stdin");
    let path = sandbox.modprobe(&FakeModprobe::kernel_like());
    let output = run_cli(
        CLI,
        &[
            "request",
            "--modprobe",
            path.to_str().unwrap(),
            "first",
            "-",
            "last",
        ],
        "test_module\n\nfs-ext4\nxfs\n",
    );
    assert_eq!(
        parse_lines(&output.stdout),
        vec![
            (256, "first".into()),
            (0, "test_module".into()),
            (256, String::new()),
            (256, "fs-ext4".into()),
            (0, "xfs".into()),
            (256, "last".into()),
        ]
    );
}

#[test]
fn stats_go_to_stderr() {
    let sandbox = Sandbox::new("cli-stats");
    let path = sandbox.modprobe(&FakeModprobe::kernel_like());
    let output = run_cli(
        CLI,
        &[
            "request",
            "--stats",
            "--modprobe",
            path.to_str().unwrap(),
            "a",
            "a",
            "test_module",
        ],
        "",
    );
    assert_eq!(parse_lines(&output.stdout).len(), 3);
    let text = stderr(&output);
    for line in [
        "requests: 3",
        "completed: 3",
        "duplicates: 1",
        "helpers_started: 2",
        "failures: 2",
    ] {
        assert!(
            text.lines().any(|l| l == line),
            "missing {line:?} in {text}"
        );
    }
}

/// `--nowait` returns once every helper has been executed, and leaves them
/// running after it exits.
#[test]
fn nowait_returns_after_exec_and_helpers_run_on() {
    let sandbox = Sandbox::new("cli-nowait");
    let _release = sandbox.release_on_drop();
    let path = sandbox.modprobe(&FakeModprobe::exiting(1).gated());
    let mut child = reqmod_cli(CLI)
        .args([
            "request",
            "--nowait",
            "--modprobe",
            path.to_str().unwrap(),
            "a",
            "b",
            "c",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    // The helpers are held at their gate, so reqmod can only exit now if it
    // does not wait for them.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        assert!(
            start.elapsed() < Duration::from_secs(20),
            "reqmod --nowait waited for its helpers"
        );
        std::thread::sleep(Duration::from_millis(5));
    };
    let output = child.wait_with_output().expect("output");
    assert_eq!(status.code(), Some(0));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "0\ta\n0\tb\n0\tc\n"
    );
    assert_eq!(sandbox.ends(), 0);
    // They were executed and run on after reqmod's exit.
    wait_until("three helpers started", Duration::from_secs(20), || {
        sandbox.starts() == 3
    });
    sandbox.release();
    wait_until("three helpers ended", Duration::from_secs(20), || {
        sandbox.ends() == 3
    });
}

#[test]
fn max_concurrent_limits_helpers() {
    let sandbox = Sandbox::new("cli-max");
    let _release = sandbox.release_on_drop();
    let path = sandbox.modprobe(&FakeModprobe::exiting(0).gated());
    // (A long busy timeout: the five queued requests wait until the test
    // has seen three helpers running.)
    let mut args = vec![
        "request",
        "--max-concurrent",
        "3",
        "--busy-timeout",
        "60",
        "--modprobe",
        path.to_str().unwrap(),
    ];
    let names: Vec<String> = (0..8).map(|i| format!("m{i}")).collect();
    args.extend(names.iter().map(String::as_str));
    let child = reqmod_cli(CLI)
        .args(&args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    wait_until("three helpers running", Duration::from_secs(20), || {
        sandbox.starts() == 3
    });
    sandbox.release();
    let output = child.wait_with_output().expect("output");
    assert_eq!(output.status.code(), Some(0), "{output:?}");
    assert_eq!(parse_lines(&output.stdout).len(), 8);
    assert_eq!(sandbox.starts(), 8);
    assert_eq!(sandbox.max_concurrent(), 3);
}

#[test]
fn busy_timeout_option_and_warning() {
    use std::io::Read;
    use std::sync::{Arc, Mutex};
    let sandbox = Sandbox::new("cli-busy");
    let _release = sandbox.release_on_drop();
    let path = sandbox.modprobe(&FakeModprobe::exiting(0).gated());
    let mut child = reqmod_cli(CLI)
        .args([
            "request",
            "--max-concurrent",
            "1",
            "--busy-timeout",
            "0.3",
            "--modprobe",
            path.to_str().unwrap(),
            "first",
            "second",
            "third",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run the CLI");
    let err = Arc::new(Mutex::new(String::new()));
    let mut pipe = child.stderr.take().expect("stderr");
    let reader = {
        let err = Arc::clone(&err);
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = pipe.read(&mut buf) {
                err.lock()
                    .unwrap()
                    .push_str(&String::from_utf8_lossy(&buf[..n]));
            }
        })
    };
    // The gate holds the only slot: the other two time out after 0.3 s and
    // the CLI warns about each; only then is the helper released.
    let warning = |name: &str| {
        format!(
            "request_module: modprobe {name} cannot be processed, kmod busy with 1 threads for more than"
        )
    };
    wait_until("both busy warnings", Duration::from_secs(20), || {
        let text = err.lock().unwrap();
        text.contains(&warning("second")) && text.contains(&warning("third"))
    });
    wait_until("the first helper", Duration::from_secs(20), || {
        sandbox.starts() == 1
    });
    sandbox.release();
    let output = child.wait_with_output().expect("output");
    reader.join().expect("stderr reader");
    assert_eq!(
        parse_lines(&output.stdout),
        vec![
            (0, "first".into()),
            (-62, "second".into()),
            (-62, "third".into())
        ]
    );
    assert_eq!(sandbox.starts(), 1);
}

/// Thousands of names from standard input run on a handful of threads.
#[test]
fn thousands_of_names_on_few_threads() {
    let sandbox = Sandbox::new("cli-many");
    let script = sandbox.script(
        "modprobe",
        "#!/bin/sh\nwhile read -r key value; do\n  [ \"$key\" = Threads: ] && echo \"$value\" >> \"${0%/*}/threads\"\ndone < /proc/$PPID/status\nexit 0\n",
    );
    let names: String = (0..2000).map(|i| format!("many-{i}\n")).collect();
    let start = Instant::now();
    let output = run_cli(
        CLI,
        &[
            "request",
            "--busy-timeout",
            "120",
            "--modprobe",
            script.to_str().unwrap(),
            "-",
        ],
        &names,
    );
    let took = start.elapsed();
    assert_eq!(output.status.code(), Some(0), "{}", stderr(&output));
    let lines = parse_lines(&output.stdout);
    assert_eq!(lines.len(), 2000);
    for (i, (ret, name)) in lines.iter().enumerate() {
        assert_eq!((*ret, name.as_str()), (0, format!("many-{i}").as_str()));
    }
    let seen = std::fs::read_to_string(sandbox.path().join("threads")).expect("thread counts");
    let max_threads = seen
        .lines()
        .filter_map(|l| l.trim().parse::<u32>().ok())
        .max()
        .unwrap_or(0);
    eprintln!("2000 names via the CLI in {took:?}; the CLI had at most {max_threads} threads");
    // The main thread and the reactor; not one per request.
    assert!(
        (1..=3).contains(&max_threads),
        "the CLI ran {max_threads} threads"
    );
}

/// Results are printed as soon as they and every earlier one are in: a slow
/// request does not hold back the lines before it.
#[test]
fn results_stream_in_input_order() {
    use std::io::{BufRead, BufReader};
    let sandbox = Sandbox::new("cli-stream");
    let _release = sandbox.release_on_drop();
    let dir = sandbox.path().display().to_string();
    let script = sandbox.script(
        "modprobe",
        &format!(
            "#!/bin/sh\n[ \"$3\" = slow ] && while [ ! -e '{dir}/release' ] && [ -d '{dir}' ]; do sleep 0.02; done\nexit 0\n"
        ),
    );
    let mut child = reqmod_cli(CLI)
        .args([
            "request",
            "--modprobe",
            script.to_str().unwrap(),
            "a",
            "b",
            "slow",
            "c",
        ])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("run the CLI");
    let stdout = child.stdout.take().expect("stdout");
    let (send, lines) = std::sync::mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let _ = send.send(line.expect("utf-8"));
        }
    });
    let next = || {
        lines
            .recv_timeout(Duration::from_secs(20))
            .expect("a line in time")
    };
    // Read while "slow" is held: what precedes it must be out already.
    assert_eq!(next(), "0\ta");
    assert_eq!(next(), "0\tb");
    sandbox.release();
    assert_eq!(next(), "0\tslow");
    assert_eq!(next(), "0\tc");
    reader.join().expect("reader");
    assert!(lines.try_recv().is_err());
    assert_eq!(child.wait().expect("wait").code(), Some(0));
}
