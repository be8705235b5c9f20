//! The connection loop every Fanline HTTP port runs: HTTP/1.1 with a deadline for a request's headers
//! (which also ends idle keep-alive connections), a deadline for its whole body, caps on open
//! connections in all and per client address, the client's address for handlers, and a bounded
//! graceful drain.
//!
//! Why not `axum::serve`: it runs hyper without a timer, so hyper's header-read timeout never fires,
//! and it has no connection cap — 200 connections sending half a header each were held for minutes
//! (issue 19, finding 4).

use std::collections::HashMap;
use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::http::{HeaderName, Request};
use axum::Router;
use http_body::{Body as HttpBody, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::{Instant, Sleep};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use crate::client::{limit_key, ClientAddress, ProxyNet, TrustedProxies};

/// How long in-flight requests may take to finish after the shutdown signal; a client that stopped
/// reading a stream must not hold the process up forever.
pub const DRAIN_LIMIT: Duration = Duration::from_secs(10);

/// The defaults of [`HttpArgs`].
pub mod defaults {
    pub const HEADER_TIMEOUT_SECS: u64 = 10;
    pub const BODY_TIMEOUT_SECS: u64 = 10;
    pub const MAX_CONNECTIONS: usize = 10_000;
    pub const MAX_CONNECTIONS_PER_ADDRESS: usize = 256;
    pub const CLIENT_ADDRESS_HEADER: &str = "x-forwarded-for";
}

/// The HTTP limits and proxy settings of a public port (ingest's and reader's flags).
#[derive(Debug, Clone, clap::Args)]
pub struct HttpArgs {
    /// Longest wait for a request's headers, in seconds, from the connection's start or the end of
    /// its previous response: slow senders and idle keep-alive connections are closed after it.
    #[arg(long, env = "FANLINE_HTTP_HEADER_TIMEOUT_SECS", default_value_t = defaults::HEADER_TIMEOUT_SECS)]
    pub http_header_timeout_secs: u64,

    /// Longest time to receive a request's whole body, in seconds, from its headers on (408 after).
    #[arg(long, env = "FANLINE_HTTP_BODY_TIMEOUT_SECS", default_value_t = defaults::BODY_TIMEOUT_SECS)]
    pub http_body_timeout_secs: u64,

    /// Open HTTP connections at most; past it, new ones wait in the listen backlog. (WebSockets and
    /// event streams have their own caps per user and address.)
    #[arg(long, env = "FANLINE_HTTP_MAX_CONNECTIONS", default_value_t = defaults::MAX_CONNECTIONS)]
    pub http_max_connections: usize,

    /// Open HTTP connections from one client address (an IPv6 /64) at most; more are closed at once.
    /// Trusted proxies are exempt.
    #[arg(long, env = "FANLINE_HTTP_MAX_CONNECTIONS_PER_ADDRESS", default_value_t = defaults::MAX_CONNECTIONS_PER_ADDRESS)]
    pub http_max_connections_per_address: usize,

    /// Reverse proxies (addresses or networks, comma-separated) whose client-address header is
    /// believed. Empty (the default): the connection's address is the client's.
    #[arg(
        long = "trusted-proxy",
        env = "FANLINE_TRUSTED_PROXIES",
        value_delimiter = ','
    )]
    pub trusted_proxies: Vec<ProxyNet>,

    /// The header trusted proxies put the client's address in (each appends the address it saw).
    #[arg(long, env = "FANLINE_CLIENT_ADDRESS_HEADER", default_value = defaults::CLIENT_ADDRESS_HEADER)]
    pub client_address_header: HeaderName,
}

impl Default for HttpArgs {
    fn default() -> Self {
        HttpArgs {
            http_header_timeout_secs: defaults::HEADER_TIMEOUT_SECS,
            http_body_timeout_secs: defaults::BODY_TIMEOUT_SECS,
            http_max_connections: defaults::MAX_CONNECTIONS,
            http_max_connections_per_address: defaults::MAX_CONNECTIONS_PER_ADDRESS,
            trusted_proxies: Vec::new(),
            client_address_header: HeaderName::from_static(defaults::CLIENT_ADDRESS_HEADER),
        }
    }
}

impl HttpArgs {
    /// The limits, each at least its smallest workable value.
    pub fn limits(&self) -> ServeLimits {
        ServeLimits {
            header_read: Duration::from_secs(self.http_header_timeout_secs.max(1)),
            body_read: Duration::from_secs(self.http_body_timeout_secs.max(1)),
            max_connections: self.http_max_connections.max(1),
            max_connections_per_address: self.http_max_connections_per_address.max(1),
            proxies: TrustedProxies::new(&self.trusted_proxies, self.client_address_header.clone()),
        }
    }
}

/// What [`serve`] enforces.
#[derive(Debug, Clone)]
pub struct ServeLimits {
    pub header_read: Duration,
    pub body_read: Duration,
    pub max_connections: usize,
    pub max_connections_per_address: usize,
    pub proxies: TrustedProxies,
}

impl Default for ServeLimits {
    fn default() -> Self {
        HttpArgs::default().limits()
    }
}

/// Serves `router` on `listener` until `shutdown` completes, then lets in-flight requests finish, for
/// at most [`DRAIN_LIMIT`]. Handlers find [`ConnectInfo`] and [`ClientAddress`] in the extensions.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    limits: ServeLimits,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let limits = Arc::new(limits);
    let connections = Arc::new(Semaphore::new(limits.max_connections));
    let per_address = Arc::new(AddressSlots::new(limits.max_connections_per_address));
    let stop = CancellationToken::new();
    let tracker = TaskTracker::new();
    tokio::pin!(shutdown);
    loop {
        let permit = tokio::select! {
            permit = connections.clone().acquire_owned() => match permit {
                Ok(permit) => permit,
                Err(_) => break,
            },
            () = &mut shutdown => break,
        };
        let (stream, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(err) => {
                    // Out of file descriptors and the like: pause instead of spinning.
                    tracing::warn!(error = %err, "accept failed; pausing for a second");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        let slot = if limits.proxies.trusts(peer.ip()) {
            None
        } else {
            match per_address.enter(peer.ip()) {
                Some(slot) => Some(slot),
                None => {
                    tracing::debug!(address = %peer.ip(), "connection cap of the address reached");
                    continue;
                }
            }
        };
        let _ = stream.set_nodelay(true);
        let (router, limits, stop) = (router.clone(), limits.clone(), stop.clone());
        tracker.spawn(async move {
            serve_connection(stream, peer, router, limits, stop).await;
            drop((permit, slot));
        });
    }
    drop(listener);
    tracker.close();
    stop.cancel();
    if tokio::time::timeout(DRAIN_LIMIT, tracker.wait())
        .await
        .is_err()
    {
        tracing::warn!(
            "requests still open {DRAIN_LIMIT:?} after the shutdown signal; closing them"
        );
    }
    Ok(())
}

async fn serve_connection(
    stream: tokio::net::TcpStream,
    peer: SocketAddr,
    router: Router,
    limits: Arc<ServeLimits>,
    stop: CancellationToken,
) {
    let (body_read, header_read) = (limits.body_read, limits.header_read);
    let service = hyper::service::service_fn(move |request: Request<Incoming>| {
        let client = limits.proxies.client_address(peer.ip(), request.headers());
        let mut request = request.map(|body| DeadlineBody::new(body, body_read));
        request.extensions_mut().insert(ConnectInfo(peer));
        request.extensions_mut().insert(ClientAddress(client));
        router.clone().oneshot(request)
    });
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_read);
    let connection = http
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => log_connection_end(result),
        () = stop.cancelled() => {
            connection.as_mut().graceful_shutdown();
            log_connection_end(connection.await);
        }
    }
}

fn log_connection_end(result: Result<(), hyper::Error>) {
    if let Err(err) = result {
        // Timeouts, resets and malformed requests: the client's doing, not an error of ours.
        tracing::debug!(error = %err, "connection ended");
    }
}

/// Open connections per client address (an IPv6 /64), each released when its [`AddressSlot`] drops.
struct AddressSlots {
    max: usize,
    open: Mutex<HashMap<IpAddr, usize>>,
}

struct AddressSlot {
    slots: Arc<AddressSlots>,
    key: IpAddr,
}

impl AddressSlots {
    fn new(max: usize) -> Self {
        AddressSlots {
            max,
            open: Mutex::new(HashMap::new()),
        }
    }

    fn enter(self: &Arc<Self>, address: IpAddr) -> Option<AddressSlot> {
        let key = limit_key(address);
        let mut open = self.open.lock().unwrap_or_else(|e| e.into_inner());
        let count = open.entry(key).or_insert(0);
        if *count >= self.max {
            return None;
        }
        *count += 1;
        Some(AddressSlot {
            slots: self.clone(),
            key,
        })
    }
}

impl Drop for AddressSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(count) = open.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                open.remove(&self.key);
            }
        }
    }
}

/// The request body ran past its deadline ([`ServeLimits::body_read`]).
#[derive(Debug, thiserror::Error)]
#[error("the request body was not received in time")]
pub struct BodyTimeout;

/// A request body that fails with [`BodyTimeout`] once its deadline passes, however the bytes trickle
/// in (tower-http's body timeout restarts with every frame, so one byte every few seconds never ends).
struct DeadlineBody {
    body: Incoming,
    deadline: Instant,
    /// Armed on the first poll: most requests have no body and never need a timer.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl DeadlineBody {
    fn new(body: Incoming, limit: Duration) -> Self {
        DeadlineBody {
            body,
            deadline: Instant::now() + limit,
            sleep: None,
        }
    }
}

impl HttpBody for DeadlineBody {
    type Data = Bytes;
    type Error = Box<dyn std::error::Error + Send + Sync>;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        let this = &mut *self;
        if let Poll::Ready(frame) = Pin::new(&mut this.body).poll_frame(cx) {
            return Poll::Ready(frame.map(|result| result.map_err(Into::into)));
        }
        let deadline = this.deadline;
        let sleep = this
            .sleep
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(deadline)));
        match sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(Box::new(BodyTimeout)))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_address_has_at_most_its_slots_and_gets_them_back() {
        let slots = Arc::new(AddressSlots::new(2));
        let a: IpAddr = "192.0.2.1".parse().unwrap();
        let b: IpAddr = "192.0.2.2".parse().unwrap();
        let first = slots.enter(a).unwrap();
        let _second = slots.enter(a).unwrap();
        assert!(slots.enter(a).is_none());
        assert!(slots.enter(b).is_some());
        drop(first);
        assert!(slots.enter(a).is_some());
    }
}
