//! Request metrics shared by the HTTP services, registered in a caller-supplied registry so that two
//! service instances can live in one process (as they do in tests).

use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry, TextEncoder,
};

/// Latency buckets in seconds, from sub-millisecond reads to a broker timeout.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[derive(Clone)]
pub struct HttpMetrics {
    requests: IntCounterVec,
    duration: HistogramVec,
}

impl HttpMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let requests = IntCounterVec::new(
            Opts::new(
                "fanline_http_requests_total",
                "HTTP requests answered, by route template, method and status code.",
            ),
            &["route", "method", "status"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "fanline_http_request_duration_seconds",
                "Time from receiving an HTTP request to its response, by route template and method.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
            &["route", "method"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self { requests, duration })
    }

    /// Middleware: counts and times every request under its route template (never the raw path, which
    /// would carry user ids into label values).
    pub async fn track(State(metrics): State<HttpMetrics>, req: Request, next: Next) -> Response {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .map(|path| path.as_str().to_owned())
            .unwrap_or_else(|| "unmatched".to_owned());
        let method = req.method().as_str().to_owned();
        let started = Instant::now();
        let response = next.run(req).await;
        metrics
            .duration
            .with_label_values(&[&route, &method])
            .observe(started.elapsed().as_secs_f64());
        metrics
            .requests
            .with_label_values(&[&route, &method, response.status().as_str()])
            .inc();
        response
    }
}

/// Renders a registry in the Prometheus text format.
pub fn render(registry: &Registry) -> Response {
    let mut buffer = Vec::new();
    if let Err(err) = TextEncoder::new().encode(&registry.gather(), &mut buffer) {
        tracing::error!(error = %err, "encoding metrics failed");
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    let mut response = buffer.into_response();
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4"),
    );
    response
}
