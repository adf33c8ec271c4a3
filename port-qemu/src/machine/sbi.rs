//! The SBI calls this kernel makes (OpenSBI, `-bios default`).

use core::arch::asm;

/// An SBI error code (negative on failure).
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct SbiError(pub isize);

const EID_TIME: usize = 0x5449_4D45;
const EID_IPI: usize = 0x0073_5049;
const EID_HSM: usize = 0x0048_534D;

#[inline(always)]
fn call(eid: usize, fid: usize, a0: usize, a1: usize, a2: usize) -> Result<usize, SbiError> {
    let err: isize;
    let val: usize;
    // SAFETY: an SBI call per the SBI v0.2+ calling convention; OpenSBI
    // preserves every register but a0/a1, and touches no memory of ours.
    unsafe {
        asm!(
            "ecall",
            inlateout("a0") a0 => err,
            inlateout("a1") a1 => val,
            in("a2") a2,
            in("a6") fid,
            in("a7") eid,
            options(nostack),
        );
    }
    if err == 0 {
        Ok(val)
    } else {
        Err(SbiError(err))
    }
}

/// `sbi_set_timer`: raise this hart's timer interrupt once `time >= stime`
/// (and clear a pending one).
pub fn set_timer(stime: u64) {
    // The TIME extension cannot fail for a valid hart.
    let _ = call(EID_TIME, 0, stime as usize, 0, 0);
}

/// `sbi_send_ipi(hart_mask, 0)`: a software interrupt to every hart in `mask`.
pub fn send_ipi(mask: usize) -> Result<(), SbiError> {
    call(EID_IPI, 0, mask, 0, 0).map(|_| ())
}

/// `sbi_hart_start(hartid, start_addr, opaque)`.
pub fn hart_start(hart: usize, start_addr: usize, opaque: usize) -> Result<(), SbiError> {
    call(EID_HSM, 0, hart, start_addr, opaque).map(|_| ())
}
