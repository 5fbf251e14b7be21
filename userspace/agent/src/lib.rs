//! podlife agent: the thin layer around the pure engine (podlife-core) that talks to the
//! kernel, the filesystem and the network.
pub mod app;
pub mod bootstrap;
pub mod cgroupfs;
pub mod check;
pub mod clock;
pub mod config;
#[cfg(test)]
mod contract_tests;
pub mod cri;
pub mod cri_apply;
pub mod enrich;
pub mod history;
pub mod http;
pub mod kernel;
pub mod kube_events;
pub mod kube_watch;
pub mod loss;
pub mod metadata;
pub mod metrics;
pub mod oom_scope;
pub mod otlp;
pub mod pipeline;
pub mod pod_facts;
pub mod pod_net;
pub mod proc_argv;
pub mod progress;
pub mod reader;
pub mod record;
pub mod shared;
pub mod startup;
pub mod store;
pub mod store_writer;
pub mod tasks;
pub mod views;
