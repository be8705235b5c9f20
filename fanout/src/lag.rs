//! Consumer lag for `/metrics`: for every partition of the topic (not only this process's), the high
//! watermark minus the group's committed offset. Every fanout process reports the whole group's lag, so
//! it stays visible while partitions move between processes; aggregate with `max by (topic, partition)`.
//! `fanout lag-exporter` runs the same measurement outside the group, so lag stays visible while every
//! worker is down — which is when it matters most.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

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

/// What a worker knows about its group between lag measurements: per partition, whether it is behind
/// and whether it is getting anywhere. A member is stuck when partitions owned by other members lag
/// without progress for a while, while its own partitions are healthy (caught up or progressing): the
/// other owner is gone but still assigned. Apache Kafka reassigns a dead member's partitions when its
/// session expires; tansu 0.6 can leave a new member empty (or keep assigning to a dead one). A member
/// that owns nothing in that state does not report ready, and its watchdog rejoins
/// ([`crate::consumer`]). A member whose own partitions stall too (Postgres down) is not stuck; an idle
/// member is, but its rejoins back off while they do not help.
#[derive(Debug, Default)]
pub struct GroupHealth {
    partitions: Mutex<BTreeMap<i32, PartitionHealth>>,
}

#[derive(Debug, Default, Clone, Copy)]
struct PartitionHealth {
    /// Whether the partition was measured before (a first sighting shows no progress either way).
    seen: bool,
    lag: i64,
    committed: Option<i64>,
    /// Since when the partition has lagged without committed progress.
    stalled_since: Option<Instant>,
}

impl GroupHealth {
    /// Records one measurement of the whole group.
    pub fn observe(&self, lags: &[PartitionLag], now: Instant) {
        let mut partitions = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        for lag in lags {
            let health = partitions.entry(lag.partition).or_default();
            // A partition seen for the first time has shown no progress yet; a first commit is progress.
            let progressed = health.seen && lag.committed > health.committed;
            health.stalled_since = match (lag.lag > 0, progressed, health.stalled_since) {
                (false, _, _) | (true, true, _) => None,
                (true, false, Some(since)) => Some(since),
                (true, false, None) => Some(now),
            };
            health.seen = true;
            health.lag = lag.lag;
            health.committed = lag.committed;
        }
    }

    /// `Some(events behind on other members' partitions)` when those have stalled for at least
    /// `grace` while every partition in `owned` is caught up or progressing.
    pub fn stuck(&self, owned: &BTreeSet<i32>, grace: Duration, now: Instant) -> Option<i64> {
        let partitions = self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let stalled = |h: &PartitionHealth| {
            h.stalled_since
                .is_some_and(|since| now.duration_since(since) >= grace)
        };
        let mut behind = 0;
        for (partition, health) in partitions.iter() {
            if owned.contains(partition) {
                if stalled(health) {
                    return None;
                }
            } else if stalled(health) {
                behind += health.lag;
            }
        }
        (behind > 0).then_some(behind)
    }

    /// Forgets the stalls (after a rejoin, the new member gets its own grace).
    pub fn reset(&self) {
        for health in self
            .partitions
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .values_mut()
        {
            health.stalled_since = None;
        }
    }
}

/// Refreshes the lag gauges (and `health`, when given) every `interval` until cancelled.
pub async fn export<C, T>(
    consumer: Arc<T>,
    topic: String,
    metrics: FanoutMetrics,
    health: Option<Arc<GroupHealth>>,
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
                if let Some(health) = &health {
                    health.observe(&lags, Instant::now());
                }
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
            Ok(Err(err)) => {
                // Unknown is not stalled: no rejoin or readiness verdict on stale measurements.
                if let Some(health) = &health {
                    health.reset();
                }
                tracing::warn!(error = %err, "cannot measure consumer lag")
            }
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

#[cfg(test)]
mod tests {
    use super::*;

    fn measured(partitions: &[(i32, i64, i64)]) -> Vec<PartitionLag> {
        partitions
            .iter()
            .map(|&(partition, lag, committed)| PartitionLag {
                partition,
                high_watermark: committed + lag,
                committed: Some(committed),
                lag,
            })
            .collect()
    }

    #[test]
    fn a_member_is_stuck_only_when_others_stall_and_its_own_partitions_do_not() {
        let health = GroupHealth::default();
        let t0 = Instant::now();
        let grace = Duration::from_secs(15);
        let at = |s| t0 + Duration::from_secs(s);
        let none = BTreeSet::new();
        let mine = BTreeSet::from([1]);
        // Partition 0 (another member's) lags without progress; partition 1 (mine) is caught up.
        health.observe(&measured(&[(0, 100, 10), (1, 0, 50)]), at(0));
        assert_eq!(health.stuck(&none, grace, at(10)), None, "within the grace");
        assert_eq!(health.stuck(&none, grace, at(15)), Some(100));
        assert_eq!(
            health.stuck(&mine, grace, at(15)),
            Some(100),
            "mine are fine"
        );
        assert_eq!(
            health.stuck(&BTreeSet::from([0]), grace, at(15)),
            None,
            "owns the stall"
        );
        // The other member commits progress: nobody is stuck.
        health.observe(&measured(&[(0, 90, 20), (1, 0, 50)]), at(16));
        assert_eq!(health.stuck(&none, grace, at(30)), None);
        // Everything stalls (Postgres down): rejoining would not help.
        health.observe(&measured(&[(0, 90, 20), (1, 5, 50)]), at(31));
        health.observe(&measured(&[(0, 90, 20), (1, 5, 50)]), at(32));
        assert_eq!(health.stuck(&mine, grace, at(50)), None);
        assert_eq!(
            health.stuck(&none, grace, at(50)),
            Some(95),
            "an idle member still rejoins"
        );
        health.reset();
        assert_eq!(
            health.stuck(&none, grace, at(50)),
            None,
            "a rejoin gets its own grace"
        );
    }
}
