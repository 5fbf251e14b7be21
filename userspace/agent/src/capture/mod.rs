//! Everything that touches the kernel: BTF, tracefs, the eBPF loader and the record decoder.
pub mod btf;
pub mod convert;
pub mod loader;
pub mod reader;
pub mod tracefs;
