//! podlife agent: the thin layer around the pure engine (podlife-core) that talks to the
//! kernel, the filesystem and the network.
pub mod app;
pub mod capture;
pub mod check;
pub mod config;
#[cfg(test)]
mod contract_tests;
pub mod heap;
pub mod kube;
#[cfg(test)]
mod layer_tests;
pub mod node;
pub mod pipeline;
pub mod progress;
pub mod record;
pub mod serve;
pub mod startup;
pub mod store;
pub mod tasks;
