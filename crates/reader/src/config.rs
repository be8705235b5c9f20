//! Reader configuration: every flag also reads an environment variable.

use std::net::SocketAddr;

use secrecy::SecretString;

#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "reader",
    version,
    about = "Fanline reader: feeds, sync scans and store timelines"
)]
pub struct Config {
    /// Address the HTTP API listens on (port 0 picks a free port).
    #[arg(long, env = "FANLINE_READER_LISTEN", default_value = "127.0.0.1:8081")]
    pub listen: SocketAddr,

    /// Postgres connection URL.
    #[arg(
        long,
        env = "FANLINE_DATABASE_URL",
        default_value = "postgres://root@127.0.0.1:5432/fanline",
        hide_env_values = true
    )]
    pub database_url: SecretString,

    /// Largest number of Postgres connections this process opens.
    #[arg(long, env = "FANLINE_READER_DB_CONNECTIONS", default_value_t = 8)]
    pub db_connections: u32,

    /// Longest a query (or the wait for a connection) may take before the request gets 503, in ms.
    #[arg(long, env = "FANLINE_READER_QUERY_TIMEOUT_MS", default_value_t = 3000)]
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
            db_connections: 8,
            query_timeout_ms: 3000,
            log_json: false,
        }
    }
}
