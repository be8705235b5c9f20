//! The event producer every write path uses: ingest's HTTP API and the reader's WebSocket sends.
//!
//! Built from [`KafkaSettings::acknowledged_producer`]: `acks=all`, one request in flight,
//! librdkafka's own retries (a retry may store an event twice, right after itself; fanout's writes are
//! idempotent), so this code never retries a send itself. A caller waits for the delivery report;
//! when the deadline passes first it answers 503 and the client should retry with the same id — the
//! event may still have been written, and the consumer deduplicates it.
//!
//! Sending has two steps so that order can be kept without waiting: [`EventProducer::enqueue`] hands
//! the event to librdkafka at once (events enqueued one after the other on one key are stored in that
//! order: one request in flight), and the returned [`Pending`] waits for the broker's answer.

use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{DeliveryFuture, FutureRecord, Producer};
use rdkafka::util::Timeout;
use rdkafka::ClientConfig;
use schemas::Envelope;

use crate::{KafkaSettings, RenewingProducer};

/// Where the broker stored an acknowledged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub partition: i32,
    pub offset: i64,
}

/// Why an event was not acknowledged.
#[derive(Debug, thiserror::Error)]
pub enum ProduceError {
    #[error("the event log did not acknowledge the event in time")]
    TimedOut,
    #[error("the event log is unavailable: {0}")]
    Unavailable(KafkaError),
    #[error("the event is larger than the event log accepts")]
    TooLarge,
}

impl ProduceError {
    /// A short, fixed label for metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            ProduceError::TimedOut => "timeout",
            ProduceError::Unavailable(KafkaError::MessageProduction(
                RDKafkaErrorCode::QueueFull,
            )) => "queue_full",
            ProduceError::Unavailable(_) => "broker",
            ProduceError::TooLarge => "too_large",
        }
    }

    /// Sorts librdkafka's errors into the three answers a caller gives. Everything not named here
    /// is treated as an outage (retryable): the list of the event's own faults is kept explicit.
    pub fn classify(err: KafkaError) -> ProduceError {
        match err {
            KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => {
                ProduceError::TimedOut
            }
            KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize,
            ) => ProduceError::TooLarge,
            other => ProduceError::Unavailable(other),
        }
    }
}

/// How long after the produce timeout a caller gives up waiting for librdkafka's delivery report.
const DELIVERY_REPORT_GRACE: Duration = Duration::from_millis(1000);

/// A producer that failed every send for this long is recreated ([`RenewingProducer`]).
const RENEW_AFTER: Duration = Duration::from_secs(60);

/// What a producing service names itself and how long the broker has to acknowledge.
#[derive(Debug, Clone)]
pub struct ProducerSettings {
    /// librdkafka's `client.id`.
    pub client_id: String,
    pub topic: String,
    /// librdkafka's `message.timeout.ms`, retries included.
    pub timeout: Duration,
}

impl ProducerSettings {
    /// The client configuration of the event producer (also what `scripts/bench.sh` produces with
    /// when it measures raw produce, so that the two sides cannot drift apart).
    pub fn client_config(&self, kafka: &KafkaSettings) -> ClientConfig {
        let timeout = self.timeout.max(Duration::from_millis(1));
        let timeout_ms = timeout.as_millis().to_string();
        kafka.acknowledged_producer(
            &self.client_id,
            timeout,
            &[
                ("linger.ms", "5"),
                // The same key-to-partition mapping as the Java client, so that events produced by
                // other tools (Kafka Connect, kafka-console-producer) for the same key land on the
                // same partition.
                ("partitioner", "murmur2_random"),
                ("request.timeout.ms", &timeout_ms),
            ],
        )
    }
}

/// Produce counters and latency of one service, named `fanline_<subsystem>_…`.
#[derive(Clone)]
pub struct ProduceMetrics {
    produced: IntCounterVec,
    failures: IntCounterVec,
    duration: HistogramVec,
}

impl ProduceMetrics {
    /// `subsystem` is the service (`ingest`, `reader`), so that an alert names who failed to produce.
    pub fn new(
        registry: &Registry,
        subsystem: &str,
        buckets: &[f64],
    ) -> Result<Self, prometheus::Error> {
        let produced = IntCounterVec::new(
            Opts::new(
                format!("fanline_{subsystem}_events_produced_total"),
                "Events the broker acknowledged, by event type.",
            ),
            &["type"],
        )?;
        let failures = IntCounterVec::new(
            Opts::new(
                format!("fanline_{subsystem}_produce_failures_total"),
                "Events the broker did not acknowledge in time or refused, by event type and reason.",
            ),
            &["type", "reason"],
        )?;
        let duration = HistogramVec::new(
            HistogramOpts::new(
                format!("fanline_{subsystem}_produce_duration_seconds"),
                "Time from handing an event to the producer to the broker's acknowledgement or failure.",
            )
            .buckets(buckets.to_vec()),
            &["type"],
        )?;
        registry.register(Box::new(produced.clone()))?;
        registry.register(Box::new(failures.clone()))?;
        registry.register(Box::new(duration.clone()))?;
        Ok(Self {
            produced,
            failures,
            duration,
        })
    }

    fn record(&self, event_type: &str, outcome: Result<(), &'static str>, seconds: f64) {
        match outcome {
            Ok(()) => self.produced.with_label_values(&[event_type]).inc(),
            Err(reason) => self.failures.with_label_values(&[event_type, reason]).inc(),
        }
        self.duration
            .with_label_values(&[event_type])
            .observe(seconds);
    }
}

struct Shared {
    producer: RenewingProducer,
    topic: String,
    timeout: Duration,
    metrics: ProduceMetrics,
}

/// Appends events to the topic, keyed by their timeline.
#[derive(Clone)]
pub struct EventProducer {
    shared: Arc<Shared>,
}

impl EventProducer {
    pub fn new(
        kafka: &KafkaSettings,
        settings: &ProducerSettings,
        metrics: ProduceMetrics,
    ) -> Result<Self, KafkaError> {
        let producer = RenewingProducer::new(settings.client_config(kafka), RENEW_AFTER)?;
        Ok(EventProducer {
            shared: Arc::new(Shared {
                producer,
                topic: settings.topic.clone(),
                timeout: settings.timeout.max(Duration::from_millis(1)),
                metrics,
            }),
        })
    }

    /// Hands one event to the client now, without waiting: events enqueued one after the other on
    /// one key are stored in that order. A full local queue means overload: the [`Pending`] fails at
    /// once rather than queue behind it.
    pub fn enqueue(&self, envelope: &Envelope) -> Pending {
        let payload = envelope.to_json();
        let record = FutureRecord::to(&self.shared.topic)
            .key(envelope.key.as_str())
            .payload(&payload);
        let delivery = self
            .shared
            .producer
            .get()
            .send_result(record)
            .map_err(|(err, _record)| err);
        Pending {
            delivery,
            sent: Sent {
                shared: self.shared.clone(),
                started: Instant::now(),
                event_type: envelope.event_type(),
                event_id: envelope.id.clone(),
            },
        }
    }

    /// Appends one event and waits for the broker's acknowledgement.
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %envelope.id, event_type = envelope.event_type()))]
    pub async fn send(&self, envelope: &Envelope) -> Result<Acknowledged, ProduceError> {
        self.enqueue(envelope).acknowledged().await
    }

    /// Ready when the broker answers a metadata request that lists the topic with partitions.
    pub async fn check_topic(&self) -> Result<(), String> {
        let producer = self.shared.producer.get();
        let topic = self.shared.topic.clone();
        tokio::task::spawn_blocking(move || {
            let metadata = producer
                .client()
                .fetch_metadata(Some(&topic), Duration::from_millis(1500))
                .map_err(|e| format!("broker unreachable: {e}"))?;
            match metadata.topics().iter().find(|t| t.name() == topic) {
                Some(t) if t.error().is_none() && !t.partitions().is_empty() => Ok(()),
                _ => Err(format!("topic {topic} does not exist")),
            }
        })
        .await
        .map_err(|e| format!("readiness check failed: {e}"))?
    }

    /// Waits until every queued event was delivered or failed, at most one produce timeout.
    pub async fn flush(&self) {
        let producer = self.shared.producer.get();
        let timeout = self.shared.timeout;
        let flushed =
            tokio::task::spawn_blocking(move || producer.flush(Timeout::After(timeout))).await;
        match flushed {
            Ok(Ok(())) => tracing::info!("producer flushed"),
            Ok(Err(err)) => {
                tracing::error!(error = %err, "producer flush incomplete; queued events may be lost")
            }
            Err(err) => tracing::error!(error = %err, "producer flush task failed"),
        }
    }
}

/// An event handed to the client, waiting for the broker's answer.
pub struct Pending {
    delivery: Result<DeliveryFuture, KafkaError>,
    sent: Sent,
}

/// What the outcome of a send is recorded against.
struct Sent {
    shared: Arc<Shared>,
    started: Instant,
    event_type: &'static str,
    event_id: String,
}

impl Pending {
    /// The broker's answer, recorded in the metrics and the producer's failure streak.
    pub async fn acknowledged(self) -> Result<Acknowledged, ProduceError> {
        let result = match self.delivery {
            Err(err) => Err(ProduceError::classify(err)),
            // librdkafka's message.timeout.ms (= the produce timeout) decides; the outer timeout is
            // only a safety net a little later, so that a 503 almost never hides an event that was
            // written.
            Ok(delivery) => {
                let grace = self.sent.shared.timeout + DELIVERY_REPORT_GRACE;
                match tokio::time::timeout(grace, delivery).await {
                    Err(_) | Ok(Err(_)) => Err(ProduceError::TimedOut),
                    Ok(Ok(Ok(delivery))) => Ok(Acknowledged {
                        partition: delivery.partition,
                        offset: delivery.offset,
                    }),
                    Ok(Ok(Err((err, _message)))) => Err(ProduceError::classify(err)),
                }
            }
        };
        self.sent.record(&result);
        result
    }
}

impl Sent {
    fn record(&self, result: &Result<Acknowledged, ProduceError>) {
        let seconds = self.started.elapsed().as_secs_f64();
        let shared = &self.shared;
        match result {
            Ok(_) => {
                shared.producer.succeeded();
                shared.metrics.record(self.event_type, Ok(()), seconds);
            }
            // Too large is the event's fault, not the broker's.
            Err(ProduceError::TooLarge) => {
                shared
                    .metrics
                    .record(self.event_type, Err("too_large"), seconds);
            }
            Err(err) => {
                shared.producer.failed();
                tracing::warn!(error = %err, event_id = %self.event_id, event_type = self.event_type, "event not acknowledged");
                shared
                    .metrics
                    .record(self.event_type, Err(err.reason()), seconds);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn librdkafka_errors_sort_into_the_three_answers() {
        let reason = |err| ProduceError::classify(err).reason();
        assert_eq!(
            reason(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageTimedOut
            )),
            "timeout"
        );
        assert_eq!(
            reason(KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull)),
            "queue_full"
        );
        assert_eq!(
            reason(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            )),
            "too_large"
        );
        assert_eq!(
            reason(KafkaError::MessageProduction(
                RDKafkaErrorCode::BrokerTransportFailure
            )),
            "broker"
        );
    }

    #[test]
    fn each_service_has_its_own_metric_names() {
        let registry = Registry::new();
        ProduceMetrics::new(&registry, "ingest", &[0.1]).unwrap();
        ProduceMetrics::new(&registry, "reader", &[0.1]).unwrap();
        assert!(
            ProduceMetrics::new(&registry, "reader", &[0.1]).is_err(),
            "one set per service"
        );
    }
}
