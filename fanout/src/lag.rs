//! Consumer lag for `/metrics`: for every partition of the topic (not only this process's), the high
//! watermark minus the group's committed offset. Every fanout process reports the whole group's lag, so
//! it stays visible while partitions move between processes; aggregate with `max by (topic, partition)`.
//! `fanout lag-exporter` runs the same measurement outside the group, so lag stays visible while every
//! worker is down — which is when it matters most.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::consumer::{Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::{Offset, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::metrics::FanoutMetrics;

/// Lag of one partition as last measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionLag {
    pub partition: i32,
    pub high_watermark: i64,
    /// `None` when the group has committed nothing for the partition yet.
    pub committed: Option<i64>,
    pub lag: i64,
}

/// Measures the group's lag on `topic` once (blocking: call it off the async runtime).
pub fn measure<C, T>(
    consumer: &T,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<PartitionLag>, KafkaError>
where
    C: ConsumerContext,
    T: Consumer<C>,
{
    let partitions = kafkakit::partitions(consumer, topic, timeout)?;
    let mut tpl = TopicPartitionList::new();
    for partition in &partitions {
        tpl.add_partition(topic, *partition);
    }
    let committed = consumer.committed_offsets(tpl, timeout)?;
    let mut lags = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(topic, partition, timeout)?;
        let committed = committed
            .find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
        // With no commit yet the group starts from the earliest retained event (auto.offset.reset).
        let next = committed.unwrap_or(low).max(low);
        lags.push(PartitionLag {
            partition,
            high_watermark: high,
            committed,
            lag: (high - next).max(0),
        });
    }
    Ok(lags)
}

/// Refreshes the lag gauges every `interval` until cancelled.
pub async fn export<C, T>(
    consumer: Arc<T>,
    topic: String,
    metrics: FanoutMetrics,
    interval: Duration,
    cancel: CancellationToken,
) where
    C: ConsumerContext + 'static,
    T: Consumer<C> + Send + Sync + 'static,
{
    loop {
        let consumer_ref = consumer.clone();
        let topic_ref = topic.clone();
        let measured = tokio::task::spawn_blocking(move || {
            measure(consumer_ref.as_ref(), &topic_ref, Duration::from_secs(5))
        })
        .await;
        match measured {
            Ok(Ok(lags)) => {
                for lag in lags {
                    let partition = lag.partition.to_string();
                    let labels = [topic.as_str(), partition.as_str()];
                    metrics.consumer_lag.with_label_values(&labels).set(lag.lag);
                    metrics
                        .high_watermark
                        .with_label_values(&labels)
                        .set(lag.high_watermark);
                    if let Some(committed) = lag.committed {
                        metrics
                            .committed_offset
                            .with_label_values(&labels)
                            .set(committed);
                    }
                }
            }
            Ok(Err(err)) => tracing::warn!(error = %err, "cannot measure consumer lag"),
            Err(err) => tracing::warn!(error = %err, "lag task failed"),
        }
        tokio::select! {
            () = cancel.cancelled() => break,
            () = tokio::time::sleep(interval) => {}
        }
    }
    // This may be the last reference; dropping a consumer can block, so not on the async runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}
