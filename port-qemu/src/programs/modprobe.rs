//! The built-in `modprobe`.
//!
//! Reads its argv like the real one: options first (`-q`/`--quiet`,
//! `-v`/`--verbose`, `-b`/`--use-blacklist`), `--` ends the options, then the
//! module name; words after the name are module parameters (accepted, unused).
//! It resolves the name through the module table ([`crate::modules`]): the
//! module's own name (`-` and `_` are the same), else the first alias pattern
//! that matches (`fs-ext4`, `virtio:d00000004v*`…). It loads the module's
//! dependencies first, then the module, running each init once.
//!
//! Exit status: 0 when the module is loaded (also when it already was); 1 when
//! nothing matches, an init fails, or the command line is wrong.

use alloc::boxed::Box;

use super::Invocation;
use crate::modules::{self, LoadError};
use crate::platform::BoxFuture;

/// What the command line asked for.
#[derive(Debug, PartialEq, Eq)]
pub struct Args<'a> {
    /// `-q`: no message when the module is not found.
    pub quiet: bool,
    /// `-v`: say what is loaded.
    pub verbose: bool,
    /// The module name or alias.
    pub name: &'a str,
    /// Words after the name (module parameters).
    pub params: usize,
}

/// Parses `argv[1..]`.
pub fn parse_args<'a>(args: impl IntoIterator<Item = &'a str>) -> Result<Args<'a>, &'a str> {
    let mut quiet = false;
    let mut verbose = false;
    let mut options_done = false;
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        if !options_done && arg.starts_with('-') && arg.len() > 1 {
            match arg {
                "--" => options_done = true,
                "-q" | "--quiet" => quiet = true,
                "-v" | "--verbose" => verbose = true,
                "-b" | "--use-blacklist" => {}
                unknown => return Err(unknown),
            }
            continue;
        }
        return Ok(Args {
            quiet,
            verbose,
            name: arg,
            params: it.count(),
        });
    }
    Err("missing module name")
}

/// `/sbin/modprobe`'s entry point.
pub fn main(inv: Invocation) -> BoxFuture<u8> {
    Box::pin(async move {
        let words: alloc::vec::Vec<&str> = (1..inv.argv.len()).filter_map(|i| inv.arg(i)).collect();
        let args = match parse_args(words.iter().copied()) {
            Ok(a) => a,
            Err(bad) => {
                defmt::warn!("modprobe: bad command line ({=str})", bad);
                return 1;
            }
        };
        match modules::load_by_name(args.name, inv.kmod).await {
            Ok(loaded) => {
                if args.verbose {
                    defmt::info!("modprobe: {=str} -> {=str}", args.name, loaded);
                }
                0
            }
            Err(LoadError::NotFound) => {
                if !args.quiet {
                    defmt::warn!("modprobe: FATAL: Module {=str} not found", args.name);
                }
                1
            }
            Err(LoadError::InitFailed { module, error }) => {
                defmt::warn!(
                    "modprobe: ERROR: could not insert '{=str}': error {}",
                    module,
                    error
                );
                1
            }
            Err(LoadError::MissingDependency { module, dep }) => {
                defmt::warn!(
                    "modprobe: FATAL: {=str} needs unknown module {=str}",
                    module,
                    dep
                );
                1
            }
        }
    })
}
