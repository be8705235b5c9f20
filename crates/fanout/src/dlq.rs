//! The dead-letter topic: a copy of each event that cannot be applied, with headers saying why and
//! where it came from, so that it can be inspected and re-published after a fix.

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{FutureProducer, FutureRecord, Producer};
use rdkafka::util::Timeout;

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

pub struct DeadLetters {
    producer: FutureProducer,
    topic: String,
}

impl DeadLetters {
    pub fn new(
        brokers: &str,
        properties: &[(String, String)],
        topic: &str,
    ) -> Result<Self, KafkaError> {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", brokers)
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("message.timeout.ms", "10000")
            .set("client.id", "fanline-fanout-dlq");
        for (key, value) in properties {
            config.set(key, value);
        }
        Ok(DeadLetters {
            producer: config.create()?,
            topic: topic.to_owned(),
        })
    }

    /// Writes one dead letter and waits for the broker's acknowledgement.
    pub async fn send(&self, letter: &DeadLetter<'_>) -> Result<(), KafkaError> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "fanline-dlq-reason",
                value: Some(letter.reason),
            })
            .insert(Header {
                key: "fanline-dlq-error",
                value: Some(letter.error.as_str()),
            })
            .insert(Header {
                key: "fanline-source-topic",
                value: Some(letter.source_topic),
            })
            .insert(Header {
                key: "fanline-source-partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "fanline-source-offset",
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
        self.producer
            .send(record, Timeout::After(Duration::from_secs(10)))
            .await
            .map(|_| ())
            .map_err(|(err, _)| err)
    }

    /// Waits for queued dead letters before exit.
    pub async fn flush(&self) {
        let producer = self.producer.clone();
        let _ = tokio::task::spawn_blocking(move || {
            producer.flush(Timeout::After(Duration::from_secs(10)))
        })
        .await;
    }
}
