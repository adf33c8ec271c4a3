//! The trap vector. Interrupts only acknowledge their source and count
//! themselves; the executor notices what changed when `wfi` returns. Any
//! exception is a kernel bug: it is logged and the machine exits with failure.

use core::arch::global_asm;
use core::sync::atomic::{AtomicU64, Ordering};

use super::{MAX_HARTS, cpu, ipi, timer};

global_asm!(
    r#"
    .option push
    .option arch, +f, +d
    .text
    .globl _trap_entry
    .align 4
_trap_entry:
    addi    sp, sp, -304
    sd      ra, 0(sp)
    sd      t0, 8(sp)
    sd      t1, 16(sp)
    sd      t2, 24(sp)
    sd      t3, 32(sp)
    sd      t4, 40(sp)
    sd      t5, 48(sp)
    sd      t6, 56(sp)
    sd      a0, 64(sp)
    sd      a1, 72(sp)
    sd      a2, 80(sp)
    sd      a3, 88(sp)
    sd      a4, 96(sp)
    sd      a5, 104(sp)
    sd      a6, 112(sp)
    sd      a7, 120(sp)
    fsd     ft0, 128(sp)
    fsd     ft1, 136(sp)
    fsd     ft2, 144(sp)
    fsd     ft3, 152(sp)
    fsd     ft4, 160(sp)
    fsd     ft5, 168(sp)
    fsd     ft6, 176(sp)
    fsd     ft7, 184(sp)
    fsd     ft8, 192(sp)
    fsd     ft9, 200(sp)
    fsd     ft10, 208(sp)
    fsd     ft11, 216(sp)
    fsd     fa0, 224(sp)
    fsd     fa1, 232(sp)
    fsd     fa2, 240(sp)
    fsd     fa3, 248(sp)
    fsd     fa4, 256(sp)
    fsd     fa5, 264(sp)
    fsd     fa6, 272(sp)
    fsd     fa7, 280(sp)
    frcsr   t0
    sd      t0, 288(sp)
    csrr    a0, scause
    csrr    a1, stval
    csrr    a2, sepc
    call    {handler}
    ld      t0, 288(sp)
    fscsr   t0
    fld     ft0, 128(sp)
    fld     ft1, 136(sp)
    fld     ft2, 144(sp)
    fld     ft3, 152(sp)
    fld     ft4, 160(sp)
    fld     ft5, 168(sp)
    fld     ft6, 176(sp)
    fld     ft7, 184(sp)
    fld     ft8, 192(sp)
    fld     ft9, 200(sp)
    fld     ft10, 208(sp)
    fld     ft11, 216(sp)
    fld     fa0, 224(sp)
    fld     fa1, 232(sp)
    fld     fa2, 240(sp)
    fld     fa3, 248(sp)
    fld     fa4, 256(sp)
    fld     fa5, 264(sp)
    fld     fa6, 272(sp)
    fld     fa7, 280(sp)
    ld      ra, 0(sp)
    ld      t0, 8(sp)
    ld      t1, 16(sp)
    ld      t2, 24(sp)
    ld      t3, 32(sp)
    ld      t4, 40(sp)
    ld      t5, 48(sp)
    ld      t6, 56(sp)
    ld      a0, 64(sp)
    ld      a1, 72(sp)
    ld      a2, 80(sp)
    ld      a3, 88(sp)
    ld      a4, 96(sp)
    ld      a5, 104(sp)
    ld      a6, 112(sp)
    ld      a7, 120(sp)
    addi    sp, sp, 304
    sret
    .option pop
"#,
    handler = sym trap_handler,
);

unsafe extern "C" {
    fn _trap_entry();
}

const INTERRUPT: usize = 1 << (usize::BITS - 1);
const IRQ_SOFT: usize = 1;
const IRQ_TIMER: usize = 5;

/// Interrupts taken, per hart.
#[derive(Debug)]
pub struct IrqCounts {
    /// Supervisor timer interrupts.
    pub timer: [AtomicU64; MAX_HARTS],
    /// Supervisor software interrupts (IPIs).
    pub soft: [AtomicU64; MAX_HARTS],
}

/// Interrupt counters, per hart (read by the selftest to prove that real
/// timer interrupts and IPIs happened).
pub static IRQS: IrqCounts = IrqCounts {
    timer: [const { AtomicU64::new(0) }; MAX_HARTS],
    soft: [const { AtomicU64::new(0) }; MAX_HARTS],
};

/// Installs the trap vector on this hart and enables the timer and software
/// interrupt sources (`sstatus.SIE` stays as it is).
pub fn install() {
    cpu::set_trap_vector(_trap_entry as *const () as usize);
    cpu::sie_set(cpu::SIE_SSIE | cpu::SIE_STIE);
}

extern "C" fn trap_handler(scause: usize, stval: usize, sepc: usize) {
    let hart = cpu::hart_id();
    if scause & INTERRUPT != 0 {
        match scause & !INTERRUPT {
            IRQ_TIMER => {
                timer::acknowledge();
                IRQS.timer[hart].fetch_add(1, Ordering::Relaxed);
            }
            IRQ_SOFT => {
                ipi::acknowledge();
                IRQS.soft[hart].fetch_add(1, Ordering::Relaxed);
            }
            other => defmt::warn!("hart {}: unexpected interrupt {}", hart, other),
        }
        return;
    }
    defmt::error!(
        "hart {}: exception scause={=usize:#x} stval={=usize:#x} sepc={=usize:#x}",
        hart,
        scause,
        stval,
        sepc
    );
    super::exit::exit_failure(3);
}
