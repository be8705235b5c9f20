//! `fanout events produce` and `fanout events consume`: write and read the events topic by hand.
//!
//! Plain Kafka protocol through librdkafka, so they work on tansu (where Debian's kcat cannot produce)
//! and on Apache Kafka alike. `produce` reads envelopes (one JSON object per line, the contract in
//! `schemas/`), checks every line before sending any, and sends each keyed by its timeline with the
//! Java client's partitioner and `acks=all`, as ingest does: an event written by hand lands on the
//! partition of its timeline, in order with ingest's. `consume` reads without joining a group (no
//! offsets are committed), from the earliest or the latest offsets, up to the end offsets seen at
//! start unless `--follow`.

use std::io::{BufRead, Write};
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::util::Timeout;
use rdkafka::{Offset, TopicPartitionList};
use serde_json::json;

use crate::config::{Config, ConsumeFrom};

const TIMEOUT: Duration = Duration::from_secs(10);

#[derive(Debug, thiserror::Error)]
pub enum EventsError {
    #[error("line {line}: {error}")]
    Invalid {
        line: usize,
        error: schemas::events::DecodeError,
    },
    #[error("reading the input: {0}")]
    Input(#[from] std::io::Error),
    #[error("kafka: {0}")]
    Kafka(#[from] rdkafka::error::KafkaError),
    #[error(transparent)]
    Properties(#[from] kafkakit::PropertyError),
    #[error("topic {0} does not exist or has no partitions")]
    NoTopic(String),
}

/// Checks every line of `input`, then appends each event to the topic and writes one JSON line per
/// acknowledged event (`id`, `key`, `partition`, `offset`) to `output`. Returns how many were sent.
pub async fn produce(
    config: &Config,
    input: impl BufRead,
    mut output: impl Write,
) -> Result<usize, EventsError> {
    let mut events = Vec::new();
    for (index, line) in input.lines().enumerate() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        let envelope =
            schemas::events::decode(line.as_bytes()).map_err(|error| EventsError::Invalid {
                line: index + 1,
                error,
            })?;
        events.push(envelope);
    }
    let producer: FutureProducer = config
        .kafka()?
        .acknowledged_producer(
            "fanline-events-cli",
            TIMEOUT,
            &[("partitioner", "murmur2_random")],
        )
        .create()?;
    for envelope in &events {
        let payload = envelope.to_json();
        let record = FutureRecord::to(&config.topic)
            .key(envelope.key.as_str())
            .payload(&payload);
        let delivery = producer
            .send(record, Timeout::After(TIMEOUT))
            .await
            .map_err(|(err, _)| err)?;
        writeln!(
            output,
            "{}",
            json!({"id": envelope.id, "key": envelope.key.as_str(),
                   "partition": delivery.partition, "offset": delivery.offset})
        )?;
    }
    Ok(events.len())
}

/// Writes one JSON line per record: `partition`, `offset`, `key`, `timestamp_ms` and the `event` (the
/// payload as JSON, or `payload` as text when it is not JSON). Stops at the end offsets seen at start
/// (or after `max` records); with `follow`, waits for new records until `max` or interrupted.
pub fn consume(
    config: &Config,
    start: ConsumeFrom,
    max: Option<usize>,
    follow: bool,
    mut output: impl Write,
) -> Result<usize, EventsError> {
    let consumer: BaseConsumer = config
        .kafka()?
        .client(
            "fanline-events-cli",
            &[
                // Never joined (partitions are assigned) and nothing is committed; librdkafka wants one.
                ("group.id", "fanline-events-cli"),
                ("enable.auto.commit", "false"),
                ("enable.auto.offset.store", "false"),
                ("enable.partition.eof", "false"),
            ],
        )
        .create()?;
    let partitions = kafkakit::partitions(&consumer, &config.topic, TIMEOUT)?;
    if partitions.is_empty() {
        return Err(EventsError::NoTopic(config.topic.clone()));
    }
    let mut assignment = TopicPartitionList::new();
    // The next offset still to read in each partition before the end seen at start.
    let mut remaining = Vec::new();
    for partition in partitions {
        let (low, high) = consumer.fetch_watermarks(&config.topic, partition, TIMEOUT)?;
        let from = match start {
            ConsumeFrom::Earliest => low,
            ConsumeFrom::Latest => high,
        };
        assignment.add_partition_offset(&config.topic, partition, Offset::Offset(from))?;
        if from < high {
            remaining.push((partition, high));
        }
    }
    consumer.assign(&assignment)?;
    let mut written = 0;
    while max.is_none_or(|max| written < max) && (follow || !remaining.is_empty()) {
        let Some(message) = consumer.poll(Duration::from_millis(500)) else {
            continue;
        };
        let message = message?;
        let payload = message.payload().unwrap_or_default();
        let mut line = json!({
            "partition": message.partition(),
            "offset": message.offset(),
            "key": message.key().map(String::from_utf8_lossy),
            "timestamp_ms": message.timestamp().to_millis(),
        });
        match serde_json::from_slice::<serde_json::Value>(payload) {
            Ok(event) => line["event"] = event,
            Err(_) => line["payload"] = String::from_utf8_lossy(payload).into(),
        }
        writeln!(output, "{line}")?;
        written += 1;
        remaining.retain(|(partition, high)| {
            !(*partition == message.partition() && message.offset() + 1 >= *high)
        });
    }
    output.flush()?;
    Ok(written)
}
