//! Running one helper and waiting for it the way a wait mode asks.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use crate::reactor::{self, ChildShared};
use crate::spawn::{Output, Prepared};
use reqmod::UmhWait as Wait;

/// Starts the helper and waits as `wait` says. `Ok(raw wait status)` (always
/// 0 for `NoWait` and `Exec`) or `Err(errno)`.
///
/// The child is the reactor's from the moment it exists: dropping this future
/// at any point leaves it running to its end, and it is reaped then.
pub(crate) async fn run(cmd: Prepared, output: Output, wait: Wait) -> Result<i32, i32> {
    let reactor = reactor::get()?;
    let shared = reactor.spawn(&cmd, output)?;
    // The child has executed (or failed to): the strings are not needed.
    drop(cmd);
    match wait {
        Wait::NoWait => Ok(0),
        Wait::Exec | Wait::Proc => WaitFor { shared, wait }.await,
    }
}

/// Waits for a child's exec outcome (`Exec`) or exit (`Proc`).
struct WaitFor {
    shared: Arc<ChildShared>,
    wait: Wait,
}

impl Future for WaitFor {
    type Output = Result<i32, i32>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let mut state = self.shared.lock();
        let ready = match (self.wait, state.exec, state.exit) {
            (_, Some(Err(errno)), _) => Some(Err(errno)),
            (Wait::Exec | Wait::NoWait, Some(Ok(())), _) => Some(Ok(0)),
            (Wait::Proc, Some(Ok(())), Some(exit)) => Some(exit),
            _ => None,
        };
        match ready {
            Some(result) => {
                state.waker = None;
                Poll::Ready(result)
            }
            None => {
                match &mut state.waker {
                    Some(waker) => waker.clone_from(cx.waker()),
                    slot @ None => *slot = Some(cx.waker().clone()),
                }
                Poll::Pending
            }
        }
    }
}

impl Drop for WaitFor {
    fn drop(&mut self) {
        // A dropped (killed) caller: forget its waker; the reactor still
        // reaps the child.
        self.shared.lock().waker = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{block_on, block_on_all, live_helpers};
    use std::time::{Duration, Instant};

    const ENV: [&[u8]; 3] = [
        b"HOME=/",
        b"TERM=linux",
        b"PATH=/sbin:/usr/sbin:/bin:/usr/bin",
    ];

    fn cmd(path: &str, args: &[&str]) -> Prepared {
        let mut argv: Vec<&[u8]> = vec![path.as_bytes()];
        argv.extend(args.iter().map(|a| a.as_bytes()));
        Prepared::new(path.as_bytes(), &argv, &ENV)
    }

    fn sh(script: &str, wait: Wait) -> Result<i32, i32> {
        block_on(run(cmd("/bin/sh", &["-c", script]), Output::Null, wait))
    }

    /// Waits (bounded) until every helper of this process was reaped. Other
    /// tests of this binary run helpers concurrently, so "zero" is only
    /// reached when all of them are done; callers use it as an upper bound.
    fn wait_no_helpers(limit: Duration) -> bool {
        let start = Instant::now();
        while start.elapsed() < limit {
            if live_helpers() == 0 {
                return true;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        false
    }

    #[test]
    fn exit_codes_are_raw_wait_statuses() {
        assert_eq!(sh("exit 0", Wait::Proc), Ok(0));
        assert_eq!(sh("exit 1", Wait::Proc), Ok(256));
        assert_eq!(sh("exit 255", Wait::Proc), Ok(255 << 8));
        assert_eq!(sh("kill -9 $$", Wait::Proc), Ok(9));
        assert_eq!(sh("kill -TERM $$", Wait::Proc), Ok(15));
    }

    #[test]
    fn exec_failures_are_errnos_in_every_wait_mode() {
        let dir = std::env::temp_dir().join(format!("reqmod-unit-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let not_exec = dir.join("not-executable");
        std::fs::write(&not_exec, "#!/bin/sh\nexit 0\n").unwrap();
        let not_program = dir.join("not-a-program");
        std::fs::write(&not_program, "just text, no #! line\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&not_program, std::fs::Permissions::from_mode(0o755)).unwrap();
        std::fs::set_permissions(&not_exec, std::fs::Permissions::from_mode(0o644)).unwrap();
        let cases = [
            ("/nonexistent/modprobe", libc::ENOENT),
            (not_exec.to_str().unwrap(), libc::EACCES),
            (not_program.to_str().unwrap(), libc::ENOEXEC),
            (dir.to_str().unwrap(), libc::EACCES),
            ("", libc::ENOENT),
        ];
        for (path, errno) in cases {
            for wait in [Wait::Exec, Wait::Proc] {
                assert_eq!(
                    block_on(run(cmd(path, &["-q", "--", "x"]), Output::Null, wait)),
                    Err(errno),
                    "{path} {wait:?}"
                );
            }
            // NoWait cannot tell.
            assert_eq!(
                block_on(run(cmd(path, &[]), Output::Null, Wait::NoWait)),
                Ok(0)
            );
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn exec_returns_before_the_helper_ends() {
        let start = Instant::now();
        assert_eq!(sh("sleep 0.5", Wait::Exec), Ok(0));
        assert!(
            start.elapsed() < Duration::from_millis(400),
            "{:?}",
            start.elapsed()
        );
        let start = Instant::now();
        assert_eq!(sh("sleep 0.5", Wait::NoWait), Ok(0));
        assert!(start.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn dropped_and_nowait_helpers_are_reaped() {
        let marker = std::env::temp_dir().join(format!("reqmod-unit-drop-{}", std::process::id()));
        let _ = std::fs::remove_file(&marker);
        let script = format!("sleep 0.3; echo done > {}", marker.display());
        // Poll the future until the helper exists, then drop it: a "killed" caller.
        {
            let mut future = Box::pin(run(
                cmd("/bin/sh", &["-c", &script]),
                Output::Null,
                Wait::Proc,
            ));
            let waker = std::task::Waker::noop();
            let mut cx = Context::from_waker(waker);
            assert!(future.as_mut().poll(&mut cx).is_pending());
        }
        assert!(live_helpers() >= 1);
        for _ in 0..20 {
            assert_eq!(sh("sleep 0.2", Wait::NoWait), Ok(0));
        }
        // The dropped caller's helper ran to its end.
        let start = Instant::now();
        while !marker.exists() {
            assert!(
                start.elapsed() < Duration::from_secs(10),
                "helper did not finish"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        assert!(
            wait_no_helpers(Duration::from_secs(20)),
            "helpers not reaped"
        );
        let _ = std::fs::remove_file(&marker);
    }

    #[test]
    fn many_helpers_at_once_on_one_thread() {
        let start = Instant::now();
        let results = block_on_all((0..200).map(|i| {
            run(
                cmd("/bin/sh", &["-c", &format!("sleep 0.2; exit {}", i % 3)]),
                Output::Null,
                Wait::Proc,
            )
        }));
        for (i, result) in results.into_iter().enumerate() {
            assert_eq!(result, Ok(((i % 3) as i32) << 8));
        }
        // 200 helpers sleeping 0.2 s each ran concurrently.
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "{:?}",
            start.elapsed()
        );
    }

    #[test]
    fn many_sleepers_wake_on_time() {
        let start = crate::now();
        let deadlines: Vec<Duration> = (0..500u64)
            .map(|i| start + Duration::from_millis(10 + i % 50))
            .collect();
        let woke = block_on_all(deadlines.iter().map(|&deadline| async move {
            crate::sleep_until(deadline).await;
            crate::now()
        }));
        for (deadline, woke) in deadlines.iter().zip(woke) {
            assert!(woke >= *deadline);
            assert!(
                woke - *deadline < Duration::from_millis(500),
                "late by {:?}",
                woke - *deadline
            );
        }
    }
}
