//! A complete minimal port: the `Platform` a kernel author copies, driving the
//! core on the host. Run: `cargo run -p reqmod-examples --example minimal_port`
//!
//! The "kernel" here has a monotonic clock, a timer queue, and programs that
//! are plain functions looked up by path. Its idle loop (in `main`) sleeps until
//! the next timer, as a kernel would `wfi` until its timer interrupt.

use std::cell::RefCell;
use std::future::{Future, poll_fn};
use std::pin::pin;
use std::sync::OnceLock;
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use reqmod::{Errno, HelperCommand, KernelRet, Kmod, Platform, UmhWait, WaitStatus};

// ---------------------------------------------------------------- the port

/// A built-in program: `main(argv) -> exit code`.
type Program = fn(&[&[u8]]) -> u8;

/// Built-in programs, by path.
const PROGRAMS: &[(&str, Program)] = &[("/sbin/modprobe", modprobe)];

/// `modprobe -q -- NAME`: "loads" the modules this kernel knows, exit 1 otherwise.
fn modprobe(argv: &[&[u8]]) -> u8 {
    match argv {
        [_, b"-q", b"--", b"fs-vfat" | b"snd"] => 0,
        _ => 1,
    }
}

struct TinyKernel;

static BOOT: OnceLock<Instant> = OnceLock::new();

thread_local! {
    /// The timer queue: deadlines and the tasks to wake.
    static TIMERS: RefCell<Vec<(Duration, Waker)>> = const { RefCell::new(Vec::new()) };
}

impl Platform for TinyKernel {
    fn now(&self) -> Duration {
        BOOT.get_or_init(Instant::now).elapsed()
    }

    async fn sleep_until(&self, deadline: Duration) {
        poll_fn(|cx| {
            if self.now() >= deadline {
                return Poll::Ready(());
            }
            TIMERS.with(|t| t.borrow_mut().push((deadline, cx.waker().clone())));
            Poll::Pending
        })
        .await
    }

    async fn run_helper(&self, cmd: HelperCommand, wait: UmhWait) -> Result<WaitStatus, Errno> {
        let main = PROGRAMS
            .iter()
            .find(|(path, _)| path.as_bytes() == cmd.path())
            .map(|(_, main)| main)
            .ok_or(Errno::ENOENT)?;
        // This kernel runs a program to completion at once, so every wait mode
        // is satisfied here; a real one would spawn a task and await it for Proc.
        let code = main(&cmd.argv());
        Ok(match wait {
            UmhWait::Proc => WaitStatus::exited(code),
            UmhWait::Exec | UmhWait::NoWait => WaitStatus::SUCCESS,
        })
    }
}

static KMOD: Kmod<TinyKernel> = Kmod::new(TinyKernel);

// ------------------------------------------------------- the idle loop

/// Runs `fut` to completion: poll, and when it is blocked fire due timers or
/// sleep until the next one (a kernel's `wfi` until the timer interrupt).
fn block_on<T>(fut: impl Future<Output = T>) -> T {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        if let Poll::Ready(out) = fut.as_mut().poll(&mut cx) {
            return out;
        }
        let next = TIMERS.with(|t| t.borrow_mut().drain(..).map(|(d, _)| d).min());
        if let Some(deadline) = next {
            std::thread::sleep(deadline.saturating_sub(TinyKernel.now()));
        }
    }
}

fn main() {
    let requests = async {
        let a = reqmod::request_module!(KMOD, "fs-{}", "vfat");
        let b = reqmod::request_module!(KMOD, "snd");
        let c = reqmod::request_module!(KMOD, "no-such-module");
        embassy_futures::join::join3(a, b, c).await
    };
    let (a, b, c) = block_on(requests);
    println!("fs-vfat        -> {} ({a:?})", a.kernel_ret());
    println!("snd            -> {} ({b:?})", b.kernel_ret());
    println!(
        "no-such-module -> {} ({c:?}, modprobe exited 1)",
        c.kernel_ret()
    );
    KMOD.set_modprobe_path(b"/sbin/missing\n");
    let d = block_on(reqmod::request_module!(KMOD, "snd2"));
    println!("with a missing helper: {} ({d:?})", d.kernel_ret());
    println!("{:#?}", KMOD.stats());
}
