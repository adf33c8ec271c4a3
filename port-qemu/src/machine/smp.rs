//! Starting the secondary harts through SBI HSM.

use super::{boot, sbi};

/// Starts every hart in `harts` except `boot_hart` at `_start_secondary`.
/// Returns how many were started.
pub fn start_secondaries(harts: &[usize], boot_hart: usize) -> usize {
    let mut started = 0;
    for &hart in harts.iter().filter(|&&h| h != boot_hart) {
        match sbi::hart_start(hart, boot::secondary_entry(), 0) {
            Ok(()) => started += 1,
            Err(e) => defmt::error!("hart_start({}) failed: {}", hart, e),
        }
    }
    started
}
