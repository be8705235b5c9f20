//! The middleware stack and health routes every Fanline HTTP port shares, the operations routes
//! (`/metrics`) that only the operations port serves, shutdown and tracing set-up.

use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{DefaultBodyLimit, Request};
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, MethodRouter};
use axum::Router;
use prometheus::Registry;
use tokio::net::TcpListener;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::TraceLayer;

use crate::{ApiError, HttpMetrics};

type CheckFuture = Pin<Box<dyn Future<Output = Result<(), String>> + Send>>;

/// What `/readyz` asks: `Ok` when the service can do its work now, `Err(reason)` otherwise.
#[derive(Clone)]
pub struct Readiness(Arc<dyn Fn() -> CheckFuture + Send + Sync>);

impl Readiness {
    pub fn new<F, Fut>(check: F) -> Self
    where
        F: Fn() -> Fut + Send + Sync + 'static,
        Fut: Future<Output = Result<(), String>> + Send + 'static,
    {
        Readiness(Arc::new(move || Box::pin(check())))
    }

    pub async fn check(&self) -> Result<(), String> {
        // A check that hangs (a blackholed dependency) must still answer: not ready.
        match tokio::time::timeout(Duration::from_secs(2), (self.0)()).await {
            Ok(result) => result,
            Err(_) => Err("readiness check timed out".to_owned()),
        }
    }
}

/// Adds `/healthz` and `/readyz`, the JSON error fallbacks, request metrics, tracing, the body limit,
/// panic catching and the security headers to a service's router. `/metrics` is not among them: it
/// belongs on the operations port ([`metrics_route`]), not on a public one.
pub fn with_common_layers(
    router: Router,
    metrics: HttpMetrics,
    readiness: Readiness,
    body_limit_bytes: usize,
) -> Router {
    router
        .route(
            "/healthz",
            get(|| async { axum::Json(serde_json::json!({"status": "ok"})) }),
        )
        .route(
            "/readyz",
            get(move || {
                let readiness = readiness.clone();
                async move {
                    match readiness.check().await {
                        Ok(()) => {
                            axum::Json(serde_json::json!({"status": "ready"})).into_response()
                        }
                        // The reason goes to the log only: dependency errors are internals.
                        Err(reason) => {
                            tracing::warn!(%reason, "not ready");
                            ApiError::unavailable("not ready").into_response()
                        }
                    }
                }
            }),
        )
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(
                StatusCode::METHOD_NOT_ALLOWED,
                "method not allowed on this route",
            )
        })
        // One `layer` call for the whole stack: each `Router::layer` boxes every route again, and a
        // request clones every box on its way in (8 stacked layers were a quarter of ingest's CPU).
        .layer(
            tower::ServiceBuilder::new()
                // Spans name the path only: a query may carry an access token (WebSocket, EventSource).
                .layer(
                    TraceLayer::new_for_http().make_span_with(|request: &Request| {
                        tracing::debug_span!("request", method = %request.method(), path = %request.uri().path())
                    }),
                )
                .layer(middleware::from_fn_with_state(metrics, HttpMetrics::track))
                .layer(CatchPanicLayer::custom(|_| {
                    tracing::error!("handler panicked");
                    ApiError::internal().into_response()
                }))
                .layer(DefaultBodyLimit::max(body_limit_bytes))
                .layer(middleware::from_fn(json_error_bodies))
                .layer(middleware::from_fn(security_headers)),
        )
}

/// `GET /metrics` in Prometheus' text format, for the operations port only: metrics name routes,
/// volumes and failures an outsider has no business reading.
pub fn metrics_route(registry: Registry) -> Router {
    Router::new().route(
        "/metrics",
        get(move || {
            let registry = registry.clone();
            async move { crate::metrics::render(&registry) }
        }),
    )
}

/// The API's answers are JSON for programs: no sniffing, no framing, no referrer, no active content.
/// A page (the reader's web client) sets its own `Content-Security-Policy`, which is kept.
async fn security_headers(req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let headers = response.headers_mut();
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    if !headers.contains_key(header::CONTENT_SECURITY_POLICY) {
        headers.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static("default-src 'none'; frame-ancestors 'none'"),
        );
    }
    response
}

/// `GET` of a JSON document fixed at start, such as a service's `/openapi.json`.
pub fn json_document<S: Clone + Send + Sync + 'static>(json: String) -> MethodRouter<S> {
    let body = axum::body::Bytes::from(json);
    get(move || {
        let body = body.clone();
        async move { ([(header::CONTENT_TYPE, "application/json")], body) }
    })
}

/// Gives every error response a JSON body, including those axum produces itself (e.g. a path segment
/// that is not valid UTF-8), so clients only ever parse one error shape.
async fn json_error_bodies(req: Request, next: Next) -> Response {
    let response = next.run(req).await;
    let status = response.status();
    let is_json = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if (status.is_client_error() || status.is_server_error()) && !is_json {
        let message = status.canonical_reason().unwrap_or("error").to_lowercase();
        return ApiError::body_json(status, &message, None);
    }
    response
}

/// The listen address could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on {addr}: {source}")]
pub struct BindError {
    pub addr: std::net::SocketAddr,
    pub source: std::io::Error,
}

/// Binds the configured listen address (port 0 picks a free port, as tests do).
pub async fn bind(addr: std::net::SocketAddr) -> Result<TcpListener, BindError> {
    TcpListener::bind(addr)
        .await
        .map_err(|source| BindError { addr, source })
}

/// Completes on SIGTERM or Ctrl-C.
pub async fn shutdown_signal() {
    let ctrl_c = async {
        if tokio::signal::ctrl_c().await.is_err() {
            std::future::pending::<()>().await;
        }
    };
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = terminate => {},
    }
    tracing::info!("shutdown signal received");
}

/// Structured logs to stderr, filtered by `RUST_LOG` (default `info`); `json` selects JSON lines.
pub fn init_tracing(json: bool) {
    use tracing_subscriber::EnvFilter;
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if json {
        builder.json().init();
    } else {
        builder.init();
    }
}
