//! [`ModprobePath`]: the helper-path setting, `/proc/sys/kernel/modprobe` (SPEC §5).

use core::fmt;

/// The kernel's `KMOD_PATH_LEN`: the path buffer including its NUL, so a path
/// holds at most 255 bytes.
pub const KMOD_PATH_LEN: usize = 256;

/// The default helper path, the kernel's `CONFIG_MODPROBE_PATH`.
pub const DEFAULT_MODPROBE_PATH: &[u8] = &DEFAULT_PATH;

const DEFAULT_PATH: [u8; 14] = *b"/sbin/modprobe";

/// The helper path: arbitrary bytes (a Linux path need not be UTF-8), at most
/// `KMOD_PATH_LEN - 1` of them. Empty means autoloading is disabled.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ModprobePath {
    bytes: heapless::Vec<u8, { KMOD_PATH_LEN - 1 }, u8>,
}

impl ModprobePath {
    /// `/sbin/modprobe`.
    pub const fn default_path() -> Self {
        ModprobePath {
            bytes: heapless::Vec::from_array(DEFAULT_PATH),
        }
    }

    /// The empty path (autoloading disabled).
    pub const fn empty() -> Self {
        ModprobePath {
            bytes: heapless::Vec::new(),
        }
    }

    /// What a write of `input` to the sysctl stores (`proc_dostring`): the
    /// bytes up to the first NUL or newline, at most 255 of them; longer input
    /// is cut silently. An empty input or a bare newline gives the empty path.
    pub fn from_sysctl_write(input: &[u8]) -> Self {
        let end = input
            .iter()
            .position(|&b| b == 0 || b == b'\n')
            .unwrap_or(input.len())
            .min(KMOD_PATH_LEN - 1);
        let mut bytes = heapless::Vec::new();
        // Cannot fail: `end` is at most the capacity.
        let _ = bytes.extend_from_slice(input.get(..end).unwrap_or_default());
        ModprobePath { bytes }
    }

    /// The path's bytes.
    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes
    }

    /// Whether the path is empty (autoloading disabled, SPEC §2 step 2).
    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Makes this a copy of `other`, copying only its bytes.
    pub(crate) fn copy_from(&mut self, other: &Self) {
        self.bytes.clear();
        // Cannot fail: `other` fits the same capacity.
        let _ = self.bytes.extend_from_slice(&other.bytes);
    }

    /// What reading the sysctl returns: the path followed by a newline.
    pub fn sysctl_read(&self) -> heapless::Vec<u8, KMOD_PATH_LEN, u16> {
        let mut out = heapless::Vec::new();
        // Cannot fail: 255 bytes + newline fit in 256.
        let _ = out.extend_from_slice(&self.bytes);
        let _ = out.push(b'\n');
        out
    }
}

impl AsRef<[u8]> for ModprobePath {
    fn as_ref(&self) -> &[u8] {
        self.as_bytes()
    }
}

impl PartialEq<[u8]> for ModprobePath {
    fn eq(&self, other: &[u8]) -> bool {
        self.as_bytes() == other
    }
}

impl PartialEq<&[u8]> for ModprobePath {
    fn eq(&self, other: &&[u8]) -> bool {
        self.as_bytes() == *other
    }
}

impl<const N: usize> PartialEq<[u8; N]> for ModprobePath {
    fn eq(&self, other: &[u8; N]) -> bool {
        self.as_bytes() == other
    }
}

impl<const N: usize> PartialEq<&[u8; N]> for ModprobePath {
    fn eq(&self, other: &&[u8; N]) -> bool {
        self.as_bytes() == *other
    }
}

impl PartialEq<str> for ModprobePath {
    fn eq(&self, other: &str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl PartialEq<&str> for ModprobePath {
    fn eq(&self, other: &&str) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Default for ModprobePath {
    fn default() -> Self {
        Self::default_path()
    }
}

impl fmt::Debug for ModprobePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ModprobePath(\"{}\")", self.as_bytes().escape_ascii())
    }
}

impl fmt::Display for ModprobePath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_bytes().escape_ascii())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ModprobePath {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=[u8]:a}", self.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn write(input: &[u8]) -> ModprobePath {
        ModprobePath::from_sysctl_write(input)
    }

    #[test]
    fn default_is_sbin_modprobe() {
        assert_eq!(ModprobePath::default().as_bytes(), b"/sbin/modprobe");
    }

    #[test]
    fn compares_with_bytes_and_strings() {
        let p = ModprobePath::default();
        assert_eq!(p, b"/sbin/modprobe");
        assert_eq!(p, &b"/sbin/modprobe"[..]);
        assert_eq!(p, "/sbin/modprobe");
        assert_ne!(p, "/sbin/modprobe\n");
        assert_eq!(p.as_ref(), b"/sbin/modprobe");
    }

    #[test]
    fn newline_ends_the_write() {
        assert_eq!(write(b"/usr/bin/kmod\n").as_bytes(), b"/usr/bin/kmod");
        assert_eq!(write(b"/a\n/b").as_bytes(), b"/a");
    }

    #[test]
    fn nul_ends_the_write() {
        assert_eq!(write(b"/a\0/b").as_bytes(), b"/a");
    }

    #[test]
    fn long_writes_are_cut_at_255_bytes() {
        let long = [b'x'; 300];
        assert_eq!(write(&long).as_bytes(), &long[..255]);
        assert_eq!(write(&long[..255]).as_bytes().len(), 255);
        assert_eq!(write(&long[..254]).as_bytes().len(), 254);
    }

    #[test]
    fn empty_and_bare_newline_empty_the_path() {
        assert!(write(b"").is_empty());
        assert!(write(b"\n").is_empty());
        assert!(write(b"\0/sbin/modprobe").is_empty());
    }

    #[test]
    fn reading_appends_a_newline() {
        assert_eq!(&write(b"/x").sysctl_read()[..], b"/x\n");
        assert_eq!(&write(b"").sysctl_read()[..], b"\n");
        assert_eq!(write(&[b'y'; 400]).sysctl_read().len(), 256);
    }

    #[test]
    fn non_utf8_bytes_are_kept() {
        assert_eq!(write(&[0xff, 0xfe, b'/']).as_bytes(), &[0xff, 0xfe, b'/']);
    }
}
