//! A multi-hart async executor.
//!
//! Tasks are heap-allocated futures (`alloc`, see [`crate::machine::heap`]) in
//! one run queue shared by all harts. A task is polled by one hart at a time
//! (the `state` word below); a wake pushes it back on the queue and sends an
//! IPI to one idle hart. An idle hart:
//!
//! 1. masks interrupts, marks itself idle, and checks the queue again (a task
//!    queued before the mark is seen here; one queued after it sees the mark
//!    and sends an IPI);
//! 2. arms its timer for the earliest deadline of the timer queue;
//! 3. runs `wfi` with no lock held (a pending, enabled interrupt ends `wfi`
//!    even with interrupts masked), then unmasks so the trap handler
//!    acknowledges the interrupt.

use alloc::boxed::Box;
use alloc::collections::VecDeque;
use alloc::sync::Arc;
use alloc::task::Wake;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU8, AtomicU64, AtomicUsize, Ordering};
use core::task::{Context, Waker};

use critical_section::Mutex;

use super::time;
use crate::machine::{MAX_HARTS, cpu, ipi, timer};

type BoxFuture = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// Not queued, not running.
const IDLE: u8 = 0;
/// In the run queue.
const SCHEDULED: u8 = 1;
/// Being polled by some hart.
const RUNNING: u8 = 2;
/// Being polled, and woken meanwhile: requeue after the poll.
const RUNNING_WOKEN: u8 = 3;
/// Finished; wakes are ignored.
const DONE: u8 = 4;

struct Task {
    state: AtomicU8,
    /// Taken out while a hart polls it (only the hart that moved `state` to
    /// `RUNNING` does), so the lock is never held across a poll.
    future: Mutex<RefCell<Option<BoxFuture>>>,
}

static QUEUE: Mutex<RefCell<VecDeque<Arc<Task>>>> = Mutex::new(RefCell::new(VecDeque::new()));
/// Bit n set: hart n is (about to be) asleep in `wfi`.
static IDLE_HARTS: AtomicUsize = AtomicUsize::new(0);
/// Where [`enqueue`] starts looking for an idle hart.
static NEXT_PICK: AtomicUsize = AtomicUsize::new(0);
/// Bit n set: hart n runs the executor.
static ONLINE_HARTS: AtomicUsize = AtomicUsize::new(0);

/// Executor counters.
#[derive(Debug)]
pub struct Counters {
    /// Polls per hart.
    pub polls: [AtomicU64; MAX_HARTS],
    /// Times each hart went to sleep in `wfi`.
    pub sleeps: [AtomicU64; MAX_HARTS],
    /// Tasks spawned.
    pub spawned: AtomicU64,
    /// Tasks finished.
    pub finished: AtomicU64,
}

/// Executor counters (the selftest checks that every hart polled tasks).
pub static COUNTERS: Counters = Counters {
    polls: [const { AtomicU64::new(0) }; MAX_HARTS],
    sleeps: [const { AtomicU64::new(0) }; MAX_HARTS],
    spawned: AtomicU64::new(0),
    finished: AtomicU64::new(0),
};

impl Task {
    fn schedule(self: &Arc<Self>) {
        let mut state = self.state.load(Ordering::Acquire);
        loop {
            let next = match state {
                IDLE => SCHEDULED,
                RUNNING => RUNNING_WOKEN,
                _ => return,
            };
            match self
                .state
                .compare_exchange_weak(state, next, Ordering::AcqRel, Ordering::Acquire)
            {
                Ok(_) if next == SCHEDULED => return enqueue(self.clone()),
                Ok(_) => return,
                Err(now) => state = now,
            }
        }
    }
}

impl Wake for Task {
    fn wake(self: Arc<Self>) {
        self.schedule();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.schedule();
    }
}

fn enqueue(task: Arc<Task>) {
    critical_section::with(|cs| QUEUE.borrow_ref_mut(cs).push_back(task));
    // Claim one idle hart (not this one: it is running) and poke it. The
    // search starts at a rotating position so wakes are spread over all harts
    // rather than always landing on the lowest-numbered idle one.
    let me = 1usize << cpu::hart_id();
    let start = NEXT_PICK.fetch_add(1, Ordering::Relaxed) % MAX_HARTS;
    let mut idle = IDLE_HARTS.load(Ordering::SeqCst);
    loop {
        let candidates = idle & !me;
        if candidates == 0 {
            return;
        }
        let rotated = candidates.rotate_right(start as u32);
        let hart = (rotated.trailing_zeros() as usize + start) % usize::BITS as usize;
        let pick = 1usize << hart;
        match IDLE_HARTS.compare_exchange_weak(
            idle,
            idle & !pick,
            Ordering::SeqCst,
            Ordering::SeqCst,
        ) {
            Ok(_) => return ipi::send(pick),
            Err(now) => idle = now,
        }
    }
}

/// Spawns `future` as a new task, runnable on any hart.
pub fn spawn(future: impl Future<Output = ()> + Send + 'static) {
    let task = Arc::new(Task {
        state: AtomicU8::new(SCHEDULED),
        future: Mutex::new(RefCell::new(Some(Box::pin(future)))),
    });
    COUNTERS.spawned.fetch_add(1, Ordering::Relaxed);
    enqueue(task);
}

fn run_one(task: Arc<Task>, hart: usize) {
    task.state.store(RUNNING, Ordering::Release);
    let Some(mut future) = critical_section::with(|cs| task.future.borrow_ref_mut(cs).take())
    else {
        return;
    };
    COUNTERS.polls[hart].fetch_add(1, Ordering::Relaxed);
    let waker = Waker::from(task.clone());
    let mut cx = Context::from_waker(&waker);
    if future.as_mut().poll(&mut cx).is_ready() {
        task.state.store(DONE, Ordering::Release);
        drop(future);
        COUNTERS.finished.fetch_add(1, Ordering::Relaxed);
        return;
    }
    critical_section::with(|cs| *task.future.borrow_ref_mut(cs) = Some(future));
    if task
        .state
        .compare_exchange(RUNNING, IDLE, Ordering::AcqRel, Ordering::Acquire)
        .is_err()
    {
        // Woken while running.
        task.state.store(SCHEDULED, Ordering::Release);
        enqueue(task);
    }
}

fn pop() -> Option<Arc<Task>> {
    critical_section::with(|cs| QUEUE.borrow_ref_mut(cs).pop_front())
}

fn queue_is_empty() -> bool {
    critical_section::with(|cs| QUEUE.borrow_ref(cs).is_empty())
}

/// Harts running the executor, as a bit mask.
pub fn online_harts() -> usize {
    ONLINE_HARTS.load(Ordering::SeqCst)
}

/// Runs the executor on this hart, forever.
pub fn run() -> ! {
    let hart = cpu::hart_id();
    let bit = 1usize << hart;
    ONLINE_HARTS.fetch_or(bit, Ordering::SeqCst);
    cpu::interrupts_enable();
    loop {
        time::fire_expired();
        if let Some(task) = pop() {
            run_one(task, hart);
            continue;
        }
        // Going idle: see the module docs for why this order is race-free.
        let was_enabled = cpu::interrupts_disable();
        IDLE_HARTS.fetch_or(bit, Ordering::SeqCst);
        if queue_is_empty() && !time::expired() {
            match time::next_deadline() {
                Some(deadline) => timer::arm(deadline),
                None => timer::disarm(),
            }
            COUNTERS.sleeps[hart].fetch_add(1, Ordering::Relaxed);
            cpu::wait_for_interrupt();
        }
        IDLE_HARTS.fetch_and(!bit, Ordering::SeqCst);
        if was_enabled {
            // Takes the pending interrupt (the trap handler acknowledges it).
            cpu::interrupts_enable();
        }
    }
}
