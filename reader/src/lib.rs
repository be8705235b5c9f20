//! Reader: the read API — feeds, sync scans and store timelines, straight from Postgres.
//!
//! Architecture invariant: the reader never writes timelines; its queries are plain reads that each see
//! one snapshot, so a page never mixes states.
//!
//! # Layout
//! - [`config`]: command line and environment.
//! - [`queries`]: the SQL behind each endpoint, and the cursor format.
//! - [`routes`]: the HTTP handlers and parameter validation.
//! - [`openapi`]: the OpenAPI document of the routes, served at `/openapi.json`.

pub mod config;
pub mod db;
pub mod events;
pub mod hub;
pub mod im;
pub mod openapi;
pub mod queries;
pub mod routes;
pub mod sessions;
pub mod socket;
pub mod web;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use secrecy::ExposeSecret;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use config::Config;

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Bind(#[from] httpkit::BindError),
    #[error("invalid database URL")]
    Database(#[from] sqlx::Error),
    #[error("invalid database URL: {0}")]
    DatabaseUrl(#[from] tokio_postgres::Error),
    #[error("cannot register metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("FANLINE_TOKEN_KEY: {0}")]
    TokenKey(#[from] authkit::KeyError),
    #[error("cannot create the Kafka producer of WebSocket sends: {0}")]
    Producer(#[from] ingest::BuildError),
}

pub struct App {
    listener: TcpListener,
    router: axum::Router,
    hub: Arc<hub::Hub>,
    pool: sqlx::PgPool,
    producer: Arc<ingest::producer::EventProducer>,
    /// Ends the long-lived responses (sockets, event streams, long polls) when the server stops, so
    /// that the graceful shutdown does not wait for them.
    shutdown: CancellationToken,
    sockets: TaskTracker,
}

impl App {
    pub async fn build(config: &Config, registry: Registry) -> Result<App, BuildError> {
        let token_key = Arc::new(config.token.key()?);
        let options: PgConnectOptions = config.database_url.expose_secret().parse()?;
        // A stuck query must end as a 503, not hold the request (and a connection) forever.
        let statement_timeout = format!("{}ms", config.query_timeout_ms);
        let options = options.options([("statement_timeout", statement_timeout.as_str())]);
        // Lazy: the reader starts (and answers 503) while Postgres is down, and recovers by itself.
        let wait = Duration::from_millis(config.query_timeout_ms);
        let reads = db::ReadPool::new(
            config.database_url.expose_secret(),
            config.page_connections() as usize,
            wait,
        )?;
        let pool = PgPoolOptions::new()
            .max_connections(config.other_connections())
            .test_before_acquire(false)
            .acquire_timeout(wait)
            .connect_lazy_with(options.clone());
        let http_metrics = httpkit::HttpMetrics::new(&registry)?;
        let hub = hub::Hub::new(&registry)?;
        let readiness = {
            let pool = pool.clone();
            let reads = reads.clone();
            let hub = hub.clone();
            httpkit::Readiness::new(move || {
                let pool = pool.clone();
                let reads = reads.clone();
                let hub = hub.clone();
                async move {
                    sqlx::query("SELECT 1")
                        .execute(&pool)
                        .await
                        .map_err(|_| "database unavailable".to_owned())?;
                    // The page reads' own connections (tokio-postgres reads the URL itself).
                    reads
                        .query("SELECT 1", &[])
                        .await
                        .map_err(|err| format!("page reads: {err}"))?;
                    // Without the LISTEN connection, long polls, sockets and event streams hear nothing.
                    if !hub.listening() {
                        return Err("not listening for sync wake-ups yet".to_owned());
                    }
                    Ok(())
                }
            })
        };
        // The LISTEN connection lives outside the request pool: a busy pool must not starve wake-ups.
        let listen_pool = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(wait)
            .connect_lazy_with(options.clone());
        let sessions = Arc::new(sessions::Sessions {
            pool: pool.clone(),
            key: token_key.clone(),
            limiter: authkit::LoginLimiter::new(authkit::LoginQuota {
                per_account_per_minute: config.login_per_account_per_minute,
                per_address_per_minute: config.login_per_address_per_minute,
            }),
            policy: sessions::SessionPolicy {
                access_ttl: Duration::from_secs(config.access_token_secs),
                refresh_ttl: Duration::from_secs(config.refresh_token_secs),
            },
        });
        // Messages and read markers sent over a socket are appended exactly as ingest appends them.
        let producer = {
            let mut produce = ingest::Config::for_brokers(&config.brokers, &config.topic);
            produce.produce_timeout_ms = config.produce_timeout_ms;
            let metrics = ingest::metrics::IngestMetrics::new(&registry)?;
            Arc::new(ingest::producer::EventProducer::new(&produce, metrics)?)
        };
        let shutdown = CancellationToken::new();
        let sockets = TaskTracker::new();
        let realtime = Arc::new(socket::Realtime {
            pool: pool.clone(),
            reads: reads.clone(),
            hub: hub.clone(),
            producer: producer.clone(),
            settings: socket::SocketSettings {
                heartbeat: Duration::from_secs(config.ws_heartbeat_secs.max(1)),
                max_missed: config.ws_max_missed.max(1),
                window: config.ws_window.max(1),
                buffer_frames: config.ws_buffer_frames.max(2),
                send_timeout: Duration::from_secs(config.ws_send_timeout_secs.max(1)),
            },
            shutdown: shutdown.clone(),
            tasks: sockets.clone(),
            metrics: socket::SocketMetrics::new(&registry)?,
        });
        let realtime_routes = axum::Router::new()
            .route("/v1/ws", axum::routing::get(socket::connect))
            .route(
                "/v1/users/{user}/events",
                axum::routing::get(events::stream),
            )
            .with_state(realtime)
            .layer(axum::Extension(authkit::QueryTokenAllowed));
        let api = routes::router(routes::ReadState {
            reads: reads.clone(),
            pool: pool.clone(),
            hub: hub.clone(),
            shutdown: shutdown.clone(),
        })
        .merge(im::router(im::ImState { pool, reads }))
        .merge(sessions::router(sessions))
        .merge(realtime_routes)
        .layer(axum::Extension(token_key))
        .merge(web::router(config.public_ingest_url.clone()));
        let router = httpkit::with_common_layers(api, registry, http_metrics, readiness, 16 * 1024);
        let listener = httpkit::bind(config.listen).await?;
        Ok(App {
            listener,
            router,
            hub,
            pool: listen_pool,
            producer,
            shutdown,
            sockets,
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listening = tokio::spawn(self.hub.clone().run_listener(self.pool.clone()));
        let cleaning = tokio::spawn(sessions::clean_up_periodically(self.pool.clone()));
        let ending = self.shutdown.clone();
        let shutdown = async move {
            shutdown.await;
            ending.cancel();
        };
        let result = httpkit::serve(self.listener, self.router, shutdown).await;
        // Sockets saw the cancellation too: let them send their close frames (1001).
        self.sockets.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.sockets.wait()).await;
        listening.abort();
        cleaning.abort();
        self.producer.flush().await;
        result
    }
}
