//! Ingest configuration: every flag also reads an environment variable.

use std::net::SocketAddr;

/// The default of every flag: the clap attributes and [`Config::for_brokers`] both read them.
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8080";
    pub const OPS_LISTEN: &str = "127.0.0.1:9080";
    pub const PRODUCE_TIMEOUT_MS: u64 = 5000;
    pub const BODY_LIMIT_BYTES: usize = 64 * 1024;
    pub const BATCH_BODY_LIMIT_BYTES: usize = 4 * 1024 * 1024;
    pub const REGISTER_PER_ADDRESS_PER_MINUTE: u32 = 10;
}

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "ingest",
    version,
    about = "Fanline ingest: the write API, appending events to Kafka"
)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "FANLINE_INGEST_LISTEN", default_value = defaults::LISTEN)]
    pub listen: SocketAddr,

    /// Address of the operations port: `/metrics`, `/healthz`, `/readyz`. Keep it off the public
    /// network (Prometheus scrapes it); the public port serves no `/metrics`.
    #[arg(long, env = "FANLINE_INGEST_OPS_LISTEN", default_value = defaults::OPS_LISTEN)]
    pub ops_listen: SocketAddr,

    #[command(flatten)]
    pub http: httpkit::HttpArgs,

    #[command(flatten)]
    pub writes: authkit::WriteQuotaArgs,

    /// Kafka bootstrap servers, comma-separated host:port.
    #[arg(long, env = "FANLINE_KAFKA_BROKERS", default_value = schemas::DEFAULT_BROKERS)]
    pub brokers: String,

    /// Topic the events are appended to.
    #[arg(long, env = "FANLINE_EVENTS_TOPIC", default_value = schemas::DEFAULT_EVENTS_TOPIC)]
    pub topic: String,

    /// How long the broker has to acknowledge an event, in milliseconds (librdkafka's message.timeout.ms).
    /// A request answers 503 when it fails, at the latest 1 s after this (waiting for the delivery report).
    #[arg(
        long,
        env = "FANLINE_INGEST_PRODUCE_TIMEOUT_MS",
        default_value_t = defaults::PRODUCE_TIMEOUT_MS
    )]
    pub produce_timeout_ms: u64,

    /// Largest accepted request body, in bytes; larger bodies get 413.
    #[arg(long, env = "FANLINE_HTTP_BODY_LIMIT_BYTES", default_value_t = defaults::BODY_LIMIT_BYTES)]
    pub body_limit_bytes: usize,

    /// Largest accepted body of POST /v1/posts/batch, in bytes.
    #[arg(long, env = "FANLINE_HTTP_BATCH_BODY_LIMIT_BYTES", default_value_t = defaults::BATCH_BODY_LIMIT_BYTES)]
    pub batch_body_limit_bytes: usize,

    /// Extra librdkafka producer properties as key=value (repeatable), e.g. security.protocol=ssl.
    #[arg(
        long = "kafka-property",
        env = "FANLINE_INGEST_KAFKA_PROPERTIES",
        value_delimiter = ','
    )]
    pub kafka_properties: Vec<String>,

    /// Registrations per minute from one client address (an IPv6 /64 counts as one).
    #[arg(long, env = "FANLINE_REGISTER_PER_ADDRESS_PER_MINUTE", default_value_t = defaults::REGISTER_PER_ADDRESS_PER_MINUTE)]
    pub register_per_address_per_minute: u32,

    /// Postgres connection URL, read-only and for one question: whether an id has an account
    /// (messages, follows and group additions to ids nobody owns are refused; registrations of ids
    /// that hold data need a claim code).
    #[arg(
        long,
        env = "FANLINE_DATABASE_URL",
        default_value = schemas::DEFAULT_DATABASE_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: secrecy::SecretString,

    /// Refuse writes addressed to ids without an account (the default). `false` restores the old,
    /// unsafe behaviour for embedding and tests that never register their users.
    #[arg(long, env = "FANLINE_ACCOUNTS_REQUIRED", default_value_t = true, action = clap::ArgAction::Set)]
    pub accounts_required: bool,

    #[command(flatten)]
    pub token: authkit::TokenKeyArg,

    #[command(flatten)]
    pub moderation: authkit::ModerationArgs,

    #[command(flatten)]
    pub caps: crate::caps::CapArgs,

    #[command(flatten)]
    pub blobs: blobkit::BlobArgs,

    /// Ingest's URL as clients reach it: the directory store's upload URLs point here.
    #[arg(
        long,
        env = "FANLINE_PUBLIC_INGEST_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: String,

    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "FANLINE_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    /// A configuration for tests and embedding: listen on a free port, other settings at their defaults.
    pub fn for_brokers(brokers: &str, topic: &str) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            ops_listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            http: httpkit::HttpArgs::default(),
            // Tests and benchmarks measure everything but the write budgets (their own test sets them).
            writes: authkit::WriteQuotaArgs::unlimited(),
            brokers: brokers.to_owned(),
            topic: topic.to_owned(),
            produce_timeout_ms: defaults::PRODUCE_TIMEOUT_MS,
            body_limit_bytes: defaults::BODY_LIMIT_BYTES,
            batch_body_limit_bytes: defaults::BATCH_BODY_LIMIT_BYTES,
            kafka_properties: Vec::new(),
            log_json: false,
            token: authkit::TokenKeyArg::default(),
            register_per_address_per_minute: defaults::REGISTER_PER_ADDRESS_PER_MINUTE,
            database_url: secrecy::SecretString::from(schemas::DEFAULT_DATABASE_URL.to_owned()),
            // Tests and embedding mint tokens for users they never register.
            accounts_required: false,
            moderation: authkit::ModerationArgs::off(),
            caps: crate::caps::CapArgs::none(),
            blobs: blobkit::BlobArgs::off(),
            public_url: "http://127.0.0.1:8080".into(),
        }
    }

    /// A small pool on `database_url`, connecting lazily (ingest starts while Postgres is down).
    pub fn read_pool(&self) -> Result<sqlx::PgPool, sqlx::Error> {
        use secrecy::ExposeSecret;
        let options: sqlx::postgres::PgConnectOptions =
            self.database_url.expose_secret().parse()?;
        Ok(sqlx::postgres::PgPoolOptions::new()
            .max_connections(4)
            .acquire_timeout(std::time::Duration::from_secs(2))
            .connect_lazy_with(options.options([("statement_timeout", "2000ms")])))
    }

    /// The account directory: reading `database_url` lazily (ingest starts while Postgres is down),
    /// or switched off.
    pub fn account_directory(&self) -> Result<authkit::AccountDirectory, sqlx::Error> {
        if !self.accounts_required {
            return Ok(authkit::AccountDirectory::disabled());
        }
        Ok(authkit::AccountDirectory::new(self.read_pool()?))
    }

    /// The event producer's name, topic and acknowledgement timeout.
    pub fn producer(&self) -> kafkakit::ProducerSettings {
        kafkakit::ProducerSettings {
            client_id: "fanline-ingest".to_owned(),
            topic: self.topic.clone(),
            timeout: std::time::Duration::from_millis(self.produce_timeout_ms),
        }
    }

    /// Brokers and the operator's Kafka properties.
    pub fn kafka(&self) -> Result<kafkakit::KafkaSettings, kafkakit::PropertyError> {
        kafkakit::KafkaSettings::new(&self.brokers, &self.kafka_properties)
    }
}
