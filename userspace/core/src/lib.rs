//! podlife-core: the pure part of podlife. No I/O, no clocks of its own, no async.
//!
//! `cgroup_path` names pods and containers from cgroup paths, `engine` turns kernel events into
//! lifecycle events (`lifecycle`), `timeline` and `text` serve them (`terminal` escapes what a
//! terminal would obey), `served` is the event as kept and served, `redact` hides secrets in
//! argv, `probe_message` reads the kubelet's Unhealthy Events, `prestop` reads the kubelet's preStop handler of a container, `termination` sums up
//! how each container stopped.
pub mod cgroup_path;
pub mod char_boundary;
pub mod comm;
pub mod engine;
pub mod kernel_event;
pub mod lifecycle;
pub mod names;
pub mod prestop;
pub mod probe_message;
pub mod redact;
pub mod served;
pub mod terminal;
pub mod termination;
pub mod text;
pub mod timeline;

pub use comm::Comm;
pub use engine::*;
pub use kernel_event::*;
pub use prestop::{PreStop, PreStopError, PRESTOP_ANNOTATION};
pub use served::{Fields, ServedEvent};
pub use timeline::{format_rfc3339, Timeline, TimelineContainer, TimelineEvent, WallClock};
