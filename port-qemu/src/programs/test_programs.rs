//! Helper programs that misbehave on purpose, for the selftest.

use alloc::boxed::Box;
use alloc::format;
use core::time::Duration;

use reqmod::kernel_ret;

use super::Invocation;
use crate::os::time;
use crate::platform::BoxFuture;

/// How long [`slow`] sleeps unless its name says otherwise: more than the 5 s
/// busy timeout, so slots stay taken past it.
pub const SLOW_DEFAULT: Duration = Duration::from_secs(6);

/// `/sbin/modprobe-slow -q -- NAME`: sleeps, then exits 0. A name
/// `sleep<MS>-…` sleeps MS milliseconds; any other name sleeps [`SLOW_DEFAULT`].
pub fn slow(inv: Invocation) -> BoxFuture<u8> {
    Box::pin(async move {
        let name = inv.arg(3).unwrap_or("");
        let ms = name
            .strip_prefix("sleep")
            .and_then(|rest| rest.split('-').next())
            .and_then(|ms| ms.parse::<u64>().ok());
        let d = ms.map_or(SLOW_DEFAULT, Duration::from_millis);
        time::sleep(d).await;
        0
    })
}

/// `/sbin/modprobe-fail`: exits 1 ("module not found") at once.
pub fn fail(_inv: Invocation) -> BoxFuture<u8> {
    Box::pin(async { 1 })
}

/// `/sbin/modprobe-loop -q -- loop-N`: requests `loop-(N+1)` through the
/// autoloader that started it, waiting, so each level runs this program
/// again: a loop. Every level holds a slot while it waits, so the 51st level
/// waits 5 s for a slot and gets `-ETIME`; then every level exits 1 and the
/// chain unwinds. Exits 0 only if its own request succeeded.
pub fn looping(inv: Invocation) -> BoxFuture<u8> {
    Box::pin(async move {
        let name = inv.arg(3).unwrap_or("");
        let depth: u32 = name
            .strip_prefix("loop-")
            .and_then(|n| n.parse().ok())
            .unwrap_or(0);
        let next = format!("loop-{}", depth + 1);
        let ret = kernel_ret(inv.kmod.request(true, &next).await);
        if ret != 0 {
            defmt::debug!(
                "modprobe-loop: {=str} -> {} ({=str} unwinds)",
                next.as_str(),
                ret,
                name
            );
        }
        u8::from(ret != 0)
    })
}

/// `/sbin/modprobe-env`: exits 0 iff it got exactly
/// `argv = [/sbin/modprobe-env, -q, --, NAME]` and SPEC §4's environment.
pub fn check_env(inv: Invocation) -> BoxFuture<u8> {
    Box::pin(async move {
        let argv_ok = inv.argv.len() == 4
            && inv.argv[0] == b"/sbin/modprobe-env"
            && inv.argv[1] == b"-q"
            && inv.argv[2] == b"--";
        let envp_ok = inv.envp.len() == 3
            && inv.envp[0] == b"HOME=/"
            && inv.envp[1] == b"TERM=linux"
            && inv.envp[2] == b"PATH=/sbin:/usr/sbin:/bin:/usr/bin";
        u8::from(!(argv_ok && envp_ok))
    })
}
