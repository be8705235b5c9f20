//! The payloads of moderation: reports by users, and what operators do — resolve reports, disable and
//! re-enable accounts, remove messages (posts are removed with `post_deleted`, groups dissolved with
//! `group_dissolved`). Operators are accounts the deployment's configuration names
//! (`FANLINE_OPERATORS`), never ones that granted it to themselves; ingest checks that before it
//! appends, so fanout applies an operator's event as an authorised fact.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{
    validate_text, ConversationId, GroupId, MessageId, PostId, UserId, ValidationError,
    MAX_TEXT_CHARS,
};

/// What a report is about.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ReportKind {
    Message,
    Post,
    User,
    Group,
}

impl ReportKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ReportKind::Message => "message",
            ReportKind::Post => "post",
            ReportKind::User => "user",
            ReportKind::Group => "group",
        }
    }
}

/// Payload of `report_filed` (keyed by the reporter): `reporter` reports a message (its id and
/// conversation), a post (its id and author), a user or a group, with a reason.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportFiled {
    /// A ULID given by ingest.
    pub report_id: String,
    pub reporter: UserId,
    pub kind: ReportKind,
    /// The message id, post id, user id or group id.
    pub subject: String,
    /// The message's conversation (messages) or the post's author (posts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub context: Option<String>,
    /// 1 to 1000 characters.
    pub reason: String,
    pub created_at: DateTime<Utc>,
}

impl ReportFiled {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_report_id("report_id", &self.report_id)?;
        validate_text("reason", &self.reason, true, MAX_TEXT_CHARS)?;
        let context = self.context.as_deref();
        match self.kind {
            ReportKind::Message => {
                MessageId::parse("subject", &self.subject)?;
                ConversationId::parse("context", context.unwrap_or_default())?;
            }
            ReportKind::Post => {
                PostId::parse("subject", &self.subject)?;
                UserId::parse("context", context.unwrap_or_default())?;
            }
            ReportKind::User => {
                UserId::parse("subject", &self.subject)?;
            }
            ReportKind::Group => {
                GroupId::parse("subject", &self.subject)?;
            }
        }
        Ok(())
    }
}

/// A report id: 1 to 64 letters and digits (ingest gives ULIDs).
pub fn validate_report_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.len() > 64 || !id.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(ValidationError::new(
            field,
            "must be 1 to 64 letters and digits",
        ));
    }
    Ok(())
}

/// Payload of `report_resolved` (keyed by the operator): an operator closed a report, saying how.
/// Applied in any order with the report's filing (both merge into one row).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReportResolved {
    pub report_id: String,
    pub by: UserId,
    /// What was done, e.g. "removed the message", "no violation": 1 to 1000 characters.
    pub resolution: String,
    pub resolved_at: DateTime<Utc>,
}

impl ReportResolved {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_report_id("report_id", &self.report_id)?;
        validate_text("resolution", &self.resolution, true, MAX_TEXT_CHARS)
    }
}

/// Payload of `account_disabled` and `account_enabled` (keyed by the user, in order with their
/// registration): an operator locks an account out (or lets it back in).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountModeration {
    pub user: UserId,
    pub by: UserId,
    /// Why, for the record (disabling only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl AccountModeration {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(reason) = &self.reason {
            validate_text("reason", reason, false, MAX_TEXT_CHARS)?;
        }
        Ok(())
    }
}

/// Payload of `account_deleted` (keyed by the user, in order with their registration and posts): the
/// user (or an operator) deletes the account. Its profile, posts' and messages' contents, sessions,
/// devices and inbox are erased; its memberships, follows and blocks are ended by ordinary events of
/// their own keys (docs/design.md "Account deletion"). The id is never registered again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountDeleted {
    pub user: UserId,
    /// The user themselves or an operator.
    pub by: UserId,
}

/// Payload of `message_removed` (keyed by the conversation): an operator removes a message, as its
/// sender's recall would (a tombstone: the body is gone, the seq stays), at any time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageRemoved {
    pub message_id: MessageId,
    pub conversation: ConversationId,
    pub by: UserId,
    pub removed_at: DateTime<Utc>,
}
