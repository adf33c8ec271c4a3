//! [`WaitStatus`]: what a helper's exit looks like, and the kernel's integer.

use core::fmt;

use crate::Errno;

/// The raw wait status of a helper, as `waitpid(2)` reports it and as the
/// kernel's `request_module()` returns it: exit code in bits 8..15, terminating
/// signal in bits 0..6.
///
/// `WaitStatus::SUCCESS` (0) is the only success. A helper that exits 1 (modprobe's
/// "module not found") gives 256; one killed by `SIGKILL` gives 9.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct WaitStatus(i32);

impl WaitStatus {
    /// Exit code 0: the helper ran and succeeded (also what `UMH_WAIT_EXEC` and
    /// `UMH_NO_WAIT` return once the helper started).
    pub const SUCCESS: WaitStatus = WaitStatus(0);

    /// The status of a helper that exited with `code`.
    pub const fn exited(code: u8) -> Self {
        WaitStatus((code as i32) << 8)
    }

    /// The status of a helper terminated by signal `signal` (only the low 7 bits count).
    pub const fn signaled(signal: u8) -> Self {
        WaitStatus((signal & 0x7f) as i32)
    }

    /// Wraps a raw status as the platform reports it (`waitpid`'s `wstatus`).
    pub const fn from_raw(raw: i32) -> Self {
        WaitStatus(raw)
    }

    /// The raw status: the positive integer the kernel would return.
    pub const fn raw(self) -> i32 {
        self.0
    }

    /// The exit code if the helper exited normally (`WIFEXITED`).
    pub const fn exit_code(self) -> Option<u8> {
        if self.0 & 0x7f == 0 {
            Some(((self.0 >> 8) & 0xff) as u8)
        } else {
            None
        }
    }

    /// The terminating signal if the helper was killed by one (`WIFSIGNALED`).
    pub const fn signal(self) -> Option<u8> {
        let sig = self.0 & 0x7f;
        if sig != 0 && sig != 0x7f {
            Some(sig as u8)
        } else {
            None
        }
    }

    /// Whether this is the kernel's success value 0.
    pub const fn is_success(self) -> bool {
        self.0 == 0
    }
}

impl fmt::Debug for WaitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.exit_code(), self.signal()) {
            (Some(code), _) => write!(f, "WaitStatus(exit {code})"),
            (None, Some(sig)) => write!(f, "WaitStatus(signal {sig})"),
            (None, None) => write!(f, "WaitStatus({:#x})", self.0),
        }
    }
}

impl fmt::Display for WaitStatus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.exit_code(), self.signal()) {
            (Some(code), _) => write!(f, "exited with status {code}"),
            (None, Some(sig)) => write!(f, "killed by signal {sig}"),
            (None, None) => write!(f, "wait status {:#x}", self.0),
        }
    }
}

/// The outcome of one request: the helper's wait status, or an error number.
pub type Outcome = Result<WaitStatus, Errno>;

/// The kernel's `int` return convention for a request (SPEC §2): `0` success, a
/// negative errno, or a positive raw wait status.
pub trait KernelRet {
    /// `Ok(status)` is `status.raw()` (exit 1 gives 256); `Err(e)` is `-e.raw()`.
    fn kernel_ret(&self) -> i32;
}

impl KernelRet for Outcome {
    fn kernel_ret(&self) -> i32 {
        kernel_ret(*self)
    }
}

/// [`KernelRet::kernel_ret`] as a `const fn`.
pub const fn kernel_ret(outcome: Outcome) -> i32 {
    match outcome {
        Ok(status) => status.raw(),
        Err(errno) => -errno.raw(),
    }
}

/// The inverse of [`kernel_ret`]: a negative integer is an errno, anything else
/// a wait status.
pub const fn from_kernel_ret(ret: i32) -> Outcome {
    if ret < 0 {
        Err(Errno::from_raw(ret))
    } else {
        Ok(WaitStatus::from_raw(ret))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exit_one_is_256() {
        let s = WaitStatus::exited(1);
        assert_eq!(s.raw(), 256);
        assert_eq!(s.exit_code(), Some(1));
        assert_eq!(s.signal(), None);
        assert!(!s.is_success());
        assert_eq!(Ok::<_, Errno>(s).kernel_ret(), 256);
    }

    #[test]
    fn killed_by_sigkill_is_9() {
        let s = WaitStatus::signaled(9);
        assert_eq!(s.raw(), 9);
        assert_eq!(s.signal(), Some(9));
        assert_eq!(s.exit_code(), None);
    }

    #[test]
    fn errors_are_negative() {
        assert_eq!(Err::<WaitStatus, _>(Errno::ETIME).kernel_ret(), -62);
        assert_eq!(Err::<WaitStatus, _>(Errno::ERESTARTSYS).kernel_ret(), -512);
        assert_eq!(kernel_ret(Ok(WaitStatus::SUCCESS)), 0);
    }

    #[test]
    fn round_trip() {
        for ret in [-512, -62, -2, 0, 9, 256, 0xff00] {
            assert_eq!(kernel_ret(from_kernel_ret(ret)), ret);
        }
    }
}
