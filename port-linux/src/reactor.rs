//! The reactor: one background thread that watches every helper process and
//! every timer of the process.
//!
//! # How waiting scales
//!
//! However many callers wait, for however many helpers and timers, there is
//! exactly **one** thread blocked in the kernel on their behalf: this one, in
//! `epoll_wait`. Each helper contributes one descriptor to its epoll set: a
//! pidfd, readable once the helper has exited; we then reap exactly that child
//! with `waitid(P_PIDFD, …)`, never `waitpid(-1)`, so children of other code in
//! the process are left alone. Timers live in an ordered map; the earliest
//! deadline is `epoll_wait`'s timeout, and an `eventfd` interrupts the wait
//! when an earlier one arrives.
//!
//! Starting a helper is the only step done on the caller's thread: `clone`
//! with `CLONE_VFORK` returns once the child has called `execve` (tens to a
//! few hundred microseconds), so how the exec went is known right then,
//! without a report pipe (see the `spawn` module).
//!
//! A waiting caller holds no thread: its future stores a [`Waker`] and returns
//! `Pending`. A caller blocked through [`block_on`](crate::block_on) parks its
//! own thread, which costs that thread nothing while parked; an async executor
//! can multiplex any number of requests on one thread
//! ([`block_on_all`](crate::block_on_all) does for the CLI). Per helper the
//! reactor does `O(log n)` work in the map and a handful of system calls.
//!
//! Children are owned by the reactor, not by the caller's future: dropping a
//! future (a "killed" caller, `UMH_KILLABLE`) only drops its interest; the
//! helper runs on, is reaped when it exits, and its descriptors are closed.
//! A `NoWait` helper is handled the same way.
//!
//! The reactor thread starts on first use and lives as long as the process.

use std::collections::{BTreeMap, HashMap};
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::task::Waker;
use std::time::Duration;

use rustix::event::epoll;
use rustix::event::{EventfdFlags, eventfd};
use rustix::process::{WaitId, WaitIdOptions, waitid};

use crate::clock;
use crate::spawn::{self, Output, Prepared, Spawned};

/// Token of the eventfd in the epoll set. Child tokens are their ids, which
/// start at 1, so they never collide with it.
const WAKE_TOKEN: u64 = 0;

/// How a child's `execve` went and how it ended, as far as known, plus the
/// waker of whoever still cares (nobody, once its future was dropped).
#[derive(Debug, Default)]
pub(crate) struct ChildState {
    /// `Some(Ok(()))` once executed, `Some(Err(errno))` if the exec failed.
    pub(crate) exec: Option<Result<(), i32>>,
    /// The raw wait status once reaped; `Err(errno)` if it could not be reaped.
    pub(crate) exit: Option<Result<i32, i32>>,
    pub(crate) waker: Option<Waker>,
}

/// The part of a child shared between the reactor and the caller's future.
#[derive(Debug, Default)]
pub(crate) struct ChildShared {
    pub(crate) state: Mutex<ChildState>,
}

impl ChildShared {
    pub(crate) fn lock(&self) -> MutexGuard<'_, ChildState> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// What the reactor keeps per live child.
#[derive(Debug)]
struct Child {
    shared: Arc<ChildShared>,
    pidfd: OwnedFd,
}

#[derive(Debug, Default)]
struct Inner {
    children: HashMap<u64, Child>,
    /// Sleepers by (deadline, id).
    timers: BTreeMap<(Duration, u64), Waker>,
    next_id: u64,
    /// The deadline the reactor will wake up for at the latest; a timer
    /// before it must interrupt `epoll_wait`.
    planned_wake: Option<Duration>,
}

/// The process-wide reactor.
#[derive(Debug)]
pub(crate) struct Reactor {
    epoll: OwnedFd,
    wake: OwnedFd,
    dev_null: OwnedFd,
    inner: Mutex<Inner>,
}

static REACTOR: OnceLock<Result<Reactor, i32>> = OnceLock::new();

/// The reactor, started on first call. `Err(errno)` if it could not be set up
/// (then every helper start fails with that errno).
pub(crate) fn get() -> Result<&'static Reactor, i32> {
    let reactor = REACTOR.get_or_init(|| Reactor::new().map_err(|e| errno_of(&e)));
    match reactor {
        Ok(reactor) => reactor.start().map(|()| reactor),
        Err(errno) => Err(*errno),
    }
}

/// The reactor if it was ever started (does not start it).
pub(crate) fn existing() -> Option<&'static Reactor> {
    REACTOR.get().and_then(|r| r.as_ref().ok())
}

fn errno_of(error: &io::Error) -> i32 {
    error.raw_os_error().unwrap_or(libc::EIO)
}

impl Reactor {
    fn new() -> io::Result<Self> {
        let epoll = epoll::create(epoll::CreateFlags::CLOEXEC)?;
        let wake = eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)?;
        epoll::add(
            &epoll,
            &wake,
            epoll::EventData::new_u64(WAKE_TOKEN),
            epoll::EventFlags::IN,
        )?;
        Ok(Self {
            epoll,
            wake,
            dev_null: spawn::open_dev_null()?,
            inner: Mutex::new(Inner {
                next_id: 1,
                ..Inner::default()
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Starts the reactor thread once; `Err(EAGAIN)` if no thread could be
    /// created (then, and from then on, no helper is started: none could be
    /// reaped).
    fn start(&'static self) -> Result<(), i32> {
        static STARTED: OnceLock<Result<(), i32>> = OnceLock::new();
        *STARTED.get_or_init(|| {
            std::thread::Builder::new()
                .name("reqmod-reactor".into())
                .spawn(move || self.run())
                .map(drop)
                .map_err(|e| e.raw_os_error().unwrap_or(libc::EAGAIN))
        })
    }

    fn interrupt(&self) {
        let _ = rustix::io::write(&self.wake, &1u64.to_ne_bytes());
    }

    // ----- timers -------------------------------------------------------

    /// Registers (or re-registers) a sleeper; returns its id.
    pub(crate) fn add_timer(&self, deadline: Duration, waker: &Waker, id: Option<u64>) -> u64 {
        let mut inner = self.lock();
        let id = match id {
            Some(id) => {
                if let Some(w) = inner.timers.get_mut(&(deadline, id)) {
                    w.clone_from(waker);
                    return id;
                }
                id
            }
            None => {
                let id = inner.next_id;
                inner.next_id += 1;
                id
            }
        };
        inner.timers.insert((deadline, id), waker.clone());
        let earlier = inner.planned_wake.is_none_or(|planned| deadline < planned);
        if earlier {
            inner.planned_wake = Some(deadline);
            drop(inner);
            self.interrupt();
        }
        id
    }

    /// Forgets a sleeper (it completed or was dropped).
    pub(crate) fn remove_timer(&self, deadline: Duration, id: u64) {
        self.lock().timers.remove(&(deadline, id));
    }

    // ----- children -----------------------------------------------------

    /// Starts `cmd` and hands the child to the reactor, which reaps it
    /// whatever happens to the returned handle. The handle already knows how
    /// the `execve` went.
    pub(crate) fn spawn(&self, cmd: &Prepared, output: Output) -> Result<Arc<ChildShared>, i32> {
        let Spawned { pidfd, exec } =
            spawn::spawn(cmd, output, self.dev_null.as_fd()).map_err(|e| errno_of(&e))?;
        let shared = Arc::new(ChildShared {
            state: Mutex::new(ChildState {
                exec: Some(exec),
                ..ChildState::default()
            }),
        });
        let mut inner = self.lock();
        let id = inner.next_id;
        inner.next_id += 1;
        // Register under the lock so that the reactor, which handles events
        // under the same lock, always finds the entry.
        if let Err(e) = epoll::add(
            &self.epoll,
            &pidfd,
            epoll::EventData::new_u64(id),
            epoll::EventFlags::IN,
        ) {
            // Cannot watch it (no memory for the epoll entry): reap it right
            // here; this blocks the caller, but never leaks a zombie.
            drop(inner);
            let _ = waitid(WaitId::PidFd(pidfd.as_fd()), WaitIdOptions::EXITED);
            return Err(e.raw_os_error());
        }
        inner.children.insert(
            id,
            Child {
                shared: Arc::clone(&shared),
                pidfd,
            },
        );
        Ok(shared)
    }

    // ----- the loop -----------------------------------------------------

    fn run(&self) {
        let mut events = Vec::with_capacity(256);
        let mut expired: Vec<Waker> = Vec::new();
        loop {
            // Fire due timers and work out how long we may sleep.
            let timeout = {
                let mut inner = self.lock();
                let now = clock::now();
                while let Some(entry) = inner.timers.first_entry() {
                    if entry.key().0 > now {
                        break;
                    }
                    expired.push(entry.remove());
                }
                let next = inner.timers.first_key_value().map(|(key, _)| key.0);
                inner.planned_wake = next;
                next.map(|deadline| deadline.saturating_sub(now))
            };
            for waker in expired.drain(..) {
                waker.wake();
            }
            let timeout = timeout.map(|t| rustix::time::Timespec {
                tv_sec: t.as_secs().try_into().unwrap_or(i64::MAX),
                tv_nsec: t.subsec_nanos().into(),
            });

            events.clear();
            match epoll::wait(&self.epoll, spare(&mut events), timeout.as_ref()) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    // Should not happen (bad descriptor, fault); do not spin.
                    log::error!("reqmod reactor: epoll_wait: {e}");
                    std::thread::sleep(Duration::from_millis(10));
                    continue;
                }
            }
            let mut to_wake: Vec<Waker> = Vec::new();
            {
                let mut inner = self.lock();
                for event in &events {
                    let token = event.data.u64();
                    if token == WAKE_TOKEN {
                        let mut buf = [0u8; 8];
                        let _ = rustix::io::read(&self.wake, &mut buf);
                        continue;
                    }
                    self.child_event(&mut inner, token, &mut to_wake);
                }
            }
            for waker in to_wake {
                waker.wake();
            }
        }
    }

    /// Handles readiness of one child's pidfd: reaps it if it has exited.
    fn child_event(&self, inner: &mut Inner, id: u64, to_wake: &mut Vec<Waker>) {
        let Some(child) = inner.children.get(&id) else {
            return; // Already reaped (a stale event).
        };
        let exit = match waitid(
            WaitId::PidFd(child.pidfd.as_fd()),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG,
        ) {
            Ok(Some(status)) => Ok(raw_wait_status(&status)),
            Ok(None) | Err(rustix::io::Errno::INTR) => return,
            // ECHILD: someone else reaped it (e.g. SIGCHLD set to SIG_IGN).
            Err(e) => Err(e.raw_os_error()),
        };
        let _ = epoll::delete(&self.epoll, &child.pidfd);
        let mut state = child.shared.lock();
        state.exit = Some(exit);
        if let Some(waker) = state.waker.take() {
            to_wake.push(waker);
        }
        drop(state);
        // Drops (closes) the pidfd.
        inner.children.remove(&id);
    }

    /// Number of children not yet reaped (for tests and diagnostics).
    pub(crate) fn live_children(&self) -> usize {
        self.lock().children.len()
    }
}

/// `epoll::wait` fills spare capacity of a `Vec`.
fn spare(events: &mut Vec<epoll::Event>) -> rustix::buffer::SpareCapacity<'_, epoll::Event> {
    rustix::buffer::spare_capacity(events)
}

/// The raw Linux wait status (as `waitpid` reports it) from `waitid`'s answer:
/// exit code in bits 8..15; or the terminating signal in bits 0..6, with 0x80
/// when it dumped core.
fn raw_wait_status(status: &rustix::process::WaitIdStatus) -> i32 {
    if let Some(code) = status.exit_status() {
        (code & 0xff) << 8
    } else if let Some(signal) = status.terminating_signal() {
        (signal & 0x7f) | if status.dumped() { 0x80 } else { 0 }
    } else {
        0
    }
}
