//! A virtual-time test platform (feature `sim`, uses `std`).
//!
//! - [`SimPlatform`]: a [`Platform`] whose clock is virtual and whose helper is
//!   scripted: each run takes a given virtual time and returns a given status or
//!   errno, or fails to start; every [`HelperCommand`] is recorded with its wait
//!   mode and times, and every [`Event`] too.
//! - [`Executor`]: a deterministic single-threaded executor. Time moves only when
//!   every task is blocked: the clock then jumps to the next deadline. A 5 s
//!   timeout costs microseconds of real time.
//!
//! ```
//! use core::time::Duration;
//! use reqmod::sim::{Behavior, Executor, SimPlatform};
//! use reqmod::{KernelRet, Kmod, Platform};
//!
//! let kmod = Kmod::new(SimPlatform::new());
//! kmod.platform().set_script(|_cmd| Behavior::exits(1).lasting(Duration::from_secs(2)));
//! let mut ex = Executor::new();
//! let a = ex.spawn(kmod.request_module(format_args!("fs-{}", "ext4")));
//! let b = ex.spawn(kmod.request_module(format_args!("fs-ext4")));
//! ex.run(kmod.platform()).unwrap();
//! assert_eq!(a.take().unwrap().kernel_ret(), 256);
//! assert_eq!(b.take().unwrap().kernel_ret(), 256); // a duplicate: same result
//! assert_eq!(kmod.platform().runs().len(), 1);      // one helper run
//! assert_eq!(kmod.platform().now(), Duration::from_secs(2));
//! ```

extern crate std;

use core::cell::{Cell, RefCell};
use core::fmt;
use core::future::{Future, poll_fn};
use core::pin::Pin;
use core::task::{Context, Poll, Waker};
use core::time::Duration;
use std::boxed::Box;
use std::collections::{BTreeMap, VecDeque};
use std::rc::Rc;
use std::string::{String, ToString};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::Wake;
use std::vec::Vec;

use crate::{Errno, Event, HelperCommand, Platform, UmhWait, WaitStatus};

/// What one scripted helper run does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Behavior {
    /// `Err(errno)`: the exec fails (`ENOENT` for a missing program…).
    pub start: Result<(), Errno>,
    /// Virtual time from the start of the run until the exec has happened.
    pub exec_time: Duration,
    /// Virtual time from the exec until the helper exits.
    pub run_time: Duration,
    /// The wait status when it exits.
    pub status: WaitStatus,
}

impl Behavior {
    /// Exits with `code` at once.
    pub const fn exits(code: u8) -> Self {
        Behavior {
            start: Ok(()),
            exec_time: Duration::ZERO,
            run_time: Duration::ZERO,
            status: WaitStatus::exited(code),
        }
    }

    /// Is killed by `signal`.
    pub const fn killed_by(signal: u8) -> Self {
        Behavior {
            status: WaitStatus::signaled(signal),
            ..Self::exits(0)
        }
    }

    /// Cannot be executed: `errno`.
    pub const fn fails_to_start(errno: Errno) -> Self {
        Behavior {
            start: Err(errno),
            ..Self::exits(0)
        }
    }

    /// Runs for `run_time` after its exec.
    pub const fn lasting(mut self, run_time: Duration) -> Self {
        self.run_time = run_time;
        self
    }

    /// Takes `exec_time` to be executed.
    pub const fn exec_taking(mut self, exec_time: Duration) -> Self {
        self.exec_time = exec_time;
        self
    }
}

/// One helper run the platform received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperRun {
    /// The command, as the core built it.
    pub command: HelperCommand,
    /// The wait mode.
    pub wait: UmhWait,
    /// Virtual time of the call.
    pub started: Duration,
    /// Virtual time the helper exits (or failed to start).
    pub ends: Duration,
    /// What it did.
    pub behavior: Behavior,
    /// The [`Executor`] task that started it ([`JoinHandle::id`]), if any.
    pub task: Option<usize>,
}

/// An [`Event`] with owned strings, as the platform recorded it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RecordedEvent {
    /// Virtual time of the event.
    pub at: Duration,
    /// `"module_request"`, `"async_wait"`, `"busy_timeout"` or `"duplicate"`.
    pub kind: &'static str,
    /// The module name.
    pub name: String,
    /// The request's `wait` flag (`false` where the event has none).
    pub wait: bool,
}

type Script = Box<dyn Fn(&HelperCommand) -> Behavior>;

std::thread_local! {
    /// The task the executor is polling on this thread.
    static CURRENT_TASK: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The virtual-time platform. See the [module docs](self).
pub struct SimPlatform {
    now: Cell<Duration>,
    timers: RefCell<BTreeMap<(Duration, u64), Waker>>,
    next_timer: Cell<u64>,
    script: RefCell<Script>,
    runs: RefCell<Vec<HelperRun>>,
    events: RefCell<Vec<RecordedEvent>>,
    is_async: Cell<bool>,
    recording: Cell<bool>,
}

impl Default for SimPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl fmt::Debug for SimPlatform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SimPlatform")
            .field("now", &self.now.get())
            .field("timers", &self.timers.borrow().len())
            .field("runs", &self.runs.borrow().len())
            .finish_non_exhaustive()
    }
}

impl SimPlatform {
    /// Time 0; the program `/sbin/modprobe` exits 0 at once and every other
    /// path fails like a missing file (`ENOENT`).
    pub fn new() -> Self {
        SimPlatform {
            now: Cell::new(Duration::ZERO),
            timers: RefCell::new(BTreeMap::new()),
            next_timer: Cell::new(0),
            script: RefCell::new(Box::new(|cmd: &HelperCommand| {
                if cmd.path() == b"/sbin/modprobe" {
                    Behavior::exits(0)
                } else {
                    Behavior::fails_to_start(Errno::ENOENT)
                }
            })),
            runs: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
            is_async: Cell::new(false),
            recording: Cell::new(true),
        }
    }

    /// The virtual time (also [`Platform::now`]).
    pub fn now(&self) -> Duration {
        self.now.get()
    }

    /// Decides what every following helper run does.
    pub fn set_script(&self, script: impl Fn(&HelperCommand) -> Behavior + 'static) {
        *self.script.borrow_mut() = Box::new(script);
    }

    /// Whether callers are in an "async" context from now on.
    pub fn set_async(&self, is_async: bool) {
        self.is_async.set(is_async);
    }

    /// Whether runs and events are recorded (on by default). Benchmarks turn it
    /// off so that only the core's own work is measured.
    pub fn set_recording(&self, on: bool) {
        self.recording.set(on);
    }

    /// Every helper run so far, in call order.
    pub fn runs(&self) -> Vec<HelperRun> {
        self.runs.borrow().clone()
    }

    /// Every event so far, in order.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.events.borrow().clone()
    }

    /// Helpers alive at virtual time `t` (started, exec'd, not yet exited),
    /// whether or not their caller still waits.
    pub fn helpers_alive_at(&self, t: Duration) -> usize {
        self.runs
            .borrow()
            .iter()
            .filter(|r| r.behavior.start.is_ok() && r.started <= t && t < r.ends)
            .count()
    }

    /// The most helpers ever alive at once.
    pub fn max_helpers_alive(&self) -> usize {
        let runs = self.runs.borrow();
        runs.iter()
            .map(|r| self.helpers_alive_at(r.started))
            .max()
            .unwrap_or(0)
    }

    /// Timers armed now.
    pub fn pending_timers(&self) -> usize {
        self.timers.borrow().len()
    }

    /// The earliest armed deadline.
    pub fn next_deadline(&self) -> Option<Duration> {
        self.timers.borrow().keys().next().map(|k| k.0)
    }

    /// Moves the clock to `t` (never backwards) and wakes every timer due.
    pub fn advance_to(&self, t: Duration) {
        if t > self.now.get() {
            self.now.set(t);
        }
        let now = self.now.get();
        let due: Vec<Waker> = {
            let mut timers = self.timers.borrow_mut();
            let later = timers.split_off(&(now, u64::MAX));
            let due = core::mem::replace(&mut *timers, later);
            due.into_values().collect()
        };
        for w in due {
            w.wake();
        }
    }

    fn record(&self, kind: &'static str, name: &str, wait: bool) {
        if !self.recording.get() {
            return;
        }
        self.events.borrow_mut().push(RecordedEvent {
            at: self.now.get(),
            kind,
            name: name.to_string(),
            wait,
        });
    }
}

/// A timer on the virtual clock; dropping it disarms it.
struct Sleep<'a> {
    sim: &'a SimPlatform,
    deadline: Duration,
    key: Option<(Duration, u64)>,
}

impl Future for Sleep<'_> {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let sim = self.sim;
        if sim.now.get() >= self.deadline {
            if let Some(key) = self.key.take() {
                sim.timers.borrow_mut().remove(&key);
            }
            return Poll::Ready(());
        }
        let key = match self.key {
            Some(key) => key,
            None => {
                let seq = sim.next_timer.get();
                sim.next_timer.set(seq + 1);
                let key = (self.deadline, seq);
                self.key = Some(key);
                key
            }
        };
        sim.timers.borrow_mut().insert(key, cx.waker().clone());
        Poll::Pending
    }
}

impl Drop for Sleep<'_> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.sim.timers.borrow_mut().remove(&key);
        }
    }
}

impl Platform for SimPlatform {
    fn now(&self) -> Duration {
        self.now.get()
    }

    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> {
        Sleep {
            sim: self,
            deadline,
            key: None,
        }
    }

    async fn run_helper(&self, cmd: HelperCommand, wait: UmhWait) -> Result<WaitStatus, Errno> {
        let behavior = (self.script.borrow())(&cmd);
        let started = self.now.get();
        let exec_done = started.saturating_add(behavior.exec_time);
        let ends = match behavior.start {
            Ok(()) => exec_done.saturating_add(behavior.run_time),
            Err(_) => exec_done,
        };
        if self.recording.get() {
            self.runs.borrow_mut().push(HelperRun {
                command: cmd,
                wait,
                started,
                ends,
                behavior,
                task: CURRENT_TASK.with(Cell::get),
            });
        }
        match wait {
            UmhWait::NoWait => Ok(WaitStatus::SUCCESS),
            UmhWait::Exec => {
                self.sleep_until(exec_done).await;
                behavior.start.map(|()| WaitStatus::SUCCESS)
            }
            UmhWait::Proc => {
                self.sleep_until(ends).await;
                behavior.start.map(|()| behavior.status)
            }
        }
    }

    fn current_is_async(&self) -> bool {
        self.is_async.get()
    }

    fn trace(&self, event: &Event<'_>) {
        match *event {
            Event::ModuleRequest { name, wait, .. } => self.record("module_request", name, wait),
            Event::AsyncWait { name, .. } => self.record("async_wait", name, true),
            Event::BusyTimeout { name, .. } => self.record("busy_timeout", name, false),
            Event::Duplicate { name, wait, .. } => self.record("duplicate", name, wait),
        }
    }
}

/// The result slot of a spawned task.
pub struct JoinHandle<T> {
    id: usize,
    result: Rc<RefCell<Option<T>>>,
}

impl<T> fmt::Debug for JoinHandle<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("JoinHandle")
            .field("id", &self.id)
            .field("finished", &self.result.borrow().is_some())
            .finish()
    }
}

impl<T> JoinHandle<T> {
    /// The task's number, as [`HelperRun::task`] names it.
    pub fn id(&self) -> usize {
        self.id
    }

    /// Takes the task's output, if it has finished.
    pub fn take(&self) -> Option<T> {
        self.result.borrow_mut().take()
    }

    /// Whether the task has finished (and its output not yet taken).
    pub fn is_finished(&self) -> bool {
        self.result.borrow().is_some()
    }
}

/// The executor gave up: tasks remain, none can run, and no timer is armed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Stalled {
    /// Tasks that can never finish.
    pub tasks: usize,
    /// Virtual time when it stalled.
    pub at: Duration,
}

impl fmt::Display for Stalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} task(s) blocked forever at {:?}", self.tasks, self.at)
    }
}

impl std::error::Error for Stalled {}

struct TaskWaker {
    id: usize,
    queued: AtomicBool,
    ready: Arc<Mutex<VecDeque<usize>>>,
}

impl Wake for TaskWaker {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        if !self.queued.swap(true, Ordering::SeqCst)
            && let Ok(mut q) = self.ready.lock()
        {
            q.push_back(self.id);
        }
    }
}

type Task<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A deterministic single-threaded executor over a [`SimPlatform`]'s clock.
pub struct Executor<'a> {
    tasks: Vec<Option<(Task<'a>, Arc<TaskWaker>)>>,
    ready: Arc<Mutex<VecDeque<usize>>>,
    polls: u64,
    observer: Option<Box<dyn FnMut() + 'a>>,
}

impl fmt::Debug for Executor<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Executor")
            .field("live_tasks", &self.live_tasks())
            .field("polls", &self.polls)
            .finish()
    }
}

impl Default for Executor<'_> {
    fn default() -> Self {
        Self::new()
    }
}

impl<'a> Executor<'a> {
    /// No tasks.
    pub fn new() -> Self {
        Executor {
            tasks: Vec::new(),
            ready: Arc::new(Mutex::new(VecDeque::new())),
            polls: 0,
            observer: None,
        }
    }

    /// Calls `observer` after every poll of every task (to check invariants
    /// at every step).
    pub fn observe(&mut self, observer: impl FnMut() + 'a) {
        self.observer = Some(Box::new(observer));
    }

    /// Adds a task; it first runs at the next `run*` call.
    pub fn spawn<T: 'a>(&mut self, fut: impl Future<Output = T> + 'a) -> JoinHandle<T> {
        let id = self.tasks.len();
        let result = Rc::new(RefCell::new(None));
        let slot = result.clone();
        let task: Task<'a> = Box::pin(async move {
            let out = fut.await;
            *slot.borrow_mut() = Some(out);
        });
        let waker = Arc::new(TaskWaker {
            id,
            queued: AtomicBool::new(false),
            ready: self.ready.clone(),
        });
        self.tasks.push(Some((task, waker.clone())));
        waker.wake_by_ref();
        JoinHandle { id, result }
    }

    /// Drops a task's future wherever it waits (cancellation).
    pub fn cancel<T>(&mut self, handle: &JoinHandle<T>) {
        if let Some(slot) = self.tasks.get_mut(handle.id) {
            *slot = None;
        }
    }

    /// Tasks not finished or cancelled.
    pub fn live_tasks(&self) -> usize {
        self.tasks.iter().filter(|t| t.is_some()).count()
    }

    /// Total polls so far.
    pub fn polls(&self) -> u64 {
        self.polls
    }

    fn next_ready(&self) -> Option<usize> {
        self.ready.lock().ok().and_then(|mut q| q.pop_front())
    }

    /// Polls ready tasks until none is ready, without moving the clock.
    pub fn run_until_stalled(&mut self) {
        while let Some(id) = self.next_ready() {
            let Some(Some((task, waker))) = self.tasks.get_mut(id) else {
                continue;
            };
            waker.queued.store(false, Ordering::SeqCst);
            let w = Waker::from(waker.clone());
            let mut cx = Context::from_waker(&w);
            self.polls += 1;
            CURRENT_TASK.with(|c| c.set(Some(id)));
            let poll = task.as_mut().poll(&mut cx);
            CURRENT_TASK.with(|c| c.set(None));
            if poll.is_ready()
                && let Some(slot) = self.tasks.get_mut(id)
            {
                *slot = None;
            }
            if let Some(observe) = self.observer.as_mut() {
                observe();
            }
        }
    }

    /// Runs until every task has finished, jumping the clock to the next
    /// deadline whenever all tasks are blocked.
    pub fn run(&mut self, sim: &SimPlatform) -> Result<(), Stalled> {
        self.run_until(sim, Duration::MAX)
    }

    /// Like [`run`](Self::run), but stops before moving the clock past `until`
    /// (the clock ends at `until` if a later deadline is armed).
    pub fn run_until(&mut self, sim: &SimPlatform, until: Duration) -> Result<(), Stalled> {
        loop {
            self.run_until_stalled();
            if self.live_tasks() == 0 {
                return Ok(());
            }
            match sim.next_deadline() {
                Some(t) if t <= until => sim.advance_to(t),
                Some(_) => {
                    sim.advance_to(until);
                    self.run_until_stalled();
                    return Ok(());
                }
                None if until != Duration::MAX => {
                    sim.advance_to(until);
                    self.run_until_stalled();
                    return Ok(());
                }
                None => {
                    return Err(Stalled {
                        tasks: self.live_tasks(),
                        at: sim.now(),
                    });
                }
            }
        }
    }
}

/// Completes after being polled `n` times: lets other tasks run in between
/// without moving the clock.
pub async fn yield_now(n: usize) {
    let mut left = n;
    poll_fn(|cx| {
        if left == 0 {
            Poll::Ready(())
        } else {
            left -= 1;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}
