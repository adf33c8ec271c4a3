//! [`ModuleName`]: bounded module-name formatting (SPEC §2 step 3).

use core::fmt::{self, Write as _};

use crate::Errno;

/// The kernel's `MODULE_NAME_LEN`: a module-name buffer including its
/// terminating NUL, `64 - sizeof(unsigned long)`. 56 on 64-bit targets, 60 on
/// 32-bit ones, so the longest name is `MODULE_NAME_LEN - 1` bytes.
pub const MODULE_NAME_LEN: usize = 64 - core::mem::size_of::<usize>();

/// A formatted module name of at most `MODULE_NAME_LEN - 1` bytes.
///
/// Built by [`ModuleName::format`] the way the kernel builds its name with
/// `vsnprintf`: the whole formatted length decides (a name that would need
/// `MODULE_NAME_LEN` bytes or more is refused with `ENAMETOOLONG`), and, as in
/// a C string, the name ends at the first NUL byte if the formatted text holds one.
/// The empty name is legal.
#[derive(Clone, PartialEq, Eq, Hash, Default)]
pub struct ModuleName {
    text: heapless::String<{ MODULE_NAME_LEN - 1 }, u8>,
}

impl ModuleName {
    /// The empty name.
    pub const fn empty() -> Self {
        ModuleName {
            text: heapless::String::new(),
        }
    }

    /// Formats `args`; `Err(ENAMETOOLONG)` if the full text is `MODULE_NAME_LEN`
    /// bytes or longer. Never fails otherwise (a `Display` impl that returns an
    /// error also gives `ENAMETOOLONG`'s sibling `EINVAL`).
    pub fn format(args: fmt::Arguments<'_>) -> Result<Self, Errno> {
        let mut writer = Writer {
            name: ModuleName::empty(),
            total: 0,
        };
        if writer.write_fmt(args).is_err() {
            return Err(Errno::EINVAL);
        }
        if writer.total >= MODULE_NAME_LEN {
            return Err(Errno::ENAMETOOLONG);
        }
        // Every byte fitted (`total < MODULE_NAME_LEN`); as in a C string,
        // the name ends at the first NUL. One scan of the whole name here is
        // cheaper than one `find` per formatted piece.
        let mut name = writer.name;
        if let Some(nul) = name.as_bytes().iter().position(|&b| b == 0) {
            name.text.truncate(nul);
        }
        Ok(name)
    }

    /// Copies `name` (the same rules as [`ModuleName::format`]).
    pub fn new(name: &str) -> Result<Self, Errno> {
        Self::format(format_args!("{name}"))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }

    /// The name's bytes (no terminating NUL).
    pub fn as_bytes(&self) -> &[u8] {
        self.text.as_bytes()
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.text.len()
    }

    /// Whether this is the empty name.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }
}

/// Counts every byte like `vsnprintf` does and keeps them while they fit
/// (the caller cuts the name at its first NUL).
struct Writer {
    name: ModuleName,
    total: usize,
}

impl fmt::Write for Writer {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.total = self.total.saturating_add(s.len());
        if self.total >= MODULE_NAME_LEN {
            // Too long: the result is ENAMETOOLONG whatever comes next.
            return Ok(());
        }
        // Cannot fail: total < MODULE_NAME_LEN bounds what was kept so far.
        self.name.text.push_str(s).map_err(|_| fmt::Error)
    }
}

impl fmt::Debug for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for ModuleName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(feature = "defmt")]
impl defmt::Format for ModuleName {
    fn format(&self, f: defmt::Formatter<'_>) {
        defmt::write!(f, "{=str}", self.as_str())
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use std::string::String;

    #[test]
    fn longest_name_is_module_name_len_minus_one() {
        let ok = "a".repeat(MODULE_NAME_LEN - 1);
        assert_eq!(
            ModuleName::new(&ok).map(|n| n.len()),
            Ok(MODULE_NAME_LEN - 1)
        );
        let too_long = "a".repeat(MODULE_NAME_LEN);
        assert_eq!(ModuleName::new(&too_long), Err(Errno::ENAMETOOLONG));
    }

    #[cfg(target_pointer_width = "64")]
    #[test]
    fn fifty_five_bytes_pass_fifty_six_fail_on_64_bit() {
        assert_eq!(MODULE_NAME_LEN, 56);
        assert!(ModuleName::new(&"x".repeat(55)).is_ok());
        assert_eq!(ModuleName::new(&"x".repeat(56)), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn formatting_pieces_count_in_total() {
        let half = "b".repeat(30);
        assert_eq!(
            ModuleName::format(format_args!("{half}-{half}")),
            Err(Errno::ENAMETOOLONG)
        );
        let n = ModuleName::format(format_args!("fs-{}", "ext4")).unwrap();
        assert_eq!(n.as_str(), "fs-ext4");
    }

    #[test]
    fn empty_name_is_legal() {
        assert_eq!(ModuleName::new("").unwrap().as_str(), "");
    }

    #[test]
    fn name_ends_at_nul_but_length_counts_everything() {
        assert_eq!(ModuleName::new("ab\0cd").unwrap().as_str(), "ab");
        let mut long = String::from("a\0");
        long.push_str(&"z".repeat(MODULE_NAME_LEN));
        assert_eq!(ModuleName::new(&long), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn multibyte_names_are_kept_whole() {
        // 27 two-byte characters = 54 bytes: fits. 28 = 56 bytes: too long.
        assert_eq!(ModuleName::new(&"é".repeat(27)).unwrap().len(), 54);
        assert_eq!(ModuleName::new(&"é".repeat(28)), Err(Errno::ENAMETOOLONG));
    }

    #[test]
    fn failing_display_is_einval() {
        struct Bad;
        impl fmt::Display for Bad {
            fn fmt(&self, _: &mut fmt::Formatter<'_>) -> fmt::Result {
                Err(fmt::Error)
            }
        }
        assert_eq!(
            ModuleName::format(format_args!("{Bad}")),
            Err(Errno::EINVAL)
        );
    }
}
