//! The device tree OpenSBI hands to the kernel, read once at boot into a
//! small [`BootInfo`] (so nothing later depends on where the blob lives).

use super::MAX_HARTS;

/// Most virtio-mmio transports recorded (QEMU `virt` has 8).
pub const MAX_VIRTIO: usize = 8;
/// Longest kernel command line kept.
pub const MAX_BOOTARGS: usize = 128;

/// What the kernel needs from the device tree.
#[derive(Debug, Clone)]
pub struct BootInfo {
    /// `/chosen/bootargs` (QEMU `-append`), truncated to [`MAX_BOOTARGS`].
    bootargs: [u8; MAX_BOOTARGS],
    bootargs_len: usize,
    /// Hart ids present, ascending.
    pub harts: [usize; MAX_HARTS],
    /// How many of `harts` are valid.
    pub hart_count: usize,
    /// `timebase-frequency` of the cpus (Hz).
    pub timebase_hz: u64,
    /// Base of the 16550 UART.
    pub uart: usize,
    /// Base of the `sifive,test` exit device.
    pub test_device: Option<usize>,
    /// Bases of the virtio-mmio transports, ascending.
    pub virtio: [usize; MAX_VIRTIO],
    /// How many of `virtio` are valid.
    pub virtio_count: usize,
    /// Address and size of the blob itself.
    pub blob: (usize, usize),
}

/// Why the device tree could not be used.
#[derive(Debug, Clone, Copy, defmt::Format)]
pub enum FdtProblem {
    /// The blob's header is invalid.
    BadBlob,
    /// A hart id is `>= MAX_HARTS`.
    HartIdTooLarge(usize),
}

impl BootInfo {
    /// The kernel command line.
    pub fn bootargs(&self) -> &str {
        core::str::from_utf8(&self.bootargs[..self.bootargs_len]).unwrap_or("")
    }
}

/// Parses the blob at `addr`.
///
/// Must be called with the address OpenSBI passed in `a1`, before anything
/// could overwrite the blob (the heap is placed below it, see `kernel_main`).
pub fn parse(addr: usize) -> Result<BootInfo, FdtProblem> {
    // SAFETY: `addr` is the device tree OpenSBI passed to `_start`: a valid,
    // readable blob that stays untouched (the kernel image, stacks and heap
    // lie below it; `kernel_main` checks that).
    let fdt = unsafe { fdt::Fdt::from_ptr(addr as *const u8) }.map_err(|_| FdtProblem::BadBlob)?;

    let mut info = BootInfo {
        bootargs: [0; MAX_BOOTARGS],
        bootargs_len: 0,
        harts: [0; MAX_HARTS],
        hart_count: 0,
        timebase_hz: 10_000_000,
        uart: 0x1000_0000,
        test_device: None,
        virtio: [0; MAX_VIRTIO],
        virtio_count: 0,
        blob: (addr, fdt.total_size()),
    };

    if let Some(args) = fdt.chosen().bootargs() {
        let n = args.len().min(MAX_BOOTARGS);
        info.bootargs[..n].copy_from_slice(&args.as_bytes()[..n]);
        info.bootargs_len = n;
    }

    for cpu in fdt.cpus() {
        let id = cpu.ids().first();
        if id >= MAX_HARTS {
            return Err(FdtProblem::HartIdTooLarge(id));
        }
        if info.hart_count < MAX_HARTS {
            info.harts[info.hart_count] = id;
            info.hart_count += 1;
        }
        info.timebase_hz = cpu.timebase_frequency() as u64;
    }
    info.harts[..info.hart_count].sort_unstable();

    let reg_base = |node: fdt::node::FdtNode<'_, '_>| {
        node.reg()
            .and_then(|mut r| r.next())
            .map(|r| r.starting_address as usize)
    };
    if let Some(base) = fdt.find_compatible(&["ns16550a"]).and_then(reg_base) {
        info.uart = base;
    }
    info.test_device = fdt
        .find_compatible(&["sifive,test1", "sifive,test0"])
        .and_then(reg_base);

    for node in fdt.all_nodes() {
        let is_virtio = node
            .compatible()
            .is_some_and(|c| c.all().any(|s| s == "virtio,mmio"));
        if is_virtio
            && info.virtio_count < MAX_VIRTIO
            && let Some(base) = reg_base(node)
        {
            info.virtio[info.virtio_count] = base;
            info.virtio_count += 1;
        }
    }
    info.virtio[..info.virtio_count].sort_unstable();
    Ok(info)
}
