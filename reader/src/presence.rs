//! Presence: the reader tells fanout that a user is there, so that fan-out keeps (or starts again)
//! writing their inbox (docs/design.md "1 + M").
//!
//! A user's login, feed, sync scan, long poll, contact list, socket or event stream *arrives*: the reader
//! appends `user_active` (keyed by the user, through Kafka like every write) when the user's recorded
//! activity (`user_activity`, fanout's) is older than the throttle, and otherwise does nothing — an
//! active user costs a few events a day per reader, and one cached lookup per throttle interval, never
//! one per request. A *dormant* user's first read waits until fanout applied their return (which fills
//! their inbox in the same transaction), so that first feed page, sync scan and contact list are
//! complete; a return not applied within the wait is a `503` with `Retry-After`, never a holey answer.
//!
//! What lives here is a cache of when each user was last looked at, in this process only: losing it
//! (a restart) costs one lookup per user, nothing else.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use httpkit::ApiError;
use kafkakit::EventProducer;
use schemas::{Envelope, UserActive, UserId};
use sqlx::PgPool;

use crate::failure::database_error;

/// How often a steadily active user is reported: four times a day at most, per reader.
pub const DEFAULT_THROTTLE_SECS: u64 = 6 * 3600;
/// How long a returning user's first read waits for fanout to fill their inbox.
pub const DEFAULT_RETURN_WAIT_MS: u64 = 10_000;
/// How often a waiting read looks whether the return was applied.
const RETURN_POLL: Duration = Duration::from_millis(50);
/// Past this many cached users, the ones not looked at within the throttle are forgotten.
const PRUNE_ABOVE: usize = 100_000;

/// Reports users' activity and holds a dormant user's first read until their inbox is filled.
pub struct Presence {
    pool: PgPool,
    producer: EventProducer,
    throttle: Duration,
    return_wait: Duration,
    /// When each user was last found active (or reported), in this process.
    seen: Arc<Mutex<HashMap<String, Instant>>>,
    /// Dormant users whose return the broker acknowledged: it is in the log, and retries of their
    /// first read wait for it instead of appending another.
    returning: Mutex<HashMap<String, Instant>>,
}

/// What the database says of a user's activity.
enum Recorded {
    /// Active, and recently enough.
    Fresh,
    /// Active (or never recorded), but not reported within the throttle.
    Stale,
    Dormant,
}

impl Presence {
    pub fn new(
        pool: PgPool,
        producer: EventProducer,
        throttle: Duration,
        return_wait: Duration,
    ) -> Self {
        Presence {
            pool,
            producer,
            throttle,
            return_wait,
            seen: Arc::default(),
            returning: Mutex::default(),
        }
    }

    /// The user reads: reported if due, and held until their return is applied if they were dormant.
    pub async fn arrive(&self, user: &UserId) -> Result<(), ApiError> {
        if self.seen_recently(user) {
            return Ok(());
        }
        match self.recorded(user).await.map_err(database_error)? {
            Recorded::Fresh => {}
            Recorded::Stale => self.report(user),
            Recorded::Dormant => self.come_back(user).await?,
        }
        self.remember(user);
        Ok(())
    }

    /// The user is there but nothing is read (a login, a socket still open): reported if due, never
    /// waited for; a failure is logged, and the next arrival tries again.
    pub async fn touch(&self, user: &UserId) {
        if self.seen_recently(user) {
            return;
        }
        match self.recorded(user).await {
            Ok(Recorded::Fresh) => self.remember(user),
            Ok(Recorded::Stale) => {
                self.report(user);
                self.remember(user);
            }
            // Reported, but not remembered: the user's next read must still wait for the return.
            Ok(Recorded::Dormant) => self.report(user),
            Err(err) => tracing::warn!(error = %err, "activity not looked up"),
        }
    }

    fn return_requested(&self, user: &UserId) -> bool {
        let returning = self.returning.lock().unwrap_or_else(|e| e.into_inner());
        returning
            .get(user.as_str())
            .is_some_and(|at| at.elapsed() < self.throttle)
    }

    fn seen_recently(&self, user: &UserId) -> bool {
        let seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        seen.get(user.as_str())
            .is_some_and(|at| at.elapsed() < self.throttle)
    }

    fn remember(&self, user: &UserId) {
        let mut seen = self.seen.lock().unwrap_or_else(|e| e.into_inner());
        if seen.len() > PRUNE_ABOVE {
            seen.retain(|_, at| at.elapsed() < self.throttle);
        }
        seen.insert(user.as_str().to_owned(), Instant::now());
    }

    async fn recorded(&self, user: &UserId) -> Result<Recorded, sqlx::Error> {
        let row: Option<(bool, DateTime<Utc>)> =
            sqlx::query_as("SELECT active, last_active_at FROM user_activity WHERE user_id = $1")
                .bind(user.as_str())
                .fetch_optional(&self.pool)
                .await?;
        let throttle = chrono::TimeDelta::from_std(self.throttle).unwrap_or(chrono::TimeDelta::MAX);
        Ok(match row {
            Some((false, _)) => Recorded::Dormant,
            Some((true, last)) if Utc::now() - last < throttle => Recorded::Fresh,
            _ => Recorded::Stale,
        })
    }

    fn event(user: &UserId) -> Envelope {
        Envelope::user_active(UserActive {
            user: user.clone(),
            at: Utc::now(),
        })
    }

    /// Appends `user_active` without waiting for the broker; if it is not acknowledged, the user is
    /// looked at again on their next arrival.
    fn report(&self, user: &UserId) {
        let pending = self.producer.enqueue(&Self::event(user));
        let user = user.as_str().to_owned();
        let seen = self.seen.clone();
        tokio::spawn(async move {
            if let Err(err) = pending.acknowledged().await {
                tracing::warn!(error = %err, user, "activity not reported");
                let mut seen = seen.lock().unwrap_or_else(|e| e.into_inner());
                seen.remove(&user);
            }
        });
    }

    /// A dormant user's arrival: reported, then held until fanout applied the return (or `503`).
    async fn come_back(&self, user: &UserId) -> Result<(), ApiError> {
        if !self.return_requested(user) {
            self.producer
                .send(&Self::event(user))
                .await
                .map_err(|_| ApiError::unavailable("event log unavailable, retry"))?;
            let mut returning = self.returning.lock().unwrap_or_else(|e| e.into_inner());
            returning.retain(|_, at| at.elapsed() < self.throttle);
            returning.insert(user.as_str().to_owned(), Instant::now());
        }
        let deadline = Instant::now() + self.return_wait;
        loop {
            if !matches!(
                self.recorded(user).await.map_err(database_error)?,
                Recorded::Dormant
            ) {
                return Ok(());
            }
            if Instant::now() >= deadline {
                tracing::warn!(user = %user.as_str(), "a return was not applied in time");
                return Err(ApiError::unavailable(
                    "welcome back: your inbox is being filled, retry in a moment",
                ));
            }
            tokio::time::sleep(RETURN_POLL).await;
        }
    }
}
