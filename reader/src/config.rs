//! Reader configuration: every flag also reads an environment variable.

use std::net::SocketAddr;

use secrecy::SecretString;

/// The default of every flag: the clap attributes and [`Config::for_database`] both read them.
pub mod defaults {
    pub const LISTEN: &str = "127.0.0.1:8081";
    pub const DB_CONNECTIONS: u32 = 8;
    pub const QUERY_TIMEOUT_MS: u64 = 3000;
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

    /// Postgres connection URL.
    #[arg(
        long,
        env = "FANLINE_DATABASE_URL",
        default_value = schemas::DEFAULT_DATABASE_URL,
        hide_env_values = true,
        hide_default_value = true
    )]
    pub database_url: SecretString,

    /// Largest number of Postgres connections this process opens.
    #[arg(long, env = "FANLINE_READER_DB_CONNECTIONS", default_value_t = defaults::DB_CONNECTIONS)]
    pub db_connections: u32,

    /// Longest a query (or the wait for a connection) may take before the request gets 503, in ms.
    #[arg(long, env = "FANLINE_READER_QUERY_TIMEOUT_MS", default_value_t = defaults::QUERY_TIMEOUT_MS)]
    pub query_timeout_ms: u64,

    /// Log JSON lines instead of human-readable text.
    #[arg(long, env = "FANLINE_LOG_JSON")]
    pub log_json: bool,
}

impl Config {
    /// A configuration for tests and embedding: a free port, other settings at their defaults.
    pub fn for_database(database_url: &str) -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            database_url: SecretString::from(database_url.to_owned()),
            db_connections: defaults::DB_CONNECTIONS,
            query_timeout_ms: defaults::QUERY_TIMEOUT_MS,
            log_json: false,
        }
    }
}
