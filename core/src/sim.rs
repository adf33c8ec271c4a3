//! A virtual-time test platform (feature `sim`, uses `std`).
//!
//! - [`SimPlatform`]: a [`Platform`] whose clock is virtual and whose helper is
//!   scripted: each run takes a given virtual time and returns a given status or
//!   errno, or fails to start, or runs a *body* (a future that may make
//!   requests of its own, on behalf of the helper's request, as a module init
//!   does); every [`HelperCommand`] is recorded with its wait mode and times,
//!   and every [`Event`] too. Helpers can be killed (the watchdog's
//!   [`Platform::kill_helper`]).
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

use crate::timeline::ChromeTrace;
use crate::{
    Errno, Event, HelperCommand, MODULE_NAME_LEN, Platform, RequestId, UmhWait, WaitStatus,
};

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

    /// Never exits by itself (until killed).
    pub const fn hangs(self) -> Self {
        self.lasting(Duration::MAX)
    }

    /// Takes `exec_time` to be executed.
    pub const fn exec_taking(mut self, exec_time: Duration) -> Self {
        self.exec_time = exec_time;
        self
    }
}

/// One helper run the platform received.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HelperRun<const NAME: usize = MODULE_NAME_LEN> {
    /// The command, as the core built it.
    pub command: HelperCommand<NAME>,
    /// The wait mode.
    pub wait: UmhWait,
    /// Virtual time of the call.
    pub started: Duration,
    /// Virtual time the helper exits (or failed to start, or was killed).
    pub ends: Duration,
    /// Whether the watchdog killed it.
    pub killed: bool,
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
    /// The event's kind in snake case: `"request"`, `"module_request"`,
    /// `"duplicate"`, `"busy_timeout"`, `"slot_granted"`, … (see [`kind_of`]).
    pub kind: &'static str,
    /// The request, if the event belongs to one.
    pub id: Option<RequestId>,
    /// The module name (empty where the event has none).
    pub name: String,
    /// The request's `wait` flag (`false` where the event has none).
    pub wait: bool,
    /// The event's other fields, as `Debug` prints them.
    pub detail: String,
}

/// The snake-case name of an event's kind.
pub fn kind_of(event: &Event<'_>) -> &'static str {
    match event {
        Event::Request { .. } => "request",
        Event::Refused { .. } => "refused",
        Event::AsyncWait { .. } => "async_wait",
        Event::LoopRefused { .. } => "loop_refused",
        Event::SlotWait { .. } => "slot_wait",
        Event::SlotGranted { .. } => "slot_granted",
        Event::BusyTimeout { .. } => "busy_timeout",
        Event::SlotReleased { .. } => "slot_released",
        Event::ModuleRequest { .. } => "module_request",
        Event::Duplicate { .. } => "duplicate",
        Event::HelperStarted { .. } => "helper_started",
        Event::HelperKilled { .. } => "helper_killed",
        Event::HelperExited { .. } => "helper_exited",
        Event::Finished { .. } => "finished",
        Event::Cancelled { .. } => "cancelled",
        Event::HelpersDisabled => "helpers_disabled",
        Event::HelpersEnabled => "helpers_enabled",
    }
}

/// A helper body: what a helper run does instead of its scripted time and
/// status, as a future (it may make requests: they name the helper's
/// request as their parent). Its output is the helper's wait status.
pub type Body = Pin<Box<dyn Future<Output = WaitStatus>>>;

type Script<const NAME: usize> = Box<dyn Fn(&HelperCommand<NAME>) -> Behavior>;
type Bodies<const NAME: usize> = Box<dyn Fn(&HelperCommand<NAME>) -> Option<Body>>;
/// A sink for every event, with its virtual time.
type Observer = Box<dyn FnMut(Duration, &Event<'_>)>;

std::thread_local! {
    /// The task the executor is polling on this thread.
    static CURRENT_TASK: Cell<Option<usize>> = const { Cell::new(None) };
}

/// The virtual-time platform. See the [module docs](self). `NAME` is the
/// module-name bound of the `Kmod` it serves.
pub struct SimPlatform<const NAME: usize = MODULE_NAME_LEN> {
    now: Cell<Duration>,
    timers: RefCell<BTreeMap<(Duration, u64), Waker>>,
    next_timer: Cell<u64>,
    script: RefCell<Script<NAME>>,
    bodies: RefCell<Option<Bodies<NAME>>>,
    runs: RefCell<Vec<HelperRun<NAME>>>,
    events: RefCell<Vec<RecordedEvent>>,
    observer: RefCell<Option<Observer>>,
    timeline: RefCell<Option<ChromeTrace<String>>>,
    /// Requests whose helper the watchdog killed.
    killed: RefCell<Vec<RequestId>>,
    /// The waker of each helper's life after its exec, by request.
    lives: RefCell<BTreeMap<RequestId, Waker>>,
    can_kill: Cell<bool>,
    /// The request whose helper body is being polled (parent of its requests).
    parent: Cell<Option<RequestId>>,
    is_async: Cell<bool>,
    recording: Cell<bool>,
}

impl Default for SimPlatform {
    fn default() -> Self {
        Self::new()
    }
}

impl<const NAME: usize> fmt::Debug for SimPlatform<NAME> {
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
    /// path fails like a missing file (`ENOENT`). For a `Kmod` with the
    /// kernel's name bound; [`with_name_bound`](SimPlatform::with_name_bound)
    /// for another.
    pub fn new() -> Self {
        Self::with_name_bound()
    }
}

impl<const NAME: usize> SimPlatform<NAME> {
    /// [`new`](SimPlatform::new) for a `Kmod` whose name bound is `NAME`.
    pub fn with_name_bound() -> Self {
        SimPlatform {
            now: Cell::new(Duration::ZERO),
            timers: RefCell::new(BTreeMap::new()),
            next_timer: Cell::new(0),
            script: RefCell::new(Box::new(|cmd: &HelperCommand<NAME>| {
                if cmd.path() == b"/sbin/modprobe" {
                    Behavior::exits(0)
                } else {
                    Behavior::fails_to_start(Errno::ENOENT)
                }
            })),
            bodies: RefCell::new(None),
            runs: RefCell::new(Vec::new()),
            events: RefCell::new(Vec::new()),
            observer: RefCell::new(None),
            timeline: RefCell::new(None),
            killed: RefCell::new(Vec::new()),
            lives: RefCell::new(BTreeMap::new()),
            can_kill: Cell::new(true),
            parent: Cell::new(None),
            is_async: Cell::new(false),
            recording: Cell::new(true),
        }
    }

    /// Gives helper runs for which `bodies` returns `Some` that body instead
    /// of their scripted run time and status (their exec time and exec
    /// errors still come from the script). Requests made while a body runs
    /// name the helper's request as their parent.
    pub fn set_bodies(&self, bodies: impl Fn(&HelperCommand<NAME>) -> Option<Body> + 'static) {
        *self.bodies.borrow_mut() = Some(Box::new(bodies));
    }

    /// Calls `observer` with every event and its virtual time, as it happens.
    pub fn observe(&self, observer: impl FnMut(Duration, &Event<'_>) + 'static) {
        *self.observer.borrow_mut() = Some(Box::new(observer));
    }

    /// Records a timeline of every following event ([`ChromeTrace`]): read it
    /// with [`chrome_trace`](Self::chrome_trace) or write it to a file with
    /// [`write_chrome_trace`](Self::write_chrome_trace).
    pub fn record_chrome_trace(&self) {
        *self.timeline.borrow_mut() = Some(ChromeTrace::new(String::new()));
    }

    /// The timeline recorded so far, as a complete JSON document (empty
    /// without [`record_chrome_trace`](Self::record_chrome_trace)).
    pub fn chrome_trace(&self) -> String {
        let so_far = self
            .timeline
            .borrow()
            .as_ref()
            .map(|t| t.get_ref().clone())
            .unwrap_or_default();
        if so_far.is_empty() {
            "[]\n".into()
        } else {
            so_far + "\n]\n"
        }
    }

    /// Writes the timeline to `path` (open it in `ui.perfetto.dev`).
    pub fn write_chrome_trace(&self, path: impl AsRef<std::path::Path>) -> std::io::Result<()> {
        std::fs::write(path, self.chrome_trace())
    }

    /// Whether [`Platform::kill_helper`] can kill (on by default).
    pub fn set_can_kill(&self, on: bool) {
        self.can_kill.set(on);
    }

    /// The virtual time (also [`Platform::now`]).
    pub fn now(&self) -> Duration {
        self.now.get()
    }

    /// Decides what every following helper run does.
    pub fn set_script(&self, script: impl Fn(&HelperCommand<NAME>) -> Behavior + 'static) {
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
    pub fn runs(&self) -> Vec<HelperRun<NAME>> {
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

    fn record(&self, event: &Event<'_>) {
        if let Some(observe) = self.observer.borrow_mut().as_mut() {
            observe(self.now.get(), event);
        }
        if let Some(t) = self.timeline.borrow_mut().as_mut() {
            // Writing to a String cannot fail.
            let _ = t.event(self.now.get(), event);
        }
        if !self.recording.get() {
            return;
        }
        let (name, wait) = match *event {
            Event::Request { name, wait, .. }
            | Event::ModuleRequest { name, wait, .. }
            | Event::Duplicate { name, wait, .. } => (name, wait),
            Event::HelperStarted { name, wait, .. } => (name, wait == UmhWait::Proc),
            Event::AsyncWait { name, .. } => (name, true),
            Event::Refused { name, .. }
            | Event::LoopRefused { name, .. }
            | Event::SlotWait { name, .. }
            | Event::SlotGranted { name, .. }
            | Event::BusyTimeout { name, .. }
            | Event::HelperKilled { name, .. }
            | Event::HelperExited { name, .. }
            | Event::Finished { name, .. }
            | Event::Cancelled { name, .. } => (name, false),
            _ => ("", false),
        };
        self.events.borrow_mut().push(RecordedEvent {
            at: self.now.get(),
            kind: kind_of(event),
            id: event.id(),
            name: name.to_string(),
            wait,
            detail: std::format!("{event:?}"),
        });
    }

    /// Requests whose helper the watchdog killed, in order.
    pub fn killed(&self) -> Vec<RequestId> {
        self.killed.borrow().clone()
    }
}

/// A timer on the virtual clock; dropping it disarms it.
struct Sleep<'a, const NAME: usize> {
    sim: &'a SimPlatform<NAME>,
    deadline: Duration,
    key: Option<(Duration, u64)>,
}

impl<const NAME: usize> Future for Sleep<'_, NAME> {
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

impl<const NAME: usize> Drop for Sleep<'_, NAME> {
    fn drop(&mut self) {
        if let Some(key) = self.key.take() {
            self.sim.timers.borrow_mut().remove(&key);
        }
    }
}

impl<const NAME: usize> Platform<NAME> for SimPlatform<NAME> {
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

    async fn run_helper(
        &self,
        cmd: HelperCommand<NAME>,
        wait: UmhWait,
    ) -> Result<WaitStatus, Errno> {
        let behavior = (self.script.borrow())(&cmd);
        let body = match behavior.start {
            Ok(()) => self.bodies.borrow().as_ref().and_then(|b| b(&cmd)),
            Err(_) => None,
        };
        let request = cmd.request();
        let started = self.now.get();
        let exec_done = started.saturating_add(behavior.exec_time);
        let ends = match (behavior.start, &body) {
            (Ok(()), None) => exec_done.saturating_add(behavior.run_time),
            // A body's end is known when it ends.
            (Ok(()), Some(_)) => Duration::MAX,
            (Err(_), _) => exec_done,
        };
        let index = self.runs.borrow().len();
        if self.recording.get() {
            self.runs.borrow_mut().push(HelperRun {
                command: cmd,
                wait,
                started,
                ends,
                killed: false,
                behavior,
                task: CURRENT_TASK.with(Cell::get),
            });
        }
        self.sleep_until(exec_done).await;
        behavior.start?;
        let life = Life {
            sim: self,
            request,
            body,
            sleep: Sleep {
                sim: self,
                deadline: ends,
                key: None,
            },
            status: behavior.status,
        };
        match wait {
            // The helper lives on (a body keeps running as a detached task
            // would only if polled: the sim runs it as part of the caller).
            UmhWait::Exec => Ok(WaitStatus::SUCCESS),
            UmhWait::Proc => {
                let (status, killed) = life.await;
                if self.recording.get()
                    && let Some(run) = self.runs.borrow_mut().get_mut(index)
                {
                    run.ends = self.now.get();
                    run.killed = killed;
                }
                Ok(status)
            }
        }
    }

    fn current_is_async(&self) -> bool {
        self.is_async.get()
    }

    fn parent_request(&self) -> Option<RequestId> {
        self.parent.get()
    }

    fn kill_helper(&self, request: RequestId) -> bool {
        if !self.can_kill.get() {
            return false;
        }
        self.killed.borrow_mut().push(request);
        let life = self.lives.borrow_mut().remove(&request);
        if let Some(w) = life {
            w.wake();
        }
        true
    }

    fn trace(&self, event: &Event<'_>) {
        self.record(event);
    }
}

impl<const NAME: usize> Drop for Life<'_, NAME> {
    fn drop(&mut self) {
        self.sim.lives.borrow_mut().remove(&self.request);
    }
}

/// A helper's life after its exec: its body, or its run time; ends early
/// with SIGKILL once killed. Output: its status, and whether it was killed.
struct Life<'a, const NAME: usize> {
    sim: &'a SimPlatform<NAME>,
    request: RequestId,
    body: Option<Body>,
    sleep: Sleep<'a, NAME>,
    status: WaitStatus,
}

impl<const NAME: usize> Future for Life<'_, NAME> {
    type Output = (WaitStatus, bool);

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = &mut *self;
        if this.sim.killed.borrow().contains(&this.request) {
            this.sim.lives.borrow_mut().remove(&this.request);
            return Poll::Ready((WaitStatus::signaled(9), true));
        }
        this.sim
            .lives
            .borrow_mut()
            .insert(this.request, cx.waker().clone());
        match &mut this.body {
            Some(body) => {
                let outer = this.sim.parent.replace(Some(this.request));
                let polled = body.as_mut().poll(cx);
                this.sim.parent.set(outer);
                polled.map(|status| (status, false))
            }
            None => {
                let status = this.status;
                Pin::new(&mut this.sleep).poll(cx).map(|()| (status, false))
            }
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

/// A waker made for one poll that wakes the task's [`TaskWaker`].
struct FreshWaker(Arc<TaskWaker>);

impl Wake for FreshWaker {
    fn wake(self: Arc<Self>) {
        self.0.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.0.wake_by_ref();
    }
}

type Task<'a> = Pin<Box<dyn Future<Output = ()> + 'a>>;

/// A deterministic single-threaded executor over a [`SimPlatform`]'s clock.
pub struct Executor<'a> {
    tasks: Vec<Option<(Task<'a>, Arc<TaskWaker>)>>,
    ready: Arc<Mutex<VecDeque<usize>>>,
    polls: u64,
    observer: Option<Box<dyn FnMut() + 'a>>,
    fresh_wakers: bool,
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
            fresh_wakers: false,
        }
    }

    /// Hands every poll a new waker (equivalent: it wakes the same task, but
    /// [`Waker::will_wake`] says it is not the previous one), as simple kernel
    /// executors do that build a waker per poll. Code that relies on
    /// `will_wake` being exact misbehaves under this executor.
    pub fn fresh_wakers(&mut self, on: bool) {
        self.fresh_wakers = on;
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
            let w = if self.fresh_wakers {
                Waker::from(Arc::new(FreshWaker(waker.clone())))
            } else {
                Waker::from(waker.clone())
            };
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

/// The kit's [`Harness`](crate::conformance::Harness) on the sim: every
/// program the kit asks for, as a scripted behaviour of one shared
/// [`SimPlatform`] (so one [`Executor`] moves every case's clock).
#[cfg(feature = "conformance")]
#[derive(Debug)]
pub struct SimHarness<'a> {
    sim: &'a SimPlatform,
}

#[cfg(feature = "conformance")]
const PROGRAMS: &[(crate::conformance::Program, &str, Behavior)] = {
    use crate::conformance::Program as P;
    const fn sleeps(ms: u64, code: u8) -> Behavior {
        Behavior::exits(code).lasting(Duration::from_millis(ms))
    }
    &[
        (P::Exit(0), "/sim/exit-0", Behavior::exits(0)),
        (P::Exit(1), "/sim/exit-1", Behavior::exits(1)),
        (P::Exit(3), "/sim/exit-3", Behavior::exits(3)),
        (
            P::SleepThenExit { ms: 100, code: 0 },
            "/sim/sleep-100-exit-0",
            sleeps(100, 0),
        ),
        (
            P::SleepThenExit { ms: 300, code: 3 },
            "/sim/sleep-300-exit-3",
            sleeps(300, 3),
        ),
        (
            P::SleepThenExit { ms: 400, code: 0 },
            "/sim/sleep-400-exit-0",
            sleeps(400, 0),
        ),
        (
            P::SleepThenExit { ms: 500, code: 0 },
            "/sim/sleep-500-exit-0",
            sleeps(500, 0),
        ),
        (
            P::SleepThenExit { ms: 1000, code: 0 },
            "/sim/sleep-1000-exit-0",
            sleeps(1000, 0),
        ),
        (P::Signal(9), "/sim/signal-9", Behavior::killed_by(9)),
        (P::Signal(11), "/sim/signal-11", Behavior::killed_by(11)),
        (P::Hang, "/sim/hang", Behavior::exits(0).hangs()),
        (
            P::Missing,
            "/sim/missing",
            Behavior::fails_to_start(Errno::ENOENT),
        ),
        (
            P::NotExecutable,
            "/sim/not-executable",
            Behavior::fails_to_start(Errno::EACCES),
        ),
        (
            P::NotAProgram,
            "/sim/not-a-program",
            Behavior::fails_to_start(Errno::ENOEXEC),
        ),
    ]
};

#[cfg(feature = "conformance")]
impl<'a> SimHarness<'a> {
    /// Scripts `sim` with the kit's programs.
    pub fn new(sim: &'a SimPlatform) -> Self {
        sim.set_script(|cmd| {
            PROGRAMS
                .iter()
                .find(|(_, path, _)| path.as_bytes() == cmd.path())
                .map_or(Behavior::fails_to_start(Errno::ENOENT), |p| p.2)
        });
        SimHarness { sim }
    }
}

#[cfg(feature = "conformance")]
impl<'a> crate::conformance::Harness for SimHarness<'a> {
    type Platform = &'a SimPlatform;

    fn platform(&self) -> &'a SimPlatform {
        self.sim
    }

    fn program(&self, program: crate::conformance::Program) -> Option<&[u8]> {
        PROGRAMS
            .iter()
            .find(|p| p.0 == program)
            .map(|p| p.1.as_bytes())
    }

    fn live_helpers(&self) -> Option<usize> {
        Some(self.sim.helpers_alive_at(self.sim.now()))
    }
}
