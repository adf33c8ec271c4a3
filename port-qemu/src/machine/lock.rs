//! An interrupt-off SMP spinlock, and the `critical-section` implementation
//! built on it.
//!
//! Interrupts off alone is not enough on several harts (it lost updates on
//! two harts when measured), so the lock also spins on an owner word holding
//! the hart id. It is nestable on one hart: the restore state records whether
//! this acquire took the lock (outermost) and whether interrupts were on.

use core::sync::atomic::{AtomicUsize, Ordering};

use super::cpu;

const NOBODY: usize = usize::MAX;
/// Restore-state bit: interrupts were enabled before the acquire.
const WAS_ENABLED: u8 = 1;
/// Restore-state bit: the lock was already held by this hart (nested acquire).
const NESTED: u8 = 2;

/// A nestable spinlock that also masks interrupts on the owning hart.
#[derive(Debug)]
pub struct IrqSpinLock {
    owner: AtomicUsize,
}

impl IrqSpinLock {
    /// An unlocked lock.
    pub const fn new() -> Self {
        IrqSpinLock {
            owner: AtomicUsize::new(NOBODY),
        }
    }

    /// Disables interrupts and takes the lock (or nests into it). Returns the
    /// state to hand back to [`release`](Self::release).
    #[inline]
    pub fn acquire(&self) -> u8 {
        let was_enabled = cpu::interrupts_disable();
        let mut state = if was_enabled { WAS_ENABLED } else { 0 };
        let me = cpu::hart_id();
        // Only this hart ever stores its own id, so a Relaxed read of our own
        // id cannot be stale.
        if self.owner.load(Ordering::Relaxed) == me {
            state |= NESTED;
        } else {
            while self
                .owner
                .compare_exchange_weak(NOBODY, me, Ordering::Acquire, Ordering::Relaxed)
                .is_err()
            {
                cpu::relax();
            }
        }
        state
    }

    /// Undoes one [`acquire`](Self::acquire), given its state.
    #[inline]
    pub fn release(&self, state: u8) {
        if state & NESTED == 0 {
            self.owner.store(NOBODY, Ordering::Release);
        }
        if state & WAS_ENABLED != 0 {
            cpu::interrupts_enable();
        }
    }

    /// Whether the current hart holds the lock.
    pub fn held_here(&self) -> bool {
        self.owner.load(Ordering::Relaxed) == cpu::hart_id()
    }
}

impl Default for IrqSpinLock {
    fn default() -> Self {
        Self::new()
    }
}

/// The one lock behind every `critical_section::with` in the kernel (the
/// core's embassy-sync mutexes, the allocator, the executor's queues).
static CS_LOCK: IrqSpinLock = IrqSpinLock::new();

struct SmpCriticalSection;
critical_section::set_impl!(SmpCriticalSection);

// SAFETY: `acquire` masks interrupts on this hart and excludes every other
// hart through the spinlock, so no two critical sections run at once
// anywhere; nesting on one hart is allowed as the trait requires, and the
// restore state undoes exactly one level.
unsafe impl critical_section::Impl for SmpCriticalSection {
    unsafe fn acquire() -> critical_section::RawRestoreState {
        CS_LOCK.acquire()
    }

    unsafe fn release(state: critical_section::RawRestoreState) {
        CS_LOCK.release(state);
    }
}
