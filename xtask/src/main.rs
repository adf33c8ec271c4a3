//! `cargo xtask demo | test | bench | qemu …`: project automation.
//!
//! Only `std`; every step prints the command it runs.

mod qemu;

use std::process::ExitCode;

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("qemu") => qemu::main(args.get(1..).unwrap_or_default()),
        _ => {
            eprintln!("usage: cargo xtask <demo|test|bench|qemu …>");
            ExitCode::from(2)
        }
    }
}
