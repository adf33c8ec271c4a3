//! The port conformance kit (`reqmod::conformance`) on the Linux port, with
//! real helper processes: shell scripts for each program the kit asks for.
//! (This binary runs one test, so the process-wide count of live helpers is
//! this test's own.)

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;

use reqmod::conformance::{self, Harness, Program, Verdict};
use reqmod_linux::{LinuxPlatform, block_on};
use reqmod_tests::Sandbox;

struct Linux {
    _sandbox: Sandbox,
    programs: Vec<(Program, Vec<u8>)>,
}

impl Linux {
    fn new() -> Self {
        let sandbox = Sandbox::new("conformance");
        let sh = |body: &str| format!("#!/bin/sh\n{body}\n");
        let mut programs = Vec::new();
        let mut add = |program: Program, name: &str, path: PathBuf| {
            let _ = name;
            programs.push((program, path.into_os_string().into_encoded_bytes()));
        };
        for code in [0u8, 1, 3] {
            let name = format!("exit-{code}");
            add(
                Program::Exit(code),
                &name,
                sandbox.script(&name, &sh(&format!("exit {code}"))),
            );
        }
        for (ms, code) in [(100u32, 0u8), (300, 3), (400, 0), (500, 0), (1000, 0)] {
            let name = format!("sleep-{ms}-exit-{code}");
            let body = format!("sleep {}\nexit {code}", f64::from(ms) / 1000.0);
            add(
                Program::SleepThenExit { ms, code },
                &name,
                sandbox.script(&name, &sh(&body)),
            );
        }
        for sig in [9u8, 11] {
            let name = format!("signal-{sig}");
            add(
                Program::Signal(sig),
                &name,
                sandbox.script(&name, &sh(&format!("kill -{sig} $$"))),
            );
        }
        add(
            Program::Hang,
            "hang",
            sandbox.script("hang", &sh("exec sleep 100000")),
        );
        add(
            Program::Missing,
            "missing",
            sandbox.path().join("no-such-program"),
        );
        let not_exec = sandbox.script("not-executable", &sh("exit 0"));
        std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
        add(Program::NotExecutable, "not-executable", not_exec);
        // Executable, but no `#!` and not ELF: execve says ENOEXEC (no shell fallback).
        let text = sandbox.script("not-a-program", "just text\n");
        add(Program::NotAProgram, "not-a-program", text);
        Linux {
            _sandbox: sandbox,
            programs,
        }
    }
}

impl Harness for Linux {
    type Platform = LinuxPlatform;

    fn platform(&self) -> LinuxPlatform {
        LinuxPlatform::new()
    }

    fn program(&self, program: Program) -> Option<&[u8]> {
        self.programs
            .iter()
            .find(|p| p.0 == program)
            .map(|p| p.1.as_slice())
    }

    fn live_helpers(&self) -> Option<usize> {
        Some(reqmod_linux::live_helpers())
    }
}

#[test]
fn the_linux_port_passes_the_conformance_kit() {
    // The kit's future holds 62 requests: poll it on a thread with room.
    std::thread::Builder::new()
        .stack_size(32 << 20)
        .spawn(|| {
            let harness = Linux::new();
            let mut cases = Vec::new();
            let summary = block_on(conformance::run(&harness, |case| {
                println!("{case}");
                cases.push(*case);
            }));
            println!("{summary}");
            assert!(
                cases.iter().all(|c| c.verdict == Verdict::Passed),
                "{cases:#?}"
            );
            assert_eq!(summary.passed, cases.len());
            // Nothing left running (the hung helper was killed and reaped).
            reqmod_tests::wait_until("no helper left", std::time::Duration::from_secs(10), || {
                reqmod_linux::live_helpers() == 0
            });
        })
        .unwrap()
        .join()
        .unwrap_or_else(|e| std::panic::resume_unwind(e));
}
