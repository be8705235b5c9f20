//! The background tasks every worker runs (the sweepers, store retention): a round every so often
//! ([`every`]), done by one worker at a time — whoever takes a transaction-scoped advisory lock
//! ([`if_elected`]); the others skip that round.

use std::fmt::Display;
use std::future::Future;
use std::time::Duration;

use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Runs `round` every `interval` until `cancel`, the first at once; a failed round is logged as
/// `task`'s and the next one tries again.
pub(crate) async fn every<E, F, Fut>(
    interval: Duration,
    cancel: CancellationToken,
    task: &'static str,
    mut round: F,
) where
    E: Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut ticker = tokio::time::interval(interval);
    ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = ticker.tick() => {}
        }
        if let Err(err) = round().await {
            tracing::warn!(error = %err, task, "round failed; retrying later");
        }
    }
}

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
