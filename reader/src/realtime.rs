//! What the realtime routes (WebSocket, SSE) share: connections, the wake-up hub, the producer of
//! socket sends, the socket settings and metrics.

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
