//! The logging shim: one set of macros that go to `defmt` or `log` by feature,
//! and compile to nothing (while still "using" their arguments) with neither.
//! With both features on (`--all-features`, docs.rs), lines go to both.
#![allow(unused_macros)]

macro_rules! log_at {
    ($level:ident, $s:literal $(, $x:expr)* $(,)?) => {{
        #[cfg(feature = "defmt")]
        ::defmt::$level!($s $(, $x)*);
        #[cfg(feature = "log")]
        ::log::$level!($s $(, $x)*);
        #[cfg(not(any(feature = "defmt", feature = "log")))]
        let _ = ($( & $x ),*);
    }};
}

macro_rules! trace {
    ($($t:tt)*) => { log_at!(trace, $($t)*) };
}
macro_rules! debug {
    ($($t:tt)*) => { log_at!(debug, $($t)*) };
}
macro_rules! warn {
    ($($t:tt)*) => { log_at!(warn, $($t)*) };
}
macro_rules! error {
    ($($t:tt)*) => { log_at!(error, $($t)*) };
}
