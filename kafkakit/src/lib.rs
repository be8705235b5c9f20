//! Fanline's Kafka edge: the one place that builds Kafka clients, so that every producer, consumer and
//! admin client of every service gets the same bootstrap servers, the same operator overrides and the
//! same delivery guarantees.
//!
//! Precedence, lowest first: librdkafka's defaults, the settings the caller needs for its job (a
//! consumer's group, a producer's timeout), then the operator's `key=value` properties
//! (`--kafka-property`, e.g. `security.protocol=ssl`), which always win.
//!
//! # Layout
//! - [`producer`]: [`EventProducer`], the acknowledged event producer of every write path, its
//!   failures and its metrics.
//! - [`renewing`]: [`RenewingProducer`], a client that is recreated when it failed every send for a while.

pub mod producer;
pub mod renewing;

pub use producer::{
    Acknowledged, EventProducer, Pending, ProduceError, ProduceMetrics, ProducerSettings,
};
pub use rdkafka::error::KafkaError;
pub use renewing::{FailureStreak, RenewingProducer};

use std::time::Duration;

use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, ConsumerContext};

/// A `--kafka-property` Fanline cannot take.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PropertyError {
    #[error("{0:?} is not of the form key=value")]
    NotKeyValue(String),
    #[error("{key} cannot be overridden: {why}")]
    Protected { key: String, why: &'static str },
}

/// Properties Fanline's guarantees rest on, with what to do instead. An override of one of them would
/// silently break at-least-once delivery or the 503 contract, so it is refused at start. (Auto-commit
/// may be turned off: only stored offsets are committed, and they are stored after their effect.)
const PROTECTED: &[(&str, &str)] = &[
    ("bootstrap.servers", "use --brokers"),
    ("group.id", "use --group (or --replay-group)"),
    (
        "acks",
        "an acknowledged write must be on every in-sync replica (acks=all)",
    ),
    ("message.timeout.ms", "use --produce-timeout-ms"),
    (
        "delivery.timeout.ms",
        "an alias of message.timeout.ms: use --produce-timeout-ms",
    ),
    (
        "request.required.acks",
        "an alias of acks, which must be all",
    ),
    (
        "max.in.flight",
        "an alias of max.in.flight.requests.per.connection, which must be 1",
    ),
    (
        "enable.idempotence",
        "an idempotent producer wedges tansu 0.6 after timeouts (see docs/design.md, Broker workarounds)",
    ),
    (
        "max.in.flight.requests.per.connection",
        "one request in flight keeps a retried event before the key's next one",
    ),
    (
        "enable.auto.offset.store",
        "offsets are stored only after their effect is in Postgres",
    ),
    (
        "enable.partition.eof",
        "replay needs it to know where a partition ends",
    ),
    (
        "auto.offset.reset",
        "a new group starts at the earliest event; replay never jumps",
    ),
];

/// Where the brokers are and what the operator set for every client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KafkaSettings {
    brokers: String,
    overrides: Vec<(String, String)>,
}

impl KafkaSettings {
    /// `properties` are the operator's raw `key=value` strings; empty entries are ignored. Keys that
    /// Fanline's guarantees rest on are refused.
    pub fn new(brokers: &str, properties: &[String]) -> Result<Self, PropertyError> {
        let overrides = parse_key_values(properties)?;
        for (key, _) in &overrides {
            if let Some((_, why)) = PROTECTED.iter().find(|(protected, _)| protected == key) {
                return Err(PropertyError::Protected {
                    key: key.clone(),
                    why,
                });
            }
        }
        Ok(KafkaSettings {
            brokers: brokers.to_owned(),
            overrides,
        })
    }

    pub fn brokers(&self) -> &str {
        &self.brokers
    }

    /// A client configuration: bootstrap servers and client id, then `settings`, then the overrides.
    pub fn client(&self, client_id: &str, settings: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", client_id);
        for (key, value) in settings {
            config.set(*key, *value);
        }
        for (key, value) in &self.overrides {
            config.set(key, value);
        }
        config
    }

    /// A producer whose acknowledgement means the event is stored: `acks=all`, librdkafka's own
    /// retries (the application never retries a send) and `message_timeout` as the time a message may
    /// take, retries included, before its delivery report fails. Every producer of Fanline (ingest, the
    /// dead-letter producer) is built here.
    ///
    /// Not idempotent, one request in flight: when messages time out during a broker outage, an
    /// idempotent producer bumps its epoch by itself, and tansu 0.6 then fails every request
    /// (its sqlite storage panics in `idempotent_message_check`) until the producer is gone. With one
    /// request in flight a retry can neither reorder a key's events nor land after a later one; the
    /// price is that a retried message may be stored twice, right after itself, which the consumer's
    /// idempotent writes absorb (tested).
    pub fn acknowledged_producer(
        &self,
        client_id: &str,
        message_timeout: Duration,
        settings: &[(&str, &str)],
    ) -> ClientConfig {
        let timeout_ms = message_timeout.as_millis().max(1).to_string();
        let mut base: Vec<(&str, &str)> = vec![
            ("enable.idempotence", "false"),
            ("acks", "all"),
            ("max.in.flight.requests.per.connection", "1"),
            ("message.timeout.ms", &timeout_ms),
        ];
        base.extend_from_slice(settings);
        self.client(client_id, &base)
    }
}

/// Splits `key=value` entries, trimming white space; empty entries are skipped.
pub fn parse_key_values(raw: &[String]) -> Result<Vec<(String, String)>, PropertyError> {
    raw.iter()
        .filter(|entry| !entry.trim().is_empty())
        .map(|entry| match entry.split_once('=') {
            Some((key, value)) if !key.trim().is_empty() => {
                Ok((key.trim().to_owned(), value.trim().to_owned()))
            }
            _ => Err(PropertyError::NotKeyValue(entry.clone())),
        })
        .collect()
}

/// The partition ids of `topic`, ascending (blocking: call it off the async runtime). Empty when
/// the topic does not exist.
pub fn partitions<C, T>(
    consumer: &T,
    topic: &str,
    timeout: Duration,
) -> Result<Vec<i32>, KafkaError>
where
    C: ConsumerContext,
    T: Consumer<C>,
{
    let metadata = consumer.fetch_metadata(Some(topic), timeout)?;
    let mut ids: Vec<i32> = metadata
        .topics()
        .iter()
        .filter(|t| t.name() == topic && t.error().is_none())
        .flat_map(|t| t.partitions().iter().map(|p| p.id()))
        .collect();
    ids.sort_unstable();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_values_must_be_pairs() {
        let ok = parse_key_values(&["a=b".into(), " c = d=e ".into(), "".into()]).unwrap();
        assert_eq!(
            ok,
            vec![("a".into(), "b".into()), ("c".into(), "d=e".into())]
        );
        assert!(parse_key_values(&["nokey".into()]).is_err());
        assert!(parse_key_values(&["=v".into()]).is_err());
    }

    #[test]
    fn properties_the_guarantees_rest_on_are_refused() {
        for key in [
            "acks",
            "enable.auto.offset.store",
            "group.id",
            "message.timeout.ms",
        ] {
            let err = KafkaSettings::new("b:9092", &[format!("{key}=1")]).unwrap_err();
            assert!(
                matches!(&err, PropertyError::Protected { key: k, .. } if k == key),
                "{err}"
            );
        }
    }

    #[test]
    fn operator_overrides_win_over_the_callers_settings() {
        let settings =
            KafkaSettings::new("b:9092", &["linger.ms=50".into(), "x.y=z".into()]).unwrap();
        let config = settings.acknowledged_producer(
            "me",
            Duration::from_millis(2500),
            &[("linger.ms", "5")],
        );
        assert_eq!(config.get("bootstrap.servers"), Some("b:9092"));
        assert_eq!(config.get("client.id"), Some("me"));
        assert_eq!(config.get("acks"), Some("all"));
        assert_eq!(config.get("x.y"), Some("z"));
        assert_eq!(config.get("message.timeout.ms"), Some("2500"));
        assert_eq!(config.get("linger.ms"), Some("50"));
        assert_eq!(config.get("enable.idempotence"), Some("false"));
        assert_eq!(
            config.get("max.in.flight.requests.per.connection"),
            Some("1")
        );
    }
}
