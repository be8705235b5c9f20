//! The connections page reads run on.
//!
//! sqlx's own pool pings every connection when it is returned (`sqlx-core` 0.8, `return_to_pool`): a
//! second round trip per query, there to flush whatever a query cancelled halfway left on the wire.
//! Measured with `scripts/bench.sh`, that ping cost 15% of the sync and history page rates. Here a
//! connection goes back as it is, which is safe because nothing is ever cancelled halfway: every read
//! runs to completion in its own task, whatever happens to the request that asked for it (a client that
//! goes away does not stop it), and a connection that saw any error is dropped, not reused. The pool is
//! `deadpool`'s (a well-kept generic async pool), with `recycle` doing nothing.

use std::time::Duration;

use deadpool::managed::{self, Metrics, Object, PoolError, RecycleResult, Timeouts};
use futures::future::BoxFuture;
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::Connection;

/// Opens connections with the reader's options (statement timeout included).
pub struct Connector {
    options: PgConnectOptions,
}

impl managed::Manager for Connector {
    type Type = PgConnection;
    type Error = sqlx::Error;

    async fn create(&self) -> Result<PgConnection, sqlx::Error> {
        PgConnection::connect_with(&self.options).await
    }

    async fn recycle(&self, _: &mut PgConnection, _: &Metrics) -> RecycleResult<sqlx::Error> {
        // Only connections whose every read succeeded come back (see `ReadPool::run`).
        Ok(())
    }
}

/// A pool of connections for reads that always run to completion.
#[derive(Clone)]
pub struct ReadPool {
    pool: managed::Pool<Connector>,
}

impl ReadPool {
    /// At most `size` connections, opened on demand (the reader starts while Postgres is down); waiting
    /// for one or opening one gives up after `wait`.
    pub fn new(options: PgConnectOptions, size: usize, wait: Duration) -> Self {
        let pool = managed::Pool::builder(Connector { options })
            .max_size(size.max(1))
            .timeouts(Timeouts {
                wait: Some(wait),
                create: Some(wait),
                recycle: Some(wait),
            })
            .runtime(deadpool::Runtime::Tokio1)
            .build()
            .expect("a pool with a runtime and a size builds");
        ReadPool { pool }
    }

    /// Runs `read` on a pooled connection in a task of its own, to completion. On any error the
    /// connection is closed instead of going back: its state is unknown.
    pub async fn run<T, F>(&self, read: F) -> Result<T, sqlx::Error>
    where
        T: Send + 'static,
        F: for<'c> FnOnce(&'c mut PgConnection) -> BoxFuture<'c, Result<T, sqlx::Error>>
            + Send
            + 'static,
    {
        let pool = self.pool.clone();
        let task = tokio::spawn(async move {
            let mut connection = pool.get().await.map_err(unavailable)?;
            let result = read(&mut connection).await;
            if result.is_err() {
                drop(Object::take(connection));
            }
            result
        });
        task.await.map_err(|err| {
            tracing::error!(error = %err, "database read task failed");
            sqlx::Error::WorkerCrashed
        })?
    }
}

/// Pool errors in sqlx's terms, so that the one classification ([`schemas::db::classify`]) turns them
/// into 503s.
fn unavailable(err: PoolError<sqlx::Error>) -> sqlx::Error {
    match err {
        PoolError::Backend(err) => err,
        PoolError::Closed => sqlx::Error::PoolClosed,
        PoolError::Timeout(_) | PoolError::NoRuntimeSpecified | PoolError::PostCreateHook(_) => {
            sqlx::Error::PoolTimedOut
        }
    }
}
