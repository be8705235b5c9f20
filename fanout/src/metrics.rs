//! Fanout's metrics. Labels are low-cardinality only: event type, reason, topic, partition.

use prometheus::core::Collector;
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
    pub(crate) search_backlog_indexed: IntCounterVec,
    pub(crate) retention: crate::retention::RetentionMetrics,
}

impl FanoutMetrics {
    /// Creates fanout's metrics and registers them in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let metrics = Metrics(registry);
        Ok(Self {
            events_applied: metrics.counter_vec(
                "fanline_fanout_events_applied_total",
                "Events whose Postgres transaction committed, by event type and outcome (new or duplicate).",
                &["type", "outcome"],
            )?,
            sync_entries: metrics.counter_vec(
                "fanline_fanout_sync_entries_written_total",
                "Sync timeline entries written, by kind: push (followers), own (the author's devices), backfill (new follows), message (messages, recalls and refusals).",
                &["mode"],
            )?,
            dead_lettered: metrics.counter_vec(
                "fanline_fanout_dead_lettered_total",
                "Events copied to the dead-letter topic instead of being applied, by reason.",
                &["reason"],
            )?,
            apply_retries: metrics.counter(
                "fanline_fanout_apply_retries_total",
                "Batches retried because Postgres or the dead-letter topic was unavailable.",
            )?,
            batch_size: metrics.histogram(
                "fanline_fanout_batch_size_events",
                "Events per applied batch (one Postgres transaction).",
                vec![1.0, 5.0, 10.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 5000.0],
            )?,
            batch_duration: metrics.histogram(
                "fanline_fanout_batch_duration_seconds",
                "Time to apply one batch, retries included.",
                httpkit::metrics::LATENCY_BUCKETS.to_vec(),
            )?,
            end_to_end: metrics.histogram(
                "fanline_fanout_end_to_end_latency_seconds",
                "Time from the event's timestamp (accepted by ingest) to its Postgres commit.",
                vec![
                    0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
                ],
            )?,
            consumer_lag: metrics.gauge_vec(
                "fanline_fanout_consumer_lag",
                "Events not yet committed by the consumer group: high watermark minus committed offset.",
                &["topic", "partition"],
            )?,
            committed_offset: metrics.gauge_vec(
                "fanline_fanout_committed_offset",
                "The consumer group's committed offset (next event to read).",
                &["topic", "partition"],
            )?,
            high_watermark: metrics.gauge_vec(
                "fanline_fanout_high_watermark",
                "Offset the next event appended to the partition will get.",
                &["topic", "partition"],
            )?,
            assigned_partitions: metrics.gauge(
                "fanline_fanout_assigned_partitions",
                "Partitions of the events topic currently assigned to this process.",
            )?,
            sync_entries_removed: metrics.counter(
                "fanline_fanout_sync_entries_removed_total",
                "Sync timeline entries removed because the user unfollowed the author.",
            )?,
            posts_pulled: metrics.counter(
                "fanline_fanout_posts_pulled_total",
                "Posts delivered in pull mode: store timeline only, merged into feeds at read time.",
            )?,
            mode_changes: metrics.counter(
                "fanline_fanout_delivery_mode_changes_total",
                "Authors switched between push and pull mode.",
            )?,
            im_refused: metrics.counter_vec(
                "fanline_fanout_im_refused_total",
                "IM events fanout refused, by reason: not_member (a message or read marker from a non-member), no_such_group, not_allowed (a membership change the actor may not make), recall_window, no_such_message.",
                &["reason"],
            )?,
            search_backlog_indexed: metrics.counter_vec(
                "fanline_fanout_search_backlog_indexed_total",
                "Rows stored without their searchable form (before search existed, or with FANLINE_SKIP_SEARCH_INDEX) that the reindexer indexed, by table.",
                &["table"],
            )?,
            retention: retention_metrics(&metrics)?,
        })
    }
}

/// The retention task's metrics ([`crate::retention`]).
fn retention_metrics(
    metrics: &Metrics<'_>,
) -> Result<crate::retention::RetentionMetrics, prometheus::Error> {
    Ok(crate::retention::RetentionMetrics {
        removed_rows: metrics.counter(
            "fanline_fanout_sync_retention_removed_rows_total",
            "Sync timeline entries removed by retention: partitions dropped past the retention age, and users' oldest entries beyond the per-user cap.",
        )?,
        dropped_partitions: metrics.counter(
            "fanline_fanout_sync_retention_dropped_partitions_total",
            "Sync timeline partitions dropped by retention.",
        )?,
        failed_runs: metrics.counter(
            "fanline_fanout_sync_retention_failed_runs_total",
            "Retention runs that failed (retried at the next interval).",
        )?,
        retention_seconds: metrics.gauge(
            "fanline_fanout_sync_retention_seconds",
            "The configured sync timeline retention in seconds (0: kept forever).",
        )?,
        oldest_opened: metrics.gauge(
            "fanline_fanout_sync_oldest_partition_opened_seconds",
            "When the oldest sync timeline partition was opened (Unix time): how far back sync timelines reach; retention that stopped shows as this falling behind now - retention.",
        )?,
    })
}

/// Creates metrics already registered in the registry.
struct Metrics<'a>(&'a Registry);

impl Metrics<'_> {
    fn register<M: Collector + Clone + 'static>(&self, metric: M) -> Result<M, prometheus::Error> {
        self.0.register(Box::new(metric.clone()))?;
        Ok(metric)
    }

    fn counter(&self, name: &str, help: &str) -> Result<IntCounter, prometheus::Error> {
        self.register(IntCounter::new(name, help)?)
    }

    fn counter_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntCounterVec, prometheus::Error> {
        self.register(IntCounterVec::new(Opts::new(name, help), labels)?)
    }

    fn gauge(&self, name: &str, help: &str) -> Result<IntGauge, prometheus::Error> {
        self.register(IntGauge::new(name, help)?)
    }

    fn gauge_vec(
        &self,
        name: &str,
        help: &str,
        labels: &[&str],
    ) -> Result<IntGaugeVec, prometheus::Error> {
        self.register(IntGaugeVec::new(Opts::new(name, help), labels)?)
    }

    fn histogram(
        &self,
        name: &str,
        help: &str,
        buckets: Vec<f64>,
    ) -> Result<Histogram, prometheus::Error> {
        self.register(Histogram::with_opts(
            HistogramOpts::new(name, help).buckets(buckets),
        )?)
    }
}
