//! Inter-processor interrupts through SBI.

use super::{cpu, sbi};

/// Sends a software interrupt to every hart in `mask` (bit n = hart n).
pub fn send(mask: usize) {
    if mask != 0
        && let Err(e) = sbi::send_ipi(mask)
    {
        defmt::error!("sbi send_ipi({=usize:#x}) failed: {}", mask, e);
    }
}

/// Called by the trap handler on a software interrupt.
pub(super) fn acknowledge() {
    cpu::clear_soft_pending();
}
