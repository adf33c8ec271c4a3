//! The `reqmod` CLI under test (identical to reqmod-linux's `reqmod` binary).

fn main() -> std::process::ExitCode {
    reqmod_linux::cli::main()
}
