//! Driving futures from plain threads: [`block_on`] for one future,
//! [`block_on_all`] for many at once on one thread.

use std::future::Future;
use std::pin::{Pin, pin};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::{self, Thread};

/// Wakes a parked thread. `notified` absorbs wakes that arrive while the
/// thread is not parked (it then does not park at all).
struct ThreadWaker {
    thread: Thread,
    notified: AtomicBool,
}

impl Wake for ThreadWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.notified.swap(true, Ordering::Release) {
            self.thread.unpark();
        }
    }
}

impl ThreadWaker {
    /// Parks until woken (tolerates spurious unparks).
    fn wait(&self) {
        while !self.notified.swap(false, Ordering::Acquire) {
            thread::park();
        }
    }
}

/// Runs `future` to completion on the calling thread, parking the thread
/// (no spinning, no extra thread) whenever the future waits.
///
/// This is how plain threads call the core:
///
/// ```no_run
/// use reqmod_linux::{LinuxKmod, block_on};
/// use reqmod::KernelRet;
///
/// static KMOD: LinuxKmod = LinuxKmod::new(reqmod_linux::LinuxPlatform::new());
///
/// let ret = block_on(KMOD.request_module(format_args!("fs-{}", "ext4"))).kernel_ret();
/// println!("{ret}");
/// ```
pub fn block_on<F: Future>(future: F) -> F::Output {
    let mut future = pin!(future);
    let parker = Arc::new(ThreadWaker {
        thread: thread::current(),
        notified: AtomicBool::new(false),
    });
    let waker = Waker::from(Arc::clone(&parker));
    let mut cx = Context::from_waker(&waker);
    loop {
        if let Poll::Ready(output) = future.as_mut().poll(&mut cx) {
            return output;
        }
        parker.wait();
    }
}

/// The ready queue of [`block_on_all`]: indices of tasks to poll.
struct ReadyQueue {
    ready: Mutex<Vec<usize>>,
    parker: ThreadWaker,
}

/// The waker of one task of [`block_on_all`].
struct TaskWaker {
    index: usize,
    /// True while the task is in the ready queue (wakes are then no-ops).
    queued: AtomicBool,
    queue: Arc<ReadyQueue>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::AcqRel) {
            self.queue
                .ready
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
                .push(self.index);
            if !self.queue.parker.notified.swap(true, Ordering::Release) {
                self.queue.parker.thread.unpark();
            }
        }
    }
}

/// Runs every future concurrently on the calling thread and returns their
/// outputs in the input order.
///
/// Like [`block_on`], the thread parks while nothing is ready. Only woken
/// futures are polled, so each wake costs `O(1)` whatever the number of
/// futures: thousands of concurrent requests need one thread, not thousands.
pub fn block_on_all<F, I>(futures: I) -> Vec<F::Output>
where
    F: Future,
    I: IntoIterator<Item = F>,
{
    let mut outputs: Vec<Option<F::Output>> = Vec::new();
    block_on_each(futures, |index, output| {
        if outputs.len() <= index {
            outputs.resize_with(index + 1, || None);
        }
        outputs[index] = Some(output);
    });
    outputs.into_iter().flatten().collect()
}

/// Like [`block_on_all`], but hands each output to `done(index, output)` as
/// soon as its future completes (in completion order), so results can be
/// reported while others still run.
pub fn block_on_each<F, I>(futures: I, mut done: impl FnMut(usize, F::Output))
where
    F: Future,
    I: IntoIterator<Item = F>,
{
    let mut tasks: Vec<Option<Pin<Box<F>>>> =
        futures.into_iter().map(|f| Some(Box::pin(f))).collect();
    let count = tasks.len();
    let queue = Arc::new(ReadyQueue {
        ready: Mutex::new((0..count).collect()),
        parker: ThreadWaker {
            thread: thread::current(),
            notified: AtomicBool::new(false),
        },
    });
    let wakers: Vec<Arc<TaskWaker>> = (0..count)
        .map(|index| {
            Arc::new(TaskWaker {
                index,
                queued: AtomicBool::new(true),
                queue: Arc::clone(&queue),
            })
        })
        .collect();
    let mut remaining = count;
    let mut batch = Vec::new();
    while remaining > 0 {
        std::mem::swap(
            &mut batch,
            &mut *queue.ready.lock().unwrap_or_else(PoisonError::into_inner),
        );
        if batch.is_empty() {
            queue.parker.wait();
            continue;
        }
        // Oldest wake first; initially every task in input order, so
        // requests start in input order, like threads created in that order.
        for index in batch.drain(..) {
            let task_waker = &wakers[index];
            task_waker.queued.store(false, Ordering::Release);
            let Some(task) = tasks[index].as_mut() else {
                continue; // finished; a late wake
            };
            let waker = Waker::from(Arc::clone(task_waker));
            let mut cx = Context::from_waker(&waker);
            if let Poll::Ready(output) = task.as_mut().poll(&mut cx) {
                tasks[index] = None;
                remaining -= 1;
                done(index, output);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn block_on_returns_ready_value() {
        assert_eq!(block_on(async { 7 }), 7);
    }

    #[test]
    fn block_on_parks_until_woken_from_another_thread() {
        let start = std::time::Instant::now();
        block_on(crate::sleep(Duration::from_millis(50)));
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn block_on_all_keeps_input_order_and_runs_concurrently() {
        let start = std::time::Instant::now();
        let outputs = block_on_all((0..1000u64).map(|i| async move {
            crate::sleep(Duration::from_millis(200 - (i % 100))).await;
            i
        }));
        assert_eq!(outputs, (0..1000).collect::<Vec<_>>());
        // 1000 sleeps of up to 200 ms in parallel, not in sequence.
        assert!(
            start.elapsed() < Duration::from_secs(2),
            "{:?}",
            start.elapsed()
        );
    }
}
