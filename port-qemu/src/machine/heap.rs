//! The kernel heap: the `.heap` region of `kernel.ld`, managed by
//! `embedded-alloc`'s TLSF allocator (which locks through `critical-section`,
//! so it is SMP-safe with [`super::lock`]).

use embedded_alloc::TlsfHeap;

#[global_allocator]
static HEAP: TlsfHeap = TlsfHeap::empty();

unsafe extern "C" {
    static __heap_start: u8;
    static __heap_end: u8;
}

/// Start and end addresses of the heap region.
pub fn region() -> (usize, usize) {
    (
        core::ptr::addr_of!(__heap_start) as usize,
        core::ptr::addr_of!(__heap_end) as usize,
    )
}

/// Hands the heap region to the allocator. Call once, on the boot hart,
/// before the first allocation.
pub fn init() {
    let (start, end) = region();
    // SAFETY: `.heap` is a NOLOAD region reserved by the linker script for
    // this purpose only, unused before this call; `init` panics if called twice.
    unsafe { HEAP.init(start, end - start) };
}

/// Bytes currently allocated.
pub fn used() -> usize {
    // Not `HEAP.used()`: in embedded-alloc 0.7.0 the TLSF heap's `used()`
    // borrows its RefCell twice and panics ("already borrowed").
    let (start, end) = region();
    (end - start) - HEAP.free()
}
