//! Probing virtio-mmio transports: just enough to build a modalias.

/// `"virt"` in little-endian: the transport's magic value.
const MAGIC: u32 = 0x7472_6976;

/// The identity of one virtio device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, defmt::Format)]
pub struct VirtioId {
    /// Transport base address.
    pub base: usize,
    /// Transport version (1 legacy, 2 modern).
    pub version: u32,
    /// Device id (virtio spec §5: 1 net, 2 block, 4 rng, 5 balloon, 18 input…).
    pub device: u32,
    /// Vendor id (`0x554D4551`, "QEMU", on QEMU).
    pub vendor: u32,
}

fn read(base: usize, offset: usize) -> u32 {
    // SAFETY: `base` comes from a `virtio,mmio` node of the device tree: a
    // 0x200-byte register block whose first 16 bytes are read-only id words.
    unsafe { core::ptr::read_volatile((base + offset) as *const u32) }
}

/// Reads the transport at `base`; `None` when no device sits behind it
/// (device id 0) or the magic value is wrong.
pub fn probe(base: usize) -> Option<VirtioId> {
    if read(base, 0) != MAGIC {
        return None;
    }
    let id = VirtioId {
        base,
        version: read(base, 4),
        device: read(base, 8),
        vendor: read(base, 12),
    };
    (id.device != 0).then_some(id)
}
