//! `cargo xtask bench`: overhead, storm, footprint and SMP-scaling benchmarks.

use std::process::ExitCode;

/// `cargo xtask bench …`
pub fn main(_args: &[String]) -> ExitCode {
    eprintln!("xtask bench: not written yet");
    ExitCode::FAILURE
}
