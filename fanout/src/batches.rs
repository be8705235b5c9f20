//! The one batching loop behind the live worker and `fanout replay`: wait for a first record, gather
//! more until the batch is full or the linger time passed, apply the batch through the [`Applier`], then
//! checkpoint its offsets — only after the transaction holding its effects committed.
//!
//! What differs between the two is the [`Checkpoint`]: the live worker stores offsets for librdkafka's
//! auto-commit and never finishes; a replay admits only records below the end offsets it captured,
//! commits every batch synchronously and finishes when every partition reached its end.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use rdkafka::consumer::{ConsumerContext, StreamConsumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{Message, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::applier::{Applier, Interrupted};

/// How a run of the loop records progress and knows it is done.
pub(crate) trait Checkpoint<C: ConsumerContext + 'static> {
    /// Whether a record belongs to this run; a record that does not ends its partition.
    fn admits(&self, _partition: i32, _offset: i64) -> bool {
        true
    }

    /// The batch's effects are committed in Postgres; `next` holds next-to-read offsets (last
    /// applied + 1) of the batch's partitions. An error stops the loop.
    fn applied(
        &mut self,
        consumer: &StreamConsumer<C>,
        next: &TopicPartitionList,
        events: usize,
    ) -> Result<(), KafkaError>;

    /// A partition was read to its end (end of partition, or a record this run does not admit).
    fn partition_ended(&mut self, _partition: i32) {}

    /// Whether the run is complete.
    fn finished(&self) -> bool {
        false
    }

    /// Whether a consumer error ends the run; the others are transient (librdkafka retries them).
    fn is_fatal(&self, _err: &KafkaError) -> bool {
        false
    }
}

/// Why the loop stopped without an error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stopped {
    /// The checkpoint said the run is complete.
    Finished,
    /// Shutdown was requested; everything applied was checkpointed, a batch interrupted while it
    /// waited for Postgres was not (it is read again by whoever owns its partition next).
    Shutdown,
}

pub(crate) struct BatchLoop<'a, C: ConsumerContext + 'static> {
    pub(crate) consumer: &'a StreamConsumer<C>,
    pub(crate) applier: &'a Applier,
    pub(crate) max_events: usize,
    pub(crate) linger: Duration,
}

/// One gathered batch, and the partitions found at their end meanwhile.
struct Gathered {
    batch: Vec<OwnedMessage>,
    ended: Vec<i32>,
}

impl<C: ConsumerContext + 'static> BatchLoop<'_, C> {
    /// Runs batches until the checkpoint is finished or `cancel` fires.
    pub(crate) async fn run(
        &self,
        checkpoint: &mut impl Checkpoint<C>,
        cancel: &CancellationToken,
    ) -> Result<Stopped, KafkaError> {
        while !checkpoint.finished() {
            let Gathered { batch, ended } = self.gather(&*checkpoint, cancel).await?;
            if !batch.is_empty() {
                let started = Instant::now();
                if let Err(Interrupted) = self.applier.process(&batch, cancel).await {
                    tracing::info!(
                        events = batch.len(),
                        "shutdown during a batch; it will be read again"
                    );
                    return Ok(Stopped::Shutdown);
                }
                let metrics = &self.applier.metrics;
                metrics.batch_size.observe(batch.len() as f64);
                metrics
                    .batch_duration
                    .observe(started.elapsed().as_secs_f64());
                checkpoint.applied(
                    self.consumer,
                    &next_offsets(&self.applier.topic, &batch),
                    batch.len(),
                )?;
            }
            // Only after the batch was checkpointed: its own records may precede a partition's end.
            for partition in ended {
                checkpoint.partition_ended(partition);
            }
            if cancel.is_cancelled() {
                return Ok(Stopped::Shutdown);
            }
        }
        Ok(Stopped::Finished)
    }

    /// Waits for a first admitted record, then gathers more until the batch is full or the linger
    /// time passed. Returns early, possibly empty, on shutdown or when a partition ended before the
    /// batch had a record (so that a finished run is noticed); fails on an error the checkpoint calls
    /// fatal (nothing of the batch is applied then).
    async fn gather(
        &self,
        checkpoint: &impl Checkpoint<C>,
        cancel: &CancellationToken,
    ) -> Result<Gathered, KafkaError> {
        let mut gathered = Gathered {
            batch: Vec::new(),
            ended: Vec::new(),
        };
        let mut deadline: Option<tokio::time::Instant> = None;
        while gathered.batch.len() < self.max_events.max(1) {
            let linger = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at).await,
                    None => std::future::pending().await,
                }
            };
            let ended = tokio::select! {
                biased;
                () = cancel.cancelled() => break,
                () = linger => break,
                received = self.consumer.recv() => match received {
                    Ok(message) if checkpoint.admits(message.partition(), message.offset()) => {
                        gathered.batch.push(message.detach());
                        deadline.get_or_insert_with(|| tokio::time::Instant::now() + self.linger);
                        None
                    }
                    Ok(message) => Some(message.partition()),
                    Err(KafkaError::PartitionEOF(partition)) => Some(partition),
                    Err(err) if checkpoint.is_fatal(&err) => return Err(err),
                    Err(err) => {
                        // Transport errors are retried by librdkafka; keep polling, without spinning.
                        tracing::warn!(error = %err, "consumer error");
                        tokio::time::sleep(Duration::from_millis(100)).await;
                        None
                    }
                },
            };
            if let Some(partition) = ended {
                gathered.ended.push(partition);
                if gathered.batch.is_empty() {
                    break;
                }
            }
        }
        Ok(gathered)
    }
}

/// Next-to-read offsets (last record + 1) per partition of a batch.
pub(crate) fn next_offsets(topic: &str, batch: &[OwnedMessage]) -> TopicPartitionList {
    let mut next: BTreeMap<i32, i64> = BTreeMap::new();
    for message in batch {
        let entry = next.entry(message.partition()).or_insert(0);
        *entry = (*entry).max(message.offset() + 1);
    }
    let mut tpl = TopicPartitionList::new();
    for (partition, offset) in next {
        // Fails only for an invalid offset type, which Offset::Offset is not.
        let _ = tpl.add_partition_offset(topic, partition, Offset::Offset(offset));
    }
    tpl
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::Timestamp;

    fn message(partition: i32, offset: i64) -> OwnedMessage {
        OwnedMessage::new(
            None,
            None,
            "t".into(),
            Timestamp::NotAvailable,
            partition,
            offset,
            None,
        )
    }

    #[test]
    fn next_offsets_are_one_past_the_highest_record_per_partition() {
        let batch = [message(1, 7), message(0, 3), message(1, 9), message(1, 8)];
        let tpl = next_offsets("t", &batch);
        let offsets: Vec<(i32, Offset)> = tpl
            .elements()
            .iter()
            .map(|e| (e.partition(), e.offset()))
            .collect();
        assert_eq!(
            offsets,
            vec![(0, Offset::Offset(4)), (1, Offset::Offset(10))]
        );
    }
}
