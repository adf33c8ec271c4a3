//! The OS layer: services built on the machine layer, without `unsafe`.
//!
//! - [`executor`]: an async executor running on every hart (one shared run
//!   queue; idle harts sleep in `wfi`, outside any lock, until an IPI or their
//!   timer wakes them);
//! - [`time`]: the timer queue behind [`time::Sleep`];
//! - [`sync`]: small task-to-task signals;
//! - [`task`]: spawning with a result, timeouts.

pub mod executor;
pub mod sync;
pub mod task;
pub mod time;
