//! Fanout configuration: every flag also reads an environment variable, and the shared flags work both
//! before and after the subcommand.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "fanout",
    version,
    about = "Fanline fanout: applies events from Kafka to Postgres timelines"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Option<Command>,
    #[command(flatten)]
    pub config: Config,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum Command {
    /// Consume events and apply them (the default): migrates and creates the topics first unless
    /// --skip-setup is given.
    Run,
    /// Create the database if it is missing and apply the SQL migrations, then exit.
    Migrate,
    /// Create the events and dead-letter topics if they are missing, then exit.
    CreateTopics,
    /// Rewind a consumer group and reprocess the topic up to the end offsets seen at start, then print a
    /// summary. Refuses while the group has live members unless --replay-group names another group.
    /// To rebuild into an empty database, pass that database's --database-url and a fresh --replay-group.
    Replay(ReplayArgs),
    /// Serve the group's consumer lag on /metrics without joining the group (runs beside the workers,
    /// so lag stays visible while they are down). Use --listen to move it off the workers' port.
    LagExporter,
}

#[derive(Debug, Clone, clap::Args)]
#[command(group(clap::ArgGroup::new("start").required(true).args(["from_beginning", "from_timestamp", "from_offsets"])))]
pub struct ReplayArgs {
    /// Start at the earliest retained event of every partition.
    #[arg(long)]
    pub from_beginning: bool,
    /// Start at the first event at or after this time (RFC 3339, e.g. 2026-11-23T12:00:00Z).
    #[arg(long)]
    pub from_timestamp: Option<chrono::DateTime<chrono::Utc>>,
    /// With --from-timestamp: find the offsets by searching the records' timestamps instead of asking
    /// the broker's time index first (for brokers that answer ListOffsets by time wrongly).
    #[arg(long, requires = "from_timestamp")]
    pub search_records: bool,
    /// Start at explicit offsets, PARTITION:OFFSET,... (partitions not listed are not replayed).
    #[arg(long)]
    pub from_offsets: Option<String>,
    /// Replay with this consumer group instead of --group (required while --group has live members).
    #[arg(long)]
    pub replay_group: Option<String>,
    /// Rewind the group even though the broker cannot list its members (you stopped its workers).
    #[arg(long)]
    pub assume_no_live_members: bool,
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the operations HTTP server (/metrics, /healthz, /readyz); port 0 picks a free port.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FANOUT_LISTEN",
        default_value = "127.0.0.1:8082"
    )]
    pub listen: SocketAddr,

    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(
        long,
        global = true,
        env = "FANLINE_KAFKA_BROKERS",
        default_value = "127.0.0.1:9092"
    )]
    pub brokers: String,

    /// Topic the events are read from.
    #[arg(long, global = true, env = "FANLINE_EVENTS_TOPIC", default_value = schemas::DEFAULT_EVENTS_TOPIC)]
    pub topic: String,

    /// Topic that receives events which cannot be decoded or applied.
    #[arg(long, global = true, env = "FANLINE_DLQ_TOPIC", default_value = schemas::DEFAULT_DLQ_TOPIC)]
    pub dlq_topic: String,

    /// Kafka consumer group; processes in one group split the partitions between them.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FANOUT_GROUP",
        default_value = "fanline-fanout"
    )]
    pub group: String,

    /// Postgres connection URL.
    #[arg(
        long,
        global = true,
        env = "FANLINE_DATABASE_URL",
        default_value = "postgres://root@127.0.0.1:5432/fanline",
        hide_env_values = true
    )]
    pub database_url: SecretString,

    /// Largest number of Postgres connections this process opens.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FANOUT_DB_CONNECTIONS",
        default_value_t = 4
    )]
    pub db_connections: u32,

    /// Most events applied in one Postgres transaction.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FANOUT_BATCH_MAX_EVENTS",
        default_value_t = 500
    )]
    pub batch_max_events: usize,

    /// Longest wait for more events before a partly filled batch is applied, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FANOUT_BATCH_LINGER_MS",
        default_value_t = 10
    )]
    pub batch_linger_ms: u64,

    /// Longest pause between retries while Postgres or the dead-letter topic is unavailable, in ms.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FANOUT_MAX_BACKOFF_MS",
        default_value_t = 10_000
    )]
    pub max_backoff_ms: u64,

    /// How often consumer lag is measured for /metrics, in milliseconds.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FANOUT_LAG_INTERVAL_MS",
        default_value_t = 5000
    )]
    pub lag_interval_ms: u64,

    /// Partitions of the events topic when `create-topics` (or start-up) creates it.
    #[arg(
        long,
        global = true,
        env = "FANLINE_EVENTS_PARTITIONS",
        default_value_t = 8
    )]
    pub partitions: i32,

    /// Replication factor of topics created by Fanline.
    #[arg(
        long,
        global = true,
        env = "FANLINE_REPLICATION_FACTOR",
        default_value_t = 1
    )]
    pub replication_factor: i32,

    /// Authors with more followers than this switch to pull mode: their posts are no longer pushed.
    #[arg(
        long,
        global = true,
        env = "FANLINE_PULL_THRESHOLD",
        default_value_t = 10_000
    )]
    pub pull_threshold: i64,

    /// Pull-mode authors switch back to push mode below this many followers (default: 90% of the pull
    /// threshold). The gap keeps authors near the threshold from flapping.
    #[arg(long, global = true, env = "FANLINE_PUSH_THRESHOLD")]
    pub push_threshold: Option<i64>,

    /// How many of a followee's most recent pushed posts a new follow copies into the follower's inbox.
    #[arg(
        long,
        global = true,
        env = "FANLINE_FOLLOW_BACKFILL",
        default_value_t = 50
    )]
    pub follow_backfill: i64,

    /// Do not migrate the database or create topics on start (for deployments that do it separately).
    #[arg(long, global = true, env = "FANLINE_FANOUT_SKIP_SETUP")]
    pub skip_setup: bool,

    /// Extra librdkafka properties for the consumer and the dead-letter producer, key=value, repeatable.
    #[arg(
        long = "kafka-property",
        global = true,
        env = "FANLINE_FANOUT_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    pub kafka_properties: Vec<String>,

    /// Log JSON lines instead of human-readable text.
    #[arg(long, global = true, env = "FANLINE_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    /// A configuration for tests and embedding: operations port 0, small linger, other defaults.
    pub fn new(brokers: &str, topic: &str, group: &str, database_url: &str) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            dlq_topic: format!("{topic}.dlq"),
            group: group.to_owned(),
            database_url: SecretString::from(database_url.to_owned()),
            db_connections: 4,
            batch_max_events: 500,
            batch_linger_ms: 10,
            max_backoff_ms: 1000,
            lag_interval_ms: 500,
            partitions: 4,
            replication_factor: 1,
            pull_threshold: 10_000,
            push_threshold: None,
            follow_backfill: 50,
            skip_setup: false,
            kafka_properties: Vec::new(),
            log_json: false,
        }
    }

    /// The delivery policy; errors when the thresholds leave no hysteresis band.
    pub fn policy(&self) -> Result<crate::store::Policy, String> {
        let pull_above = self.pull_threshold;
        let push_below = self.push_threshold.unwrap_or(pull_above - pull_above / 10);
        if pull_above < 1 || push_below < 0 || push_below > pull_above {
            return Err(format!(
                "push threshold ({push_below}) must be between 0 and the pull threshold ({pull_above})"
            ));
        }
        if self.follow_backfill < 0 {
            return Err("follow-backfill must not be negative".into());
        }
        Ok(crate::store::Policy {
            pull_above,
            push_below,
            follow_backfill: self.follow_backfill,
        })
    }

    pub fn batch_linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }

    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(1))
    }

    /// Splits the `key=value` Kafka properties.
    pub fn kafka_properties(&self) -> Result<Vec<(String, String)>, String> {
        httpkit::parse_key_values(&self.kafka_properties)
    }
}
