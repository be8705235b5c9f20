//! The web chat client (`reader/web/`), embedded in the binary and served at `/`: the machines it runs
//! on may be offline, so nothing is fetched from a CDN. `/config.json` tells the page where ingest is
//! (its writes go there; ingest answers CORS requests).

use axum::http::{header, HeaderValue};
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

const INDEX_HTML: &str = include_str!("../web/index.html");

/// The page's other files: path, content type, content.
const ASSETS: [(&str, &str, &str); 5] = [
    ("/app.js", JS, include_str!("../web/app.js")),
    ("/session.js", JS, include_str!("../web/session.js")),
    ("/outbox.js", JS, include_str!("../web/outbox.js")),
    (
        "/app.css",
        "text/css; charset=utf-8",
        include_str!("../web/app.css"),
    ),
    (
        "/favicon.svg",
        "image/svg+xml",
        include_str!("../web/favicon.svg"),
    ),
];
const JS: &str = "text/javascript; charset=utf-8";

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
    let mut router = Router::new();
    for (path, content_type, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move { ([(header::CONTENT_TYPE, content_type)], body) }),
        );
    }
    router
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
            "/config.json",
            get(move || {
                let config = config.clone();
                async move { Json(config).into_response() }
            }),
        )
}
