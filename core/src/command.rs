//! [`HelperCommand`]: the owned argv and envp of one helper run (SPEC §2 step 8, §4).

use core::fmt;

use crate::{ModprobePath, ModuleName};

/// The environment every helper gets, exactly (SPEC §4): nothing of the
/// caller's environment leaks in.
pub const HELPER_ENVP: [&str; 3] = ["HOME=/", "TERM=linux", "PATH=/sbin:/usr/sbin:/bin:/usr/bin"];

/// How long [`Platform::run_helper`](crate::Platform::run_helper) waits
/// (the kernel's `UMH_*` wait modes). Module requests are always
/// `UMH_KILLABLE` as well: a waiting caller may be cancelled, the helper is not.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub enum UmhWait {
    /// `UMH_NO_WAIT`: start the helper and return `Ok(SUCCESS)` at once.
    NoWait,
    /// `UMH_WAIT_EXEC`: return once the program has been executed: success, or
    /// the errno of the failed exec. Used by `request_module_nowait`.
    Exec,
    /// `UMH_WAIT_PROC`: return the helper's wait status once it has exited.
    /// Used by `request_module`.
    Proc,
}

impl UmhWait {
    /// The kernel's `UMH_KILLABLE` flag.
    pub const UMH_KILLABLE: u32 = 0x04;

    /// The kernel's flag word for this mode as kmod passes it (with `UMH_KILLABLE`).
    pub const fn kernel_flags(self) -> u32 {
        let mode = match self {
            UmhWait::NoWait => 0x00,
            UmhWait::Exec => 0x01,
            UmhWait::Proc => 0x02,
        };
        mode | Self::UMH_KILLABLE
    }
}

/// One helper invocation, owned, so a cancelled caller cannot free it early:
/// `argv = [path, "-q", "--", name]` and the fixed [`HELPER_ENVP`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct HelperCommand {
    path: ModprobePath,
    name: ModuleName,
}

impl HelperCommand {
    /// The command kmod runs to load `name` with the helper at `path`.
    pub fn modprobe(path: ModprobePath, name: ModuleName) -> Self {
        HelperCommand { path, name }
    }

    /// Sets the path to a copy of `path` in place (copies its bytes only,
    /// not a whole `KMOD_PATH_LEN` buffer).
    pub(crate) fn set_path(&mut self, path: &ModprobePath) {
        self.path.copy_from(path);
    }

    /// The program to execute (`argv[0]` too). Arbitrary bytes, never empty when
    /// it comes from a request (an empty path fails before any helper runs).
    pub fn path(&self) -> &[u8] {
        self.path.as_bytes()
    }

    /// The module name (`argv[3]`).
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// `[path, "-q", "--", name]`. The `--` makes a name that starts with `-`
    /// a name, not an option.
    pub fn argv(&self) -> [&[u8]; 4] {
        [self.path(), b"-q", b"--", self.name.as_bytes()]
    }

    /// `["HOME=/", "TERM=linux", "PATH=/sbin:/usr/sbin:/bin:/usr/bin"]`.
    pub fn envp(&self) -> [&'static [u8]; 3] {
        HELPER_ENVP.map(str::as_bytes)
    }
}

impl fmt::Debug for HelperCommand {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HelperCommand")
            .field("path", &self.path)
            .field("name", &self.name)
            .finish()
    }
}

impl fmt::Display for HelperCommand {
    /// `/sbin/modprobe -q -- name`
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} -q -- {}", self.path, self.name)
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for HelperCommand {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{} -q -- {}", self.path, self.name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv_and_envp_are_the_kernels() {
        let cmd =
            HelperCommand::modprobe(ModprobePath::default(), ModuleName::new("-x y").unwrap());
        assert_eq!(cmd.argv(), [&b"/sbin/modprobe"[..], b"-q", b"--", b"-x y"]);
        assert_eq!(
            cmd.envp(),
            [
                &b"HOME=/"[..],
                b"TERM=linux",
                b"PATH=/sbin:/usr/sbin:/bin:/usr/bin"
            ]
        );
    }

    #[test]
    fn wait_flags_are_killable() {
        assert_eq!(UmhWait::NoWait.kernel_flags(), 0x04);
        assert_eq!(UmhWait::Exec.kernel_flags(), 0x05);
        assert_eq!(UmhWait::Proc.kernel_flags(), 0x06);
    }
}
