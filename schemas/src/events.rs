//! The events on the Fanline topic: a versioned JSON envelope around a typed payload.
//!
//! ```text
//! {"v":1,"id":"01J…","type":"post_created","key":"alice","ts":"2026-11-23T12:00:00Z",
//!  "payload":{"post_id":"01J…","author":"alice","body":"hi","created_at":"2026-11-23T12:00:00Z"}}
//! ```
//!
//! The Kafka message key is the envelope's `key`: the timeline the event belongs to (the author of a post,
//! the followee of a follow). Kafka keeps per-key order, so a follow is applied before the followee's
//! later posts.
//!
//! [`decode`] separates the ways an event can be unusable, because they call for different handling:
//! an envelope version or event type this build does not know is not a bug in the event but in the
//! deployment (an older worker reading a newer producer), while malformed and invalid events are poison.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{validate_body, validate_message_id, PostId, UserId, ValidationError};

/// The envelope version this build writes and the newest it reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Every event type this build understands, as spelled in the envelope's `type`.
pub const KNOWN_EVENT_TYPES: &[&str] = &["post_created", "post_deleted", "followed", "unfollowed"];

/// One event on the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Fanline event")]
pub struct Envelope {
    /// Envelope version. Consumers dead-letter events whose version is newer than they understand.
    pub v: u32,
    /// Unique id of this event (a ULID).
    pub id: String,
    /// The timeline the event belongs to, also used as the Kafka message key: the author of a post, the
    /// followee of a follow or unfollow.
    pub key: UserId,
    /// When ingest accepted the event.
    pub ts: DateTime<Utc>,
    #[serde(flatten)]
    pub event: Event,
}

/// The event type and its payload.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", content = "payload", rename_all = "snake_case")]
pub enum Event {
    /// An author wrote a post.
    PostCreated(PostCreated),
    /// An author deleted one of their posts.
    PostDeleted(PostDeleted),
    /// `follower` started following `followee`.
    Followed(FollowChange),
    /// `follower` stopped following `followee`.
    Unfollowed(FollowChange),
}

/// Payload of `post_created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PostCreated {
    pub post_id: PostId,
    pub author: UserId,
    /// 1 to 4096 characters.
    pub body: String,
    /// The client's idempotency key: posts with the same author and message id are one post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

/// Payload of `post_deleted`. `post_id` may also be the id of a retried duplicate of the post.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PostDeleted {
    pub post_id: PostId,
    pub author: UserId,
}

/// Payload of `followed` and `unfollowed`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FollowChange {
    pub follower: UserId,
    pub followee: UserId,
}

impl FollowChange {
    /// A follow change's own rule: nobody follows themselves. The error names `followee`; callers
    /// rename it to their field with [`ValidationError::in_field`].
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.follower == self.followee {
            return Err(ValidationError::new(
                "followee",
                "a user cannot follow themselves",
            ));
        }
        Ok(())
    }
}

/// Why an event cannot be applied.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    #[error("malformed event: {0}")]
    Malformed(String),
    #[error("envelope version {0} is newer than this build understands ({ENVELOPE_VERSION})")]
    UnsupportedVersion(u64),
    #[error("unknown event type {0:?}")]
    UnknownType(String),
    #[error("invalid event: {0}")]
    Invalid(ValidationError),
}

impl DecodeError {
    /// A short, fixed label for metrics and dead-letter headers.
    pub fn reason(&self) -> &'static str {
        match self {
            DecodeError::Malformed(_) => "malformed",
            DecodeError::UnsupportedVersion(_) => "unsupported_version",
            DecodeError::UnknownType(_) => "unknown_type",
            DecodeError::Invalid(_) => "invalid",
        }
    }
}

impl Envelope {
    fn wrap(key: UserId, event: Event) -> Self {
        let now = Utc::now();
        Self {
            v: ENVELOPE_VERSION,
            id: ulid::Ulid::new().to_string(),
            key,
            ts: now,
            event,
        }
    }

    /// A new `post_created` event, keyed by its author.
    pub fn post_created(post: PostCreated) -> Self {
        Self::wrap(post.author.clone(), Event::PostCreated(post))
    }

    /// A new `post_deleted` event, keyed by its author (so it follows the create on one partition).
    pub fn post_deleted(delete: PostDeleted) -> Self {
        Self::wrap(delete.author.clone(), Event::PostDeleted(delete))
    }

    /// A new `followed` event, keyed by the followee.
    pub fn followed(change: FollowChange) -> Self {
        Self::wrap(change.followee.clone(), Event::Followed(change))
    }

    /// A new `unfollowed` event, keyed by the followee.
    pub fn unfollowed(change: FollowChange) -> Self {
        Self::wrap(change.followee.clone(), Event::Unfollowed(change))
    }

    /// The event type as spelled on the wire.
    pub fn event_type(&self) -> &'static str {
        match self.event {
            Event::PostCreated(_) => "post_created",
            Event::PostDeleted(_) => "post_deleted",
            Event::Followed(_) => "followed",
            Event::Unfollowed(_) => "unfollowed",
        }
    }

    pub fn to_json(&self) -> Vec<u8> {
        // Serializing these types cannot fail: every field is a string, number or timestamp.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Checks the rules that types alone do not express.
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.id.is_empty() || self.id.len() > 64 {
            return Err(ValidationError::new(
                "id",
                "must be 1 to 64 characters long",
            ));
        }
        match &self.event {
            Event::PostCreated(post) => {
                if post.author != self.key {
                    return Err(ValidationError::new(
                        "key",
                        "must equal payload.author for post_created",
                    ));
                }
                validate_body("payload.body", &post.body)?;
                if let Some(id) = &post.message_id {
                    validate_message_id("payload.message_id", id)?;
                }
            }
            Event::PostDeleted(delete) => {
                if delete.author != self.key {
                    return Err(ValidationError::new(
                        "key",
                        "must equal payload.author for post_deleted",
                    ));
                }
            }
            Event::Followed(change) | Event::Unfollowed(change) => {
                if change.followee != self.key {
                    return Err(ValidationError::new(
                        "key",
                        "must equal payload.followee for followed/unfollowed",
                    ));
                }
                change
                    .validate()
                    .map_err(|err| err.in_field("payload.followee"))?;
            }
        }
        Ok(())
    }
}

/// Decodes and validates one event from a Kafka message value.
pub fn decode(bytes: &[u8]) -> Result<Envelope, DecodeError> {
    let value: serde_json::Value =
        serde_json::from_slice(bytes).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    let object = value
        .as_object()
        .ok_or_else(|| DecodeError::Malformed("not a JSON object".into()))?;
    let version = object
        .get("v")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| DecodeError::Malformed("field v: missing or not an integer".into()))?;
    if version == 0 {
        return Err(DecodeError::Malformed("field v: must be at least 1".into()));
    }
    if version > u64::from(ENVELOPE_VERSION) {
        return Err(DecodeError::UnsupportedVersion(version));
    }
    let event_type = object
        .get("type")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| DecodeError::Malformed("field type: missing or not a string".into()))?;
    if !KNOWN_EVENT_TYPES.contains(&event_type) {
        return Err(DecodeError::UnknownType(event_type.to_owned()));
    }
    let envelope: Envelope =
        serde_json::from_value(value).map_err(|e| DecodeError::Malformed(e.to_string()))?;
    envelope.validate().map_err(DecodeError::Invalid)?;
    Ok(envelope)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn user(name: &str) -> UserId {
        UserId::parse("user", name).unwrap()
    }

    fn post(author: &str) -> Envelope {
        Envelope::post_created(PostCreated {
            post_id: PostId::generate(),
            author: user(author),
            body: "hello".into(),
            message_id: Some("m1".into()),
            created_at: Utc::now(),
        })
    }

    #[test]
    fn events_round_trip_through_json() {
        let follow = Envelope::followed(FollowChange {
            follower: user("bob"),
            followee: user("alice"),
        });
        for event in [post("alice"), follow] {
            assert_eq!(decode(&event.to_json()).unwrap(), event);
        }
    }

    #[test]
    fn the_wire_shape_is_the_documented_one() {
        let event = post("alice");
        let value: serde_json::Value = serde_json::from_slice(&event.to_json()).unwrap();
        assert_eq!(value["v"], 1);
        assert_eq!(value["type"], "post_created");
        assert_eq!(value["key"], "alice");
        assert_eq!(value["payload"]["author"], "alice");
        assert_eq!(value["payload"]["body"], "hello");
    }

    #[test]
    fn hand_written_events_decode() {
        let raw = json!({"v":1,"id":"e1","type":"followed","key":"alice","ts":"2026-11-23T12:00:00Z",
                         "payload":{"follower":"bob","followee":"alice"}});
        let event = decode(raw.to_string().as_bytes()).unwrap();
        assert_eq!(event.event_type(), "followed");
    }

    #[test]
    fn unknown_versions_and_types_are_told_apart_from_poison() {
        let newer = json!({"v":2,"id":"e1","type":"post_created","key":"a","ts":"2026-11-23T12:00:00Z","payload":{}});
        assert_eq!(
            decode(newer.to_string().as_bytes()),
            Err(DecodeError::UnsupportedVersion(2))
        );
        let unknown = json!({"v":1,"id":"e1","type":"post_liked","key":"a","ts":"2026-11-23T12:00:00Z","payload":{}});
        assert_eq!(
            decode(unknown.to_string().as_bytes()).unwrap_err().reason(),
            "unknown_type"
        );
        for poison in [
            &b"\xff\xfe"[..],
            b"[]",
            b"{}",
            b"{\"v\":\"1\"}",
            b"{\"v\":0}",
        ] {
            assert_eq!(
                decode(poison).unwrap_err().reason(),
                "malformed",
                "{poison:?}"
            );
        }
        let bad_payload = json!({"v":1,"id":"e1","type":"post_created","key":"a","ts":"2026-11-23T12:00:00Z","payload":{"author":"a"}});
        assert_eq!(
            decode(bad_payload.to_string().as_bytes())
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn semantic_rules_are_checked() {
        let mut wrong_key = post("alice");
        wrong_key.key = user("mallory");
        assert!(matches!(
            decode(&wrong_key.to_json()),
            Err(DecodeError::Invalid(e)) if e.field == "key"
        ));
        let self_follow = Envelope::followed(FollowChange {
            follower: user("alice"),
            followee: user("alice"),
        });
        assert_eq!(
            decode(&self_follow.to_json()).unwrap_err().reason(),
            "invalid"
        );
        let mut empty_body = post("alice");
        if let Event::PostCreated(p) = &mut empty_body.event {
            p.body = String::new();
        }
        assert_eq!(
            decode(&empty_body.to_json()).unwrap_err().reason(),
            "invalid"
        );
    }
}

/// Headers of a record in the dead-letter topic: why the event was refused, and where its original
/// stays readable in the source topic.
pub mod dead_letter_headers {
    /// A reason code: `malformed`, `invalid`, `unsupported_version`, `unknown_type` (see
    /// [`DecodeError::reason`](super::DecodeError::reason)) or `rejected_by_database`.
    pub const REASON: &str = "fanline-dlq-reason";
    /// The error in words.
    pub const ERROR: &str = "fanline-dlq-error";
    pub const SOURCE_TOPIC: &str = "fanline-source-topic";
    pub const SOURCE_PARTITION: &str = "fanline-source-partition";
    pub const SOURCE_OFFSET: &str = "fanline-source-offset";
    /// The reason of an event that decoded but that Postgres refused (a data or constraint error).
    pub const REJECTED_BY_DATABASE: &str = "rejected_by_database";
}
