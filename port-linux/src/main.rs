//! `reqmod`: the kernel's module autoloader from the command line. See
//! `reqmod request --help` and [`reqmod_linux::cli`].

fn main() -> std::process::ExitCode {
    reqmod_linux::cli::main()
}
