//! The console: `defmt` frames and plain text on the one UART.
//!
//! Every write holds the console lock ([`IrqSpinLock`], separate from the
//! critical-section lock so logging does not stall other harts' critical
//! sections). defmt frames are rzcobs-encoded and end in `0x00`; plain text is
//! also followed by a `0x00` under the same lock, so the host-side decoder
//! (`cargo xtask qemu`) can split the stream at zero bytes and tell text chunks
//! (which do not decode as frames) from frames.

use core::cell::UnsafeCell;
use core::sync::atomic::{AtomicU8, Ordering};

use super::lock::IrqSpinLock;
use super::uart;

static CONSOLE: IrqSpinLock = IrqSpinLock::new();
/// Restore state of the outermost `acquire`; only the lock holder touches it.
static RESTORE: AtomicU8 = AtomicU8::new(0);

struct EncoderCell(UnsafeCell<defmt::Encoder>);

// SAFETY: the encoder is only used between `Logger::acquire` and
// `Logger::release`, i.e. while holding `CONSOLE`, by one hart at a time.
unsafe impl Sync for EncoderCell {}

static ENCODER: EncoderCell = EncoderCell(UnsafeCell::new(defmt::Encoder::new()));

#[defmt::global_logger]
struct Logger;

// SAFETY: `acquire` takes `CONSOLE` (interrupts off, other harts excluded),
// `release` gives it back; `write`/`flush` run only in between, as defmt
// guarantees, so the encoder is never used concurrently by two harts. (A
// nested acquire on one hart can only come from a fault inside the logger;
// the frames then come out garbled and the host decoder says so.)
unsafe impl defmt::Logger for Logger {
    fn acquire() {
        let state = CONSOLE.acquire();
        RESTORE.store(state, Ordering::Relaxed);
        // SAFETY: we hold `CONSOLE` (see the impl's comment).
        let encoder = unsafe { &mut *ENCODER.0.get() };
        encoder.start_frame(uart::write);
    }

    unsafe fn flush() {}

    unsafe fn release() {
        // SAFETY: called after `acquire`, still holding `CONSOLE`.
        let encoder = unsafe { &mut *ENCODER.0.get() };
        encoder.end_frame(uart::write);
        CONSOLE.release(RESTORE.load(Ordering::Relaxed));
    }

    unsafe fn write(bytes: &[u8]) {
        // SAFETY: called between `acquire` and `release`, holding `CONSOLE`.
        let encoder = unsafe { &mut *ENCODER.0.get() };
        encoder.write(bytes, uart::write);
    }
}

/// Writes plain text (e.g. before the decoder can help, or on panic),
/// followed by the `0x00` separator.
pub fn write_text(text: &str) {
    let state = CONSOLE.acquire();
    uart::write(text.as_bytes());
    uart::put(0);
    CONSOLE.release(state);
}

/// Ends whatever the firmware printed (OpenSBI's banner) with a separator,
/// so the first defmt frame is not glued to it.
pub fn start() {
    let state = CONSOLE.acquire();
    uart::put(b'\n');
    uart::put(0);
    CONSOLE.release(state);
}

/// Waits until no hart is in the middle of a frame (the UART itself has no
/// FIFO to drain in QEMU).
pub fn flush() {
    if !CONSOLE.held_here() {
        let state = CONSOLE.acquire();
        CONSOLE.release(state);
    }
}

defmt::timestamp!(
    "{=u64:us} h{=usize}",
    super::timer::ticks() / (super::timer::timebase() / 1_000_000).max(1),
    super::cpu::hart_id()
);
