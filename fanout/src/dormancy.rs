//! The dormancy sweeper: every few minutes, one fanout worker (a Postgres advisory lock elects it) looks
//! for active users none of whose devices was heard of for the active window and writes a `user_dormant`
//! event for each, keyed by the user, to the events topic — the one event fanout itself writes there.
//!
//! Why an event and not an update: whether a user is dormant decides whose inboxes fan-out writes, and
//! everything that decides that must be in the log, so that a replay decides alike. The event carries the
//! last activity the sweeper saw; it is applied only while that is still the user's last activity
//! ([`crate::activity`]), so a sweep racing a return, a sweep repeated by another worker or after a
//! crash, changes nothing.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use kafkakit::{EventProducer, ProduceError};
use schemas::{Envelope, UserDormant, UserId};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::election::{every, if_elected};

/// Key of the transaction-scoped advisory lock held by the worker that sweeps ("FANLDORM").
const SWEEP_LOCK: i64 = 0x4641_4e4c_444f_524d;
/// Users looked at per query; a sweep pages through all of them.
const PAGE: i64 = 5_000;

/// Why a sweep stopped early (the next one starts over).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("broker: {0}")]
    Broker(#[from] ProduceError),
}

/// Finds dormant users and reports them to the log.
pub struct Sweeper {
    pub pool: PgPool,
    pub producer: EventProducer,
    /// Silent longer than this: dormant.
    pub window: TimeDelta,
    /// Time between sweeps.
    pub every: Duration,
}

impl Sweeper {
    /// Sweeps every `every` until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let this = &self;
        every(self.every, cancel, "dormancy sweep", || async move {
            let reported = this.sweep().await?;
            if reported > 0 {
                tracing::info!(reported, "dormant users reported");
            }
            Ok::<_, SweepError>(())
        })
        .await;
    }

    /// One sweep, if no other worker is sweeping: the `user_dormant` events written.
    pub async fn sweep(&self) -> Result<usize, SweepError> {
        let swept = if_elected(&self.pool, SWEEP_LOCK, self.sweep_elected()).await?;
        Ok(swept.unwrap_or(0))
    }

    async fn sweep_elected(&self) -> Result<usize, SweepError> {
        let mut after: Option<(DateTime<Utc>, String)> = None;
        let mut reported = 0;
        loop {
            let page: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
                "SELECT user_id, last_active_at FROM user_activity
                 WHERE active AND last_active_at < now() - make_interval(secs => $1)
                   AND ($2::timestamptz IS NULL OR (last_active_at, user_id) > ($2, $3))
                 ORDER BY last_active_at, user_id
                 LIMIT $4",
            )
            .bind(self.window.as_seconds_f64())
            .bind(after.as_ref().map(|(at, _)| *at))
            .bind(after.as_ref().map_or("", |(_, user)| user.as_str()))
            .bind(PAGE)
            .fetch_all(&self.pool)
            .await?;
            let pending: Vec<_> = page
                .iter()
                .filter_map(|(user, last_active_at)| {
                    let user = UserId::parse("user", user).ok()?;
                    let event = Envelope::user_dormant(UserDormant {
                        user,
                        last_active_at: *last_active_at,
                    });
                    Some(self.producer.enqueue(&event))
                })
                .collect();
            for event in pending {
                event.acknowledged().await?;
                reported += 1;
            }
            if (page.len() as i64) < PAGE {
                return Ok(reported);
            }
            after = page.last().map(|(user, at)| (*at, user.clone()));
        }
    }
}
