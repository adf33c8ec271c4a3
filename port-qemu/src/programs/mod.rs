//! The program table: what a helper path can name.
//!
//! A helper run ([`crate::platform`]) looks its path up here; a path that is
//! not in the table fails like a missing file (`-ENOENT`). Today every entry is
//! [`Image::Builtin`], an async function run as a kernel task; an OS with user
//! mode would add an ELF image variant (load, map, enter U-mode) and nothing
//! above this table would change.
//!
//! | path | program |
//! | --- | --- |
//! | `/sbin/modprobe` | [`modprobe`]: the built-in modprobe |
//! | `/sbin/modprobe-slow` | [`test_programs::slow`]: sleeps, then exits 0 |
//! | `/sbin/modprobe-fail` | [`test_programs::fail`]: exits 1 at once |
//! | `/sbin/modprobe-loop` | [`test_programs::looping`]: requests the next name through itself |
//! | `/sbin/modprobe-env` | [`test_programs::check_env`]: exits 0 iff argv/envp are SPEC §4's |

pub mod modprobe;
pub mod test_programs;

use alloc::vec::Vec;

use reqmod::HelperCommand;

use crate::platform::{BoxFuture, Requester};

/// What a program is given: the SPEC §4 argv and envp, owned, and the
/// autoloader that started it (for nested `request_module` calls).
#[derive(Debug)]
pub struct Invocation {
    /// `[path, "-q", "--", name]`.
    pub argv: Vec<Vec<u8>>,
    /// `["HOME=/", "TERM=linux", "PATH=/sbin:/usr/sbin:/bin:/usr/bin"]`.
    pub envp: Vec<Vec<u8>>,
    /// The autoloader whose helper this is.
    pub kmod: &'static dyn Requester,
}

impl Invocation {
    /// Copies `cmd`'s argv and envp (the helper outlives the caller's buffers).
    pub fn new(cmd: &HelperCommand, kmod: &'static dyn Requester) -> Self {
        Invocation {
            argv: cmd.argv().iter().map(|a| a.to_vec()).collect(),
            envp: cmd.envp().iter().map(|e| e.to_vec()).collect(),
            kmod,
        }
    }

    /// `argv[i]` as text (lossy: invalid UTF-8 gives `""`).
    pub fn arg(&self, i: usize) -> Option<&str> {
        self.argv
            .get(i)
            .map(|a| core::str::from_utf8(a).unwrap_or(""))
    }
}

/// A built-in program's entry: takes its invocation, returns its exit code.
pub type BuiltinMain = fn(Invocation) -> BoxFuture<u8>;

/// How a program is stored.
#[derive(Debug, Clone, Copy)]
#[non_exhaustive]
pub enum Image {
    /// Code linked into the kernel, run as a task.
    Builtin(BuiltinMain),
}

/// One entry of the table.
#[derive(Debug)]
pub struct Program {
    /// The absolute path a helper names.
    pub path: &'static str,
    /// What runs.
    pub image: Image,
}

impl Program {
    /// Starts the program; the future resolves to its exit code.
    pub fn exec(&'static self, invocation: Invocation) -> BoxFuture<u8> {
        match self.image {
            Image::Builtin(main) => main(invocation),
        }
    }
}

/// The programs of this OS.
pub static PROGRAMS: &[Program] = &[
    Program {
        path: "/sbin/modprobe",
        image: Image::Builtin(modprobe::main),
    },
    Program {
        path: "/sbin/modprobe-slow",
        image: Image::Builtin(test_programs::slow),
    },
    Program {
        path: "/sbin/modprobe-fail",
        image: Image::Builtin(test_programs::fail),
    },
    Program {
        path: "/sbin/modprobe-loop",
        image: Image::Builtin(test_programs::looping),
    },
    Program {
        path: "/sbin/modprobe-env",
        image: Image::Builtin(test_programs::check_env),
    },
];

/// The program at `path` (byte-exact, like a file system lookup).
pub fn lookup(path: &[u8]) -> Option<&'static Program> {
    PROGRAMS.iter().find(|p| p.path.as_bytes() == path)
}
