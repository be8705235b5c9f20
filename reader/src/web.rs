//! The web chat client (`reader/web/`), embedded in the binary and served at `/`: the machines it runs
//! on may be offline, so nothing is fetched from a CDN. `/config.json` tells the page where ingest is
//! (its writes go there; ingest answers CORS requests).

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

/// The page's Content-Security-Policy: its own scripts and styles only (none inline), requests to
/// itself (sockets included: `'self'` covers ws/wss of the same host), to ingest and — uploads and
/// pictures — to the attachment store when that is S3 (`blob_origin`), no framing.
fn content_security_policy(public_ingest_url: &str, blob_origin: Option<&str>) -> String {
    let blobs = blob_origin.unwrap_or_default();
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data: blob: {blobs}; \
         connect-src 'self' {public_ingest_url} {blobs}; base-uri 'none'; form-action 'self'; \
         frame-ancestors 'none'"
    )
}

pub fn router(public_ingest_url: String, blob_origin: Option<String>) -> Router {
    let csp = content_security_policy(&public_ingest_url, blob_origin.as_deref());
    let policy = HeaderValue::from_str(&csp)
        .unwrap_or_else(|_| HeaderValue::from_static("default-src 'self'; frame-ancestors 'none'"));
    let config = serde_json::json!({ "ingest_url": public_ingest_url });
    Router::new()
        .route(
            "/",
            get(move || {
                let policy = policy.clone();
                async move {
                    (
                        [
                            (
                                header::CONTENT_TYPE,
                                HeaderValue::from_static("text/html; charset=utf-8"),
                            ),
                            (header::CONTENT_SECURITY_POLICY, policy),
                        ],
                        INDEX_HTML,
                    )
                }
            }),
        )
        .route(
            "/app.js",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/javascript; charset=utf-8")],
                    APP_JS,
                )
            }),
        )
        .route(
            "/app.css",
            get(|| async { ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], APP_CSS) }),
        )
        .route(
            "/config.json",
            get(move || {
                let config = config.clone();
                async move { Json(config).into_response() }
            }),
        )
}
