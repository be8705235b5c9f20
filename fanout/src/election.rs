//! One worker at a time for the background tasks every worker runs (the sweepers, store retention):
//! whoever takes a transaction-scoped advisory lock does the work; the others skip this round.

use std::future::Future;

use sqlx::PgPool;

/// Runs `work` if this worker takes the advisory lock `key` (`None`: another worker holds it). The
/// lock is transaction-scoped: released by the rollback after the work, or by Postgres when the
/// connection goes away — never left behind on a pooled connection.
pub(crate) async fn if_elected<T, E, F>(pool: &PgPool, key: i64, work: F) -> Result<Option<T>, E>
where
    E: From<sqlx::Error>,
    F: Future<Output = Result<T, E>>,
{
    let mut election = pool.begin().await?;
    let (elected,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_xact_lock($1)")
        .bind(key)
        .fetch_one(&mut *election)
        .await?;
    if !elected {
        return Ok(None);
    }
    let done = work.await;
    election.rollback().await?;
    done.map(Some)
}
