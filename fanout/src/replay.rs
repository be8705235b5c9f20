//! `fanout replay`: rewinds a consumer group and reprocesses the topic up to the end offsets captured
//! when the replay started.
//!
//! Starting points: the beginning, explicit partition offsets, or a timestamp. For a timestamp the broker
//! is asked first (ListOffsets by time); its answer is checked against the records' own timestamps, and
//! when it is wrong (some Kafka-compatible brokers answer wrongly), the offset is found by a binary search
//! over the records' timestamps instead. The summary says which way each partition's offset was found.
//!
//! Replaying into the live database changes nothing (every write is idempotent). Replaying into an empty
//! database (a fresh `--database-url`, with its own `--replay-group`) rebuilds every timeline.
//!
//! Batches go through the same loop and [`Applier`] as the live worker ([`crate::batches`]); only the
//! checkpoint differs. Before the first batch the replay commits its start offsets for every partition,
//! and after every batch the offsets it applied, so the group's commits always say where it is:
//! `--resume` ([`StartAt::Committed`]) continues an interrupted replay from them.

use std::collections::BTreeMap;
use std::fmt;
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{
    BaseConsumer, CommitMode, Consumer, DefaultConsumerContext, StreamConsumer,
};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use secrecy::ExposeSecret;
use tokio_util::sync::CancellationToken;

use crate::applier::Applier;
use crate::batches::{BatchLoop, Checkpoint, Stopped};
use crate::config::Config;
use crate::error::BuildError;
use crate::replay_args::ReplayArgs;
pub use crate::replay_args::StartAt;
use crate::setup;

/// How a partition's start offset was found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetSource {
    Beginning,
    Explicit,
    /// The broker's ListOffsets-by-timestamp answer, verified against the records.
    BrokerTimestampIndex,
    /// A binary search over the records' timestamps (the broker's answer was wrong or missing).
    RecordSearch,
    /// The group's committed offset (`--resume`).
    Committed,
    /// The group had not applied the partition up to the requested start: the replay starts at the
    /// group's committed offset instead, so that moving the group's commits never skips unapplied events.
    GroupBehind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRange {
    pub partition: i32,
    pub start: i64,
    pub end: i64,
    pub source: OffsetSource,
}

#[derive(Debug, Clone, PartialEq)]
pub struct ReplaySummary {
    pub group: String,
    pub ranges: Vec<PartitionRange>,
    pub events: u64,
    pub seconds: f64,
}

impl fmt::Display for ReplaySummary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for range in &self.ranges {
            writeln!(
                f,
                "partition {:>3}: offsets {}..{} ({:?})",
                range.partition, range.start, range.end, range.source
            )?;
        }
        writeln!(
            f,
            "replayed {} events for group {} in {:.1} s ({:.0} events/s)",
            self.events,
            self.group,
            self.seconds,
            self.events_per_second()
        )
    }
}

impl ReplaySummary {
    pub fn events_per_second(&self) -> f64 {
        if self.seconds > 0.0 {
            self.events as f64 / self.seconds
        } else {
            0.0
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    #[error(
        "consumer group {group} has {members} live member(s): stop its fanout workers first, or replay \
         with a separate group (--replay-group)"
    )]
    LiveMembers { group: String, members: usize },
    #[error(
        "cannot tell whether consumer group {group} has live members (the broker did not answer \
         DescribeGroups: {reason}); stop its fanout workers and pass --assume-no-live-members, or replay \
         with a separate group (--replay-group)"
    )]
    CannotCheckMembers { group: String, reason: String },
    #[error("{0}")]
    InvalidStart(String),
    #[error(
        "consumer group {group} has no committed offsets: there is no replay to resume; start one \
         with --from-beginning, --from-timestamp or --from-offsets"
    )]
    NothingToResume { group: String },
    #[error("Kafka: {0}")]
    Kafka(#[from] KafkaError),
    #[error(transparent)]
    Build(#[from] BuildError),
    #[error("interrupted; the offsets of what was applied are committed: finish with --resume")]
    Interrupted,
}

const TIMEOUT: Duration = Duration::from_secs(10);

fn client(config: &Config, group: &str) -> Result<ClientConfig, ReplayError> {
    let kafka = config
        .kafka()
        .map_err(|err| ReplayError::InvalidStart(err.to_string()))?;
    Ok(kafka.client(
        "fanline-replay",
        &[
            ("group.id", group),
            ("enable.auto.commit", "false"),
            ("enable.auto.offset.store", "false"),
            // EOF marks a partition done even when its last offsets hold no record (transaction
            // markers, compaction); never jump silently when the start offset was deleted meanwhile.
            ("enable.partition.eof", "true"),
            ("auto.offset.reset", "error"),
        ],
    ))
}

/// Timestamp (ms) of the record at `offset`, read with a throwaway assignment.
fn record_timestamp(
    probe: &BaseConsumer,
    topic: &str,
    partition: i32,
    offset: i64,
) -> Result<i64, ReplayError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))?;
    probe.assign(&tpl)?;
    let deadline = Instant::now() + TIMEOUT;
    while Instant::now() < deadline {
        match probe.poll(Duration::from_millis(200)) {
            Some(Ok(message)) if message.partition() == partition && message.offset() >= offset => {
                return Ok(message.timestamp().to_millis().unwrap_or(0));
            }
            // Transport errors (a broker that dropped the connection) are retried by librdkafka
            // within the deadline; the deadline decides.
            Some(Err(err)) => tracing::debug!(error = %err, partition, offset, "probe read failed"),
            _ => {}
        }
    }
    Err(ReplayError::InvalidStart(format!(
        "could not read partition {partition} at offset {offset}"
    )))
}

/// The first offset in `[low, high)` whose record timestamp is at or after `at_ms` (`high` if none).
fn search_by_records(
    probe: &BaseConsumer,
    topic: &str,
    partition: i32,
    at_ms: i64,
    low: i64,
    high: i64,
) -> Result<i64, ReplayError> {
    // Producers stamp records in append order per partition, closely enough for a binary search.
    let (mut lo, mut hi) = (low, high);
    while lo < hi {
        let mid = lo + (hi - lo) / 2;
        if record_timestamp(probe, topic, partition, mid)? < at_ms {
            lo = mid + 1;
        } else {
            hi = mid;
        }
    }
    Ok(lo)
}

/// Start offsets per partition, blocking (run it off the async runtime).
fn plan(
    config: &Config,
    group: &str,
    start: &StartAt,
    assume_no_live_members: bool,
) -> Result<Vec<PartitionRange>, ReplayError> {
    let probe: BaseConsumer = client(config, group)?.create()?;
    ensure_no_live_members(&probe, group, assume_no_live_members)?;
    let topic = config.topic.as_str();
    let partitions = kafkakit::partitions(&probe, topic, TIMEOUT)?;
    if partitions.is_empty() {
        return Err(ReplayError::InvalidStart(format!(
            "topic {topic} has no partitions"
        )));
    }
    let group_commits = committed_offsets(&probe, topic, &partitions)?;
    let listed = listed_offsets(start, topic, &partitions, &group_commits, group)?;
    let mut ranges = Vec::with_capacity(partitions.len());
    for partition in partitions {
        let (low, high) = probe.fetch_watermarks(topic, partition, TIMEOUT)?;
        let retained = Retained {
            partition,
            low,
            high,
        };
        let listed = listed.get(&partition).copied();
        let (start, source) = match start {
            StartAt::Beginning => (low, OffsetSource::Beginning),
            StartAt::Committed => listed_start(
                retained,
                listed,
                "the committed offset",
                OffsetSource::Committed,
            )?,
            StartAt::Offsets(_) => {
                listed_start(retained, listed, "offset", OffsetSource::Explicit)?
            }
            StartAt::Timestamp(at) => offset_for_time(&probe, topic, retained, *at, true)?,
            StartAt::TimestampByRecords(at) => {
                offset_for_time(&probe, topic, retained, *at, false)?
            }
        };
        let (start, source) = not_past_the_group(
            retained,
            start,
            source,
            group_commits.get(&partition).copied(),
        );
        ranges.push(PartitionRange {
            partition,
            start,
            end: high,
            source,
        });
    }
    Ok(ranges)
}

/// A partition's retained offsets: `low` up to `high`, the offset the next event will get.
#[derive(Debug, Clone, Copy)]
struct Retained {
    partition: i32,
    low: i64,
    high: i64,
}

/// Rewinding a group under live members would race them for the same partitions: refuses unless the
/// broker says the group has none, or the operator asserts it where the broker cannot tell.
fn ensure_no_live_members(
    probe: &BaseConsumer,
    group: &str,
    assume_no_live_members: bool,
) -> Result<(), ReplayError> {
    match probe.fetch_group_list(Some(group), TIMEOUT) {
        Ok(groups) => match groups.groups().iter().find(|g| g.name() == group) {
            Some(found) if !found.members().is_empty() => Err(ReplayError::LiveMembers {
                group: group.to_owned(),
                members: found.members().len(),
            }),
            _ => Ok(()),
        },
        Err(err) if !assume_no_live_members => Err(ReplayError::CannotCheckMembers {
            group: group.to_owned(),
            reason: err.to_string(),
        }),
        Err(err) => {
            tracing::warn!(error = %err, "cannot list group members; trusting --assume-no-live-members");
            Ok(())
        }
    }
}

/// The group's committed offsets, for the partitions that have one.
fn committed_offsets(
    probe: &BaseConsumer,
    topic: &str,
    partitions: &[i32],
) -> Result<BTreeMap<i32, i64>, ReplayError> {
    let mut tpl = TopicPartitionList::new();
    for partition in partitions {
        tpl.add_partition(topic, *partition);
    }
    Ok(probe
        .committed_offsets(tpl, TIMEOUT)?
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some((e.partition(), offset)),
            _ => None,
        })
        .collect())
}

/// The start offsets a start point lists per partition: the explicit ones (every partition named must
/// exist), or the group's commits for `--resume` (there must be some); none for the other start points.
fn listed_offsets(
    start: &StartAt,
    topic: &str,
    partitions: &[i32],
    group_commits: &BTreeMap<i32, i64>,
    group: &str,
) -> Result<BTreeMap<i32, i64>, ReplayError> {
    match start {
        StartAt::Offsets(pairs) => {
            if let Some((partition, _)) = pairs.iter().find(|(p, _)| !partitions.contains(p)) {
                return Err(ReplayError::InvalidStart(format!(
                    "partition {partition} does not exist in {topic}"
                )));
            }
            Ok(pairs.iter().copied().collect())
        }
        StartAt::Committed if group_commits.is_empty() => Err(ReplayError::NothingToResume {
            group: group.to_owned(),
        }),
        // Partitions without a commit (none of their batches applied yet, or added to the topic since)
        // start at their end: nothing of them to resume.
        StartAt::Committed => Ok(group_commits.clone()),
        _ => Ok(BTreeMap::new()),
    }
}

/// A listed start offset (`what`, for the error) if it is retained; a partition not listed starts at
/// its end (nothing replayed).
fn listed_start(
    retained: Retained,
    listed: Option<i64>,
    what: &str,
    source: OffsetSource,
) -> Result<(i64, OffsetSource), ReplayError> {
    let Retained {
        partition,
        low,
        high,
    } = retained;
    match listed {
        Some(offset) if offset < low || offset > high => Err(ReplayError::InvalidStart(format!(
            "{what} {offset} of partition {partition} is outside the retained range {low}..{high}"
        ))),
        Some(offset) => Ok((offset, source)),
        None => Ok((high, source)),
    }
}

/// The first offset at or after `at`: the broker's answer (`ask_broker`) when the records around it
/// confirm it, otherwise a binary search over the records' timestamps.
fn offset_for_time(
    probe: &BaseConsumer,
    topic: &str,
    retained: Retained,
    at: DateTime<Utc>,
    ask_broker: bool,
) -> Result<(i64, OffsetSource), ReplayError> {
    let Retained {
        partition,
        low,
        high,
    } = retained;
    let at_ms = at.timestamp_millis();
    let answered = if ask_broker {
        broker_offset_for_time(probe, topic, partition, at_ms, high)?
    } else {
        None
    };
    // A probe that cannot read a record counts as "unverified": fall back to the search.
    let ts = |offset| record_timestamp(probe, topic, partition, offset).ok();
    let verified = match answered {
        Some(offset) if (low..=high).contains(&offset) => {
            let before_ok = offset == low || ts(offset - 1).is_some_and(|t| t < at_ms);
            let at_ok = offset == high || ts(offset).is_some_and(|t| t >= at_ms);
            (before_ok && at_ok).then_some(offset)
        }
        _ => None,
    };
    Ok(match verified {
        Some(offset) => (offset, OffsetSource::BrokerTimestampIndex),
        None => {
            tracing::info!(
                partition,
                ?answered,
                "broker's offset for the timestamp is wrong; searching the records"
            );
            let offset = search_by_records(probe, topic, partition, at_ms, low, high)?;
            (offset, OffsetSource::RecordSearch)
        }
    })
}

/// The broker's answer to ListOffsets by time (`high` for "after the last record"), if it gave one.
fn broker_offset_for_time(
    probe: &BaseConsumer,
    topic: &str,
    partition: i32,
    at_ms: i64,
    high: i64,
) -> Result<Option<i64>, ReplayError> {
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(at_ms))?;
    Ok(probe.offsets_for_times(tpl, TIMEOUT).ok().and_then(|tpl| {
        tpl.find_partition(topic, partition)
            .and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                Offset::End => Some(high),
                _ => None,
            })
    }))
}

/// Never moves the group's commit past events it has not applied, which would skip them for good: a
/// start beyond the group's commit starts at the commit instead. (Partitions with nothing to replay
/// are not committed at all.)
fn not_past_the_group(
    retained: Retained,
    start: i64,
    source: OffsetSource,
    committed: Option<i64>,
) -> (i64, OffsetSource) {
    match committed {
        Some(committed) if start < retained.high && (retained.low..start).contains(&committed) => {
            tracing::info!(
                partition = retained.partition,
                requested = start,
                committed,
                "the group has not applied this partition up to the start; replaying from its commit"
            );
            (committed, OffsetSource::GroupBehind)
        }
        _ => (start, source),
    }
}

/// The replay's checkpoint: only records below the captured end offsets, each batch committed
/// synchronously, finished when every partition reached its end.
struct ReplayCheckpoint<F> {
    /// Partitions still to replay, with their end offsets (exclusive).
    remaining: BTreeMap<i32, i64>,
    done: u64,
    total: u64,
    progress: F,
}

impl<F: FnMut(u64, u64)> Checkpoint<DefaultConsumerContext> for ReplayCheckpoint<F> {
    fn admits(&self, partition: i32, offset: i64) -> bool {
        // Events appended after the replay started are left to the live workers.
        self.remaining
            .get(&partition)
            .is_some_and(|end| offset < *end)
    }

    fn applied(
        &mut self,
        consumer: &StreamConsumer,
        next: &TopicPartitionList,
        events: usize,
    ) -> Result<(), KafkaError> {
        consumer.commit(next, CommitMode::Sync)?;
        for element in next.elements() {
            if let Offset::Offset(next) = element.offset() {
                if self
                    .remaining
                    .get(&element.partition())
                    .is_some_and(|end| next >= *end)
                {
                    self.remaining.remove(&element.partition());
                }
            }
        }
        self.done += events as u64;
        (self.progress)(self.done, self.total);
        Ok(())
    }

    fn partition_ended(&mut self, partition: i32) {
        self.remaining.remove(&partition);
    }

    fn finished(&self) -> bool {
        self.remaining.is_empty()
    }

    /// `auto.offset.reset=error`: a start offset that retention deleted meanwhile must stop the replay
    /// with an error, not make it jump elsewhere or wait forever.
    fn is_fatal(&self, err: &KafkaError) -> bool {
        err.rdkafka_error_code() == Some(rdkafka::error::RDKafkaErrorCode::AutoOffsetReset)
    }
}

/// Replays `config.topic` for `group` (rewinding it) into `config.database_url`, calling `progress`
/// with (events done, events total) after every batch. A group is rewound only when the broker confirms
/// it has no live members, or when the operator asserts it (`assume_no_live_members`) because the broker
/// cannot answer DescribeGroups (tansu 0.6 with sqlite storage fails it).
pub async fn replay(
    config: &Config,
    group: &str,
    start: StartAt,
    assume_no_live_members: bool,
    cancel: CancellationToken,
    progress: impl FnMut(u64, u64),
) -> Result<ReplaySummary, ReplayError> {
    if !config.skip_setup {
        setup::migrate(config.database_url.expose_secret()).await?;
    }
    let plan_config = config.clone();
    let plan_group = group.to_owned();
    let ranges = tokio::task::spawn_blocking(move || {
        plan(&plan_config, &plan_group, &start, assume_no_live_members)
    })
    .await
    .map_err(|e| ReplayError::InvalidStart(format!("planning failed: {e}")))??;
    let kafka = config
        .kafka()
        .map_err(|err| ReplayError::InvalidStart(err.to_string()))?;
    // The replay's metrics are not served anywhere; the summary reports what it did.
    let metrics = crate::metrics::FanoutMetrics::new(&prometheus::Registry::new())
        .map_err(BuildError::from)?;
    let applier = Applier::new(config, &kafka, metrics)?;
    let consumer: StreamConsumer = client(config, group)?.create()?;
    let mut assignment = TopicPartitionList::new();
    let mut remaining = BTreeMap::new();
    for range in ranges.iter().filter(|r| r.start < r.end) {
        assignment.add_partition_offset(
            &config.topic,
            range.partition,
            Offset::Offset(range.start),
        )?;
        remaining.insert(range.partition, range.end);
    }
    // From here on the group's commits say where the replay is, also for partitions it has not reached
    // yet. Partitions with nothing to replay keep the group's own commits.
    if !remaining.is_empty() {
        consumer.commit(&assignment, CommitMode::Sync)?;
    }
    let mut checkpoint = ReplayCheckpoint {
        remaining,
        done: 0,
        total: ranges.iter().map(|r| (r.end - r.start).max(0) as u64).sum(),
        progress,
    };
    (checkpoint.progress)(0, checkpoint.total);
    let started = Instant::now();
    if !checkpoint.finished() {
        consumer.assign(&assignment)?;
    }
    let batches = BatchLoop {
        consumer: &consumer,
        applier: &applier,
        max_events: config.batch_max_events,
        linger: config.batch_linger().max(Duration::from_millis(5)),
    };
    // A replay can draw more seqs than the partitions ahead hold: it keeps them too (removing none:
    // the live workers' task removes).
    let keeper = crate::retention::Retention {
        pool: applier.pool().clone(),
        settings: crate::retention::RetentionSettings {
            age: None,
            cap: None,
            ..config.retention().map_err(ReplayError::InvalidStart)?
        },
        metrics: None,
    };
    let keeping = cancel.child_token();
    let kept = tokio::spawn(keeper.run(keeping.clone()));
    let stopped = batches.run(&mut checkpoint, &cancel).await;
    keeping.cancel();
    let _ = kept.await;
    applier.dead_letters.flush().await;
    // Dropping a consumer can block; keep that off the async runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
    match stopped? {
        Stopped::Finished => Ok(ReplaySummary {
            group: group.to_owned(),
            ranges,
            events: checkpoint.done,
            seconds: started.elapsed().as_secs_f64(),
        }),
        Stopped::Shutdown => Err(ReplayError::Interrupted),
    }
}

/// `fanout replay` as the command line runs it: the group and start point from the flags, stopped by
/// SIGTERM or Ctrl-C (what was applied stays committed), progress on stderr.
pub async fn replay_command(
    config: &Config,
    args: &ReplayArgs,
) -> Result<ReplaySummary, ReplayError> {
    let start = args.start().map_err(ReplayError::InvalidStart)?;
    let group = args
        .replay_group
        .clone()
        .unwrap_or_else(|| config.group.clone());
    let cancel = CancellationToken::new();
    let on_signal = cancel.clone();
    let signal = tokio::spawn(async move {
        httpkit::shutdown_signal().await;
        on_signal.cancel();
    });
    let summary = replay(
        config,
        &group,
        start,
        args.assume_no_live_members,
        cancel,
        crate::progress::reporter(),
    )
    .await;
    signal.abort();
    summary
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_deleted_start_offset_ends_the_replay_and_transport_errors_do_not() {
        use rdkafka::error::RDKafkaErrorCode;
        let checkpoint = ReplayCheckpoint {
            remaining: BTreeMap::from([(0, 10)]),
            done: 0,
            total: 10,
            progress: |_, _| {},
        };
        let fatal = |code| {
            Checkpoint::<DefaultConsumerContext>::is_fatal(
                &checkpoint,
                &KafkaError::MessageConsumption(code),
            )
        };
        assert!(fatal(RDKafkaErrorCode::AutoOffsetReset));
        assert!(!fatal(RDKafkaErrorCode::AllBrokersDown));
        assert!(!fatal(RDKafkaErrorCode::BrokerTransportFailure));
    }
}
