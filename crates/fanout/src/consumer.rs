//! The consume loop: read a batch, dead-letter what cannot be decoded, apply the rest in one Postgres
//! transaction, and only then store the batch's offsets for the next commit.
//!
//! Delivery is at-least-once: `enable.auto.offset.store=false`, and an offset is stored only after the
//! transaction holding its effect committed. librdkafka commits stored offsets every second, on partition
//! revocation and on close. Anything applied but not yet committed is redelivered after a crash or
//! rebalance, which the idempotent writes in [`crate::store`] absorb.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::Utc;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{ClientContext, Offset, TopicPartitionList};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::dlq::{DeadLetter, DeadLetters};
use crate::metrics::FanoutMetrics;
use crate::store::{self, SourcedEvent};
use crate::Config;

/// Logs rebalances and commit failures, and remembers that the group was joined (for `/readyz`).
pub struct FanoutContext {
    pub(crate) joined: Arc<AtomicBool>,
    pub(crate) assigned: prometheus::IntGauge,
}

impl ClientContext for FanoutContext {}

impl ConsumerContext for FanoutContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // With auto-commit on, librdkafka commits the stored offsets of these partitions now.
            tracing::info!(partitions = %describe(tpl), "partitions revoked");
            self.assigned.sub(tpl.count() as i64);
            // Ready again once the group assigns partitions (possibly none) after this rebalance.
            self.joined.store(false, Ordering::Release);
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.joined.store(true, Ordering::Release);
                self.assigned.add(tpl.count() as i64);
                tracing::info!(partitions = %describe(tpl), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "offsets committed"),
            // Nothing stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                tracing::warn!(error = %err, "offset commit failed; it is retried with the next commit")
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

pub type FanoutConsumer = StreamConsumer<FanoutContext>;

/// Creates the group consumer, subscribed to the events topic.
pub fn create_consumer(
    config: &Config,
    properties: &[(String, String)],
    context: FanoutContext,
) -> Result<FanoutConsumer, KafkaError> {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", &config.brokers)
        .set("group.id", &config.group)
        .set("client.id", "fanline-fanout")
        .set("enable.auto.commit", "true")
        .set("auto.commit.interval.ms", "1000")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set("enable.partition.eof", "false")
        .set("session.timeout.ms", "10000")
        .set("heartbeat.interval.ms", "1000");
    for (key, value) in properties {
        client.set(key, value);
    }
    let consumer: FanoutConsumer = client.create_with_context(context)?;
    consumer.subscribe(&[&config.topic])?;
    Ok(consumer)
}

/// One fanout worker: owns the consumer's loop until cancelled.
pub struct Worker {
    pub(crate) consumer: Arc<FanoutConsumer>,
    pub(crate) applier: Applier,
    pub(crate) batch_max_events: usize,
    pub(crate) batch_linger: Duration,
}

/// Turns a batch of Kafka messages into effects: decodes, dead-letters what cannot be applied, applies
/// the rest with retries. Shared by the worker loop and `fanout replay`.
pub struct Applier {
    pub(crate) pool: PgPool,
    pub(crate) dead_letters: DeadLetters,
    pub(crate) metrics: FanoutMetrics,
    pub(crate) topic: String,
    pub(crate) max_backoff: Duration,
    pub(crate) policy: store::Policy,
}

/// Why a batch was not finished.
#[derive(Debug)]
pub enum Interrupted {
    Shutdown,
}

impl Worker {
    /// Consumes until `cancel` fires, then commits what was applied.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            let batch = match self.collect_batch(&cancel).await {
                Some(batch) => batch,
                None => break,
            };
            let started = Instant::now();
            match self.applier.process(&batch, &cancel).await {
                Ok(()) => {
                    self.applier.metrics.batch_size.observe(batch.len() as f64);
                    self.applier
                        .metrics
                        .batch_duration
                        .observe(started.elapsed().as_secs_f64());
                    self.store_offsets(&batch);
                }
                Err(Interrupted::Shutdown) => {
                    tracing::info!(
                        events = batch.len(),
                        "shutdown during a batch; it will be redelivered"
                    );
                    break;
                }
            }
        }
        self.finish().await;
    }

    /// Waits for a first message, then gathers more until the batch is full or the linger time passed.
    async fn collect_batch(&self, cancel: &CancellationToken) -> Option<Vec<OwnedMessage>> {
        let mut batch = Vec::new();
        let mut deadline: Option<tokio::time::Instant> = None;
        while batch.len() < self.batch_max_events {
            let linger = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return if batch.is_empty() { None } else { Some(batch) },
                () = linger => break,
                received = self.consumer.recv() => match received {
                    Ok(message) => {
                        batch.push(message.detach());
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.batch_linger);
                    }
                    Err(err) => {
                        // Transport errors are retried by librdkafka; keep polling, without spinning.
                        tracing::warn!(error = %err, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                    }
                },
            }
        }
        Some(batch)
    }

    /// Stores next-to-read offsets (last processed + 1) for the batch's partitions.
    fn store_offsets(&self, batch: &[OwnedMessage]) {
        let mut next: BTreeMap<i32, i64> = BTreeMap::new();
        for message in batch {
            let entry = next.entry(message.partition()).or_insert(0);
            *entry = (*entry).max(message.offset() + 1);
        }
        let mut tpl = TopicPartitionList::new();
        for (partition, offset) in next {
            if tpl
                .add_partition_offset(&self.applier.topic, partition, Offset::Offset(offset))
                .is_err()
            {
                continue;
            }
        }
        if let Err(err) = self.consumer.store_offsets(&tpl) {
            // The partition was revoked while the batch was applied: its new owner re-reads these
            // events from the last commit, and the idempotent writes make that harmless.
            tracing::info!(error = %err, "offsets not stored; partition no longer assigned");
        }
    }

    /// Commits what was applied and closes the consumer off the async runtime.
    async fn finish(self) {
        let consumer = self.consumer.clone();
        let committed =
            tokio::task::spawn_blocking(move || consumer.commit_consumer_state(CommitMode::Sync))
                .await;
        match committed {
            Ok(Ok(())) | Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {
                tracing::info!("offsets committed on shutdown")
            }
            Ok(Err(err)) => {
                tracing::warn!(error = %err, "final commit failed; uncommitted events will be redelivered")
            }
            Err(err) => tracing::warn!(error = %err, "final commit task failed"),
        }
        self.applier.dead_letters.flush().await;
        let consumer = self.consumer;
        // Dropping a consumer can block while it leaves the group; keep that off the async runtime.
        let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    }
}

impl Applier {
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
                                    "rejected_by_database",
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
    ) -> Result<Result<store::ApplyOutcome, sqlx::Error>, Interrupted> {
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
                        () = cancel.cancelled() => return Err(Interrupted::Shutdown),
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
                        () = cancel.cancelled() => return Err(Interrupted::Shutdown),
                        () = tokio::time::sleep(backoff.next()) => {}
                    }
                }
            }
        }
    }

    fn record(&self, events: &[SourcedEvent], outcome: store::ApplyOutcome) {
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
