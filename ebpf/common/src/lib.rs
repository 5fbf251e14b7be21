//! The event ABI between podlife's eBPF programs and its agent.
//!
//! Every record on the ring buffer starts with [`Header`]; `Header::kind` is an [`EventKind`]
//! number. Numbers are fixed forever: add new kinds at the end, never renumber.
//! All structs are `#[repr(C)]`, with explicit padding so both sides agree byte for byte.
#![no_std]

pub mod config;
pub mod event;

#[cfg(feature = "user")]
extern crate alloc;

#[cfg(feature = "user")]
pub mod decode;

pub use config::*;
pub use event::*;
