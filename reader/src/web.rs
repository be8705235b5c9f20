//! The web chat client (`reader/web/`), embedded in the binary and served at `/`: the machines it runs
//! on may be offline, so nothing is fetched from a CDN. `/config.json` tells the page where ingest is
//! (its writes go there; ingest answers CORS requests).

use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

const INDEX_HTML: &str = include_str!("../web/index.html");
const APP_JS: &str = include_str!("../web/app.js");
const APP_CSS: &str = include_str!("../web/app.css");

pub fn router(public_ingest_url: String) -> Router {
    let config = serde_json::json!({ "ingest_url": public_ingest_url });
    Router::new()
        .route(
            "/",
            get(|| async {
                (
                    [(header::CONTENT_TYPE, "text/html; charset=utf-8")],
                    INDEX_HTML,
                )
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
