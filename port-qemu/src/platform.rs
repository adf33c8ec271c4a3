//! `reqmod::Platform` for this OS: the glue a hobby kernel writes.
//!
//! - `now`: the `time` CSR (10 MHz on QEMU `virt`), as a [`Duration`].
//! - `sleep_until`: a [`Sleep`] on the timer queue ([`crate::os::time`]).
//! - `run_helper`: looks the path up in the program table
//!   ([`crate::programs`]); a path that is not there fails like a missing file
//!   (`-ENOENT`). Otherwise it spawns a new task that runs the program and
//!   waits as the mode says: `NoWait` returns at once, `Exec` once the task has
//!   started the program, `Proc` once the program has exited, with its exit
//!   code as a wait status. The task owns everything it uses, so it runs to its
//!   end even if the caller's future is dropped (`UMH_KILLABLE`).
//!
//! Two autoloaders live in `static`s: [`KMOD`] with reqmod's defaults
//! (duplicate table on) and [`KMOD_NODEDUP`] like the kernel's default build
//! (`CONFIG_MODULE_DEBUG_AUTOLOAD_DUPS` off). Each one's platform knows its
//! `Kmod` (a `static` may point at itself), so a helper started by one makes
//! its nested requests (module inits calling `request_module`) through the same one.

use alloc::boxed::Box;
use alloc::collections::BTreeMap;
use alloc::string::String;
use alloc::sync::Arc;
use core::cell::RefCell;
use core::future::Future;
use core::pin::Pin;
use core::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use core::time::Duration;

use critical_section::Mutex;
use reqmod::{Config, Errno, Event, HelperCommand, Kmod, Outcome, Platform, UmhWait, WaitStatus};

use crate::machine::{MAX_HARTS, cpu};
use crate::os::executor;
use crate::os::sync::OnceSignal;
use crate::os::time::{self, Sleep};
use crate::programs::{self, Invocation};

/// A boxed, sendable future (what programs and module inits return).
pub type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

/// An autoloader that helpers can call back into, whatever its configuration.
///
/// `Kmod`'s request futures are `impl Future`, so this object-safe view boxes
/// them; programs and module inits hold a `&'static dyn Requester`.
pub trait Requester: Sync {
    /// `request_module` (`wait`) or `request_module_nowait` for `name`.
    fn request(&'static self, wait: bool, name: &str) -> BoxFuture<Outcome>;
    /// Which autoloader this is (for logs).
    fn label(&self) -> &'static str;
}

/// The autoloader type of this OS.
pub type SystemKmod = Kmod<QemuPlatform>;

/// `request_module` (`wait`) or `request_module_nowait` for the name `name`.
/// (The name is formatted before this returns, so the future borrows nothing
/// but `kmod` and can move between harts.)
pub fn request(
    kmod: &'static SystemKmod,
    wait: bool,
    name: &str,
) -> impl Future<Output = Outcome> + Send + 'static {
    kmod.request(wait, format_args!("{name}"))
}

impl Requester for SystemKmod {
    fn request(&'static self, wait: bool, name: &str) -> BoxFuture<Outcome> {
        Box::pin(request(self, wait, name))
    }

    fn label(&self) -> &'static str {
        self.platform().label
    }
}

/// The autoloader with reqmod's defaults (duplicate table on).
pub static KMOD: SystemKmod = Kmod::new(QemuPlatform::new("kmod", &KMOD));

/// The autoloader as the kernel builds it by default: no duplicate table.
pub static KMOD_NODEDUP: SystemKmod = Kmod::with_config(
    QemuPlatform::new("kmod-nodedup", &KMOD_NODEDUP),
    Config::DEFAULT.with_dedup(false),
    reqmod::AllowAll,
);

/// The platform: the clock, sleeping, and helpers as tasks.
#[derive(Debug)]
pub struct QemuPlatform {
    label: &'static str,
    kmod: &'static dyn Requester,
}

impl core::fmt::Debug for dyn Requester {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.label())
    }
}

impl QemuPlatform {
    /// A platform whose helpers call back into `kmod`.
    pub const fn new(label: &'static str, kmod: &'static dyn Requester) -> Self {
        QemuPlatform { label, kmod }
    }

    /// Which autoloader this platform serves.
    pub fn label(&self) -> &'static str {
        self.label
    }
}

/// Helper counters, all autoloaders together.
#[derive(Debug)]
pub struct HelperStats {
    /// Helpers spawned (the path was in the program table).
    pub spawned: AtomicU64,
    /// Helpers whose program has exited.
    pub exited: AtomicU64,
    /// `run_helper` calls for a path not in the table.
    pub missing: AtomicU64,
    /// Helpers between spawn and exit now.
    pub running: AtomicUsize,
    /// Most helpers ever running at once (resettable, see [`reset_max_running`]).
    pub max_running: AtomicUsize,
    /// Programs started per hart.
    pub per_hart: [AtomicU64; MAX_HARTS],
}

/// Helper counters.
pub static HELPERS: HelperStats = HelperStats {
    spawned: AtomicU64::new(0),
    exited: AtomicU64::new(0),
    missing: AtomicU64::new(0),
    running: AtomicUsize::new(0),
    max_running: AtomicUsize::new(0),
    per_hart: [const { AtomicU64::new(0) }; MAX_HARTS],
};

/// Restarts the "most helpers at once" gauge from the current count.
pub fn reset_max_running() {
    HELPERS
        .max_running
        .store(HELPERS.running.load(Ordering::SeqCst), Ordering::SeqCst);
}

/// Per-name counters, for the demo's table.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NameCounts {
    /// Helpers run for this name.
    pub helper_runs: u32,
    /// Requests for this name answered from the duplicate table.
    pub duplicates: u32,
}

static BY_NAME: Mutex<RefCell<BTreeMap<String, NameCounts>>> =
    Mutex::new(RefCell::new(BTreeMap::new()));

/// Counters for `name` so far.
pub fn counts_for(name: &str) -> NameCounts {
    critical_section::with(|cs| {
        BY_NAME
            .borrow_ref(cs)
            .get(name)
            .copied()
            .unwrap_or_default()
    })
}

/// Every name seen so far, with its counters.
pub fn all_counts() -> BTreeMap<String, NameCounts> {
    critical_section::with(|cs| BY_NAME.borrow_ref(cs).clone())
}

fn count(name: &str, f: impl FnOnce(&mut NameCounts)) {
    critical_section::with(|cs| {
        let mut by_name = BY_NAME.borrow_ref_mut(cs);
        // Allocate a key only for a new name: a storm of duplicates for known
        // names then takes no allocator lock here.
        match by_name.get_mut(name) {
            Some(counts) => f(counts),
            None => f(by_name.entry(String::from(name)).or_default()),
        }
    });
}

/// What the caller of `run_helper` and the helper task share.
struct HelperRun {
    started: OnceSignal<()>,
    exited: OnceSignal<u8>,
}

impl Platform for QemuPlatform {
    fn now(&self) -> Duration {
        time::now()
    }

    fn sleep_until(&self, deadline: Duration) -> impl Future<Output = ()> {
        Sleep::until(deadline)
    }

    fn run_helper(
        &self,
        cmd: HelperCommand,
        wait: UmhWait,
    ) -> impl Future<Output = Result<WaitStatus, Errno>> {
        let kmod = self.kmod;
        async move {
            let Some(program) = programs::lookup(cmd.path()) else {
                HELPERS.missing.fetch_add(1, Ordering::Relaxed);
                return match wait {
                    // UMH_NO_WAIT cannot report a failed exec.
                    UmhWait::NoWait => Ok(WaitStatus::SUCCESS),
                    UmhWait::Exec | UmhWait::Proc => Err(Errno::ENOENT),
                };
            };
            let invocation = Invocation::new(&cmd, kmod);
            count(cmd.name(), |c| c.helper_runs += 1);
            let run = Arc::new(HelperRun {
                started: OnceSignal::new(),
                exited: OnceSignal::new(),
            });
            let theirs = Arc::clone(&run);
            HELPERS.spawned.fetch_add(1, Ordering::Relaxed);
            let running = HELPERS.running.fetch_add(1, Ordering::SeqCst) + 1;
            HELPERS.max_running.fetch_max(running, Ordering::SeqCst);
            executor::spawn(async move {
                HELPERS.per_hart[cpu::hart_id()].fetch_add(1, Ordering::Relaxed);
                theirs.started.set(());
                let code = program.exec(invocation).await;
                HELPERS.running.fetch_sub(1, Ordering::SeqCst);
                HELPERS.exited.fetch_add(1, Ordering::Relaxed);
                theirs.exited.set(code);
            });
            match wait {
                UmhWait::NoWait => Ok(WaitStatus::SUCCESS),
                UmhWait::Exec => {
                    run.started.wait().await;
                    Ok(WaitStatus::SUCCESS)
                }
                UmhWait::Proc => Ok(WaitStatus::exited(run.exited.wait().await)),
            }
        }
    }

    fn trace(&self, event: &Event<'_>) {
        match event {
            Event::ModuleRequest { name, wait, .. } => {
                defmt::debug!(
                    "[{=str}] module_request {=str:?} wait={}",
                    self.label,
                    name,
                    wait
                );
            }
            Event::Duplicate { name, .. } => count(name, |c| c.duplicates += 1),
            _ => {}
        }
    }
}
