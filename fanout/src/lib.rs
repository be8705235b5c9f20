//! Fanout: Kafka consumer-group workers that apply events to Postgres — store timelines, the follow
//! graph and push fan-out to per-user sync timelines.
//!
//! Architecture invariant: fanout is the only writer of timelines. It reads Kafka, writes Postgres and
//! the dead-letter topic (and, from its sweepers, `user_dormant` events and deleted accounts' departures
//! to the events topic), and serves
//! only operations endpoints.
//!
//! # Layout
//! Running:
//! - [`config`]: command line and environment.
//! - [`setup`]: creating and migrating the database, creating the topics.
//! - [`error`]: what stops the worker, the lag exporter or a replay from starting.
//! - [`batches`]: the one batching loop (gather, apply, checkpoint) behind the worker and replay.
//! - [`applier`]: a batch into effects — decoding, dead-lettering, retries with backoff.
//! - [`consumer`]: the live worker — group consumer, rebalances, offsets stored for auto-commit.
//! - [`replay_args`]: `fanout replay`'s flags and start points.
//! - [`replay`]: `fanout replay` — start offsets (beginning, time, offsets, resume) and its checkpoint.
//! - [`dlq`]: the dead-letter producer.
//! - [`election`]: the background tasks' rounds, one worker at a time by an advisory lock.
//! - [`dormancy`]: the sweeper that reports users silent for the active window (`user_dormant`).
//! - [`departures`]: the sweeper that ends deleted accounts' memberships, follows and blocks through
//!   ordinary events.
//! - [`reindex`]: the search backlog — rows stored without their searchable form, indexed in the
//!   background.
//! - [`retention`]: sync timeline partitions — kept ahead, sealed, dropped past the retention age with
//!   their users' floors recorded.
//! - [`store_retention`]: store timelines past their retention removed — conversation histories
//!   (deployment, group owner) and authors' posts (deployment) — with the floors their pages report.
//! - [`post_edits`]: posts edited by their authors.
//! - [`attachment_sweep`]: deletes uploads never sent and attachments no live message or post holds.
//! - [`entry_cap`]: the per-user cap of sync entries, counted once per sealed partition.
//! - [`floors`]: the floor rule every removal of sync entries follows.
//! - [`lag`]: consumer lag measurement for `/metrics`, and [`LagExporter`] outside the group.
//! - [`topics`]: creating the topics when missing.
//! - [`events_cli`]: `fanout events produce|consume`, the topic by hand.
//! - [`metrics`]: fanout's Prometheus metrics; [`progress`]: replay progress on the terminal.
//!
//! Applying events (one Postgres transaction per batch):
//! - [`sourced`]: an event with its Kafka position.
//! - [`store`]: a batch in one transaction; posts, deletes and the follow graph.
//! - [`policy`]: push or pull delivery, follow backfill, the recall window — pure rules.
//! - [`seq_lock`]: the lock every sync seq is drawn under, and the token that proves it is held.
//! - [`watermark`]: one effect per IM event — the per-key applied position.
//! - [`activity`]: whose inboxes fan-out writes — activity, dormancy and a dormant user's return.
//! - [`users`]: a user's own events — accounts and profiles, and the moderation records on a user's key.
//! - [`erasure`]: an account's deletion — what is the user's own, erased on their key.
//! - [`moderation`]: reports and disabled accounts.
//! - [`im`]: a conversation's events — groups and membership, messages, recalls, read markers.
//! - [`outcome`]: what a batch did, and why IM events were refused.
//!
//! Dependencies go one way: the running modules use the applying ones, never the reverse (the
//! applying modules know nothing of Kafka clients or flags; `config` builds their [`policy::Policy`]),
//! and no module uses this crate root, so there is no circle.

pub mod activity;
pub mod applier;
pub mod attachment_sweep;
mod batches;
pub mod config;
pub mod consumer;
pub mod departures;
pub mod dlq;
pub mod dormancy;
mod election;
mod entry_cap;
pub mod erasure;
pub mod error;
pub mod events_cli;
pub mod floors;
pub mod im;
pub mod lag;
pub mod metrics;
pub mod moderation;
pub mod outcome;
pub mod policy;
pub mod post_edits;
pub mod progress;
pub mod reindex;
pub mod replay;
pub mod replay_args;
pub mod retention;
pub mod seq_lock;
pub mod setup;
pub mod sourced;
pub mod store;
pub mod store_retention;
pub mod topics;
pub mod users;
pub mod watermark;

use std::future::Future;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use prometheus::Registry;
use secrecy::ExposeSecret;
use sqlx::PgPool;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use config::{Cli, Command, Config, EventsCommand};
use consumer::Worker;
pub use error::BuildError;
pub use setup::{check_config, create_topics, migrate};

/// A built fanout worker with its operations server, not yet running.
pub struct App {
    listener: TcpListener,
    router: axum::Router,
    worker: Worker,
    observer: Arc<rdkafka::consumer::BaseConsumer>,
    health: Arc<lag::GroupHealth>,
    metrics: metrics::FanoutMetrics,
    topic: String,
    lag_interval: Duration,
    sweeper: Option<dormancy::Sweeper>,
    departures: departures::Departures,
    reindexer: Option<reindex::Reindexer>,
    retention: retention::Retention,
    store_retention: store_retention::StoreRetention,
    attachment_sweep: Option<attachment_sweep::AttachmentSweep>,
}

/// A client that reads the group's committed offsets without joining it (it never subscribes): lag
/// stays measurable while the group's members come and go.
fn group_observer(
    config: &Config,
    client_id: &str,
) -> Result<Arc<rdkafka::consumer::BaseConsumer>, BuildError> {
    Ok(Arc::new(
        config
            .kafka()?
            .client(
                client_id,
                &[("group.id", &config.group), ("enable.auto.commit", "false")],
            )
            .create()?,
    ))
}

impl App {
    pub async fn build(config: &Config, registry: Registry) -> Result<App, BuildError> {
        let kafka = config.kafka()?;
        if config.batch_max_events == 0 {
            return Err(BuildError::Config(
                "batch-max-events must be at least 1".into(),
            ));
        }
        if !config.skip_setup {
            migrate(config.database_url.expose_secret()).await?;
            create_topics(config).await?;
        }
        let metrics = metrics::FanoutMetrics::new(&registry)?;
        let http_metrics = httpkit::HttpMetrics::new(&registry)?;
        let applier = applier::Applier::new(config, &kafka, metrics.clone())?;
        let (sweeper, departures) = sweepers(config, &registry, applier.pool())?;
        let reindexer = (!config.skip_search_index).then(|| reindex::Reindexer {
            pool: applier.pool().clone(),
            indexed: Some(metrics.search_backlog_indexed.clone()),
        });
        let (retention, store_retention) = retention_tasks(config, applier.pool(), &metrics)?;
        let attachment_sweep = attachment_sweep(config, applier.pool())?;
        let joined = Arc::new(AtomicBool::new(false));
        let health = Arc::new(lag::GroupHealth::default());
        let owned = consumer::Owned::default();
        let connect: consumer::Connect = {
            let config = config.clone();
            let joined = joined.clone();
            let assigned = metrics.assigned_partitions.clone();
            let owned = owned.clone();
            Box::new(move |rejoins| {
                let context = consumer::FanoutContext {
                    joined: joined.clone(),
                    assigned: assigned.clone(),
                    owned: owned.clone(),
                };
                consumer::create_consumer(&config, &kafka, context, rejoins)
            })
        };
        let consumer = Arc::new(connect(0)?);
        let readiness = readiness(
            applier.pool().clone(),
            joined.clone(),
            owned.clone(),
            health.clone(),
        );
        // Fanout has only an operations port: `/metrics` is served here.
        let router = httpkit::with_common_layers(
            httpkit::metrics_route(registry),
            http_metrics,
            readiness,
            16 * 1024,
        );
        let listener = httpkit::bind(config.listen).await?;
        let observer = group_observer(config, "fanline-fanout-lag")?;
        let worker = Worker {
            consumer,
            connect,
            applier,
            batch_max_events: config.batch_max_events,
            batch_linger: config.batch_linger(),
            health: health.clone(),
            joined,
            assigned: metrics.assigned_partitions.clone(),
            owned,
            topic: config.topic.clone(),
            group: config.group.clone(),
            static_member: config.instance_id.is_some(),
            observer: observer.clone(),
        };
        Ok(App {
            listener,
            router,
            worker,
            observer,
            health,
            metrics,
            topic: config.topic.clone(),
            lag_interval: config.lag_interval(),
            sweeper,
            departures,
            reindexer,
            retention,
            store_retention,
            attachment_sweep,
        })
    }

    /// Port of the operations server.
    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    /// Consumes until `shutdown` completes, then finishes the batch in flight (or abandons it while
    /// Postgres is down), commits the applied offsets and stops the operations server.
    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let cancel = CancellationToken::new();
        let lag = tokio::spawn(lag::export(
            self.observer,
            self.topic,
            self.metrics,
            Some(self.health),
            self.lag_interval,
            cancel.clone(),
        ));
        let worker = tokio::spawn(self.worker.run(cancel.clone()));
        let sweeper = self
            .sweeper
            .map(|sweeper| tokio::spawn(sweeper.run(cancel.clone())));
        let reindexer = self
            .reindexer
            .map(|reindexer| tokio::spawn(reindexer.run(cancel.clone())));
        let departures = Some(tokio::spawn(self.departures.run(cancel.clone())));
        let history = Some(tokio::spawn(self.store_retention.run(cancel.clone())));
        let attachments = self
            .attachment_sweep
            .map(|sweep| tokio::spawn(sweep.run(cancel.clone())));
        let retention = tokio::spawn(self.retention.run(cancel.clone()));
        let server = tokio::spawn(httpkit::serve(
            self.listener,
            self.router,
            httpkit::ServeLimits::default(),
            cancel.clone().cancelled_owned(),
        ));
        shutdown.await;
        tracing::info!("draining");
        cancel.cancel();
        let _ = lag.await;
        for task in [sweeper, departures, history, reindexer, attachments]
            .into_iter()
            .flatten()
        {
            let _ = task.await;
        }
        let _ = retention.await;
        if let Err(err) = worker.await {
            tracing::error!(error = %err, "worker task failed");
        }
        match server.await {
            Ok(result) => result,
            Err(err) => Err(std::io::Error::other(err)),
        }
    }
}

/// The attachment sweep, when attachments are on.
fn attachment_sweep(
    config: &Config,
    pool: &PgPool,
) -> Result<Option<attachment_sweep::AttachmentSweep>, BuildError> {
    Ok(config
        .blobs
        .open()?
        .map(|blobs| attachment_sweep::AttachmentSweep {
            pool: pool.clone(),
            blobs: Arc::new(blobs),
            every: Duration::from_secs(config.attachment_sweep_secs.max(1)),
        }))
}

/// The retention tasks: of sync timelines, and of store timelines.
fn retention_tasks(
    config: &Config,
    pool: &PgPool,
    metrics: &metrics::FanoutMetrics,
) -> Result<(retention::Retention, store_retention::StoreRetention), BuildError> {
    let retention = retention::Retention {
        pool: pool.clone(),
        settings: config.retention().map_err(BuildError::Config)?,
        metrics: Some(metrics.retention.clone()),
    };
    let store = config
        .store_retention(pool.clone())
        .map_err(BuildError::Config)?;
    Ok((retention, store))
}

/// The dormancy sweeper, unless nobody is to become dormant (an active window of 0), and the
/// departures sweeper; they share one producer.
fn sweepers(
    config: &Config,
    registry: &Registry,
    pool: &PgPool,
) -> Result<(Option<dormancy::Sweeper>, departures::Departures), BuildError> {
    let metrics =
        kafkakit::ProduceMetrics::new(registry, "fanout", httpkit::metrics::LATENCY_BUCKETS)?;
    let settings = kafkakit::ProducerSettings {
        client_id: "fanline-fanout-sweeper".to_owned(),
        topic: config.topic.clone(),
        timeout: Duration::from_secs(30),
    };
    let producer = kafkakit::EventProducer::new(&config.kafka()?, &settings, metrics)?;
    let dormancy = (config.active_window_hours > 0).then(|| dormancy::Sweeper {
        pool: pool.clone(),
        producer: producer.clone(),
        window: chrono::TimeDelta::hours(config.active_window_hours),
        every: Duration::from_secs(config.dormancy_sweep_secs.max(1)),
    });
    let departures = departures::Departures {
        pool: pool.clone(),
        producer,
        every: Duration::from_secs(config.departures_sweep_secs.max(1)),
    };
    Ok((dormancy, departures))
}

/// Ready: Postgres answers, the group was joined, and this member does not own nothing while the
/// group lags without progress (the watchdog rejoins then).
fn readiness(
    pool: PgPool,
    joined: Arc<AtomicBool>,
    owned: consumer::Owned,
    health: Arc<lag::GroupHealth>,
) -> httpkit::Readiness {
    httpkit::Readiness::new(move || {
        let pool = pool.clone();
        let joined = joined.clone();
        let owned = owned.clone();
        let health = health.clone();
        async move {
            sqlx::query("SELECT 1")
                .execute(&pool)
                .await
                .map_err(|_| "database unavailable".to_owned())?;
            if !joined.load(Ordering::Acquire) {
                return Err("not yet joined the consumer group".to_owned());
            }
            // Not ready once the group has stalled for a little while with nothing owned here (one
            // lag measurement without progress is not yet a stall; the watchdog waits longer before
            // it rejoins, to let a rebalance finish).
            let owns_nothing = owned.lock().map(|o| o.is_empty()).unwrap_or(false);
            let grace = Duration::from_secs(10);
            let stalled = health.stuck(&Default::default(), grace, std::time::Instant::now());
            match stalled {
                Some(lag) if owns_nothing => Err(format!(
                    "owns no partitions while the group lags {lag} events without progress"
                )),
                _ => Ok(()),
            }
        }
    })
}

/// `fanout lag-exporter`: measures the group's lag from outside the group (it never joins it) and serves
/// it on `/metrics`, so that lag is visible while every fanout worker is stopped.
pub struct LagExporter {
    listener: TcpListener,
    router: axum::Router,
    consumer: Arc<rdkafka::consumer::BaseConsumer>,
    metrics: metrics::FanoutMetrics,
    topic: String,
    interval: Duration,
}

impl LagExporter {
    pub async fn build(config: &Config, registry: Registry) -> Result<LagExporter, BuildError> {
        let consumer = group_observer(config, "fanline-lag-exporter")?;
        let metrics = metrics::FanoutMetrics::new(&registry)?;
        let http_metrics = httpkit::HttpMetrics::new(&registry)?;
        let readiness = {
            let consumer = consumer.clone();
            let topic = config.topic.clone();
            httpkit::Readiness::new(move || {
                let consumer = consumer.clone();
                let topic = topic.clone();
                async move {
                    tokio::task::spawn_blocking(move || {
                        lag::measure(consumer.as_ref(), &topic, Duration::from_millis(1500))
                            .map(|_| ())
                            .map_err(|_| "broker unavailable".to_owned())
                    })
                    .await
                    .map_err(|_| "lag check failed".to_owned())?
                }
            })
        };
        // Fanout has only an operations port: `/metrics` is served here.
        let router = httpkit::with_common_layers(
            httpkit::metrics_route(registry),
            http_metrics,
            readiness,
            16 * 1024,
        );
        let listener = httpkit::bind(config.listen).await?;
        Ok(LagExporter {
            listener,
            router,
            consumer,
            metrics,
            topic: config.topic.clone(),
            interval: config.lag_interval(),
        })
    }

    pub fn port(&self) -> u16 {
        self.listener.local_addr().map(|a| a.port()).unwrap_or(0)
    }

    pub async fn run(
        self,
        shutdown: impl Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let cancel = CancellationToken::new();
        let lag = tokio::spawn(lag::export(
            self.consumer,
            self.topic,
            self.metrics,
            None,
            self.interval,
            cancel.clone(),
        ));
        let result = httpkit::serve(
            self.listener,
            self.router,
            httpkit::ServeLimits::default(),
            shutdown,
        )
        .await;
        cancel.cancel();
        let _ = lag.await;
        result
    }
}
