//! Test support: everything runs against the real broker and the real Postgres. The integration
//! tests (`tests/it`) use it, and so do the benches (`bench`) and the fault suite (`faults`).
//!
//! - [`TestDb`]: a fresh, migrated database per test, dropped afterwards.
//! - [`TestTopic`]: a fresh events topic (and its dead-letter topic) per test.
//! - [`spawn_ingest`], [`spawn_fanout`], [`spawn_reader`]: the real services on port 0 in this process,
//!   each with its own metrics registry, stopped through their shutdown future.
//! - [`wait_until`]: polls a condition until a deadline; what tests wait with instead of sleeping.
//!
//! Binaries: `fanline-worker` and `fanline-reader`, a fanout worker and a reader in their own process,
//! for the tests that kill them with SIGKILL (integration tests can only spawn binaries of their own
//! package).
//!
//! Environment: `FANLINE_TEST_BROKERS` (default `127.0.0.1:9092`) and `FANLINE_TEST_DATABASE_URL`, an
//! admin connection used to create and drop databases (default `postgres://root@127.0.0.1:5432/postgres`).
//!
//! # Layout
//!
//! - [`api`]: [`Api`], a small HTTP client for the public API.
//! - [`model`]: what the model tests share: a log partitioned by key, a feed walked page by page.
//! - [`broker`]: a private tansu broker, for tests that kill the broker.
//! - [`proxy`]: [`TcpProxy`], a TCP forwarder that can be cut, to take Postgres "down" for one service.
//! - [`s3`]: [`s3::S3Server`], a real S3-compatible server (moto) for the attachment tests.
//! - [`stack`]: the whole pipeline in this process, for tests that act as a user would.
//! - [`ws`]: a WebSocket client of the reader's `/v1/ws`.
#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

pub mod api;
pub mod broker;
pub mod model;
pub mod proxy;
pub mod s3;
pub mod stack;
pub mod ws;

use std::future::Future;
use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::{FutureProducer, FutureRecord};
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub use api::Api;
pub use proxy::TcpProxy;

/// A port nothing listens on right now (for a service that must be restarted on the same port).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .expect("a free port")
}

/// Bob follows alice, and alice's posts with these bodies are applied straight to the database (the
/// code fanout runs; much faster than a request each). Returns the posts' ids, in order.
pub async fn seed_followed_posts(
    pool: &PgPool,
    bodies: impl Iterator<Item = String>,
) -> Vec<schemas::PostId> {
    use fanout::store::{apply_batch, Policy, SourcedEvent};
    use schemas::{Envelope, FollowChange, PostCreated, PostId, UserId};
    let user = |name: &str| UserId::parse("user", name).expect("a valid id");
    let mut events = vec![SourcedEvent {
        partition: 0,
        offset: 0,
        envelope: Envelope::followed(FollowChange {
            follower: user("bob"),
            followee: user("alice"),
        }),
    }];
    let mut posts = Vec::new();
    for (i, body) in bodies.enumerate() {
        let post_id = PostId::generate();
        posts.push(post_id.clone());
        events.push(SourcedEvent {
            partition: 0,
            offset: i as i64 + 1,
            envelope: Envelope::post_created(PostCreated {
                post_id,
                author: user("alice"),
                body,
                content: Default::default(),
                message_id: None,
                created_at: chrono::Utc::now(),
            }),
        });
    }
    apply_batch(pool, &Policy::default(), &events)
        .await
        .expect("the seed applies");
    posts
}

pub fn brokers() -> String {
    std::env::var("FANLINE_TEST_BROKERS").unwrap_or_else(|_| schemas::DEFAULT_BROKERS.to_owned())
}

fn test_kafka() -> kafkakit::KafkaSettings {
    kafkakit::KafkaSettings::new(&brokers(), &[]).expect("no properties to parse")
}

/// A Kafka client configuration for the test broker, built like the services build theirs.
pub fn kafka_client(client_id: &str, settings: &[(&str, &str)]) -> ClientConfig {
    test_kafka().client(client_id, settings)
}

pub fn admin_database_url() -> String {
    std::env::var("FANLINE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://root@127.0.0.1:5432/postgres".to_owned())
}

/// A name no other test (or test run) uses.
pub fn unique(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::new_v4().simple())
}

/// Logs for tests, once per process; `RUST_LOG` selects (default: warnings).
pub fn init_logs() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_test_writer()
        .try_init();
}

/// A fresh database with the migrations applied, dropped when this value is dropped.
pub struct TestDb {
    pub name: String,
    pub url: String,
    pub pool: PgPool,
    /// The reader's page-read connections to this database (one, opened on first use).
    pub reads: reader::db::ReadPool,
}

impl TestDb {
    pub async fn create() -> TestDb {
        init_logs();
        let name = unique("fanline_test");
        let admin = admin_database_url();
        let url = replace_database(&admin, &name);
        fanout::migrate(&url)
            .await
            .unwrap_or_else(|e| panic!("cannot create test database (is Postgres running?): {e}"));
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .connect(&url)
            .await
            .unwrap();
        let reads = reader::db::ReadPool::new(&url, 1, std::time::Duration::from_secs(10))
            .expect("a valid database URL");
        TestDb {
            name,
            url,
            pool,
            reads,
        }
    }

    /// All rows of the timeline tables and the sequence position, as text, for comparing states.
    pub async fn snapshot(&self) -> Vec<String> {
        let mut rows: Vec<String> = Vec::new();
        for query in [
            "SELECT 'post', post_id || '|' || author || '|' || body || '|' || coalesce(message_id, '') || '|' || created_at::text || '|' || delivery_mode || '|' || coalesce(deleted_at::text, '') FROM posts ORDER BY post_id",
            "SELECT 'author', author || '|' || follower_count || '|' || mode || '|' || has_pull_posts::text || '|' || coalesce(mode_changed_at::text, '') FROM authors ORDER BY author",
            "SELECT 'alias', alias_post_id || '|' || post_id FROM post_aliases ORDER BY 2",
            "SELECT 'follow', followee || '|' || follower || '|' || active::text || '|' || src_partition || '|' || src_offset || '|' || updated_at::text FROM follows ORDER BY 2",
            "SELECT 'sync', user_id || '|' || seq || '|' || post_id || '|' || author FROM sync_entries ORDER BY 2",
            "SELECT 'seq', last_value::text || '|' || is_called::text FROM sync_seq",
        ] {
            let part: Vec<(String, String)> = sqlx::query_as(query).fetch_all(&self.pool).await.unwrap();
            rows.extend(part.into_iter().map(|(kind, row)| format!("{kind}: {row}")));
        }
        rows
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        // Drop runs outside async; a short-lived runtime on its own thread does the cleanup. The test's
        // pool is not closed from here: its sockets belong to the test's runtime, which is blocked in
        // this drop; WITH (FORCE) ends those sessions server-side instead.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async move {
                if let Ok(admin) = PgPoolOptions::new()
                    .max_connections(1)
                    .connect(&admin_database_url())
                    .await
                {
                    let _ =
                        sqlx::query(&format!("DROP DATABASE IF EXISTS \"{name}\" WITH (FORCE)"))
                            .execute(&admin)
                            .await;
                    admin.close().await;
                }
            });
        })
        .join();
    }
}

fn replace_database(url: &str, database: &str) -> String {
    let (base, query) = match url.split_once('?') {
        Some((base, query)) => (base, Some(query)),
        None => (url, None),
    };
    let authority_end = base
        .find("://")
        .map(|i| i + 3)
        .and_then(|start| base[start..].find('/').map(|i| start + i))
        .unwrap_or(base.len());
    let mut out = format!("{}/{database}", &base[..authority_end]);
    if let Some(query) = query {
        out.push('?');
        out.push_str(query);
    }
    out
}

/// A fresh events topic and its dead-letter topic.
pub struct TestTopic {
    pub name: String,
    pub dlq: String,
    pub partitions: i32,
}

impl TestTopic {
    pub async fn create(partitions: i32) -> TestTopic {
        init_logs();
        let name = unique("fanline-test");
        let dlq = format!("{name}.dlq");
        fanout::topics::ensure_topics(&test_kafka(), &[(&name, partitions), (&dlq, 1)], 1)
            .await
            .unwrap_or_else(|e| panic!("cannot create test topic (is the broker running?): {e}"));
        TestTopic {
            name,
            dlq,
            partitions,
        }
    }
}

/// A producer for writing events by hand (as `kcat` would), keyed like ingest keys them.
pub fn raw_producer() -> FutureProducer {
    kafka_client(
        "fanline-test-producer",
        &[
            ("enable.idempotence", "true"),
            ("partitioner", "murmur2_random"),
        ],
    )
    .create()
    .unwrap()
}

pub async fn produce_raw(
    producer: &FutureProducer,
    topic: &str,
    key: &str,
    payload: &[u8],
) -> (i32, i64) {
    let delivery = producer
        .send(
            FutureRecord::to(topic).key(key).payload(payload),
            Duration::from_secs(10),
        )
        .await
        .map_err(|(e, _)| e)
        .unwrap();
    (delivery.partition, delivery.offset)
}

/// The group's lag per partition, measured like fanout's `/metrics` does.
pub async fn group_lag(topic: &str, group: &str) -> Vec<fanout::lag::PartitionLag> {
    let topic = topic.to_owned();
    let group = group.to_owned();
    tokio::task::spawn_blocking(move || {
        let consumer: BaseConsumer = kafka_client("fanline-test-lag", &[("group.id", &group)])
            .create()
            .unwrap();
        fanout::lag::measure(&consumer, &topic, Duration::from_secs(10)).unwrap()
    })
    .await
    .unwrap()
}

/// Polls `check` until it returns `Some`, or panics after `timeout` naming what was awaited.
pub async fn wait_until<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {timeout:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A service running in this process.
pub struct Running {
    pub port: u16,
    /// The operations port (`/metrics`): ingest's and reader's own, fanout's only port.
    pub ops_port: u16,
    pub registry: prometheus::Registry,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<std::io::Result<()>>,
}

impl Running {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub fn ops_url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.ops_port)
    }

    /// Sends the shutdown signal and waits for the service to drain.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        tokio::time::timeout(Duration::from_secs(60), &mut self.task)
            .await
            .expect("service did not stop within 60 s")
            .unwrap()
            .unwrap();
    }

    /// The value of a metric sample whose labels include all of `labels`, summed over matches.
    pub fn metric(&self, name: &str, labels: &[(&str, &str)]) -> f64 {
        let mut total = 0.0;
        for family in self.registry.gather() {
            if family.name() != name {
                continue;
            }
            let kind = family.get_field_type();
            for metric in family.get_metric() {
                let matches = labels.iter().all(|(key, value)| {
                    metric
                        .get_label()
                        .iter()
                        .any(|l| l.name() == *key && l.value() == *value)
                });
                if matches {
                    total += match kind {
                        prometheus::proto::MetricType::COUNTER => metric.get_counter().get_value(),
                        prometheus::proto::MetricType::GAUGE => metric.get_gauge().get_value(),
                        _ => metric.get_histogram().get_sample_count() as f64,
                    };
                }
            }
        }
        total
    }
}

/// What a service's `run` is given as its shutdown signal.
type Shutdown = std::pin::Pin<Box<dyn Future<Output = ()> + Send>>;

fn running<F>(
    (port, ops_port): (u16, u16),
    registry: prometheus::Registry,
    run: impl FnOnce(Shutdown) -> F,
) -> Running
where
    F: Future<Output = std::io::Result<()>> + Send + 'static,
{
    let (stop, stopped) = oneshot::channel::<()>();
    let shutdown: Shutdown = Box::pin(async move {
        let _ = stopped.await;
    });
    let task = tokio::spawn(run(shutdown));
    Running {
        port,
        ops_port,
        registry,
        stop: Some(stop),
        task,
    }
}

/// The token signing key of every service the harness starts (and of [`Api::new`]'s tokens). Public
/// on purpose: it signs nothing outside tests.
pub const TEST_TOKEN_KEY: &str = "fanline-harness-token-key-for-tests-only-0123456789";

/// Starts ingest; a configuration without a token key gets [`TEST_TOKEN_KEY`].
pub async fn spawn_ingest(mut config: ingest::Config) -> Running {
    if config.token.is_empty() {
        config.token = authkit::TokenKeyArg::new(TEST_TOKEN_KEY);
    }
    let registry = prometheus::Registry::new();
    let app = ingest::App::build(&config, registry.clone()).await.unwrap();
    let (port, ops_port) = (app.port(), app.ops_port());
    running((port, ops_port), registry, |shutdown| app.run(shutdown))
}

pub async fn spawn_reader(database_url: &str) -> Running {
    spawn_reader_with(reader::Config::for_database(database_url)).await
}

/// Starts a reader; a configuration without a token key gets [`TEST_TOKEN_KEY`].
pub async fn spawn_reader_with(mut config: reader::Config) -> Running {
    if config.token.is_empty() {
        config.token = authkit::TokenKeyArg::new(TEST_TOKEN_KEY);
    }
    let registry = prometheus::Registry::new();
    let app = reader::App::build(&config, registry.clone()).await.unwrap();
    let (port, ops_port) = (app.port(), app.ops_port());
    running((port, ops_port), registry, |shutdown| app.run(shutdown))
}

/// A fanout configuration for a test topic, group and database.
pub fn fanout_config(topic: &TestTopic, group: &str, database_url: &str) -> fanout::Config {
    let mut config = fanout::Config::new(&brokers(), &topic.name, group, database_url);
    config.dlq_topic = topic.dlq.clone();
    config.partitions = topic.partitions;
    // The harness created the topics and migrated the database already.
    config.skip_setup = true;
    // Tests wait for lag and for recovery after outages: measure and retry more often than in production.
    config.lag_interval_ms = 500;
    config.max_backoff_ms = 1000;
    config
}

pub async fn spawn_lag_exporter(config: fanout::Config) -> Running {
    let registry = prometheus::Registry::new();
    let app = fanout::LagExporter::build(&config, registry.clone())
        .await
        .unwrap();
    let port = app.port();
    running((port, port), registry, |shutdown| app.run(shutdown))
}

pub async fn spawn_fanout(config: fanout::Config) -> Running {
    let registry = prometheus::Registry::new();
    let app = fanout::App::build(&config, registry.clone()).await.unwrap();
    let port = app.port();
    running((port, port), registry, |shutdown| app.run(shutdown))
}

/// fanout's retention task as the retention tests and bench run it, on a simulated clock (each
/// `run_once(at)` is told the time): 30 days' retention, partitions sealed after an hour, no per-user
/// cap (set `settings.cap` for one), no metrics.
pub fn simulated_retention(pool: &sqlx::PgPool) -> fanout::retention::Retention {
    fanout::retention::Retention {
        pool: pool.clone(),
        settings: fanout::retention::RetentionSettings {
            age: Some(chrono::TimeDelta::days(30)),
            cap: None,
            slice: chrono::TimeDelta::hours(1),
            span: 100_000_000,
            every: Duration::from_secs(60),
        },
        metrics: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn database_names_are_replaced_in_urls() {
        assert_eq!(
            replace_database("postgres://root@127.0.0.1:5432/postgres", "x"),
            "postgres://root@127.0.0.1:5432/x"
        );
        assert_eq!(
            replace_database("postgres://root@h:1/postgres?sslmode=disable", "x"),
            "postgres://root@h:1/x?sslmode=disable"
        );
        assert_eq!(replace_database("postgres://h", "x"), "postgres://h/x");
    }
}
