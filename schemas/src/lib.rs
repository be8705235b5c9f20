//! Fanline's contracts, shared by every service and by anyone who produces events by hand.
//!
//! # Layout
//! - [`activity`]: the payloads of user activity, which decides whose inboxes fan-out writes.
//! - [`api`]: the HTTP API's request and response bodies, page limits, long-poll waits and cursor
//!   codecs.
//! - [`requests`]: request → event conversions; each payload validates itself, for every entry point.
//! - [`realtime`]: the WebSocket protocol's frames, frame limits and close codes.
//! - [`export`]: the lines of a user's data export.
//! - [`content`]: content types, attachments' metadata and app payloads of messages and posts, their
//!   rules and previews.
//! - [`committed`]: checking a generated document (JSON Schema, OpenAPI) against its committed copy.
//! - [`ids`]: user ids, post ids and the limits on text fields, with the validation every service uses.
//! - [`moderation`]: the payloads of reports and of what operators do (disable accounts, remove).
//! - [`search`]: how text becomes searchable — folding, Chinese pieces, the `tsvector`/`tsquery` literals.
//! - [`revisions`]: the payloads of edits and reactions — what changes a message after it was sent.
//! - [`safety`]: the payloads of group policies, blocks and mutes (their rules' keys explained there).
//! - [`events`]: the versioned event envelope written to Kafka and its decoder, which tells a poison
//!   event from an event of a newer version or unknown type.
//! - [`json_schema`]: the JSON Schema of the envelope, generated from the Rust types and committed as
//!   `schemas/event.schema.json`.
//! - [`MIGRATOR`]: the Postgres schema (store timelines, follow graph, sync timelines), and [`db`]:
//!   what a failed Postgres call means (unavailable, refused data, or a bug).
//!
//! Architecture invariant: only this crate defines wire and table shapes, and the rules and limits
//! that go with them.

pub mod activity;
pub mod api;
pub mod committed;
pub mod content;
pub mod db;
pub mod events;
pub mod export;
pub mod ids;
pub mod json_schema;
pub mod moderation;
pub mod realtime;
pub mod requests;
pub mod revisions;
pub mod safety;
pub mod search;

pub use activity::{UserActive, UserDormant};
pub use content::{Attachment, Content, ContentType};
pub use events::{
    AccountRegistered, DecodeError, Envelope, Event, FollowChange, GroupCreated, MembershipChange,
    MessageRecalled, MessageSent, PasswordChanged, PostCreated, PostDeleted, ProfileUpdated,
    ReadMarked, Role, ENVELOPE_VERSION,
};
pub use ids::{
    AttachmentId, ConversationId, DeviceId, GroupId, MessageId, PostId, TimelineKey, UserId,
    ValidationError,
};
pub use moderation::{
    AccountDeleted, AccountModeration, MessageRemoved, ReportFiled, ReportKind, ReportResolved,
};
pub use revisions::{MessageEdited, PostEdited, Reaction};
pub use safety::{
    BlockChange, ConversationMute, FollowBlock, GroupDissolved, GroupUpdated, HistoryVisibility,
    JoinRule, MemberMute,
};

/// Migrations for the Postgres schema; applying them twice is a no-op (sqlx records what ran).
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Default cap on the users one user follows (`FANLINE_MAX_FOLLOWS_PER_USER`): Twitter's long-standing
/// follow limit, and WeChat's first friend limit.
pub const DEFAULT_MAX_FOLLOWS_PER_USER: i64 = 5_000;
/// Default cap on the groups one user is a member of (`FANLINE_MAX_GROUPS_PER_USER`), as Telegram's.
pub const DEFAULT_MAX_GROUPS_PER_USER: i64 = 500;
/// Default cap on a group's members (`FANLINE_MAX_GROUP_MEMBERS`): the largest group measured
/// (`fanline-im-bench`: a message to a 100,000-member group writes 2 rows in 1.5 ms).
pub const DEFAULT_MAX_GROUP_MEMBERS: i64 = 100_000;

/// Default Kafka bootstrap servers of every service.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";
/// Default Postgres URL of fanout and reader (the local stack's database).
pub const DEFAULT_DATABASE_URL: &str = "postgres://root@127.0.0.1:5432/fanline";
/// Default name of the events topic.
pub const DEFAULT_EVENTS_TOPIC: &str = "fanline.events";
/// Default name of the dead-letter topic for events that cannot be decoded or applied.
pub const DEFAULT_DLQ_TOPIC: &str = "fanline.events.dlq";
