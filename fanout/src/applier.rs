//! Turns a batch of Kafka messages into effects: decode, dead-letter what cannot be applied, apply the
//! rest in one Postgres transaction with retries. The live worker and `fanout replay` both feed their
//! batches through one [`Applier`] (see [`crate::batches`]).

use std::time::Duration;

use chrono::Utc;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use secrecy::ExposeSecret;
use sqlx::postgres::PgPoolOptions;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::config::Config;
use crate::dlq::{DeadLetter, DeadLetters};
use crate::error::BuildError;
use crate::metrics::FanoutMetrics;
use crate::outcome::{ApplyOutcome, Refusal};
use crate::policy::Policy;
use crate::sourced::SourcedEvent;
use crate::store;

/// Turns a batch of Kafka messages into effects: decodes, dead-letters what cannot be applied, applies
/// the rest with retries. Shared by the worker loop and `fanout replay`.
pub struct Applier {
    pool: PgPool,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) metrics: FanoutMetrics,
    pub(crate) topic: String,
    max_backoff: Duration,
    policy: Policy,
}

/// Why a batch was not finished: shutdown came while it waited for Postgres or the dead-letter topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Interrupted;

impl Applier {
    /// The applier for `config`'s database, topic and policy. The pool is lazy: a worker started while
    /// Postgres is down keeps retrying instead of exiting.
    pub fn new(
        config: &Config,
        kafka: &kafkakit::KafkaSettings,
        metrics: FanoutMetrics,
    ) -> Result<Applier, BuildError> {
        let policy = config.policy().map_err(BuildError::Config)?;
        let pool = PgPoolOptions::new()
            .max_connections(config.db_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_lazy(config.database_url.expose_secret())?;
        Ok(Applier {
            pool,
            dead_letters: DeadLetters::new(kafka, &config.dlq_topic)?,
            metrics,
            topic: config.topic.clone(),
            max_backoff: config.max_backoff(),
            policy,
        })
    }

    /// The database pool the applier writes through (readiness checks use it too).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Applies one batch; `Err` only when shutdown interrupted it (nothing of it may be committed).
    pub async fn process(
        &self,
        batch: &[OwnedMessage],
        cancel: &CancellationToken,
    ) -> Result<(), Interrupted> {
        let mut events = Vec::with_capacity(batch.len());
        for message in batch {
            match schemas::events::decode(message.payload().unwrap_or_default()) {
                Ok(envelope) => events.push(SourcedEvent {
                    partition: message.partition(),
                    offset: message.offset(),
                    envelope,
                }),
                Err(err) => {
                    self.dead_letter(message, err.reason(), err.to_string(), cancel)
                        .await?;
                }
            }
        }
        if events.is_empty() {
            return Ok(());
        }
        match self.apply_with_retry(&events, cancel).await? {
            Ok(outcome) => self.record(&events, outcome),
            Err(err) => {
                // The batch holds an event Postgres refuses (a data or constraint error). Apply one by one
                // so that only the refused events are dead-lettered.
                tracing::warn!(error = %err, "batch refused by the database; applying events one by one");
                for event in &events {
                    match self
                        .apply_with_retry(std::slice::from_ref(event), cancel)
                        .await?
                    {
                        Ok(outcome) => self.record(std::slice::from_ref(event), outcome),
                        Err(err) => {
                            let message = batch.iter().find(|m| {
                                m.partition() == event.partition && m.offset() == event.offset
                            });
                            if let Some(message) = message {
                                self.dead_letter(
                                    message,
                                    schemas::events::dead_letter_headers::REJECTED_BY_DATABASE,
                                    err.to_string(),
                                    cancel,
                                )
                                .await?;
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Applies events, retrying transient failures with capped exponential backoff until they succeed
    /// or shutdown. The inner `Err` is a permanent (data) error.
    async fn apply_with_retry(
        &self,
        events: &[SourcedEvent],
        cancel: &CancellationToken,
    ) -> Result<Result<ApplyOutcome, sqlx::Error>, Interrupted> {
        let mut backoff = Backoff::new(self.max_backoff);
        loop {
            match store::apply_batch(&self.pool, &self.policy, events).await {
                Ok(outcome) => return Ok(Ok(outcome)),
                Err(err) if store::is_transient(&err) => {
                    self.metrics.apply_retries.inc();
                    let pause = backoff.next();
                    tracing::warn!(error = %err, retry_in_ms = pause.as_millis() as u64,
                        "cannot apply batch; offsets stay uncommitted until it succeeds");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(Interrupted),
                        () = tokio::time::sleep(pause) => {}
                    }
                }
                Err(err) => return Ok(Err(err)),
            }
        }
    }

    async fn dead_letter(
        &self,
        message: &OwnedMessage,
        reason: &'static str,
        error: String,
        cancel: &CancellationToken,
    ) -> Result<(), Interrupted> {
        tracing::warn!(partition = message.partition(), offset = message.offset(), reason, %error,
            "dead-lettering event");
        let letter = DeadLetter {
            key: message.key(),
            payload: message.payload(),
            source_topic: &self.topic,
            partition: message.partition(),
            offset: message.offset(),
            reason,
            error,
        };
        let mut letter = letter;
        let mut backoff = Backoff::new(self.max_backoff);
        // Moving past a poison event without its copy in the dead-letter topic would lose it.
        loop {
            match self.dead_letters.send(&letter).await {
                Err(KafkaError::MessageProduction(
                    RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize,
                )) if letter.payload.is_some() => {
                    // The copy plus headers exceeds the broker's limit: keep the headers, which say
                    // where the original stays readable in the source topic.
                    tracing::warn!(
                        "dead letter too large; sending its headers without the payload"
                    );
                    letter.payload = None;
                    letter
                        .error
                        .push_str(" (payload omitted: too large for the dead-letter topic)");
                }
                Ok(()) => {
                    self.metrics
                        .dead_lettered
                        .with_label_values(&[reason])
                        .inc();
                    return Ok(());
                }
                Err(err) => {
                    self.metrics.apply_retries.inc();
                    tracing::warn!(error = %err, "cannot write to the dead-letter topic; retrying");
                    tokio::select! {
                        () = cancel.cancelled() => return Err(Interrupted),
                        () = tokio::time::sleep(backoff.next()) => {}
                    }
                }
            }
        }
    }

    fn record(&self, events: &[SourcedEvent], outcome: ApplyOutcome) {
        let now = Utc::now();
        for event in events {
            let lateness = (now - event.envelope.ts).to_std().unwrap_or_default();
            self.metrics.end_to_end.observe(lateness.as_secs_f64());
        }
        let count = |kind: &str| {
            events
                .iter()
                .filter(|e| e.envelope.event_type() == kind)
                .count() as u64
        };
        let applied = &self.metrics.events_applied;
        applied
            .with_label_values(&["post_created", "new"])
            .inc_by(outcome.posts_created);
        applied
            .with_label_values(&["post_created", "duplicate"])
            .inc_by(outcome.posts_duplicate);
        let follows = count("followed") + count("unfollowed");
        applied
            .with_label_values(&["follow_change", "new"])
            .inc_by(outcome.follow_changes_applied);
        applied
            .with_label_values(&["follow_change", "duplicate"])
            .inc_by(follows.saturating_sub(outcome.follow_changes_applied));
        let deletes = count("post_deleted");
        applied
            .with_label_values(&["post_deleted", "new"])
            .inc_by(outcome.posts_deleted);
        applied
            .with_label_values(&["post_deleted", "duplicate"])
            .inc_by(deletes.saturating_sub(outcome.posts_deleted));
        let entries = &self.metrics.sync_entries;
        entries
            .with_label_values(&["push"])
            .inc_by(outcome.sync_entries_pushed);
        entries
            .with_label_values(&["own"])
            .inc_by(outcome.sync_entries_own);
        entries
            .with_label_values(&["backfill"])
            .inc_by(outcome.sync_entries_backfilled);
        self.metrics
            .sync_entries_removed
            .inc_by(outcome.sync_entries_removed);
        self.metrics.posts_pulled.inc_by(outcome.posts_pulled);
        self.metrics.mode_changes.inc_by(outcome.mode_changes);
        let im = outcome.im;
        applied.with_label_values(&["im", "new"]).inc_by(im.applied);
        applied
            .with_label_values(&["im", "duplicate"])
            .inc_by(im.duplicate);
        applied
            .with_label_values(&["im", "refused"])
            .inc_by(im.refused.iter().sum());
        entries
            .with_label_values(&["message"])
            .inc_by(im.sync_entries);
        for (reason, count) in Refusal::ALL.iter().zip(im.refused) {
            self.metrics
                .im_refused
                .with_label_values(&[reason.label()])
                .inc_by(count);
        }
    }
}

/// Capped exponential backoff with jitter, so that many workers do not retry in lockstep.
struct Backoff {
    current: Duration,
    max: Duration,
}

impl Backoff {
    fn new(max: Duration) -> Self {
        Backoff {
            current: Duration::from_millis(100).min(max),
            max,
        }
    }

    fn next(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = rand::random::<f64>() * 0.5 + 0.75;
        base.mul_f64(jitter).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_stays_capped() {
        let mut backoff = Backoff::new(Duration::from_secs(1));
        let pauses: Vec<Duration> = (0..10).map(|_| backoff.next()).collect();
        assert!(pauses[0] <= Duration::from_millis(125));
        assert!(pauses[3] >= Duration::from_millis(600));
        assert!(pauses.iter().all(|p| *p <= Duration::from_secs(1)));
    }
}
