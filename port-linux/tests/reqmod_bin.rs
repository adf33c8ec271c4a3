//! Smoke test of the real `reqmod` binary (the full CLI suite is in the
//! workspace's `tests/` crate, which runs the same `cli::main`).

use std::process::Command;

const REQMOD: &str = env!("CARGO_BIN_EXE_reqmod");

#[test]
fn reqmod_binary_requests_and_reports() {
    let output = Command::new(REQMOD)
        .args(["request", "--modprobe", "/bin/false", "fs-ext4", "--", "-x"])
        .output()
        .expect("run reqmod");
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "256\tfs-ext4\n256\t-x\n"
    );

    let output = Command::new(REQMOD)
        .args(["request", "--modprobe", "/bin/true", "fs-ext4"])
        .output()
        .expect("run reqmod");
    assert_eq!(output.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&output.stdout), "0\tfs-ext4\n");

    let output = Command::new(REQMOD)
        .args(["request", "--nope"])
        .output()
        .expect("run reqmod");
    assert_eq!(output.status.code(), Some(2));
    assert_eq!(String::from_utf8_lossy(&output.stderr).lines().count(), 1);
}
