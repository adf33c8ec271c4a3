//! Uncontended first requests on the virtual-time platform, for
//! `valgrind --tool=callgrind --toggle-collect='icount::measured*'`:
//! callgrind then counts only the instructions of the request loop
//! (name formatting, checks, slot, duplicate table, command, helper, result).
//!
//! `icount <noop|cs> <requests> [first|dup]`: `noop` is a `Kmod` with `NoopRawMutex`
//! (what a uniprocessor kernel's lock costs: nearly nothing), `cs` the default
//! `CriticalSectionRawMutex` over the host's `critical-section` (`std`: a
//! global mutex and a thread-local flag). Every name is distinct, so every
//! request is a first request: it runs the (instant) helper and fills the
//! duplicate table, which from the 65th name on drops its oldest entry.
//! With `dup`, every request is for one name whose finished entry lingers:
//! each is a duplicate answered from the table.

use std::process::ExitCode;

use embassy_sync::blocking_mutex::raw::{CriticalSectionRawMutex, NoopRawMutex, RawMutex};
use reqmod::sim::{Behavior, SimPlatform};
use reqmod::{AllowAll, Config, KernelRet, Kmod};

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(mutex), Some(count)) = (args.first(), args.get(1).and_then(|n| n.parse().ok()))
    else {
        eprintln!("usage: icount <noop|cs> <requests> [first|dup]");
        return ExitCode::from(2);
    };
    let names = match args.get(2).map(String::as_str) {
        None | Some("first") => reqmod_bench::names(count),
        Some("dup") => vec!["warm-up".to_string(); count],
        Some(other) => {
            eprintln!("icount: unknown kind {other:?} (first or dup)");
            return ExitCode::from(2);
        }
    };
    let failures = match mutex.as_str() {
        "noop" => run::<NoopRawMutex>(&names),
        "cs" => run::<CriticalSectionRawMutex>(&names),
        other => {
            eprintln!("icount: unknown mutex {other:?} (noop or cs)");
            return ExitCode::from(2);
        }
    };
    if failures != 0 {
        eprintln!("icount: {failures} requests failed");
        return ExitCode::FAILURE;
    }
    println!("requests {count}");
    ExitCode::SUCCESS
}

fn run<M: RawMutex>(names: &[String]) -> usize {
    let kmod: Kmod<SimPlatform, AllowAll, M> =
        Kmod::with_config(SimPlatform::new(), Config::DEFAULT, AllowAll);
    kmod.platform().set_script(|_| Behavior::exits(0));
    kmod.platform().set_recording(false);
    // One request before the measured loop, so one-time set-up (thread-local
    // initialisation of the host's critical section) is not counted.
    let warm = embassy_futures::block_on(kmod.request_module(format_args!("warm-up")));
    assert_eq!(warm.kernel_ret(), 0);
    measured(&kmod, names)
}

/// The measured loop: one waiting request per name, each driven to its end.
#[inline(never)]
fn measured<M: RawMutex>(kmod: &Kmod<SimPlatform, AllowAll, M>, names: &[String]) -> usize {
    let mut failures = 0;
    for name in names {
        let ret = embassy_futures::block_on(kmod.request_module(format_args!("{name}")));
        if ret.kernel_ret() != 0 {
            failures += 1;
        }
    }
    failures
}
