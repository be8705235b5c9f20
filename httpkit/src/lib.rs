//! HTTP plumbing shared by ingest, reader and fanout's operations port, so that every service answers
//! errors, health checks and metrics the same way.
//!
//! # Layout
//! - [`error`]: [`ApiError`], the one error type handlers return: a status and a JSON body
//!   `{"error": ..., "field": ...}` that never leaks internals.
//! - [`extract`]: a JSON body extractor whose errors name the offending field, and query helpers.
//! - [`metrics`]: request counters and latency histograms by route and status, and the `/metrics` handler.
//! - [`openapi`]: rendering and checking a service's OpenAPI document, and the error answers routes share.
//! - [`serve`]: the common middleware stack, `/healthz`, `/readyz`, graceful shutdown and tracing set-up.

pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod serve;

pub use error::ApiError;
pub use extract::{parse_value, JsonBody, QueryParams};
pub use metrics::HttpMetrics;
pub use serve::{
    bind, init_tracing, json_document, serve, shutdown_signal, with_common_layers, BindError,
    Readiness,
};
