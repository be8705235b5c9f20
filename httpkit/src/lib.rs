//! HTTP plumbing shared by ingest, reader and fanout's operations port, so that every service answers
//! errors, health checks and metrics the same way.
//!
//! # Layout
//! - [`error`]: [`ApiError`], the one error type handlers return: a status and a JSON body
//!   `{"error": ..., "field": ...}` that never leaks internals.
//! - [`extract`]: a JSON body extractor whose errors name the offending field, and query helpers.
//! - [`metrics`]: request counters and latency histograms by route and status, and the `/metrics` handler.
//! - [`openapi`]: rendering and checking a service's OpenAPI document, and the error answers routes share.
//! - [`stack`]: the common middleware stack (security headers included), `/healthz`, `/readyz`, the
//!   operations port's `/metrics`, the shutdown signal and tracing set-up.
//! - [`server`]: the connection loop — header and body deadlines, connection caps, graceful drain.
//! - [`client`]: the client's address, from the connection or a trusted proxy's header.

pub mod client;
pub mod error;
pub mod extract;
pub mod metrics;
pub mod openapi;
pub mod server;
pub mod stack;

pub use client::{ClientAddress, ProxyNet, TrustedProxies};
pub use error::ApiError;
pub use extract::{parse_value, JsonBody, QueryParams};
pub use metrics::HttpMetrics;
pub use server::{serve, HttpArgs, ServeLimits};
pub use stack::{
    bind, init_tracing, json_document, metrics_route, shutdown_signal, with_common_layers,
    BindError, Readiness,
};
