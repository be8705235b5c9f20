//! [`SourcedEvent`]: an event with the Kafka position it was read from. The position is what the
//! idempotence rules compare (a per-key watermark, follow edges), so everything that applies events
//! takes them in this form.

use schemas::Envelope;

/// An event with the Kafka position it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedEvent {
    pub partition: i32,
    pub offset: i64,
    pub envelope: Envelope,
}
