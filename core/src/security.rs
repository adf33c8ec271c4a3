//! [`Security`]: the LSM hook `security_kernel_module_request` (SPEC §2 step 4).

use crate::Errno;

/// Decides whether a module may be requested, like the kernel's LSM hook
/// `security_kernel_module_request(name)`. It runs after the name is formatted
/// and before a slot is taken; an `Err` is returned to the caller as is, and
/// nothing is spawned.
///
/// Any `Fn(&str) -> Result<(), Errno>` is a `Security` hook, so a plain `fn`
/// works in a `static`:
///
/// ```
/// use reqmod::{Errno, Security};
/// fn no_net(name: &str) -> Result<(), Errno> {
///     if name.starts_with("net-") { Err(Errno::EPERM) } else { Ok(()) }
/// }
/// assert_eq!(no_net.kernel_module_request("net-pf-10"), Err(Errno::EPERM));
/// ```
pub trait Security {
    /// `Ok(())` lets the request go on.
    fn kernel_module_request(&self, name: &str) -> Result<(), Errno>;
}

/// The default hook: every request is allowed (no LSM loaded).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct AllowAll;

impl Security for AllowAll {
    fn kernel_module_request(&self, _name: &str) -> Result<(), Errno> {
        Ok(())
    }
}

impl<F: Fn(&str) -> Result<(), Errno>> Security for F {
    fn kernel_module_request(&self, name: &str) -> Result<(), Errno> {
        self(name)
    }
}
