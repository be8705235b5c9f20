//! Fanout configuration: every flag also reads an environment variable, and the shared flags work both
//! before and after the subcommand.

use std::net::SocketAddr;
use std::time::Duration;

use secrecy::SecretString;

use crate::policy::{Policy, ReturnWindow};
pub use crate::replay_args::ReplayArgs;

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
    /// Check the configuration as the command would start with it (the form of every setting),
    /// print the outcome and exit, without connecting to anything.
    #[arg(long, global = true)]
    pub check_config: bool,
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
    /// Write or read the events topic by hand (plain Kafka protocol: works on tansu and Apache Kafka).
    #[command(subcommand)]
    Events(EventsCommand),
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum EventsCommand {
    /// Append events read from stdin, one JSON envelope per line (see schemas/event.schema.json),
    /// keyed by their timeline as ingest keys them; every line is checked before any is sent. Prints
    /// one line per acknowledged event: id, key, partition, offset.
    Produce,
    /// Print the topic's records as JSON lines (partition, offset, key, timestamp, event), without
    /// joining a group, up to the end offsets seen at start.
    Consume {
        /// Where to start in every partition.
        #[arg(long, value_enum, default_value = "earliest")]
        from: ConsumeFrom,
        /// Stop after this many records.
        #[arg(long)]
        max: Option<usize>,
        /// Keep waiting for new records (until --max or Ctrl-C).
        #[arg(long)]
        follow: bool,
    },
}

/// Where `fanout events consume` starts in every partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ConsumeFrom {
    Earliest,
    Latest,
}

/// The default of every flag: the clap attributes and [`Config::new`] both read them, so a default
/// exists once. (Brokers, topics and the database URL are shared by all services: `schemas`.)
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8082";
    pub const GROUP: &str = "fanline-fanout";
    pub const DB_CONNECTIONS: u32 = 4;
    pub const BATCH_MAX_EVENTS: usize = 500;
    pub const BATCH_LINGER_MS: u64 = 10;
    pub const MAX_BACKOFF_MS: u64 = 10_000;
    pub const LAG_INTERVAL_MS: u64 = 5000;
    pub const PARTITIONS: i32 = 8;
    pub const DORMANCY_SWEEP_SECS: u64 = 300;
    pub const DEPARTURES_SWEEP_SECS: u64 = 10;
    pub const ATTACHMENT_SWEEP_SECS: u64 = 300;
    pub const REPLICATION_FACTOR: i32 = 1;
    pub const SYNC_RETENTION_DAYS: i64 = 30;
    pub const SYNC_RETENTION_ENTRIES: i64 = 10_000;
    pub const SYNC_PARTITION_HOURS: i64 = 24;
    pub const SYNC_PARTITION_SEQS: i64 = 100_000_000;
    pub const RETENTION_INTERVAL_SECS: u64 = 60;
    // The delivery policy's own defaults (`Policy::default` reads them there).
    pub use crate::policy::defaults::{
        push_threshold, ACTIVE_AUDIENCE_MAX, ACTIVE_WINDOW_HOURS, EDIT_WINDOW_SECS,
        FOLLOW_BACKFILL, GROUP_PULL_THRESHOLD, PULL_THRESHOLD, RECALL_WINDOW_SECS,
        RETURN_WINDOW_HOURS,
    };
}

#[derive(Debug, Clone, clap::Args)]
pub struct Config {
    /// Address of the operations HTTP server (/metrics, /healthz, /readyz); port 0 picks a free port.
    #[arg(long, global = true, env = "FANLINE_FANOUT_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, global = true, env = "FANLINE_KAFKA_BROKERS", default_value = schemas::DEFAULT_BROKERS)]
    pub brokers: String,

    /// Topic the events are read from.
    #[arg(long, global = true, env = "FANLINE_EVENTS_TOPIC", default_value = schemas::DEFAULT_EVENTS_TOPIC)]
    pub topic: String,

    /// Topic that receives events which cannot be decoded or applied.
    #[arg(long, global = true, env = "FANLINE_DLQ_TOPIC", default_value = schemas::DEFAULT_DLQ_TOPIC)]
    pub dlq_topic: String,

    /// Kafka consumer group; processes in one group split the partitions between them.
    #[arg(long, global = true, env = "FANLINE_FANOUT_GROUP", default_value = defaults::GROUP)]
    pub group: String,

    /// Static group membership (group.instance.id), unique per worker: a worker restarted with the same
    /// id takes its partitions back at once. Off by default: tansu 0.6 never evicts a static member
    /// that does not come back (scale-down, replacement), so use it with Apache Kafka only.
    #[arg(long, global = true, env = "FANLINE_FANOUT_INSTANCE_ID")]
    pub instance_id: Option<String>,

    /// Postgres connection URL.
    #[arg(
        long,
        global = true,
        env = "FANLINE_DATABASE_URL",
        default_value = schemas::DEFAULT_DATABASE_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: SecretString,

    /// Largest number of Postgres connections this process opens.
    #[arg(long, global = true, env = "FANLINE_FANOUT_DB_CONNECTIONS", default_value_t = defaults::DB_CONNECTIONS)]
    pub db_connections: u32,

    /// Most events applied in one Postgres transaction.
    #[arg(long, global = true, env = "FANLINE_FANOUT_BATCH_MAX_EVENTS", default_value_t = defaults::BATCH_MAX_EVENTS)]
    pub batch_max_events: usize,

    /// Longest wait for more events before a partly filled batch is applied, in milliseconds.
    #[arg(long, global = true, env = "FANLINE_FANOUT_BATCH_LINGER_MS", default_value_t = defaults::BATCH_LINGER_MS)]
    pub batch_linger_ms: u64,

    /// Longest pause between retries while Postgres or the dead-letter topic is unavailable, in ms.
    #[arg(long, global = true, env = "FANLINE_FANOUT_MAX_BACKOFF_MS", default_value_t = defaults::MAX_BACKOFF_MS)]
    pub max_backoff_ms: u64,

    /// How often consumer lag is measured for /metrics, in milliseconds.
    #[arg(long, global = true, env = "FANLINE_FANOUT_LAG_INTERVAL_MS", default_value_t = defaults::LAG_INTERVAL_MS)]
    pub lag_interval_ms: u64,

    /// Partitions of the events topic when `create-topics` (or start-up) creates it.
    #[arg(long, global = true, env = "FANLINE_EVENTS_PARTITIONS", default_value_t = defaults::PARTITIONS)]
    pub partitions: i32,

    /// Replication factor of topics created by Fanline.
    #[arg(long, global = true, env = "FANLINE_REPLICATION_FACTOR", default_value_t = defaults::REPLICATION_FACTOR)]
    pub replication_factor: i32,

    /// Authors with more followers than this switch to pull mode: their posts are no longer pushed.
    #[arg(long, global = true, env = "FANLINE_PULL_THRESHOLD", default_value_t = defaults::PULL_THRESHOLD)]
    pub pull_threshold: i64,

    /// Pull-mode authors switch back to push mode below this many followers (default: 90% of the pull
    /// threshold). The gap keeps authors near the threshold from flapping.
    #[arg(long, global = true, env = "FANLINE_PUSH_THRESHOLD")]
    pub push_threshold: Option<i64>,

    /// How many of a followee's most recent pushed posts a new follow copies into the follower's inbox.
    #[arg(long, global = true, env = "FANLINE_FOLLOW_BACKFILL", default_value_t = defaults::FOLLOW_BACKFILL)]
    pub follow_backfill: i64,

    /// A group switches to pull mode (read diffusion: a message costs O(1) rows, members read it from
    /// the group's history) when its member count rises above this.
    #[arg(long, global = true, env = "FANLINE_GROUP_PULL_THRESHOLD", default_value_t = defaults::GROUP_PULL_THRESHOLD)]
    pub group_pull_threshold: i64,

    /// A group in pull mode switches back to push when its member count falls below this (default: 90% of
    /// the group pull threshold).
    #[arg(long, global = true, env = "FANLINE_GROUP_PUSH_THRESHOLD")]
    pub group_push_threshold: Option<i64>,

    /// The most members a group may have: a join beyond it is refused (`group_full`); 0: no cap.
    /// ingest refuses such joins up front too (`409`); this is the rule a replay applies.
    #[arg(long, global = true, env = "FANLINE_MAX_GROUP_MEMBERS", default_value_t = schemas::DEFAULT_MAX_GROUP_MEMBERS)]
    pub max_group_members: i64,

    /// A pull-mode post or large-group message is copied into the inboxes of at most this many active
    /// members of its audience (the M of 1 + M; by user id); the others read it from its timeline.
    #[arg(long, global = true, env = "FANLINE_ACTIVE_AUDIENCE_MAX", default_value_t = defaults::ACTIVE_AUDIENCE_MAX)]
    pub active_audience_max: i64,

    /// A user none of whose devices was heard of for this many hours is dormant: fan-out stops writing
    /// their inbox until they return. 0: nobody becomes dormant (the sweeper does not run).
    #[arg(long, global = true, env = "FANLINE_ACTIVE_WINDOW_HOURS", default_value_t = defaults::ACTIVE_WINDOW_HOURS)]
    pub active_window_hours: i64,

    /// How far back (hours) a returning user's inbox is filled with the posts and group messages they
    /// missed; their feed reads older posts from the authors' timelines.
    #[arg(long, global = true, env = "FANLINE_RETURN_WINDOW_HOURS", default_value_t = defaults::RETURN_WINDOW_HOURS)]
    pub return_window_hours: i64,

    /// How often the dormancy sweeper looks for users silent for the active window, in seconds.
    #[arg(long, global = true, env = "FANLINE_DORMANCY_SWEEP_SECS", default_value_t = defaults::DORMANCY_SWEEP_SECS)]
    pub dormancy_sweep_secs: u64,

    /// How often the departures sweeper ends deleted accounts' memberships, follows and blocks, in
    /// seconds.
    #[arg(long, global = true, env = "FANLINE_DEPARTURES_SWEEP_SECS", default_value_t = defaults::DEPARTURES_SWEEP_SECS)]
    pub departures_sweep_secs: u64,

    /// How often unsent uploads and attachments nobody holds any more are deleted, in seconds.
    #[arg(long, global = true, env = "FANLINE_ATTACHMENT_SWEEP_SECS", default_value_t = defaults::ATTACHMENT_SWEEP_SECS)]
    pub attachment_sweep_secs: u64,

    /// Where attachments live (the sweep deletes from there).
    #[command(flatten)]
    pub blobs: blobkit::BlobArgs,

    /// How long after sending a message its sender may recall it, in seconds (checked by fanout against
    /// the times ingest stamped on the message and on the recall).
    #[arg(long, global = true, env = "FANLINE_RECALL_WINDOW_SECS", default_value_t = defaults::RECALL_WINDOW_SECS)]
    pub recall_window_secs: i64,

    /// How long after sending a message its sender may edit it, in seconds; 0: always (checked by
    /// fanout against the times ingest stamped on the message and on the edit).
    #[arg(long, global = true, env = "FANLINE_EDIT_WINDOW_SECS", default_value_t = defaults::EDIT_WINDOW_SECS)]
    pub edit_window_secs: i64,

    /// How long after posting its author may edit a post, in seconds; 0 (the default): always.
    #[arg(
        long,
        global = true,
        env = "FANLINE_POST_EDIT_WINDOW_SECS",
        default_value_t = 0
    )]
    pub post_edit_window_secs: i64,

    /// Store messages and posts without their searchable form (search does not find them): fan-out
    /// without the indexing cost (README "Search" measures it). A worker started without this flag
    /// indexes what was stored meanwhile, in the background.
    #[arg(long, global = true, env = "FANLINE_SKIP_SEARCH_INDEX")]
    pub skip_search_index: bool,

    /// Messages older than this many days are removed from conversation histories (a group owner may
    /// set a shorter retention); history pages say older messages were removed. 0: kept forever.
    #[arg(
        long,
        global = true,
        env = "FANLINE_HISTORY_RETENTION_DAYS",
        default_value_t = 0
    )]
    pub history_retention_days: i64,

    /// Posts older than this many days are removed from their authors' timelines (and so from feeds);
    /// an author's timeline says older posts were removed. 0: kept forever.
    #[arg(
        long,
        global = true,
        env = "FANLINE_POST_RETENTION_DAYS",
        default_value_t = 0
    )]
    pub post_retention_days: i64,

    /// Sync timeline entries older than this many days are removed (a device behind them is told to
    /// reset); histories, store timelines, contact lists and unread counts are kept. 0: kept forever.
    #[arg(long, global = true, env = "FANLINE_SYNC_RETENTION_DAYS", default_value_t = defaults::SYNC_RETENTION_DAYS)]
    pub sync_retention_days: i64,

    /// At most this many entries per user are kept in sealed sync partitions: the oldest beyond it are
    /// removed (a device behind them is told to reset). 0: no cap.
    #[arg(long, global = true, env = "FANLINE_SYNC_RETENTION_ENTRIES", default_value_t = defaults::SYNC_RETENTION_ENTRIES)]
    pub sync_retention_entries: i64,

    /// Sync timelines are stored in partitions of at most this many hours of entries (retention removes
    /// whole partitions, so entries live up to this much longer than the retention).
    #[arg(long, global = true, env = "FANLINE_SYNC_PARTITION_HOURS", default_value_t = defaults::SYNC_PARTITION_HOURS)]
    pub sync_partition_hours: i64,

    /// ... and of at most this many seqs.
    #[arg(long, global = true, env = "FANLINE_SYNC_PARTITION_SEQS", default_value_t = defaults::SYNC_PARTITION_SEQS)]
    pub sync_partition_seqs: i64,

    /// How often the retention task keeps the partitions (creates ahead, seals, drops), in seconds.
    #[arg(long, global = true, env = "FANLINE_RETENTION_INTERVAL_SECS", default_value_t = defaults::RETENTION_INTERVAL_SECS)]
    pub retention_interval_secs: u64,

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
    /// A configuration for tests and embedding: operations port 0, every other setting at its default.
    pub fn new(brokers: &str, topic: &str, group: &str, database_url: &str) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            dlq_topic: format!("{topic}.dlq"),
            group: group.to_owned(),
            instance_id: None,
            database_url: SecretString::from(database_url.to_owned()),
            db_connections: defaults::DB_CONNECTIONS,
            batch_max_events: defaults::BATCH_MAX_EVENTS,
            batch_linger_ms: defaults::BATCH_LINGER_MS,
            max_backoff_ms: defaults::MAX_BACKOFF_MS,
            lag_interval_ms: defaults::LAG_INTERVAL_MS,
            partitions: defaults::PARTITIONS,
            replication_factor: defaults::REPLICATION_FACTOR,
            pull_threshold: defaults::PULL_THRESHOLD,
            push_threshold: None,
            follow_backfill: defaults::FOLLOW_BACKFILL,
            recall_window_secs: defaults::RECALL_WINDOW_SECS,
            edit_window_secs: defaults::EDIT_WINDOW_SECS,
            post_edit_window_secs: 0,
            active_audience_max: defaults::ACTIVE_AUDIENCE_MAX,
            active_window_hours: defaults::ACTIVE_WINDOW_HOURS,
            return_window_hours: defaults::RETURN_WINDOW_HOURS,
            dormancy_sweep_secs: defaults::DORMANCY_SWEEP_SECS,
            departures_sweep_secs: defaults::DEPARTURES_SWEEP_SECS,
            attachment_sweep_secs: defaults::ATTACHMENT_SWEEP_SECS,
            blobs: blobkit::BlobArgs::off(),
            group_pull_threshold: defaults::GROUP_PULL_THRESHOLD,
            group_push_threshold: None,
            max_group_members: schemas::DEFAULT_MAX_GROUP_MEMBERS,
            skip_search_index: false,
            history_retention_days: 0,
            post_retention_days: 0,
            sync_retention_days: defaults::SYNC_RETENTION_DAYS,
            sync_retention_entries: defaults::SYNC_RETENTION_ENTRIES,
            sync_partition_hours: defaults::SYNC_PARTITION_HOURS,
            sync_partition_seqs: defaults::SYNC_PARTITION_SEQS,
            retention_interval_secs: defaults::RETENTION_INTERVAL_SECS,
            skip_setup: false,
            kafka_properties: Vec::new(),
            log_json: false,
        }
    }

    /// The delivery policy; errors when the thresholds leave no hysteresis band.
    pub fn policy(&self) -> Result<Policy, String> {
        let pull_above = self.pull_threshold;
        let push_below = self
            .push_threshold
            .unwrap_or_else(|| defaults::push_threshold(pull_above));
        if pull_above < 1 || push_below < 0 || push_below > pull_above {
            return Err(format!(
                "push threshold ({push_below}) must be between 0 and the pull threshold ({pull_above})"
            ));
        }
        if self.follow_backfill < 0 {
            return Err("follow-backfill must not be negative".into());
        }
        if self.recall_window_secs < 0
            || self.edit_window_secs < 0
            || self.post_edit_window_secs < 0
        {
            return Err("recall and edit windows must not be negative".to_owned());
        }
        if self.active_audience_max < 0 || self.active_window_hours < 0 {
            return Err("active-audience-max and active-window-hours must not be negative".into());
        }
        if self.return_window_hours < 0 {
            return Err("return-window-hours must not be negative".into());
        }
        let group_pull_above = self.group_pull_threshold;
        let group_push_below = self
            .group_push_threshold
            .unwrap_or_else(|| defaults::push_threshold(group_pull_above));
        if group_pull_above < 1 || group_push_below < 0 || group_push_below > group_pull_above {
            return Err(format!(
                "group push threshold ({group_push_below}) must be between 0 and the group pull threshold ({group_pull_above})"
            ));
        }
        Ok(Policy {
            pull_above,
            push_below,
            follow_backfill: self.follow_backfill,
            recall_window: chrono::TimeDelta::seconds(self.recall_window_secs),
            edit_window: (self.edit_window_secs > 0)
                .then(|| chrono::TimeDelta::seconds(self.edit_window_secs)),
            post_edit_window: (self.post_edit_window_secs > 0)
                .then(|| chrono::TimeDelta::seconds(self.post_edit_window_secs)),
            group_pull_above,
            group_push_below,
            max_group_members: self.max_group_members,
            active_audience_max: self.active_audience_max,
            return_window: ReturnWindow {
                span: chrono::TimeDelta::hours(self.return_window_hours),
                ..ReturnWindow::default()
            },
            index_search: !self.skip_search_index,
        })
    }

    /// The retention task's settings; errors on a negative age or an empty partition.
    pub fn retention(&self) -> Result<crate::retention::RetentionSettings, String> {
        if self.sync_retention_days < 0 || self.sync_retention_entries < 0 {
            return Err(
                "sync-retention-days and sync-retention-entries must not be negative".into(),
            );
        }
        if self.sync_partition_hours < 1 || self.sync_partition_seqs < 1 {
            return Err("sync-partition-hours and sync-partition-seqs must be at least 1".into());
        }
        Ok(crate::retention::RetentionSettings {
            age: (self.sync_retention_days > 0)
                .then(|| chrono::TimeDelta::days(self.sync_retention_days)),
            cap: (self.sync_retention_entries > 0).then_some(self.sync_retention_entries),
            slice: chrono::TimeDelta::hours(self.sync_partition_hours),
            span: self.sync_partition_seqs,
            every: Duration::from_secs(self.retention_interval_secs.max(1)),
        })
    }

    /// The store timelines' retention task: the deployment's ages (none when 0), run as often as the
    /// sync timelines' retention.
    pub fn store_retention(
        &self,
        pool: sqlx::PgPool,
    ) -> Result<crate::store_retention::StoreRetention, String> {
        if self.history_retention_days < 0 || self.post_retention_days < 0 {
            return Err(
                "history-retention-days and post-retention-days must not be negative".into(),
            );
        }
        let days = |days: i64| (days > 0).then(|| chrono::TimeDelta::days(days));
        Ok(crate::store_retention::StoreRetention {
            pool,
            age: days(self.history_retention_days),
            post_age: days(self.post_retention_days),
            every: Duration::from_secs(self.retention_interval_secs.max(1)),
        })
    }

    pub fn batch_linger(&self) -> Duration {
        Duration::from_millis(self.batch_linger_ms)
    }

    pub fn max_backoff(&self) -> Duration {
        Duration::from_millis(self.max_backoff_ms.max(1))
    }

    /// Brokers and the operator's Kafka properties, for every client this process builds.
    pub fn kafka(&self) -> Result<kafkakit::KafkaSettings, kafkakit::PropertyError> {
        kafkakit::KafkaSettings::new(&self.brokers, &self.kafka_properties)
    }

    pub fn lag_interval(&self) -> Duration {
        Duration::from_millis(self.lag_interval_ms.max(100))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::{CommandFactory, FromArgMatches, Parser};
    use secrecy::ExposeSecret;

    /// What the command line gives for `args`, whatever FANLINE_* variables the machine running the
    /// test has set (CI sets some): the same command with the `env` of every flag removed.
    fn parse_without_env(args: &[&str]) -> Cli {
        let command = Cli::command().mut_args(|arg| arg.env(None));
        let matches = command.try_get_matches_from(args).unwrap();
        Cli::from_arg_matches(&matches).unwrap()
    }

    #[test]
    fn the_test_builder_matches_the_command_line_defaults() {
        let parsed = parse_without_env(&["fanout"]).config;
        let built = Config::new(
            schemas::DEFAULT_BROKERS,
            schemas::DEFAULT_EVENTS_TOPIC,
            defaults::GROUP,
            schemas::DEFAULT_DATABASE_URL,
        );
        assert_eq!(built.policy(), parsed.policy(), "policy");
        assert_eq!(
            Policy::default(),
            parsed.policy().unwrap(),
            "Policy::default is the policy of the default flags"
        );
        // Every field: the pattern has no `..`, so a new flag cannot be left out of this comparison.
        let Config {
            listen,
            brokers,
            topic,
            dlq_topic,
            group,
            instance_id,
            database_url,
            db_connections,
            batch_max_events,
            batch_linger_ms,
            max_backoff_ms,
            lag_interval_ms,
            partitions,
            replication_factor,
            pull_threshold,
            push_threshold,
            follow_backfill,
            group_pull_threshold,
            group_push_threshold,
            max_group_members,
            recall_window_secs,
            edit_window_secs,
            post_edit_window_secs,
            active_audience_max,
            active_window_hours,
            return_window_hours,
            dormancy_sweep_secs,
            departures_sweep_secs,
            attachment_sweep_secs,
            blobs,
            skip_search_index,
            history_retention_days,
            post_retention_days,
            sync_retention_days,
            sync_retention_entries,
            sync_partition_hours,
            sync_partition_seqs,
            retention_interval_secs,
            skip_setup,
            kafka_properties,
            log_json,
        } = built;
        // The one intended difference: tests bind the operations server to a free port.
        assert_eq!(listen.ip(), parsed.listen.ip(), "listen address");
        assert_eq!(listen.port(), 0, "the test builder picks a free port");
        assert_eq!(brokers, parsed.brokers, "brokers");
        assert_eq!(topic, parsed.topic, "topic");
        assert_eq!(dlq_topic, parsed.dlq_topic, "dlq_topic");
        assert_eq!(group, parsed.group, "group");
        assert_eq!(instance_id, parsed.instance_id, "instance_id");
        assert_eq!(
            database_url.expose_secret(),
            parsed.database_url.expose_secret(),
            "database_url"
        );
        assert_eq!(db_connections, parsed.db_connections, "db_connections");
        assert_eq!(
            batch_max_events, parsed.batch_max_events,
            "batch_max_events"
        );
        assert_eq!(batch_linger_ms, parsed.batch_linger_ms, "batch_linger_ms");
        assert_eq!(max_backoff_ms, parsed.max_backoff_ms, "max_backoff_ms");
        assert_eq!(lag_interval_ms, parsed.lag_interval_ms, "lag_interval_ms");
        assert_eq!(partitions, parsed.partitions, "partitions");
        assert_eq!(
            max_group_members, parsed.max_group_members,
            "max_group_members"
        );
        assert_eq!(
            replication_factor, parsed.replication_factor,
            "replication_factor"
        );
        assert_eq!(pull_threshold, parsed.pull_threshold, "pull_threshold");
        assert_eq!(push_threshold, parsed.push_threshold, "push_threshold");
        assert_eq!(follow_backfill, parsed.follow_backfill, "follow_backfill");
        assert_eq!(
            group_pull_threshold, parsed.group_pull_threshold,
            "group_pull_threshold"
        );
        assert_eq!(
            group_push_threshold, parsed.group_push_threshold,
            "group_push_threshold"
        );
        assert_eq!(
            recall_window_secs, parsed.recall_window_secs,
            "recall_window_secs"
        );
        assert_eq!(active_audience_max, parsed.active_audience_max, "M");
        assert_eq!(active_window_hours, parsed.active_window_hours, "window");
        assert_eq!(return_window_hours, parsed.return_window_hours, "return");
        assert_eq!(dormancy_sweep_secs, parsed.dormancy_sweep_secs, "sweep");
        assert_eq!(
            departures_sweep_secs, parsed.departures_sweep_secs,
            "departures"
        );
        assert_eq!(skip_setup, parsed.skip_setup, "skip_setup");
        assert_eq!(
            (history_retention_days, post_retention_days),
            (parsed.history_retention_days, parsed.post_retention_days),
            "store retention"
        );
        assert_eq!(
            (
                sync_retention_days,
                sync_retention_entries,
                sync_partition_hours
            ),
            (
                parsed.sync_retention_days,
                parsed.sync_retention_entries,
                parsed.sync_partition_hours
            ),
            "retention"
        );
        assert_eq!(
            (sync_partition_seqs, retention_interval_secs),
            (parsed.sync_partition_seqs, parsed.retention_interval_secs),
            "partitions"
        );
        assert_eq!(
            skip_search_index, parsed.skip_search_index,
            "skip_search_index"
        );
        assert_eq!(
            kafka_properties, parsed.kafka_properties,
            "kafka_properties"
        );
        assert_eq!(log_json, parsed.log_json, "log_json");
        assert_eq!(
            edit_window_secs, parsed.edit_window_secs,
            "edit_window_secs"
        );
        assert_eq!(
            post_edit_window_secs, parsed.post_edit_window_secs,
            "post_edit_window_secs"
        );
        assert_eq!(
            attachment_sweep_secs, parsed.attachment_sweep_secs,
            "attachment_sweep_secs"
        );
        assert_eq!(blobs.blob_store, parsed.blobs.blob_store, "blobs");
    }

    #[test]
    fn the_environment_is_ignored_where_the_defaults_are_compared() {
        // Flags still parse as flags without their `env`.
        let parsed = parse_without_env(&["fanout", "--pull-threshold", "7"]).config;
        assert_eq!(parsed.pull_threshold, 7);
        assert!(Cli::command()
            .mut_args(|arg| arg.env(None))
            .get_arguments()
            .all(|arg| arg.get_env().is_none()));
    }

    #[test]
    fn replay_flags_map_to_a_start_point() {
        let args = |extra: &[&str]| {
            let mut argv = vec!["fanout", "replay"];
            argv.extend_from_slice(extra);
            match Cli::try_parse_from(argv).map(|cli| cli.command) {
                Ok(Some(Command::Replay(args))) => args.start(),
                other => Err(format!("{other:?}")),
            }
        };
        use crate::replay_args::StartAt;
        assert_eq!(args(&["--from-beginning"]), Ok(StartAt::Beginning));
        assert_eq!(args(&["--resume"]), Ok(StartAt::Committed));
        assert_eq!(
            args(&["--from-offsets", "0:5"]),
            Ok(StartAt::Offsets(vec![(0, 5)]))
        );
        assert!(args(&["--from-offsets", "zero"]).is_err());
        assert!(args(&[]).is_err(), "a start point is required");
        assert!(
            args(&["--resume", "--from-beginning"]).is_err(),
            "start points exclude each other"
        );
    }
}
