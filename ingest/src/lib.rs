//! Ingest: the write API. It validates requests, appends one event per request to Kafka and answers only
//! after the broker acknowledged the event (`acks=all`, one request in flight).
//!
//! Architecture invariant: ingest never touches Postgres. It holds no state, so any number of instances
//! can run behind a load balancer.
//!
//! # Layout
//! - [`attachment_routes`]: uploads — signed upload requests, and the directory store's upload route.
//! - [`caps`]: follows per user, groups per user, members per group.
//! - [`config`]: command-line flags and environment variables.
//! - [`routes`]: the HTTP handlers of posts, follows and accounts.
//! - [`im_routes`]: the HTTP handlers of messages, read markers, profiles and groups.
//! - [`moderation_routes`]: reports, and the operators' routes (`/v1/admin/…`).
//! - [`revision_routes`]: edits and reactions (and the recall route they share a path with).
//! - [`safety_routes`]: the HTTP handlers of group settings, mutes and blocks.
//! - [`openapi`]: the OpenAPI document of the routes, served at `/openapi.json`.
//!
//! The producer is [`kafkakit::EventProducer`]; request rules and request → event conversions are
//! the payloads' own, in `schemas`.

pub mod attachment_routes;
pub mod caps;
pub mod config;
pub mod im_routes;
pub mod moderation_routes;
pub mod openapi;
pub mod revision_routes;
pub mod routes;
pub mod safety_routes;

use std::future::Future;
use std::sync::Arc;

use prometheus::Registry;
use tokio::net::TcpListener;

pub use config::Config;
use kafkakit::EventProducer;

/// Why the service could not start.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Bind(#[from] httpkit::BindError),
    #[error("cannot create the Kafka producer")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error("cannot register metrics")]
    Metrics(#[from] prometheus::Error),
    #[error("invalid Kafka property")]
    KafkaProperty(#[from] kafkakit::PropertyError),
    #[error("FANLINE_TOKEN_KEY: {0}")]
    TokenKey(#[from] authkit::KeyError),
    #[error("FANLINE_DATABASE_URL: {0}")]
    DatabaseUrl(#[from] sqlx::Error),
    #[error(transparent)]
    Blobs(#[from] blobkit::BlobError),
}

/// Checks what [`App::build`] needs from the configuration before it connects anywhere: the token
/// key, the operator's Kafka properties and the database URL of the account directory (the check
/// mode of the binary, used on compose files).
pub fn check_config(config: &Config) -> Result<(), BuildError> {
    config.token.key()?;
    config.kafka()?;
    config.account_directory()?;
    config.blobs.check()?;
    Ok(())
}

/// Browsers may call ingest from any origin (the web client is served by the reader, on another
/// port). Safe because credentials are bearer tokens the page sends explicitly, never cookies: another
/// site's page has no token to send.
fn cors() -> tower_http::cors::CorsLayer {
    use axum::http::{header, Method};
    tower_http::cors::CorsLayer::new()
        .allow_origin(tower_http::cors::Any)
        .allow_methods([
            Method::GET,
            Method::POST,
            Method::PUT,
            Method::PATCH,
            Method::DELETE,
        ])
        .allow_headers([header::AUTHORIZATION, header::CONTENT_TYPE])
        .max_age(std::time::Duration::from_secs(600))
}

/// A built ingest service, bound to its port but not yet serving.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    /// The operations port: `/metrics`, `/healthz`, `/readyz`.
    ops_listener: TcpListener,
    ops_router: axum::Router,
    limits: httpkit::ServeLimits,
    producer: Arc<EventProducer>,
    /// The disabled accounts and where and how often to poll them (none: never).
    disabled: Option<(
        Arc<authkit::DisabledAccounts>,
        sqlx::PgPool,
        std::time::Duration,
    )>,
}

impl App {
    pub async fn build(config: &Config, registry: Registry) -> Result<App, BuildError> {
        let token_key = Arc::new(config.token.key()?);
        let disabled = Arc::new(authkit::DisabledAccounts::default());
        let poll = match config.moderation.disabled_poll() {
            Some(interval) => Some((config.read_pool()?, interval)),
            None => None,
        };
        let metrics =
            kafkakit::ProduceMetrics::new(&registry, "ingest", httpkit::metrics::LATENCY_BUCKETS)?;
        let http_metrics = httpkit::HttpMetrics::new(&registry)?;
        let producer = Arc::new(EventProducer::new(
            &config.kafka()?,
            &config.producer(),
            metrics,
        )?);
        let readiness = {
            let producer = producer.clone();
            httpkit::Readiness::new(move || {
                let producer = producer.clone();
                async move { producer.check_topic().await }
            })
        };
        let router = httpkit::with_common_layers(
            routes::router(producer.clone(), config.batch_body_limit_bytes)
                .merge(im_routes::router(producer.clone()))
                .merge(safety_routes::router(producer.clone()))
                .merge(moderation_routes::router(producer.clone()))
                .merge(attachment_routes::router())
                .merge(revision_routes::router(producer.clone()))
                .route(
                    "/openapi.json",
                    httpkit::json_document(openapi::document_json()),
                )
                // One `layer` call: every call boxes each route again (see `with_common_layers`).
                .layer(
                    tower::ServiceBuilder::new()
                        .layer(axum::Extension(token_key))
                        .layer(axum::Extension(attachment_routes::Attachments {
                            blobs: config.blobs.open()?.map(Arc::new),
                            public_url: config.public_url.clone(),
                        }))
                        .layer(axum::Extension(disabled.clone()))
                        .layer(axum::Extension(Arc::new(config.moderation.operators())))
                        .layer(axum::Extension(Arc::new(caps::Caps::new(
                            config.caps.clone(),
                            config.read_pool()?,
                        ))))
                        .layer(axum::Extension(Arc::new(
                            config.account_directory()?.watching(disabled.clone()),
                        )))
                        .layer(axum::Extension(Arc::new(authkit::WriteLimiter::new(
                            config.writes.quota(),
                            &registry,
                            "ingest",
                        )?)))
                        .layer(axum::Extension(Arc::new(
                            authkit::AddressLimiter::per_minute(
                                config.register_per_address_per_minute,
                            ),
                        ))),
                ),
            http_metrics.clone(),
            readiness.clone(),
            config.body_limit_bytes,
        )
        // Outermost, so that preflight requests are answered before the 405 fallback sees them.
        .layer(cors());
        let ops_router = httpkit::with_common_layers(
            httpkit::metrics_route(registry),
            http_metrics,
            readiness,
            0,
        );
        let listener = httpkit::bind(config.listen).await?;
        let ops_listener = httpkit::bind(config.ops_listen).await?;
        Ok(App {
            listener,
            router,
            ops_listener,
            ops_router,
            limits: config.http.limits(),
            producer,
            disabled: poll.map(|(pool, interval)| (disabled, pool, interval)),
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

    /// Serves until `shutdown` completes, lets in-flight requests finish, then flushes the producer so
    /// that nothing queued is purged on exit.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let stopped = tokio_util::sync::CancellationToken::new();
        let ops_stopped = stopped.clone();
        let poller = self.disabled.map(|(disabled, pool, interval)| {
            tokio::spawn(disabled.keep_polling(pool, interval, |_| async {}))
        });
        let ops = tokio::spawn(httpkit::serve(
            self.ops_listener,
            self.ops_router,
            httpkit::ServeLimits::default(),
            async move { ops_stopped.cancelled().await },
        ));
        let shutdown = async move {
            shutdown.await;
            stopped.cancel();
        };
        let result = httpkit::serve(self.listener, self.router, self.limits, shutdown).await;
        if let Some(poller) = poller {
            poller.abort();
        }
        let _ = ops.await;
        self.producer.flush().await;
        result
    }
}
