//! The Kafka producer behind the write API.
//!
//! Settings from [`kafkakit::KafkaSettings::acknowledged_producer`]: `acks=all`, one request in flight,
//! librdkafka's own retries (a retry may store an event twice, right after itself; fanout's writes are
//! idempotent), so this code never retries a send itself. A request waits for the
//! delivery report; when the deadline passes first the client gets 503 and should retry with the same
//! `message_id` — the event may still have been written, and the consumer deduplicates it.

use std::time::{Duration, Instant};

use httpkit::ApiError;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use schemas::Envelope;

use crate::metrics::IngestMetrics;
use crate::Config;

/// Where the broker stored an acknowledged event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Acknowledged {
    pub partition: i32,
    pub offset: i64,
}

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
    fn reason(&self) -> &'static str {
        match self {
            ProduceError::TimedOut => "timeout",
            ProduceError::Unavailable(KafkaError::MessageProduction(
                RDKafkaErrorCode::QueueFull,
            )) => "queue_full",
            ProduceError::Unavailable(_) => "broker",
            ProduceError::TooLarge => "too_large",
        }
    }
}

impl From<ProduceError> for ApiError {
    fn from(err: ProduceError) -> Self {
        match err {
            ProduceError::TooLarge => ApiError::new(
                axum::http::StatusCode::PAYLOAD_TOO_LARGE,
                "event is larger than the event log accepts",
            ),
            ProduceError::TimedOut | ProduceError::Unavailable(_) => {
                ApiError::unavailable("event log unavailable, retry with the same message_id")
            }
        }
    }
}

/// How long after the produce timeout the request gives up waiting for librdkafka's delivery report.
const DELIVERY_REPORT_GRACE: Duration = Duration::from_millis(1000);

/// The Kafka client configuration of ingest's producer (also what `scripts/bench.sh` produces with
/// when it measures raw produce, so that the two sides cannot drift apart).
pub fn client_config(config: &Config) -> Result<rdkafka::ClientConfig, crate::BuildError> {
    let timeout = Duration::from_millis(config.produce_timeout_ms.max(1));
    let timeout_ms = timeout.as_millis().to_string();
    Ok(config.kafka()?.acknowledged_producer(
        "fanline-ingest",
        timeout,
        &[
            ("linger.ms", "5"),
            // The same key-to-partition mapping as the Java client, so that events produced by
            // other tools (Kafka Connect, kafka-console-producer) for the same key land on the
            // same partition.
            ("partitioner", "murmur2_random"),
            ("request.timeout.ms", &timeout_ms),
        ],
    ))
}

/// A producer that failed every send for this long is recreated ([`kafkakit::RenewingProducer`]).
const RENEW_AFTER: Duration = Duration::from_secs(60);

pub struct EventProducer {
    producer: kafkakit::RenewingProducer,
    topic: String,
    timeout: Duration,
    metrics: IngestMetrics,
}

impl EventProducer {
    pub fn new(config: &Config, metrics: IngestMetrics) -> Result<Self, crate::BuildError> {
        let timeout = Duration::from_millis(config.produce_timeout_ms.max(1));
        let producer = kafkakit::RenewingProducer::new(client_config(config)?, RENEW_AFTER)?;
        Ok(EventProducer {
            producer,
            topic: config.topic.clone(),
            timeout,
            metrics,
        })
    }

    /// Appends one event, keyed by its timeline, and waits for the broker's acknowledgement.
    #[tracing::instrument(level = "debug", skip_all, fields(event_id = %envelope.id, event_type = envelope.event_type()))]
    pub async fn send(&self, envelope: &Envelope) -> Result<Acknowledged, ProduceError> {
        let payload = envelope.to_json();
        let record = FutureRecord::to(&self.topic)
            .key(envelope.key.as_str())
            .payload(&payload);
        let started = Instant::now();
        // librdkafka's message.timeout.ms (= the produce timeout) decides; the outer timeout is only a
        // safety net a little later, so that a 503 almost never hides an event that was written.
        let outcome = tokio::time::timeout(
            self.timeout + DELIVERY_REPORT_GRACE,
            // A full local queue means overload: answer 503 at once rather than queue behind it.
            self.producer
                .get()
                .send(record, Timeout::After(Duration::ZERO)),
        )
        .await;
        let result = match outcome {
            Err(_) => Err(ProduceError::TimedOut),
            Ok(Ok(delivery)) => Ok(Acknowledged {
                partition: delivery.partition,
                offset: delivery.offset,
            }),
            Ok(Err((err, _message))) => Err(classify(err)),
        };
        let seconds = started.elapsed().as_secs_f64();
        match &result {
            Ok(_) => {
                self.producer.succeeded();
                self.metrics.record_success(envelope.event_type(), seconds)
            }
            // Too large is the event's fault, not the client's.
            Err(ProduceError::TooLarge) => {
                self.metrics
                    .record_failure(envelope.event_type(), "too_large", seconds);
            }
            Err(err) => {
                self.producer.failed();
                tracing::warn!(error = %err, event_id = %envelope.id, event_type = envelope.event_type(), "event not acknowledged");
                self.metrics
                    .record_failure(envelope.event_type(), err.reason(), seconds);
            }
        }
        result
    }

    /// Ready when the broker answers a metadata request that lists the topic with partitions.
    pub async fn check_topic(&self) -> Result<(), String> {
        let producer = self.producer.get();
        let topic = self.topic.clone();
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
        let producer = self.producer.get();
        let timeout = self.timeout;
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

fn classify(err: KafkaError) -> ProduceError {
    match err {
        KafkaError::MessageProduction(RDKafkaErrorCode::MessageTimedOut) => ProduceError::TimedOut,
        KafkaError::MessageProduction(
            RDKafkaErrorCode::MessageSizeTooLarge | RDKafkaErrorCode::InvalidMessageSize,
        ) => ProduceError::TooLarge,
        other => ProduceError::Unavailable(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn produce_failures_map_to_retryable_statuses() {
        let status = |err| ApiError::from(err).status.as_u16();
        assert_eq!(status(ProduceError::TimedOut), 503);
        assert_eq!(
            status(classify(KafkaError::MessageProduction(
                RDKafkaErrorCode::QueueFull
            ))),
            503
        );
        assert_eq!(
            status(classify(KafkaError::MessageProduction(
                RDKafkaErrorCode::MessageSizeTooLarge
            ))),
            413
        );
    }
}
