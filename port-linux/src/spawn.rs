//! Starting one helper process with the environment of SPEC §4.
//!
//! This is the only module of the crate with `unsafe` code. Everything the
//! child needs (C strings, pointer arrays, the signal sets) is built before
//! the child exists; between `clone` and `execve` the child makes only
//! async-signal-safe system calls and never allocates, locks, returns or
//! unwinds, so it is sound even though the parent has other threads (the
//! reactor, other callers) that may hold the allocator's or any other lock.
//!
//! Why not `std::process::Command`: it runs the program through `execvp`, and
//! glibc's `execvp` retries a file that the kernel refused with `ENOEXEC` under
//! `/bin/sh`, and searches `PATH` for a path without a slash. The kernel's
//! helper is a plain `execve` (a non-program is `-ENOEXEC`, a relative path is
//! relative to `/`). `Command` also cannot set the umask or reset every signal
//! disposition without falling back to a full `fork`.

use std::ffi::{CString, c_char, c_int, c_void};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicI32, Ordering};

use rustix::process::{Pid, PidfdFlags, pidfd_open};

/// What the helper's standard output and error are connected to.
///
/// Standard input is always `/dev/null`, as for the kernel's helpers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Output {
    /// Both on `/dev/null` (SPEC §4; the default).
    #[default]
    Null,
    /// Both inherited from this process (fds 1 and 2 as they are now), for
    /// debugging a helper.
    Inherit,
}

/// One helper command, turned into the NUL-terminated C arrays that `execve`
/// takes. Built in the parent before the child exists.
pub(crate) struct Prepared {
    path: CString,
    // Owners of the bytes that `argv_ptrs` / `envp_ptrs` point into.
    _argv: Vec<CString>,
    _envp: Vec<CString>,
    argv_ptrs: Vec<*const c_char>,
    envp_ptrs: Vec<*const c_char>,
}

// SAFETY: the raw pointers point into the `CString`s owned by the same value,
// whose heap buffers do not move when `Prepared` moves; nothing mutates them.
unsafe impl Send for Prepared {}
// SAFETY: as above; shared access only reads.
unsafe impl Sync for Prepared {}

/// A C string of `bytes` up to the first NUL (a C program could not see past
/// it anyway; the kernel's argv strings are C strings too).
fn c_string(bytes: &[u8]) -> CString {
    let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
    // Cannot fail: there is no NUL in `bytes[..end]`.
    CString::new(&bytes[..end]).unwrap_or_default()
}

impl Prepared {
    /// Copies `path`, `argv` and `envp` into C form.
    pub(crate) fn new(path: &[u8], argv: &[&[u8]], envp: &[&[u8]]) -> Self {
        let argv: Vec<CString> = argv.iter().map(|a| c_string(a)).collect();
        let envp: Vec<CString> = envp.iter().map(|e| c_string(e)).collect();
        let argv_ptrs = argv
            .iter()
            .map(|a| a.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        let envp_ptrs = envp
            .iter()
            .map(|e| e.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect();
        Self {
            path: c_string(path),
            _argv: argv,
            _envp: envp,
            argv_ptrs,
            envp_ptrs,
        }
    }
}

/// A started child: a pidfd to wait on, and how its `execve` went.
#[derive(Debug)]
pub(crate) struct Spawned {
    pub(crate) pidfd: OwnedFd,
    /// `Ok(())` once the program was executed, `Err(errno)` if `execve` (or
    /// the preparation before it) failed; the child then exits with 127.
    pub(crate) exec: Result<(), i32>,
}

/// Moves `fd` to a number >= 3 (close-on-exec), so that `dup2` onto 0, 1, 2 in
/// the child cannot clobber it. Only needed when this process runs with some
/// of its standard descriptors closed.
fn above_stdio(fd: OwnedFd) -> io::Result<OwnedFd> {
    if fd.as_raw_fd() > 2 {
        return Ok(fd);
    }
    Ok(rustix::io::fcntl_dupfd_cloexec(&fd, 3)?)
}

/// Opens `/dev/null` read-write, close-on-exec, at a descriptor >= 3.
pub(crate) fn open_dev_null() -> io::Result<OwnedFd> {
    use rustix::fs::{Mode, OFlags, open};
    let fd = open(
        "/dev/null",
        OFlags::RDWR | OFlags::CLOEXEC | OFlags::NOCTTY,
        Mode::empty(),
    )?;
    above_stdio(fd)
}

/// Bytes of stack for the child until it calls `execve` (it needs a few
/// hundred; glibc's `posix_spawn` uses 32 KiB plus the argument sizes).
const CHILD_STACK: usize = 64 * 1024;

/// Starts `cmd` as a child process and returns once it has executed the
/// program (or failed to).
///
/// The child is created like glibc's `posix_spawn` does it: `clone` with
/// `CLONE_VM | CLONE_VFORK`, on a stack of its own. It shares our memory
/// until `execve`, and this thread sleeps in the kernel until then, so no
/// page tables are copied (a `fork` of a process holding thousands of
/// request futures copies megabytes of them and then takes copy-on-write
/// faults) and the outcome of `execve` is known when `clone` returns,
/// without a report pipe.
///
/// The child, in this order: points 0, 1, 2 at `/dev/null` (1 and 2 kept when
/// `output` is [`Output::Inherit`]); marks every other descriptor
/// close-on-exec (so nothing this process inherited or opened without
/// `O_CLOEXEC` leaks); sets umask 0022; changes to `/`; resets every signal
/// disposition to the default; clears the signal mask; `execve`s. On any
/// failure it stores `errno` where we read it and exits with status 127.
pub(crate) fn spawn(
    cmd: &Prepared,
    output: Output,
    dev_null: BorrowedFd<'_>,
) -> io::Result<Spawned> {
    let child = ChildArgs {
        path: cmd.path.as_ptr(),
        argv: cmd.argv_ptrs.as_ptr(),
        envp: cmd.envp_ptrs.as_ptr(),
        dev_null: dev_null.as_raw_fd(),
        keep_output: output == Output::Inherit,
        error: AtomicI32::new(0),
    };
    let mut stack = vec![0u8; CHILD_STACK];
    // The stack grows down on every Linux architecture Rust supports except
    // hppa; 16-byte alignment suits all ABIs.
    let top = (stack.as_mut_ptr() as usize + CHILD_STACK) & !15;
    // Kernel signal sets (`_NSIG / 8` bytes used): every signal, and room
    // for the mask to restore.
    let all_signals: KernelSigset = [!0; 2];
    let mut saved_mask: KernelSigset = [0; 2];

    // SAFETY: (1) Every signal is blocked around `clone` (with the raw
    // system call: glibc's `pthread_sigmask` leaves its internal signals 32
    // and 33 open), so no handler of this process can run in the child
    // (which shares our memory) before it has reset the dispositions; the
    // mask is restored right after in the parent, as glibc's `posix_spawn`
    // does. (2) The child runs `child_main` on `stack`, which outlives it
    // (CLONE_VFORK: we do not return from `clone` before the child has
    // called `execve` or exited), and `child_main` only reads `child`
    // (alive in this frame), makes async-signal-safe calls and never
    // returns. (3) Without CLONE_SIGHAND the child's `sigaction` calls change
    // its own copy of the disposition table, not ours.
    let pid = unsafe {
        sigprocmask_raw(&all_signals, Some(&mut saved_mask));
        libc::clone(
            child_main,
            top as *mut c_void,
            libc::CLONE_VM | libc::CLONE_VFORK | libc::SIGCHLD,
            (&raw const child).cast_mut().cast(),
        )
    };
    let clone_error = io::Error::last_os_error();
    // SAFETY: restores this thread's signal mask saved above.
    unsafe { sigprocmask_raw(&saved_mask, None) };
    drop(stack);
    if pid < 0 {
        return Err(clone_error);
    }
    let exec = match child.error.load(Ordering::Acquire) {
        0 => Ok(()),
        errno => Err(errno),
    };
    // SAFETY of the value: `clone` returned a positive pid of our own child.
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::from_raw_os_error(libc::ECHILD))?;
    // The child is ours and unreaped, so the pid cannot have been reused.
    let pidfd = match pidfd_open(pid, PidfdFlags::empty()) {
        Ok(fd) => fd,
        Err(e) => {
            // No pidfd (out of descriptors, or a kernel older than 5.3): we
            // cannot watch this child, so wait for it on a thread of its own
            // rather than leave a zombie, and report the failure.
            reap_in_background(pid);
            return Err(e.into());
        }
    };
    Ok(Spawned { pidfd, exec })
}

/// Last resort when no pidfd can be had: a thread that blocks in `waitpid` on
/// this one pid (never `waitpid(-1)`, which would steal other code's children).
fn reap_in_background(pid: Pid) {
    let reap = move || {
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    };
    if std::thread::Builder::new()
        .name("reqmod-reap".into())
        .spawn(reap)
        .is_err()
    {
        // Not even a thread: reap in this thread (the child is about to
        // execve or exit, it does not run long before it can be waited for
        // only if the program is short; this path is for exhausted systems).
        let _ = rustix::process::waitpid(Some(pid), rustix::process::WaitOptions::empty());
    }
}

/// The kernel's `_NSIG`: signals are 1..=64 (128 on MIPS); the kernel's
/// `sigset_t` is `_NSIG / 8` bytes.
#[cfg(not(any(target_arch = "mips", target_arch = "mips64")))]
const KERNEL_NSIG: usize = 64;
#[cfg(any(target_arch = "mips", target_arch = "mips64"))]
const KERNEL_NSIG: usize = 128;

/// A kernel signal set, big enough for every architecture's `_NSIG`.
type KernelSigset = [u64; 2];

/// `rt_sigprocmask(SIG_SETMASK, set, old)`, the raw system call: it blocks
/// every signal it is given, glibc's internal ones included.
///
/// # Safety
///
/// Changes the calling thread's signal mask; async-signal-safe.
unsafe fn sigprocmask_raw(set: &KernelSigset, old: Option<&mut KernelSigset>) {
    let old = old.map_or(std::ptr::null_mut(), |old| old.as_mut_ptr());
    // SAFETY: both pointers are valid for `KERNEL_NSIG / 8` bytes (or null).
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            set.as_ptr(),
            old,
            KERNEL_NSIG / 8,
        );
    }
}

/// Everything the child uses, as raw values, ready before `clone`.
struct ChildArgs {
    path: *const c_char,
    argv: *const *const c_char,
    envp: *const *const c_char,
    dev_null: RawFd,
    keep_output: bool,
    /// Where the child stores `errno` when it fails (0: it executed).
    error: AtomicI32,
}

/// Entry point of the child (see [`spawn`]). Never returns.
extern "C" fn child_main(args: *mut c_void) -> c_int {
    // SAFETY: `spawn` passes a pointer to a `ChildArgs` that stays alive and
    // unmodified until the child has executed or exited (CLONE_VFORK), with
    // every signal blocked: the contract of `exec_child`.
    unsafe { exec_child(&*args.cast::<ChildArgs>()) }
}

/// The child side of `spawn`.
///
/// # Safety
///
/// Call only as the entry of a child made by `clone(CLONE_VM | CLONE_VFORK)`
/// with every signal blocked, with `args` pointing at live, NUL-terminated
/// data. Only async-signal-safe functions are called here (POSIX
/// `signal-safety(7)`: `dup2`, `umask`, `chdir`, `execve`, `_exit`; plus the
/// raw `rt_sigaction`, `rt_sigprocmask` and `close_range` system calls), no memory is
/// allocated or freed, no lock taken; the only write to shared memory is the
/// error report. (They set the parent thread's `errno`, as we share its
/// thread pointer; it is suspended and reads nothing of it.)
unsafe fn exec_child(args: &ChildArgs) -> ! {
    // SAFETY: see the function's contract; every pointer was prepared by the
    // parent and stays valid while the child shares its memory.
    unsafe {
        let fail = || -> ! {
            let errno: c_int = *libc::__errno_location();
            args.error.store(
                if errno == 0 { libc::EIO } else { errno },
                Ordering::Release,
            );
            libc::_exit(127)
        };

        // Standard descriptors. `dup2` clears close-on-exec on the copy.
        if libc::dup2(args.dev_null, 0) < 0 {
            fail();
        }
        if !args.keep_output
            && (libc::dup2(args.dev_null, 1) < 0 || libc::dup2(args.dev_null, 2) < 0)
        {
            fail();
        }

        // Every descriptor from 3 up closes at execve, whether or not it was
        // opened with O_CLOEXEC (inherited ones often are not). Marking them
        // instead of closing keeps this cheap (no file is actually released
        // until the exec) and works for any descriptor count.
        const CLOSE_RANGE_CLOEXEC: libc::c_uint = 1 << 2;
        if libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, CLOSE_RANGE_CLOEXEC) != 0 {
            // Kernel older than 5.11: close them now. (Closing in the child
            // does not affect our table: without CLONE_FILES it is a copy.)
            libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
        }

        libc::umask(0o022);
        if libc::chdir(c"/".as_ptr()) != 0 {
            fail();
        }

        // Default disposition for every signal (handlers would be reset by
        // execve anyway, but "ignored" survives it). The raw system call,
        // because glibc's `sigaction` refuses its internal signals 32 and 33,
        // which a parent may still have ignored. An all-zero kernel
        // `struct sigaction` is SIG_DFL with no flags and an empty mask
        // whatever the architecture's field order. Errors are for SIGKILL
        // and SIGSTOP, which cannot be changed and are default anyway.
        let default = [0u64; 8];
        for signal in 1..=KERNEL_NSIG {
            libc::syscall(
                libc::SYS_rt_sigaction,
                signal,
                default.as_ptr(),
                std::ptr::null_mut::<c_void>(),
                KERNEL_NSIG / 8,
            );
        }
        sigprocmask_raw(&[0; 2], None);

        libc::execve(args.path, args.argv, args.envp);
        fail()
    }
}
