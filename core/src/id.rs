//! [`RequestId`]: the identity of one request, in events, in helper commands
//! and in the parent a platform reports.

use core::fmt;

/// A request's number within its [`Kmod`](crate::Kmod): 1 for the first
/// request, then counting up; never reused. A helper run carries its request's
/// id ([`HelperCommand::request`](crate::HelperCommand::request)), so a
/// platform can tell which request a helper process (or a module init it
/// triggered) works for, and report it as the parent of the requests made
/// there ([`Platform::parent_request`](crate::Platform::parent_request)).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[cfg_attr(feature = "defmt", derive(defmt::Format))]
pub struct RequestId(u64);

impl RequestId {
    /// The id numbered `n` (as [`get`](Self::get) returns it).
    pub const fn new(n: u64) -> Self {
        RequestId(n)
    }

    /// The number.
    pub const fn get(self) -> u64 {
        self.0
    }
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", self.0)
    }
}
