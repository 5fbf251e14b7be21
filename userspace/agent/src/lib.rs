//! podlife agent: the thin layer around the pure engine (podlife-core) that talks to the
//! kernel, the filesystem and the network.
pub mod kernel;
