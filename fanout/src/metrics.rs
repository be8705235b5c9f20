//! Fanout's metrics. Labels are low-cardinality only: event type, reason, topic, partition.

use prometheus::{
    Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub struct FanoutMetrics {
    pub(crate) events_applied: IntCounterVec,
    pub(crate) sync_entries: IntCounterVec,
    pub(crate) dead_lettered: IntCounterVec,
    pub(crate) apply_retries: IntCounter,
    pub(crate) batch_size: Histogram,
    pub(crate) batch_duration: Histogram,
    pub(crate) end_to_end: Histogram,
    pub(crate) consumer_lag: IntGaugeVec,
    pub(crate) committed_offset: IntGaugeVec,
    pub(crate) high_watermark: IntGaugeVec,
    pub(crate) assigned_partitions: IntGauge,
    pub(crate) sync_entries_removed: IntCounter,
    pub(crate) posts_pulled: IntCounter,
    pub(crate) mode_changes: IntCounter,
    pub(crate) im_refused: IntCounterVec,
}

impl FanoutMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let events_applied = IntCounterVec::new(
            Opts::new(
                "fanline_fanout_events_applied_total",
                "Events whose Postgres transaction committed, by event type and outcome (new or duplicate).",
            ),
            &["type", "outcome"],
        )?;
        let sync_entries = IntCounterVec::new(
            Opts::new(
                "fanline_fanout_sync_entries_written_total",
                "Sync timeline entries written, by kind: push (followers), own (the author's devices), backfill (new follows), message (messages, recalls and refusals).",
            ),
            &["mode"],
        )?;
        let dead_lettered = IntCounterVec::new(
            Opts::new(
                "fanline_fanout_dead_lettered_total",
                "Events copied to the dead-letter topic instead of being applied, by reason.",
            ),
            &["reason"],
        )?;
        let apply_retries = IntCounter::new(
            "fanline_fanout_apply_retries_total",
            "Batches retried because Postgres or the dead-letter topic was unavailable.",
        )?;
        let batch_size = Histogram::with_opts(
            HistogramOpts::new(
                "fanline_fanout_batch_size_events",
                "Events per applied batch (one Postgres transaction).",
            )
            .buckets(vec![
                1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0,
            ]),
        )?;
        let batch_duration = Histogram::with_opts(
            HistogramOpts::new(
                "fanline_fanout_batch_duration_seconds",
                "Time to apply one batch, retries included.",
            )
            .buckets(httpkit::metrics::LATENCY_BUCKETS.to_vec()),
        )?;
        let end_to_end = Histogram::with_opts(
            HistogramOpts::new(
                "fanline_fanout_end_to_end_latency_seconds",
                "Time from the event's timestamp (accepted by ingest) to its Postgres commit.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
        )?;
        let consumer_lag = IntGaugeVec::new(
            Opts::new(
                "fanline_fanout_consumer_lag",
                "Events not yet committed by the consumer group: high watermark minus committed offset.",
            ),
            &["topic", "partition"],
        )?;
        let committed_offset = IntGaugeVec::new(
            Opts::new(
                "fanline_fanout_committed_offset",
                "The consumer group's committed offset (next event to read).",
            ),
            &["topic", "partition"],
        )?;
        let high_watermark = IntGaugeVec::new(
            Opts::new(
                "fanline_fanout_high_watermark",
                "Offset the next event appended to the partition will get.",
            ),
            &["topic", "partition"],
        )?;
        let assigned_partitions = IntGauge::new(
            "fanline_fanout_assigned_partitions",
            "Partitions of the events topic currently assigned to this process.",
        )?;
        let sync_entries_removed = IntCounter::new(
            "fanline_fanout_sync_entries_removed_total",
            "Sync timeline entries removed because the user unfollowed the author.",
        )?;
        let posts_pulled = IntCounter::new(
            "fanline_fanout_posts_pulled_total",
            "Posts delivered in pull mode: store timeline only, merged into feeds at read time.",
        )?;
        let mode_changes = IntCounter::new(
            "fanline_fanout_delivery_mode_changes_total",
            "Authors switched between push and pull mode.",
        )?;
        let im_refused = IntCounterVec::new(
            Opts::new(
                "fanline_fanout_im_refused_total",
                "IM events fanout refused, by reason: not_member (a message or read marker from a non-member), no_such_group, not_allowed (a membership change the actor may not make), recall_window, no_such_message.",
            ),
            &["reason"],
        )?;
        for collector in [
            Box::new(im_refused.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(sync_entries_removed.clone()),
            Box::new(posts_pulled.clone()),
            Box::new(mode_changes.clone()),
            Box::new(assigned_partitions.clone()),
            Box::new(events_applied.clone()),
            Box::new(sync_entries.clone()),
            Box::new(dead_lettered.clone()),
            Box::new(apply_retries.clone()),
            Box::new(batch_size.clone()),
            Box::new(batch_duration.clone()),
            Box::new(end_to_end.clone()),
            Box::new(consumer_lag.clone()),
            Box::new(committed_offset.clone()),
            Box::new(high_watermark.clone()),
        ] {
            registry.register(collector)?;
        }
        Ok(Self {
            im_refused,
            events_applied,
            sync_entries,
            dead_lettered,
            apply_retries,
            batch_size,
            batch_duration,
            end_to_end,
            consumer_lag,
            committed_offset,
            high_watermark,
            assigned_partitions,
            sync_entries_removed,
            posts_pulled,
            mode_changes,
        })
    }
}
