//! Ingest's own metrics (request metrics come from httpkit).

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

#[derive(Clone)]
pub struct IngestMetrics {
    produced: IntCounterVec,
    failures: IntCounterVec,
    produce_duration: HistogramVec,
}

impl IngestMetrics {
    pub fn new(registry: &Registry) -> Result<Self, prometheus::Error> {
        let produced = IntCounterVec::new(
            Opts::new(
                "fanline_ingest_events_produced_total",
                "Events the broker acknowledged, by event type.",
            ),
            &["type"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                "fanline_ingest_produce_failures_total",
                "Events the broker did not acknowledge in time or refused, by event type and reason.",
            ),
            &["type", "reason"],
        )?;
        let produce_duration = HistogramVec::new(
            HistogramOpts::new(
                "fanline_ingest_produce_duration_seconds",
                "Time from handing an event to the producer to the broker's acknowledgement or failure.",
            )
            .buckets(httpkit::metrics::LATENCY_BUCKETS.to_vec()),
            &["type"],
        )?;
        registry.register(Box::new(produced.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(produce_duration.clone()))?;
        Ok(Self {
            produced,
            failures,
            produce_duration,
        })
    }

    pub(crate) fn record_success(&self, event_type: &str, seconds: f64) {
        self.produced.with_label_values(&[event_type]).inc();
        self.produce_duration
            .with_label_values(&[event_type])
            .observe(seconds);
    }

    pub(crate) fn record_failure(&self, event_type: &str, reason: &str, seconds: f64) {
        self.failures.with_label_values(&[event_type, reason]).inc();
        self.produce_duration
            .with_label_values(&[event_type])
            .observe(seconds);
    }
}
