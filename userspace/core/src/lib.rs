//! podlife-core: the pure part of podlife. No I/O, no clocks of its own, no async.
pub mod kernel_event;

pub use kernel_event::*;
