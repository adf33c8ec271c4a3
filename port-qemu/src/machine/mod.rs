//! The machine layer: everything that touches the hart or a device register.
//!
//! This is the only place with `unsafe` code. Every block carries a
//! `// SAFETY:` comment. The OS layer above ([`crate::os`]) sees safe functions
//! only: "read the clock", "arm my timer", "poke that hart", "print these bytes".
//!
//! | file | what |
//! | --- | --- |
//! | [`boot`] | `_start` / `_start_secondary` in assembly, per-hart stacks, `.bss` clearing |
//! | [`cpu`] | CSR access: hart id, interrupt enable, `wfi`, `time` |
//! | [`sbi`] | the few SBI calls used (TIME, sPI, HSM) |
//! | [`lock`] | an interrupt-off, nestable SMP spinlock and the `critical-section` impl |
//! | [`trap`] | trap vector: timer and software (IPI) interrupts, fatal exceptions |
//! | [`timer`] | the `time` CSR and SBI `set_timer` |
//! | [`ipi`] | inter-processor interrupts |
//! | [`smp`] | secondary harts through SBI HSM |
//! | [`fdt`] | the device tree OpenSBI hands over |
//! | [`uart`] | the 16550 console |
//! | [`logger`] | the `defmt` global logger on the UART |
//! | [`virtio`] | probing virtio-mmio transports |
//! | [`heap`] | the allocator's memory region |
//! | [`exit`] | the `sifive_test` exit device |

pub mod boot;
pub mod cpu;
pub mod exit;
pub mod fdt;
pub mod heap;
pub mod ipi;
pub mod lock;
pub mod logger;
pub mod sbi;
pub mod smp;
pub mod timer;
pub mod trap;
pub mod uart;
pub mod virtio;

/// Most harts this kernel runs on (QEMU `virt` allows 8 with `-smp`). Keep in
/// sync with `MAX_HARTS` in `kernel.ld`.
pub const MAX_HARTS: usize = 8;

/// Bytes of boot stack per hart. Keep in sync with `STACK_SIZE` in `kernel.ld`.
pub const STACK_SIZE: usize = 0x2_0000;
