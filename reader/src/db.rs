//! The connections page reads run on: a few `tokio-postgres` connections, each carrying many reads at
//! once.
//!
//! Why not a pool that lends a connection to one read at a time (sqlx's, or deadpool's): a lent
//! connection sits idle while its answer travels, and every read pays its own wake-ups on both sides. A
//! `tokio-postgres` client pipelines: concurrent reads on one connection are written back to back and
//! Postgres answers them in order without waiting for the client between them. Measured on the history
//! query, 32 concurrent readers in one process (2 cores): one read at a time on 12 connections 21k/s
//! (sqlx) and 23–27k/s (tokio-postgres); pipelined on 2–4 connections 36–38k/s, on 12 29.5k/s. So
//! page reads share few connections ([`crate::Config::page_connections`]).
//!
//! A read is cancel-safe as it is: when a request goes away its read's answer is still read off the
//! connection (by the connection's own task) and dropped. Reads that each see one snapshot are single
//! statements; a multi-statement snapshot needs a connection of its own (the sqlx pool), never a shared
//! one, where other reads would run inside its transaction.
//!
//! A read goes to the connection with the fewest reads in flight, so that one slow query (a huge contact
//! list) does not hold up the reads queued behind it while other connections are free. A connection that
//! closed (Postgres restarted, network) is opened again by the next read that picks it; one that stopped
//! answering (no reply within twice the statement timeout, which Postgres itself would have enforced) is
//! given up and opened again too.
//!
//! The database URL is read by tokio-postgres here and by sqlx for the other connections: use the forms
//! both read alike (`postgres://user:password@host:port/db`, `?host=/socket/dir` without a host in the
//! URL, `sslmode=disable|prefer`); the `/readyz` check reads through both, so a URL only one of them
//! accepts shows as not ready.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use schemas::db::{classify_sqlstate, DbFailure};
use tokio_postgres::error::SqlState;
use tokio_postgres::types::ToSql;
use tokio_postgres::{Client, NoTls, Row, Statement};

/// Why a read failed.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error(transparent)]
    Postgres(#[from] tokio_postgres::Error),
    #[error("no answer from the database within {0:?}")]
    TimedOut(Duration),
}

impl ReadError {
    /// The one classification of database failures ([`schemas::db`]): unavailable → 503, else 500.
    pub fn failure(&self) -> DbFailure {
        match self {
            ReadError::TimedOut(_) => DbFailure::Unavailable,
            ReadError::Postgres(err) => {
                if let Some(code) = err.code() {
                    classify_sqlstate(code.code())
                } else if err.is_closed() || io_cause(err) {
                    DbFailure::Unavailable
                } else {
                    // A column that does not decode into its Rust type: our SQL or schema is wrong.
                    DbFailure::Bug
                }
            }
        }
    }
}

fn io_cause(err: &tokio_postgres::Error) -> bool {
    let mut source = std::error::Error::source(err);
    while let Some(cause) = source {
        if cause.is::<std::io::Error>() {
            return true;
        }
        source = cause.source();
    }
    false
}

/// One open connection and the statements prepared on it, by the address of their `'static` SQL.
struct Pipeline {
    client: Client,
    statements: Mutex<HashMap<(usize, usize), Statement>>,
}

impl Pipeline {
    async fn statement(&self, sql: &'static str) -> Result<Statement, tokio_postgres::Error> {
        let key = (sql.as_ptr() as usize, sql.len());
        if let Some(statement) = self.statements.lock().expect("not poisoned").get(&key) {
            return Ok(statement.clone());
        }
        // Two reads may prepare the same statement at once; one copy stays, the other is closed when
        // its last user drops it.
        let statement = self.client.prepare(sql).await?;
        self.statements
            .lock()
            .expect("not poisoned")
            .insert(key, statement.clone());
        Ok(statement)
    }

    /// Drops a prepared statement that Postgres no longer accepts (after a migration changed what it
    /// returns: "cached plan must not change result type"), so that the next read prepares it again.
    fn forget(&self, sql: &'static str) {
        let key = (sql.as_ptr() as usize, sql.len());
        self.statements.lock().expect("not poisoned").remove(&key);
    }
}

#[derive(Default)]
struct Slot {
    open: RwLock<Option<Arc<Pipeline>>>,
    /// One opener at a time: the reads that find the slot closed wait for that one connection.
    opening: tokio::sync::Mutex<()>,
    in_flight: AtomicUsize,
}

impl Slot {
    fn current(&self) -> Option<Arc<Pipeline>> {
        self.open
            .read()
            .expect("not poisoned")
            .as_ref()
            .filter(|pipeline| !pipeline.client.is_closed())
            .cloned()
    }

    /// Gives up `pipeline` if it is still this slot's connection: the next read opens another.
    fn abandon(&self, pipeline: &Arc<Pipeline>) {
        let mut open = self.open.write().expect("not poisoned");
        if open
            .as_ref()
            .is_some_and(|current| Arc::ptr_eq(current, pipeline))
        {
            *open = None;
        }
    }
}

/// Counts a read in flight on its slot for as long as it lives (also when the request goes away).
struct InFlight<'a>(&'a Slot);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Inner {
    config: tokio_postgres::Config,
    slots: Vec<Slot>,
    wait: Duration,
}

/// Page reads on `size` shared connections, opened on demand (the reader starts while Postgres is
/// down, and recovers by itself).
#[derive(Clone)]
pub struct ReadPool {
    inner: Arc<Inner>,
}

impl ReadPool {
    /// `wait` is the statement timeout Postgres enforces and the longest wait for a connection; a read
    /// with no answer after twice that gives its connection up.
    pub fn new(
        database_url: &str,
        size: usize,
        wait: Duration,
    ) -> Result<Self, tokio_postgres::Error> {
        let mut config = tokio_postgres::Config::from_str(database_url)?;
        // Added to the URL's own `options`, if any (a `search_path` there must stay).
        let options = format!(
            "{} -c statement_timeout={}",
            config.get_options().unwrap_or_default(),
            wait.as_millis()
        );
        config
            .options(options.trim_start())
            .connect_timeout(wait)
            // A connection whose peer vanished (no RST: a partition, a dead host) is found out by the
            // kernel too, not only by the reads that time out on it.
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .keepalives_interval(Duration::from_secs(5))
            .keepalives_retries(3)
            .tcp_user_timeout(wait * 2);
        let slots = (0..size.max(1)).map(|_| Slot::default()).collect();
        Ok(ReadPool {
            inner: Arc::new(Inner {
                config,
                slots,
                wait,
            }),
        })
    }

    /// Runs one statement with `params` and returns its rows.
    pub async fn query(
        &self,
        sql: &'static str,
        params: &[&(dyn ToSql + Sync)],
    ) -> Result<Vec<Row>, ReadError> {
        let slot = self
            .inner
            .slots
            .iter()
            .min_by_key(|slot| slot.in_flight.load(Ordering::Relaxed))
            .expect("at least one slot");
        slot.in_flight.fetch_add(1, Ordering::Relaxed);
        let _counted = InFlight(slot);
        let pipeline = match slot.current() {
            Some(pipeline) => pipeline,
            // Waiting for another read's attempt counts too.
            None => tokio::time::timeout(self.inner.wait, self.open(slot))
                .await
                .map_err(|_| ReadError::TimedOut(self.inner.wait))??,
        };
        // Postgres ends a statement at the statement timeout (= `wait`) by itself; no answer by twice
        // that means the connection is stuck (a dead peer that sent no RST): give it up.
        let limit = self.inner.wait * 2;
        let read = async {
            let statement = pipeline.statement(sql).await?;
            pipeline.client.query(&statement, params).await
        };
        match tokio::time::timeout(limit, read).await {
            Ok(Ok(rows)) => Ok(rows),
            Ok(Err(err)) => {
                if err.code() == Some(&SqlState::FEATURE_NOT_SUPPORTED) {
                    pipeline.forget(sql);
                }
                Err(err.into())
            }
            Err(_) => {
                tracing::warn!(?limit, "page read connection stuck; opening another");
                slot.abandon(&pipeline);
                Err(ReadError::TimedOut(limit))
            }
        }
    }

    async fn open(&self, slot: &Slot) -> Result<Arc<Pipeline>, ReadError> {
        let _opening = slot.opening.lock().await;
        // Another read may have opened it while this one waited.
        if let Some(pipeline) = slot.current() {
            return Ok(pipeline);
        }
        let (client, connection) = self.inner.config.connect(NoTls).await?;
        tokio::spawn(async move {
            if let Err(err) = connection.await {
                tracing::warn!(error = %err, "page read connection closed");
            }
        });
        let pipeline = Arc::new(Pipeline {
            client,
            statements: Mutex::new(HashMap::new()),
        });
        *slot.open.write().expect("not poisoned") = Some(pipeline.clone());
        Ok(pipeline)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeouts_are_unavailable() {
        assert_eq!(
            ReadError::TimedOut(Duration::from_secs(1)).failure(),
            DbFailure::Unavailable
        );
    }
}
