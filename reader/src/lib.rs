//! Reader: the read API — feeds, sync scans and store timelines, contact lists and histories, sessions,
//! and realtime delivery (long poll, WebSocket, SSE), straight from Postgres.
//!
//! Architecture invariant: the reader never writes timelines; its queries are plain reads that each see
//! one snapshot, so a page never mixes states. (It writes device state — acks, sessions — which is not
//! timeline content; socket sends go through Kafka like every other write.)
//!
//! # Layout
//! - [`config`]: command line and environment.
//! - [`db`]: page reads pipelined on a few shared tokio-postgres connections.
//! - [`failure`]: what a failed database call answers (503 or 500), in one place.
//! - [`params`]: the `limit` and `cursor` parameters every page shares.
//! - [`queries`]: the SQL behind each page.
//! - [`receipts`]: read receipts — a direct peer's read and delivered seqs, a small group's readers.
//! - [`sync`]: one page of a user's sync timeline, shared by `/sync`, long polls, sockets and SSE.
//! - [`routes`]: the HTTP handlers of feeds, store timelines and sync scans.
//! - [`history`]: history rows as the API shows them — content, quoted messages, mentions.
//! - [`im`]: the HTTP handlers of contact lists, histories and profiles.
//! - [`groups`]: groups as their users may see them: cards, members, invitations and requests.
//! - [`blocks`]: the users a user blocked.
//! - [`moderation`]: the operators' queue of reports.
//! - [`search`]: message and post search, scoped to what the caller may read.
//! - [`export`]: a user's data as JSON lines, streamed from one snapshot.
//! - [`directory`]: people and group search.
//! - [`sessions`]: login, refresh and logout, and the cleanup of ended sessions.
//! - [`attachments`]: download URLs for those who may read a message or post holding the file, and
//!   the directory store's downloads.
//! - [`access`]: who may read a conversation (history, receipts).
//! - [`accounts`]: password change (checked here, appended as an event, other sessions revoked).
//! - [`presence`]: reports users' activity to fanout and holds a dormant user's first read until their
//!   inbox is filled.
//! - [`hub`]: the process's one LISTEN connection, fanned out to waiting requests and sockets.
//! - [`session_ends`]: a revoked session closes the sockets and streams opened under it.
//! - [`caps`]: open sockets, streams and long polls per user and per client address.
//! - [`realtime`]: what the WebSocket and SSE routes share (settings, producer, caps, origins, metrics).
//! - [`socket`]: `GET /v1/ws`, a device's realtime connection.
//! - [`events`]: `GET /v1/users/{user}/events`, the SSE stream.
//! - [`web`]: the web chat client, served at `/`.
//! - [`openapi`]: the OpenAPI document of the routes, served at `/openapi.json`.

pub mod access;
pub mod accounts;
pub mod attachments;
pub mod blocks;
pub mod caps;
pub mod config;
pub mod db;
pub mod directory;
pub mod events;
pub mod export;
pub mod failure;
pub mod groups;
pub mod history;
pub mod hub;
pub mod im;
pub mod moderation;
pub mod openapi;
pub mod params;
pub mod presence;
pub mod queries;
pub mod realtime;
pub mod receipts;
pub mod routes;
pub mod search;
pub mod session_ends;
pub mod sessions;
pub mod socket;
pub mod sync;
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
    Producer(#[from] kafkakit::KafkaError),
    #[error("invalid Kafka property")]
    KafkaProperty(#[from] kafkakit::PropertyError),
    #[error(transparent)]
    Blobs(#[from] blobkit::BlobError),
}

pub struct App {
    listener: TcpListener,
    router: axum::Router,
    /// The operations port: `/metrics`, `/healthz`, `/readyz`.
    ops_listener: TcpListener,
    ops_router: axum::Router,
    limits: httpkit::ServeLimits,
    hub: Arc<hub::Hub>,
    pool: sqlx::PgPool,
    producer: kafkakit::EventProducer,
    /// Ends the long-lived responses (sockets, event streams, long polls) when the server stops, so
    /// that the graceful shutdown does not wait for them.
    shutdown: CancellationToken,
    sockets: TaskTracker,
    /// The disabled accounts the API refuses, and how often they are polled (none: never).
    disabled: Option<(Arc<authkit::DisabledAccounts>, Duration)>,
}

/// Checks what [`App::build`] needs from the configuration before it connects anywhere: the token
/// key, the operator's Kafka properties and a database URL both Postgres clients accept (the check
/// mode of the binary, used on compose files).
pub fn check_config(config: &Config) -> Result<(), BuildError> {
    config.token.key()?;
    config.kafka()?;
    let url = config.database_url.expose_secret();
    let _: PgConnectOptions = url.parse()?;
    let _: tokio_postgres::Config = url.parse()?;
    config.blobs.check()?;
    Ok(())
}

/// The reader's connections to Postgres: page reads, the pool for everything else, and the pool of
/// the LISTEN connection (outside the request pool: a busy pool must not starve wake-ups).
struct Connections {
    reads: db::ReadPool,
    pool: sqlx::PgPool,
    listen: sqlx::PgPool,
}

impl Connections {
    /// Lazy: the reader starts (and answers 503) while Postgres is down, and recovers by itself.
    fn open(config: &Config) -> Result<Connections, BuildError> {
        let options: PgConnectOptions = config.database_url.expose_secret().parse()?;
        // A stuck query must end as a 503, not hold the request (and a connection) forever.
        let statement_timeout = format!("{}ms", config.query_timeout_ms);
        let options = options.options([("statement_timeout", statement_timeout.as_str())]);
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
        let listen = PgPoolOptions::new()
            .max_connections(2)
            .acquire_timeout(wait)
            .connect_lazy_with(options);
        Ok(Connections {
            reads,
            pool,
            listen,
        })
    }

    /// Ready when both kinds of request connection answer and the LISTEN connection listens.
    fn readiness(&self, hub: &Arc<hub::Hub>) -> httpkit::Readiness {
        let (pool, reads, hub) = (self.pool.clone(), self.reads.clone(), hub.clone());
        httpkit::Readiness::new(move || {
            let (pool, reads, hub) = (pool.clone(), reads.clone(), hub.clone());
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
    }
}

/// Who answers "is this id free?": the facts, also where accounts are not required (a page asks
/// whom it can talk to, and a taken id is taken either way), on a per-address budget of its own.
fn id_lookups(config: &Config, pool: &sqlx::PgPool) -> Arc<accounts::IdLookups> {
    Arc::new(accounts::IdLookups {
        directory: Arc::new(authkit::AccountDirectory::new(pool.clone())),
        budget: authkit::AddressLimiter::per_minute(config.login_per_address_per_minute * 3),
    })
}

fn stream_caps(config: &Config) -> Arc<caps::Caps> {
    caps::Caps::new(
        "sockets and event streams",
        config.streams_per_user,
        config.streams_per_address,
    )
}

fn web_router(config: &Config) -> axum::Router {
    web::router(
        config.public_ingest_url.clone(),
        config.blobs.browser_origin(),
    )
}

/// Sockets waiting for their first-frame token at once (10 s each at most), across all users.
const MAX_UNAUTHENTICATED_SOCKETS: usize = 1024;

fn sessions(
    config: &Config,
    pool: &sqlx::PgPool,
    producer: &kafkakit::EventProducer,
    key: Arc<authkit::TokenKey>,
) -> sessions::Sessions {
    sessions::Sessions {
        pool: pool.clone(),
        producer: producer.clone(),
        key,
        limiter: authkit::LoginLimiter::new(authkit::LoginQuota {
            per_address_per_minute: config.login_per_address_per_minute,
            per_account_address_per_minute: config.login_per_account_address_per_minute,
            failures_per_account_per_hour: config.login_failures_per_account_per_hour,
        }),
        policy: sessions::SessionPolicy {
            access_ttl: Duration::from_secs(config.access_token_secs),
            refresh_ttl: Duration::from_secs(config.refresh_token_secs),
        },
    }
}

/// The attachment store (none: attachments are off) and where clients reach this reader.
fn attachments_of(config: &Config) -> Result<attachments::Attachments, BuildError> {
    Ok(attachments::Attachments {
        blobs: config.blobs.open()?.map(Arc::new),
        public_url: config.public_url.clone(),
    })
}

/// Which ids have accounts, when the configuration requires them.
fn directory(config: &Config, pool: &sqlx::PgPool) -> authkit::AccountDirectory {
    if config.accounts_required {
        authkit::AccountDirectory::new(pool.clone())
    } else {
        authkit::AccountDirectory::disabled()
    }
}

/// Groups, blocks and the moderation queue: reads that check who may see them.
fn safety_routes(pool: &sqlx::PgPool) -> axum::Router {
    groups::router(pool.clone())
        .merge(blocks::router(pool.clone()))
        .merge(search::router(pool.clone()))
        .merge(export::router(pool.clone()))
        .merge(receipts::router(pool.clone()))
        .merge(directory::router(pool.clone()))
        .merge(moderation::router(pool.clone()))
}

/// The WebSocket and SSE routes; tokens may come in the URL here (browsers cannot set headers).
fn realtime_routes(realtime: Arc<realtime::Realtime>) -> axum::Router {
    axum::Router::new()
        .route("/v1/ws", axum::routing::get(socket::connect))
        .route(
            "/v1/users/{user}/events",
            axum::routing::get(events::stream),
        )
        .with_state(realtime)
        .layer(axum::Extension(authkit::QueryTokenAllowed))
}

/// Reports users' activity and holds returning users' first reads (`presence`).
fn presence(
    config: &Config,
    pool: &sqlx::PgPool,
    producer: &kafkakit::EventProducer,
) -> Arc<presence::Presence> {
    Arc::new(presence::Presence::new(
        pool.clone(),
        producer.clone(),
        Duration::from_secs(config.activity_throttle_secs.max(1)),
        Duration::from_millis(config.return_wait_ms),
    ))
}

/// What the feed, store timeline and sync routes share.
fn read_state(
    config: &Config,
    connections: &Connections,
    hub: &Arc<hub::Hub>,
    shutdown: &CancellationToken,
) -> routes::ReadState {
    routes::ReadState {
        reads: connections.reads.clone(),
        pool: connections.pool.clone(),
        hub: hub.clone(),
        shutdown: shutdown.clone(),
        long_polls: caps::Caps::new(
            "long polls",
            config.long_polls_per_user,
            config.long_polls_per_address,
        ),
    }
}

impl App {
    pub async fn build(config: &Config, registry: Registry) -> Result<App, BuildError> {
        let token_key = Arc::new(config.token.key()?);
        let disabled = Arc::new(authkit::DisabledAccounts::default());
        let connections = Connections::open(config)?;
        let http_metrics = httpkit::HttpMetrics::new(&registry)?;
        let hub = hub::Hub::new(&registry)?;
        let readiness = connections.readiness(&hub);
        let metrics =
            kafkakit::ProduceMetrics::new(&registry, "reader", httpkit::metrics::LATENCY_BUCKETS)?;
        let producer = kafkakit::EventProducer::new(&config.kafka()?, &config.producer(), metrics)?;
        let shutdown = CancellationToken::new();
        let sockets = TaskTracker::new();
        let presence = presence(config, &connections.pool, &producer);
        let attachments = attachments_of(config)?;
        let realtime = Arc::new(realtime::Realtime {
            presence: presence.clone(),
            pool: connections.pool.clone(),
            reads: connections.reads.clone(),
            hub: hub.clone(),
            producer: producer.clone(),
            settings: config.socket_settings(),
            shutdown: shutdown.clone(),
            tasks: sockets.clone(),
            metrics: realtime::SocketMetrics::new(&registry)?,
            caps: stream_caps(config),
            origins: realtime::OriginPolicy::new(&config.ws_allowed_origins),
            directory: Arc::new(directory(config, &connections.pool).watching(disabled.clone())),
            writes: authkit::WriteLimiter::new(config.writes.quota(), &registry, "reader")?,
            blobs: attachments.blobs.clone(),
            unauthenticated: Arc::new(tokio::sync::Semaphore::new(MAX_UNAUTHENTICATED_SOCKETS)),
            key: token_key.clone(),
            disabled: disabled.clone(),
        });
        let session_state = Arc::new(sessions(
            config,
            &connections.pool,
            &producer,
            token_key.clone(),
        ));
        let api = routes::router(read_state(config, &connections, &hub, &shutdown))
            .merge(im::router(im::ImState {
                pool: connections.pool.clone(),
                reads: connections.reads,
            }))
            .merge(safety_routes(&connections.pool))
            .merge(sessions::router(session_state.clone()))
            .merge(accounts::router(
                session_state,
                id_lookups(config, &connections.pool),
            ))
            .merge(realtime_routes(realtime))
            .merge(attachments::router(connections.pool.clone()))
            .layer(axum::Extension(attachments))
            .layer(axum::Extension(token_key))
            .layer(axum::Extension(presence))
            .layer(axum::Extension(disabled.clone()))
            .layer(axum::Extension(Arc::new(config.moderation.operators())))
            .merge(web_router(config))
            .route(
                "/openapi.json",
                httpkit::json_document(openapi::document_json()),
            );
        let ops_router = httpkit::with_common_layers(
            httpkit::metrics_route(registry),
            http_metrics.clone(),
            readiness.clone(),
            0,
        );
        let router = httpkit::with_common_layers(api, http_metrics, readiness, 16 * 1024);
        let listener = httpkit::bind(config.listen).await?;
        let ops_listener = httpkit::bind(config.ops_listen).await?;
        Ok(App {
            listener,
            router,
            ops_listener,
            ops_router,
            limits: config.http.limits(),
            hub,
            pool: connections.listen,
            producer,
            shutdown,
            sockets,
            disabled: config
                .moderation
                .disabled_poll()
                .map(|every| (disabled, every)),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// The operations port (`/metrics`).
    pub fn ops_port(&self) -> u16 {
        self.ops_listener
            .local_addr()
            .map(|a| a.port())
            .unwrap_or(0)
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let listening = tokio::spawn(self.hub.clone().run_listener(self.pool.clone()));
        let cleaning = tokio::spawn(sessions::clean_up_periodically(self.pool.clone()));
        let polling = self.disabled.clone().map(|(disabled, every)| {
            let pool = self.pool.clone();
            tokio::spawn(
                disabled.keep_polling(self.pool.clone(), every, move |users| {
                    let pool = pool.clone();
                    async move { sessions::end_sessions_of(&pool, users).await }
                }),
            )
        });
        let ending = self.shutdown.clone();
        let shutdown = async move {
            shutdown.await;
            ending.cancel();
        };
        let ops_stopped = self.shutdown.clone();
        let ops = tokio::spawn(httpkit::serve(
            self.ops_listener,
            self.ops_router,
            httpkit::ServeLimits::default(),
            async move { ops_stopped.cancelled().await },
        ));
        let result = httpkit::serve(self.listener, self.router, self.limits, shutdown).await;
        let _ = ops.await;
        // Sockets saw the cancellation too: let them send their close frames (1001).
        self.sockets.close();
        let _ = tokio::time::timeout(Duration::from_secs(3), self.sockets.wait()).await;
        listening.abort();
        cleaning.abort();
        if let Some(polling) = polling {
            polling.abort();
        }
        self.producer.flush().await;
        result
    }
}
