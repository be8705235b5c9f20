//! The dead-letter topic: a copy of each event that cannot be applied, with headers saying why and
//! where it came from, so that it can be inspected and re-published after a fix.

use std::time::Duration;

use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureRecord, Producer};
use rdkafka::util::Timeout;
use schemas::events::dead_letter_headers as headers;

/// How long the broker has to acknowledge a dead letter; the applier retries after that.
const SEND_TIMEOUT: Duration = Duration::from_secs(10);

/// An event on its way to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter<'a> {
    pub key: Option<&'a [u8]>,
    pub payload: Option<&'a [u8]>,
    pub source_topic: &'a str,
    pub partition: i32,
    pub offset: i64,
    pub reason: &'static str,
    pub error: String,
}

/// A producer that failed every send for this long is recreated ([`kafkakit::RenewingProducer`]).
const RENEW_AFTER: Duration = Duration::from_secs(60);

pub struct DeadLetters {
    producer: kafkakit::RenewingProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(kafka: &kafkakit::KafkaSettings, topic: &str) -> Result<Self, KafkaError> {
        Ok(DeadLetters {
            producer: kafkakit::RenewingProducer::new(
                kafka.acknowledged_producer("fanline-fanout-dlq", SEND_TIMEOUT, &[]),
                RENEW_AFTER,
            )?,
            topic: topic.to_owned(),
        })
    }

    /// Writes one dead letter and waits for the broker's acknowledgement.
    pub async fn send(&self, letter: &DeadLetter<'_>) -> Result<(), KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: headers::REASON,
                value: Some(letter.reason),
            })
            .insert(Header {
                key: headers::ERROR,
                value: Some(letter.error.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_TOPIC,
                value: Some(letter.source_topic),
            })
            .insert(Header {
                key: headers::SOURCE_PARTITION,
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: headers::SOURCE_OFFSET,
                value: Some(offset.as_str()),
            });
        let mut record: FutureRecord<'_, [u8], [u8]> =
            FutureRecord::to(&self.topic).headers(headers);
        if let Some(key) = letter.key {
            record = record.key(key);
        }
        if let Some(payload) = letter.payload {
            record = record.payload(payload);
        }
        let sent = self
            .producer
            .get()
            .send(record, Timeout::After(SEND_TIMEOUT))
            .await
            .map(|_| ())
            .map_err(|(err, _)| err);
        match sent {
            Ok(()) => self.producer.succeeded(),
            Err(_) => {
                self.producer.failed();
            }
        }
        sent
    }

    /// Waits for queued dead letters before exit.
    pub async fn flush(&self) {
        let producer = self.producer.get();
        let _ =
            tokio::task::spawn_blocking(move || producer.flush(Timeout::After(SEND_TIMEOUT))).await;
    }
}
