//! The module table: what the built-in modprobe can "load".
//!
//! Each [`Module`] has a name, alias patterns (like `modules.alias`: plain
//! names, `fs-*`, virtio modaliases `virtio:dXXXXXXXXvXXXXXXXX` with `*`),
//! dependencies (like `modules.dep`, loaded first) and an optional init
//! function. Loading runs the init once per boot; an init may itself call
//! `request_module` through the autoloader it is given, so dependency chains
//! and loops are real: `ext4`'s init requests `crypto-crc32c`, `vfat`'s
//! requests its code pages.
//!
//! While a module's init runs it is "coming": a second modprobe for it waits
//! until it is live (as `finit_module` waits for a coming module).
//!
//! Besides the table, a generated family of [`BENCH_MODULES`] modules,
//! `bench_0`, `bench_1`, … (requested as `bench-N` or `bench_N`), serves the
//! SMP benchmark (`-append bench`, see [`crate::bench`]): each one's init does
//! a fixed amount of CPU work ([`set_bench_work`]) under no lock, so inits of
//! different modules run in parallel on different harts.

use alloc::boxed::Box;
use core::sync::atomic::{AtomicU8, AtomicU32, Ordering};
use core::time::Duration;

use reqmod::{Errno, kernel_ret};

use crate::os::time;
use crate::platform::{BoxFuture, Requester};

/// A module's init: given the autoloader, succeeds or returns a negative errno.
pub type InitFn = fn(&'static dyn Requester) -> BoxFuture<Result<(), i32>>;

/// One loadable module.
#[derive(Debug)]
pub struct Module {
    /// Its name (`-` and `_` are the same when matching).
    pub name: &'static str,
    /// Alias patterns (`*`, `?` and `[…]` as in `fnmatch`).
    pub aliases: &'static [&'static str],
    /// Modules loaded before this one, by name.
    pub deps: &'static [&'static str],
    /// Runs once when the module is loaded.
    pub init: Option<InitFn>,
}

const fn module(name: &'static str, aliases: &'static [&'static str]) -> Module {
    Module {
        name,
        aliases,
        deps: &[],
        init: None,
    }
}

/// The modules of this OS.
pub static MODULES: [Module; 24] = [
    module("virtio_net", &["virtio:d00000001v*"]),
    module("virtio_blk", &["virtio:d00000002v*"]),
    module("virtio_console", &["virtio:d00000003v*"]),
    Module {
        deps: &["rng_core"],
        ..module("virtio_rng", &["virtio:d00000004v*"])
    },
    module("rng_core", &[]),
    module("virtio_balloon", &["virtio:d00000005v*"]),
    Module {
        deps: &["drm_kms_helper", "drm"],
        ..module("virtio_gpu", &["virtio:d00000010v*"])
    },
    Module {
        deps: &["drm"],
        ..module("drm_kms_helper", &[])
    },
    module("drm", &[]),
    module("virtio_input", &["virtio:d00000012v*"]),
    Module {
        deps: &["jbd2", "mbcache", "crc16"],
        init: Some(ext4_init),
        ..module("ext4", &["fs-ext4", "fs-ext3", "fs-ext2", "ext3", "ext2"])
    },
    module("jbd2", &[]),
    module("mbcache", &[]),
    module("crc16", &[]),
    module("crc32c_generic", &["crypto-crc32c", "crc32c"]),
    Module {
        deps: &["fat"],
        init: Some(vfat_init),
        ..module("vfat", &["fs-vfat"])
    },
    module("fat", &["fs-msdos"]),
    module("nls_cp437", &["nls-cp437"]),
    module("nls_iso8859_1", &["nls-iso8859-1"]),
    // The selftest's modules (`lib/test_kmod.c`'s `test_module` and friends).
    module("test_module", &["kmodtest-*"]),
    module("stress_module", &["stress-*"]),
    Module {
        init: Some(bad_init),
        ..module("bad_init", &["kmod-badinit"])
    },
    Module {
        init: Some(chained_init),
        ..module("chained", &["kmod-chained"])
    },
    module("chained_dep", &["kmod-chained-dep"]),
];

fn ext4_init(kmod: &'static dyn Requester) -> BoxFuture<Result<(), i32>> {
    // Like the crypto API asking for the checksum driver when ext4 starts.
    Box::pin(async move {
        match kernel_ret(kmod.request(true, "crypto-crc32c").await) {
            0 => Ok(()),
            _ => Err(-Errno::ENOENT.raw()),
        }
    })
}

fn vfat_init(kmod: &'static dyn Requester) -> BoxFuture<Result<(), i32>> {
    // The default code page and I/O charset of a vfat mount.
    Box::pin(async move {
        for nls in ["nls-cp437", "nls-iso8859-1"] {
            if kernel_ret(kmod.request(true, nls).await) != 0 {
                return Err(-Errno::EINVAL.raw());
            }
        }
        Ok(())
    })
}

fn bad_init(_kmod: &'static dyn Requester) -> BoxFuture<Result<(), i32>> {
    Box::pin(async { Err(-Errno::EINVAL.raw()) })
}

fn chained_init(kmod: &'static dyn Requester) -> BoxFuture<Result<(), i32>> {
    // An init that requests another module without waiting for it.
    Box::pin(async move {
        match kernel_ret(kmod.request(false, "kmod-chained-dep").await) {
            0 => Ok(()),
            e => Err(e),
        }
    })
}

const UNLOADED: u8 = 0;
const COMING: u8 = 1;
const LIVE: u8 = 2;

static STATE: [AtomicU8; MODULES.len()] = [const { AtomicU8::new(UNLOADED) }; MODULES.len()];
static INIT_RUNS: [AtomicU32; MODULES.len()] = [const { AtomicU32::new(0) }; MODULES.len()];
/// Load order: the index of the n-th module that went live is `ORDER[n]`.
static ORDER: [AtomicU8; MODULES.len()] = [const { AtomicU8::new(u8::MAX) }; MODULES.len()];
static LIVE_COUNT: AtomicU32 = AtomicU32::new(0);

/// A module's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum ModuleState {
    /// Not loaded.
    Unloaded,
    /// Its init is running.
    Coming,
    /// Loaded.
    Live,
}

/// Why a load failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, defmt::Format)]
pub enum LoadError {
    /// No module name or alias matches.
    NotFound,
    /// A dependency names no module.
    MissingDependency {
        /// The module.
        module: &'static str,
        /// Its missing dependency.
        dep: &'static str,
    },
    /// An init returned an error.
    InitFailed {
        /// The module whose init failed.
        module: &'static str,
        /// The negative errno it returned.
        error: i32,
    },
}

fn same_char(a: u8, b: u8) -> bool {
    let norm = |c: u8| if c == b'-' { b'_' } else { c };
    norm(a) == norm(b)
}

/// Whether `name` equals the module name `module` (`-` and `_` alike).
fn same_name(module: &str, name: &str) -> bool {
    module.len() == name.len()
        && module
            .bytes()
            .zip(name.bytes())
            .all(|(a, b)| same_char(a, b))
}

/// `fnmatch`-style matching of `text` against `pattern`: `*`, `?`, `[abc]`,
/// `[a-z]`, `[!…]`; `-` and `_` match each other outside brackets.
pub fn glob_match(pattern: &str, text: &str) -> bool {
    fn class(set: &[u8], c: u8) -> Option<(bool, usize)> {
        // Returns (matched, bytes of the class after '[').
        let (negate, mut i) = match set.first() {
            Some(b'!' | b'^') => (true, 1),
            _ => (false, 0),
        };
        let mut matched = false;
        let mut first = true;
        while i < set.len() {
            if set[i] == b']' && !first {
                return Some((matched != negate, i + 1));
            }
            first = false;
            if i + 2 < set.len() && set[i + 1] == b'-' && set[i + 2] != b']' {
                matched |= (set[i]..=set[i + 2]).contains(&c);
                i += 3;
            } else {
                matched |= set[i] == c;
                i += 1;
            }
        }
        None
    }
    let (p, t) = (pattern.as_bytes(), text.as_bytes());
    let (mut pi, mut ti) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while ti < t.len() {
        let step = match p.get(pi) {
            Some(b'*') => {
                star = Some((pi, ti));
                pi += 1;
                continue;
            }
            Some(b'?') => Some(1),
            Some(b'[') => match class(&p[pi + 1..], t[ti]) {
                Some((true, len)) => Some(1 + len),
                Some((false, _)) => None,
                None => same_char(b'[', t[ti]).then_some(1),
            },
            Some(&c) => same_char(c, t[ti]).then_some(1),
            None => None,
        };
        match (step, star) {
            (Some(n), _) => {
                pi += n;
                ti += 1;
            }
            (None, Some((sp, st))) => {
                pi = sp + 1;
                ti = st + 1;
                star = Some((sp, st + 1));
            }
            (None, None) => return false,
        }
    }
    p[pi..].iter().all(|&c| c == b'*')
}

/// The module called `name`, by name only.
fn find_module(name: &str) -> Option<usize> {
    MODULES.iter().position(|m| same_name(m.name, name))
}

/// Resolves what modprobe was asked for: a module name, else the first alias
/// that matches.
pub fn resolve(name: &str) -> Option<&'static Module> {
    find_module(name)
        .or_else(|| {
            MODULES
                .iter()
                .position(|m| m.aliases.iter().any(|a| glob_match(a, name)))
        })
        .map(|i| &MODULES[i])
}

/// Loads what `name` resolves to, dependencies first. Returns the module's name.
pub async fn load_by_name(
    name: &str,
    kmod: &'static dyn Requester,
) -> Result<&'static str, LoadError> {
    if let Some(index) = bench_index(name) {
        load_bench(index).await;
        return Ok("bench");
    }
    let module = resolve(name).ok_or(LoadError::NotFound)?;
    let index = find_module(module.name).ok_or(LoadError::NotFound)?;
    load(index, kmod).await?;
    Ok(module.name)
}

fn load(index: usize, kmod: &'static dyn Requester) -> BoxFuture<Result<(), LoadError>> {
    Box::pin(async move {
        let module = &MODULES[index];
        for &dep in module.deps {
            let d = find_module(dep).ok_or(LoadError::MissingDependency {
                module: module.name,
                dep,
            })?;
            load(d, kmod).await?;
        }
        loop {
            match STATE[index].compare_exchange(
                UNLOADED,
                COMING,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => break,
                Err(LIVE) => return Ok(()),
                // Another modprobe is running its init: wait for the outcome.
                Err(_) => time::sleep(Duration::from_micros(200)).await,
            }
        }
        INIT_RUNS[index].fetch_add(1, Ordering::SeqCst);
        let result = match module.init {
            Some(init) => init(kmod).await,
            None => Ok(()),
        };
        match result {
            Ok(()) => {
                let n = LIVE_COUNT.fetch_add(1, Ordering::SeqCst) as usize;
                if let Some(slot) = ORDER.get(n) {
                    slot.store(index as u8, Ordering::SeqCst);
                }
                STATE[index].store(LIVE, Ordering::Release);
                defmt::info!("module {=str} loaded ({=str})", module.name, kmod.label());
                Ok(())
            }
            Err(error) => {
                STATE[index].store(UNLOADED, Ordering::Release);
                Err(LoadError::InitFailed {
                    module: module.name,
                    error,
                })
            }
        }
    })
}

/// The state of the module called `name` (`None`: no such module).
pub fn state(name: &str) -> Option<ModuleState> {
    find_module(name).map(|i| match STATE[i].load(Ordering::Acquire) {
        UNLOADED => ModuleState::Unloaded,
        COMING => ModuleState::Coming,
        _ => ModuleState::Live,
    })
}

/// How many times the init of `name` has run (`None`: no such module).
pub fn init_runs(name: &str) -> Option<u32> {
    find_module(name).map(|i| INIT_RUNS[i].load(Ordering::SeqCst))
}

/// Names of the live modules, in load order.
pub fn load_order() -> impl Iterator<Item = &'static str> {
    let n = LIVE_COUNT.load(Ordering::SeqCst) as usize;
    ORDER[..n.min(MODULES.len())]
        .iter()
        .filter_map(|i| MODULES.get(usize::from(i.load(Ordering::SeqCst))))
        .map(|m| m.name)
}

/// Modules in the generated benchmark family (`bench_0` to `bench_1023`).
pub const BENCH_MODULES: usize = 1024;

static BENCH_STATE: [AtomicU8; BENCH_MODULES] = [const { AtomicU8::new(UNLOADED) }; BENCH_MODULES];
/// Iterations of [`bench_work`] each benchmark module's init runs.
static BENCH_WORK: AtomicU32 = AtomicU32::new(0);
static BENCH_INITS: AtomicU32 = AtomicU32::new(0);

/// Sets the CPU work of every benchmark module's init (iterations of
/// [`bench_work`]); 0 by default.
pub fn set_bench_work(iterations: u32) {
    BENCH_WORK.store(iterations, Ordering::SeqCst);
}

/// How many benchmark module inits have run.
pub fn bench_inits() -> u32 {
    BENCH_INITS.load(Ordering::SeqCst)
}

/// A fixed amount of CPU work: `iterations` steps of a 64-bit linear
/// congruential generator, each depending on the last (nothing to vectorise
/// or skip), touching no shared memory.
pub fn bench_work(iterations: u32) -> u64 {
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15;
    for _ in 0..iterations {
        x = core::hint::black_box(x)
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
    }
    x
}

/// The benchmark module a name means: `bench-N` or `bench_N` with
/// `N < BENCH_MODULES` (decimal, no sign).
pub fn bench_index(name: &str) -> Option<usize> {
    let rest = name.strip_prefix("bench")?;
    let digits = rest.strip_prefix('-').or_else(|| rest.strip_prefix('_'))?;
    if digits.is_empty() || digits.len() > 5 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok().filter(|&n| n < BENCH_MODULES)
}

/// Loads benchmark module `index`: runs its init once per boot, like [`load`].
async fn load_bench(index: usize) {
    let state = &BENCH_STATE[index];
    loop {
        match state.compare_exchange(UNLOADED, COMING, Ordering::AcqRel, Ordering::Acquire) {
            Ok(_) => break,
            Err(LIVE) => return,
            Err(_) => time::sleep(Duration::from_micros(200)).await,
        }
    }
    core::hint::black_box(bench_work(BENCH_WORK.load(Ordering::Relaxed)));
    BENCH_INITS.fetch_add(1, Ordering::SeqCst);
    state.store(LIVE, Ordering::Release);
}
