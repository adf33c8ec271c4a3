//! [`Errno`]: the kernel's error numbers.

use core::fmt;

/// A positive Linux error number (`ENOENT` is 2).
///
/// The kernel returns errors as negative integers; reqmod keeps them positive
/// inside an [`Err`] and turns them negative only in
/// [`KernelRet::kernel_ret`](crate::KernelRet::kernel_ret). Values other than the
/// named constants are carried through unchanged (SPEC §6).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct Errno(i32);

macro_rules! errnos {
    ($($name:ident = $value:literal, $text:literal;)*) => {
        impl Errno {
            $(
                #[doc = concat!("`", stringify!($name), "` (", stringify!($value), "): ", $text, ".")]
                pub const $name: Errno = Errno($value);
            )*

            /// The symbolic name (`"ENOENT"`), or `None` for a number reqmod does not name.
            pub const fn name(self) -> Option<&'static str> {
                match self.0 {
                    $($value => Some(stringify!($name)),)*
                    _ => None,
                }
            }

            /// A short description, as `strerror` would give.
            pub const fn description(self) -> &'static str {
                match self.0 {
                    $($value => $text,)*
                    _ => "unknown error",
                }
            }
        }
    };
}

errnos! {
    EPERM = 1, "operation not permitted";
    ENOENT = 2, "no such file or directory";
    EINTR = 4, "interrupted system call";
    ENOEXEC = 8, "exec format error";
    EAGAIN = 11, "resource temporarily unavailable";
    ENOMEM = 12, "cannot allocate memory";
    EACCES = 13, "permission denied";
    EBUSY = 16, "device or resource busy";
    EINVAL = 22, "invalid argument";
    ENAMETOOLONG = 36, "file name too long";
    ELOOP = 40, "too many levels of symbolic links";
    ETIME = 62, "timer expired";
    ERESTARTSYS = 512, "interrupted, restart the call";
}

impl Errno {
    /// Wraps a raw error number. A negative number (the kernel's return
    /// convention) is accepted too and made positive; `i32::MIN` saturates.
    pub const fn from_raw(raw: i32) -> Self {
        Errno(raw.saturating_abs())
    }

    /// The positive error number.
    pub const fn raw(self) -> i32 {
        self.0
    }
}

impl fmt::Debug for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "Errno({})", self.0),
        }
    }
}

impl fmt::Display for Errno {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => write!(f, "{name} ({}): {}", self.0, self.description()),
            None => write!(f, "errno {}", self.0),
        }
    }
}

impl core::error::Error for Errno {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_match_linux() {
        let table = [
            (Errno::EPERM, 1),
            (Errno::ENOENT, 2),
            (Errno::EINTR, 4),
            (Errno::ENOEXEC, 8),
            (Errno::EAGAIN, 11),
            (Errno::ENOMEM, 12),
            (Errno::EACCES, 13),
            (Errno::EBUSY, 16),
            (Errno::EINVAL, 22),
            (Errno::ENAMETOOLONG, 36),
            (Errno::ELOOP, 40),
            (Errno::ETIME, 62),
            (Errno::ERESTARTSYS, 512),
        ];
        for (errno, raw) in table {
            assert_eq!(errno.raw(), raw);
            assert_eq!(Errno::from_raw(raw), errno);
            assert_eq!(Errno::from_raw(-raw), errno);
        }
    }

    #[test]
    fn unknown_numbers_pass_through() {
        let e = Errno::from_raw(-95);
        assert_eq!(e.raw(), 95);
        assert_eq!(e.name(), None);
        assert_eq!(Errno::from_raw(i32::MIN).raw(), i32::MAX);
    }

    #[test]
    fn display_names_the_error() {
        extern crate std;
        use std::format;
        assert_eq!(format!("{:?}", Errno::ETIME), "ETIME");
        assert_eq!(
            format!("{}", Errno::ENOENT),
            "ENOENT (2): no such file or directory"
        );
        assert_eq!(format!("{:?}", Errno::from_raw(95)), "Errno(95)");
    }
}
