//! What the agent serves: the HTTP API and its views (timelines, events, /metrics), the OTLP
//! export.

pub mod http;
pub mod otlp;
pub mod views;
