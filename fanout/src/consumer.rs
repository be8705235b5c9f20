//! The live worker: a group consumer subscribed to the events topic, feeding the shared batching loop
//! ([`crate::batches`]) until shutdown.
//!
//! Delivery is at-least-once: `enable.auto.offset.store=false`, and an offset is stored only after the
//! transaction holding its effect committed. librdkafka commits stored offsets every second, on partition
//! revocation and on close. Anything applied but not yet committed is redelivered after a crash or
//! rebalance, which the idempotent writes in [`crate::store`] absorb.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::applier::Applier;
use crate::batches::{BatchLoop, Checkpoint};
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
    kafka: &kafkakit::KafkaSettings,
    context: FanoutContext,
) -> Result<FanoutConsumer, KafkaError> {
    let consumer: FanoutConsumer = kafka
        .client(
            "fanline-fanout",
            &[
                ("group.id", &config.group),
                ("enable.auto.commit", "true"),
                ("auto.commit.interval.ms", "1000"),
                ("enable.auto.offset.store", "false"),
                ("auto.offset.reset", "earliest"),
                ("enable.partition.eof", "false"),
                ("session.timeout.ms", "10000"),
                ("heartbeat.interval.ms", "1000"),
            ],
        )
        .create_with_context(context)?;
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

/// The live worker's checkpoint: store offsets for librdkafka's auto-commit; never finished.
struct StoreForAutoCommit;

impl Checkpoint<FanoutContext> for StoreForAutoCommit {
    fn applied(
        &mut self,
        consumer: &FanoutConsumer,
        next: &TopicPartitionList,
        _events: usize,
    ) -> Result<(), KafkaError> {
        if let Err(err) = consumer.store_offsets(next) {
            // The partition was revoked while the batch was applied: its new owner re-reads these
            // events from the last commit, and the idempotent writes make that harmless.
            tracing::info!(error = %err, "offsets not stored; partition no longer assigned");
        }
        Ok(())
    }
}

impl Worker {
    /// Consumes until `cancel` fires, then commits what was applied.
    pub async fn run(self, cancel: CancellationToken) {
        let batches = BatchLoop {
            consumer: &self.consumer,
            applier: &self.applier,
            max_events: self.batch_max_events,
            linger: self.batch_linger,
        };
        // The live checkpoint never fails and never finishes: this returns on shutdown.
        let _ = batches.run(&mut StoreForAutoCommit, &cancel).await;
        self.finish().await;
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
