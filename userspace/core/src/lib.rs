//! podlife-core: the pure part of podlife. No I/O, no clocks of its own, no async.
pub mod cgroup_path;
pub mod correlate;
pub mod kernel_event;
pub mod redact;

pub use correlate::*;
pub use kernel_event::*;
