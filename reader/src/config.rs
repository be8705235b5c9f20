//! Reader configuration: every flag also reads an environment variable.

use std::net::SocketAddr;

use secrecy::SecretString;

/// The default of every flag: the clap attributes and [`Config::for_database`] both read them.
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8081";
    pub const OPS_LISTEN: &str = "127.0.0.1:9081";
    pub const DB_CONNECTIONS: u32 = 16;
    pub const QUERY_TIMEOUT_MS: u64 = 3000;
    pub const ACCESS_TOKEN_SECS: u64 = 15 * 60;
    pub const REFRESH_TOKEN_SECS: u64 = 30 * 24 * 3600;
    pub const LOGIN_PER_ADDRESS_PER_MINUTE: u32 = 60;
    pub const LOGIN_PER_ACCOUNT_ADDRESS_PER_MINUTE: u32 = 10;
    pub const LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR: u32 = 100;
    pub const STREAMS_PER_USER: usize = 16;
    pub const STREAMS_PER_ADDRESS: usize = 256;
    pub const LONG_POLLS_PER_USER: usize = 8;
    pub const LONG_POLLS_PER_ADDRESS: usize = 256;
    pub const PRODUCE_TIMEOUT_MS: u64 = 5000;
    pub const WS_HEARTBEAT_SECS: u64 = 15;
    pub const WS_MAX_MISSED: u32 = 2;
    pub const WS_WINDOW: u32 = 500;
    pub const WS_BUFFER_FRAMES: usize = 64;
    pub const WS_SEND_TIMEOUT_SECS: u64 = 10;
    pub const PUBLIC_INGEST_URL: &str = "http://127.0.0.1:8080";
    pub const PUBLIC_READER_URL: &str = "http://127.0.0.1:8081";
    pub use crate::presence::{
        DEFAULT_RETURN_WAIT_MS as RETURN_WAIT_MS, DEFAULT_THROTTLE_SECS as ACTIVITY_THROTTLE_SECS,
    };
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "reader",
    version,
    about = "Fanline reader: feeds, sync scans and store timelines"
)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "FANLINE_READER_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// Address of the operations port: `/metrics`, `/healthz`, `/readyz`. Keep it off the public
    /// network (Prometheus scrapes it); the public port serves no `/metrics`.
    #[arg(long, env = "FANLINE_READER_OPS_LISTEN", default_value = defaults::OPS_LISTEN)]
    pub ops_listen: SocketAddr,

    #[command(flatten)]
    pub http: httpkit::HttpArgs,

    /// Socket sends share the message budget's flags with ingest (each process has its own buckets).
    #[command(flatten)]
    pub writes: authkit::WriteQuotaArgs,

    /// Postgres connection URL.
    #[arg(
        long,
        env = "FANLINE_DATABASE_URL",
        default_value = schemas::DEFAULT_DATABASE_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: SecretString,

    /// Largest number of Postgres connections this process opens for requests: a quarter (1 to 4),
    /// shared and pipelined, for page reads (feeds, sync, contact lists, histories), the rest for
    /// everything else (logins, device acks, profiles); plus two for realtime wake-ups (LISTEN and its
    /// batch reads).
    #[arg(long, env = "FANLINE_READER_DB_CONNECTIONS", default_value_t = defaults::DB_CONNECTIONS)]
    pub db_connections: u32,

    /// Longest a query (or the wait for a connection) may take before the request gets 503, in ms.
    #[arg(long, env = "FANLINE_READER_QUERY_TIMEOUT_MS", default_value_t = defaults::QUERY_TIMEOUT_MS)]
    pub query_timeout_ms: u64,

    /// Lifetime of an access token, in seconds. Logout cannot shorten an issued one: keep it short.
    #[arg(long, env = "FANLINE_ACCESS_TOKEN_SECS", default_value_t = defaults::ACCESS_TOKEN_SECS)]
    pub access_token_secs: u64,

    /// Lifetime of a session (its refresh token), in seconds.
    #[arg(long, env = "FANLINE_REFRESH_TOKEN_SECS", default_value_t = defaults::REFRESH_TOKEN_SECS)]
    pub refresh_token_secs: u64,

    /// Login attempts per minute from one client address (for any accounts).
    #[arg(long, env = "FANLINE_LOGIN_PER_ADDRESS_PER_MINUTE", default_value_t = defaults::LOGIN_PER_ADDRESS_PER_MINUTE)]
    pub login_per_address_per_minute: u32,

    /// Login attempts per minute at one account from one client address.
    #[arg(long, env = "FANLINE_LOGIN_PER_ACCOUNT_ADDRESS_PER_MINUTE", default_value_t = defaults::LOGIN_PER_ACCOUNT_ADDRESS_PER_MINUTE)]
    pub login_per_account_address_per_minute: u32,

    /// Failed logins per hour at one account from all addresses together; past it, only addresses
    /// the account has an open session from may try.
    #[arg(long, env = "FANLINE_LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR", default_value_t = defaults::LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR)]
    pub login_failures_per_account_per_hour: u32,

    /// Open WebSockets and event streams of one user at most (429 past it).
    #[arg(long, env = "FANLINE_STREAMS_PER_USER", default_value_t = defaults::STREAMS_PER_USER)]
    pub streams_per_user: usize,

    /// Open WebSockets and event streams from one client address at most (429 past it).
    #[arg(long, env = "FANLINE_STREAMS_PER_ADDRESS", default_value_t = defaults::STREAMS_PER_ADDRESS)]
    pub streams_per_address: usize,

    /// Waiting long polls of one user at most (429 past it).
    #[arg(long, env = "FANLINE_LONG_POLLS_PER_USER", default_value_t = defaults::LONG_POLLS_PER_USER)]
    pub long_polls_per_user: usize,

    /// Waiting long polls from one client address at most (429 past it).
    #[arg(long, env = "FANLINE_LONG_POLLS_PER_ADDRESS", default_value_t = defaults::LONG_POLLS_PER_ADDRESS)]
    pub long_polls_per_address: usize,

    /// Origins (e.g. https://chat.example.com) whose pages may open WebSockets, comma-separated;
    /// `*` allows any. The reader's own origin is always allowed, and clients that send no `Origin`
    /// (not browsers) are not affected.
    #[arg(
        long = "ws-allowed-origin",
        env = "FANLINE_WS_ALLOWED_ORIGINS",
        value_delimiter = ','
    )]
    pub ws_allowed_origins: Vec<String>,

    /// Refuse socket messages to ids without an account, as ingest does (the default). `false` only
    /// for embedding and tests that never register their users.
    #[arg(long, env = "FANLINE_ACCOUNTS_REQUIRED", default_value_t = true, action = clap::ArgAction::Set)]
    pub accounts_required: bool,

    /// Kafka bootstrap servers: messages and read markers sent over a WebSocket are appended here,
    /// exactly as ingest appends them.
    #[arg(long, env = "FANLINE_KAFKA_BROKERS", default_value = schemas::DEFAULT_BROKERS)]
    pub brokers: String,

    /// Topic the socket's messages and read markers are appended to.
    #[arg(long, env = "FANLINE_EVENTS_TOPIC", default_value = schemas::DEFAULT_EVENTS_TOPIC)]
    pub topic: String,

    /// How long the broker has to acknowledge a socket's message, in milliseconds.
    #[arg(long, env = "FANLINE_READER_PRODUCE_TIMEOUT_MS", default_value_t = defaults::PRODUCE_TIMEOUT_MS)]
    pub produce_timeout_ms: u64,

    /// Extra librdkafka producer properties of the socket sends' producer as key=value (repeatable),
    /// e.g. security.protocol=ssl — the same as ingest's.
    #[arg(
        long = "kafka-property",
        env = "FANLINE_READER_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    pub kafka_properties: Vec<String>,

    /// A user's activity is reported to fanout (`user_active`) at most this often per reader, in
    /// seconds; it keeps fan-out writing their inbox. Keep it well below fanout's active window.
    #[arg(long, env = "FANLINE_ACTIVITY_THROTTLE_SECS", default_value_t = defaults::ACTIVITY_THROTTLE_SECS)]
    pub activity_throttle_secs: u64,

    /// How long a dormant user's first read waits for fanout to fill their inbox before it answers
    /// 503 (milliseconds).
    #[arg(long, env = "FANLINE_RETURN_WAIT_MS", default_value_t = defaults::RETURN_WAIT_MS)]
    pub return_wait_ms: u64,

    /// WebSocket heartbeat: the server pings this often, in seconds.
    #[arg(long, env = "FANLINE_WS_HEARTBEAT_SECS", default_value_t = defaults::WS_HEARTBEAT_SECS)]
    pub ws_heartbeat_secs: u64,

    /// WebSocket heartbeat: close (4000) after this many intervals without a frame from the client.
    #[arg(long, env = "FANLINE_WS_MAX_MISSED", default_value_t = defaults::WS_MAX_MISSED)]
    pub ws_max_missed: u32,

    /// Most entries sent to a device beyond its last ack.
    #[arg(long, env = "FANLINE_WS_WINDOW", default_value_t = defaults::WS_WINDOW)]
    pub ws_window: u32,

    /// Frames queued for one connection before it is cut as a slow consumer (close 4008).
    #[arg(long, env = "FANLINE_WS_BUFFER_FRAMES", default_value_t = defaults::WS_BUFFER_FRAMES)]
    pub ws_buffer_frames: usize,

    /// A write to a connection stalled this long cuts it as a slow consumer, in seconds.
    #[arg(long, env = "FANLINE_WS_SEND_TIMEOUT_SECS", default_value_t = defaults::WS_SEND_TIMEOUT_SECS)]
    pub ws_send_timeout_secs: u64,

    /// Where browsers reach ingest: the web client at `/` sends its writes there.
    #[arg(long, env = "FANLINE_PUBLIC_INGEST_URL", default_value = defaults::PUBLIC_INGEST_URL)]
    pub public_ingest_url: String,

    /// Where clients reach this reader: the directory store's download URLs point here.
    #[arg(long, env = "FANLINE_PUBLIC_READER_URL", default_value = defaults::PUBLIC_READER_URL)]
    pub public_url: String,

    #[command(flatten)]
    pub blobs: blobkit::BlobArgs,

    #[command(flatten)]
    pub token: authkit::TokenKeyArg,

    #[command(flatten)]
    pub moderation: authkit::ModerationArgs,

    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "FANLINE_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    /// The connections page reads share, each carrying many reads at once (see [`crate::db`]): a quarter
    /// of `db_connections`, 1 to 4 (measured: past a few, pipelined reads get slower, not faster).
    pub fn page_connections(&self) -> u32 {
        (self.db_connections / 4).clamp(1, 4)
    }

    /// The connections for everything else (logins, device acks, profiles, multi-statement snapshots):
    /// the rest, at least one.
    pub fn other_connections(&self) -> u32 {
        self.db_connections
            .saturating_sub(self.page_connections())
            .max(1)
    }

    /// Brokers and the operator's Kafka properties.
    pub fn kafka(&self) -> Result<kafkakit::KafkaSettings, kafkakit::PropertyError> {
        kafkakit::KafkaSettings::new(&self.brokers, &self.kafka_properties)
    }

    /// The socket sends' producer: its name, topic and acknowledgement timeout.
    pub fn producer(&self) -> kafkakit::ProducerSettings {
        kafkakit::ProducerSettings {
            client_id: "fanline-reader".to_owned(),
            topic: self.topic.clone(),
            timeout: std::time::Duration::from_millis(self.produce_timeout_ms),
        }
    }

    /// The WebSocket settings, each at least its smallest workable value.
    pub fn socket_settings(&self) -> crate::realtime::SocketSettings {
        use std::time::Duration;
        crate::realtime::SocketSettings {
            heartbeat: Duration::from_secs(self.ws_heartbeat_secs.max(1)),
            max_missed: self.ws_max_missed.max(1),
            window: self.ws_window.max(1),
            buffer_frames: self.ws_buffer_frames.max(2),
            send_timeout: Duration::from_secs(self.ws_send_timeout_secs.max(1)),
        }
    }

    /// A configuration for tests and embedding: a free port, other settings at their defaults.
    pub fn for_database(database_url: &str) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: httpkit::HttpArgs::default(),
            // Tests and benchmarks measure everything but the write budgets (their own test sets them).
            writes: authkit::WriteQuotaArgs::unlimited(),
            database_url: SecretString::from(database_url.to_owned()),
            db_connections: defaults::DB_CONNECTIONS,
            query_timeout_ms: defaults::QUERY_TIMEOUT_MS,
            log_json: false,
            token: authkit::TokenKeyArg::default(),
            moderation: authkit::ModerationArgs::off(),
            access_token_secs: defaults::ACCESS_TOKEN_SECS,
            refresh_token_secs: defaults::REFRESH_TOKEN_SECS,
            login_per_address_per_minute: defaults::LOGIN_PER_ADDRESS_PER_MINUTE,
            login_per_account_address_per_minute: defaults::LOGIN_PER_ACCOUNT_ADDRESS_PER_MINUTE,
            login_failures_per_account_per_hour: defaults::LOGIN_FAILURES_PER_ACCOUNT_PER_HOUR,
            streams_per_user: defaults::STREAMS_PER_USER,
            streams_per_address: defaults::STREAMS_PER_ADDRESS,
            long_polls_per_user: defaults::LONG_POLLS_PER_USER,
            long_polls_per_address: defaults::LONG_POLLS_PER_ADDRESS,
            ws_allowed_origins: Vec::new(),
            // Tests and embedding mint tokens for users they never register.
            accounts_required: false,
            brokers: schemas::DEFAULT_BROKERS.to_owned(),
            topic: schemas::DEFAULT_EVENTS_TOPIC.to_owned(),
            produce_timeout_ms: defaults::PRODUCE_TIMEOUT_MS,
            kafka_properties: Vec::new(),
            ws_heartbeat_secs: defaults::WS_HEARTBEAT_SECS,
            ws_max_missed: defaults::WS_MAX_MISSED,
            ws_window: defaults::WS_WINDOW,
            ws_buffer_frames: defaults::WS_BUFFER_FRAMES,
            ws_send_timeout_secs: defaults::WS_SEND_TIMEOUT_SECS,
            public_ingest_url: defaults::PUBLIC_INGEST_URL.to_owned(),
            public_url: defaults::PUBLIC_READER_URL.to_owned(),
            blobs: blobkit::BlobArgs::off(),
            activity_throttle_secs: defaults::ACTIVITY_THROTTLE_SECS,
            return_wait_ms: defaults::RETURN_WAIT_MS,
        }
    }
}
