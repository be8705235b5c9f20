//! What the realtime routes (WebSocket, SSE) share: connections, the wake-up hub, the producer of
//! socket sends, the socket settings, caps, the origins allowed to open sockets, and metrics.

use std::sync::Arc;
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

#[derive(Debug, Clone, Copy)]
pub struct SocketSettings {
    pub heartbeat: Duration,
    pub max_missed: u32,
    pub window: u32,
    pub buffer_frames: usize,
    pub send_timeout: Duration,
}

pub struct Realtime {
    /// Reports the user's activity at connect and while the connection stays open.
    pub presence: Arc<crate::presence::Presence>,
    pub pool: PgPool,
    /// Page reads (sync pages).
    pub reads: crate::db::ReadPool,
    pub hub: Arc<crate::hub::Hub>,
    /// Messages and read markers sent over a socket are appended exactly as ingest appends them.
    pub producer: kafkakit::EventProducer,
    pub settings: SocketSettings,
    pub shutdown: CancellationToken,
    /// The open sockets, so that shutdown can let them send their close frames.
    pub tasks: TaskTracker,
    pub metrics: SocketMetrics,
    /// Open WebSockets and event streams per user and address.
    pub caps: Arc<crate::caps::Caps>,
    pub origins: OriginPolicy,
    /// 1:1 messages sent over a socket go to ids with accounts only, as at ingest.
    pub directory: Arc<authkit::AccountDirectory>,
    /// Messages sent over a socket spend the user's message budget, as at ingest.
    pub writes: authkit::WriteLimiter,
    /// Attachments of messages sent over a socket are checked against the store, as at ingest.
    pub blobs: Option<Arc<blobkit::Blobs>>,
    /// Sockets opened without a token, waiting for their `auth` frame: anyone may open one, so they
    /// are counted (a few seconds each) before any per-user cap can apply.
    pub unauthenticated: Arc<tokio::sync::Semaphore>,
    /// What checks a token that comes in a socket's first frame (the request's extractor checks
    /// the others).
    pub key: Arc<authkit::TokenKey>,
    pub disabled: Arc<authkit::DisabledAccounts>,
}

/// What an open socket or stream holds: its place under the caps and the watch on its session.
pub struct Admitted {
    pub slot: crate::caps::Slot,
    pub session: crate::session_ends::SessionWatch,
}

impl Realtime {
    /// Admits one more socket or stream of the token's user: `429` past the caps, `401` when the
    /// token's session has ended.
    pub async fn admit(
        &self,
        bearer: &authkit::Bearer,
        client: httpkit::ClientAddress,
    ) -> Result<Admitted, axum::response::Response> {
        use axum::response::IntoResponse;
        let slot = self
            .caps
            .enter(bearer.user(), client)
            .map_err(IntoResponse::into_response)?;
        let session = self
            .hub
            .sessions
            .watch(&self.pool, &bearer.claims.sid)
            .await;
        if session.has_ended() {
            return Err(httpkit::ApiError::new(
                axum::http::StatusCode::UNAUTHORIZED,
                "the session has ended: log in again",
            )
            .into_response());
        }
        Ok(Admitted { slot, session })
    }
}

/// Which pages may open a WebSocket. A browser lets any page open a socket to any host and sends
/// its token along if the page has one; only the `Origin` header tells whose page it is
/// (cross-site WebSocket hijacking). Streams need no such check: without CORS headers a browser
/// does not let another origin's page read an event stream.
#[derive(Debug, Clone, Default)]
pub struct OriginPolicy {
    /// Allowed origins, lower case, without a trailing slash.
    allowed: Vec<String>,
    any: bool,
}

impl OriginPolicy {
    pub fn new(allowed: &[String]) -> Self {
        let allowed: Vec<String> = allowed
            .iter()
            .map(|origin| origin.trim().trim_end_matches('/').to_ascii_lowercase())
            .filter(|origin| !origin.is_empty())
            .collect();
        OriginPolicy {
            any: allowed.iter().any(|origin| origin == "*"),
            allowed,
        }
    }

    /// Whether a request with these headers may open a socket: no `Origin` (not a browser), the
    /// reader's own origin (the same host and port as `Host`), or a configured one.
    pub fn permits(&self, headers: &axum::http::HeaderMap) -> bool {
        use axum::http::header;
        let Some(origin) = headers.get(header::ORIGIN) else {
            return true;
        };
        let Ok(origin) = origin.to_str() else {
            return false;
        };
        let origin = origin.trim_end_matches('/').to_ascii_lowercase();
        if self.any || self.allowed.contains(&origin) {
            return true;
        }
        let host = headers
            .get(header::HOST)
            .and_then(|host| host.to_str().ok())
            .map(str::to_ascii_lowercase);
        let origin_host = origin.split_once("://").map(|(_, host)| host);
        matches!((origin_host, host), (Some(origin_host), Some(host)) if origin_host == host)
    }
}

#[derive(Clone)]
pub struct SocketMetrics {
    pub(crate) open: IntGauge,
    pub(crate) closed: IntCounterVec,
}

impl SocketMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let open = IntGauge::new(
            "fanline_reader_ws_connections",
            "Open WebSocket connections.",
        )?;
        let closed = IntCounterVec::new(
            Opts::new(
                "fanline_reader_ws_closed_total",
                "WebSocket connections ended, by reason.",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(open.clone()))?;
        registry.register(Box::new(closed.clone()))?;
        Ok(SocketMetrics { open, closed })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::{HeaderMap, HeaderValue};

    fn headers(origin: Option<&str>, host: &str) -> HeaderMap {
        let mut map = HeaderMap::new();
        map.insert("host", HeaderValue::from_str(host).unwrap());
        if let Some(origin) = origin {
            map.insert("origin", HeaderValue::from_str(origin).unwrap());
        }
        map
    }

    #[test]
    fn sockets_open_from_the_readers_own_page_configured_origins_and_non_browsers() {
        let policy = OriginPolicy::new(&["https://Chat.Example.com/".to_owned()]);
        assert!(policy.permits(&headers(None, "127.0.0.1:8081")));
        assert!(policy.permits(&headers(Some("http://127.0.0.1:8081"), "127.0.0.1:8081")));
        assert!(policy.permits(&headers(Some("https://chat.example.com"), "reader:8081")));
        assert!(!policy.permits(&headers(Some("https://evil.example"), "127.0.0.1:8081")));
        assert!(!policy.permits(&headers(Some("http://127.0.0.1:9999"), "127.0.0.1:8081")));
        assert!(!policy.permits(&headers(Some("null"), "127.0.0.1:8081")));
        let any = OriginPolicy::new(&["*".to_owned()]);
        assert!(any.permits(&headers(Some("https://evil.example"), "127.0.0.1:8081")));
    }
}
