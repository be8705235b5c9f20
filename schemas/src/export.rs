//! `GET /v1/users/{user}/export`: a user's data as JSON lines (`application/x-ndjson`), one
//! [`ExportRecord`] per line — the first says how many records of each kind follow (so a client shows
//! progress while it reads), the last how many were written (a download without it was cut short).
//! Everything the user put in: their profile, conversations (with their read position and mute),
//! groups (with their role), whom they follow and block, their posts and the messages they sent.
//! Not other people's records about them (followers, reports against them), and nothing of
//! other senders' messages.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// How many records of each kind the export holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ExportCounts {
    pub conversations: i64,
    pub groups: i64,
    pub follows: i64,
    pub blocks: i64,
    pub posts: i64,
    pub messages: i64,
}

impl ExportCounts {
    /// Every record between the first line and the last.
    pub fn total(&self) -> i64 {
        // The profile line is always there.
        1 + self.conversations
            + self.groups
            + self.follows
            + self.blocks
            + self.posts
            + self.messages
    }
}

/// One line of an export, tagged by `type`, in this order: `export`, `profile`, `conversation`s,
/// `group`s, `follow`s, `block`s, `post`s (oldest first), `message`s (by conversation, in seq order),
/// `end`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum ExportRecord {
    /// The first line: whose export, from which moment (one snapshot: every record is as of then) and
    /// how many records follow.
    Export {
        user: String,
        generated_at: DateTime<Utc>,
        counts: ExportCounts,
    },
    /// The account and profile (fields the user never set are absent).
    Profile {
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        registered_at: Option<DateTime<Utc>>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        display_name: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        age: Option<i16>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        gender: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        signature: Option<String>,
    },
    /// A conversation the user is or was in.
    Conversation {
        conversation_id: String,
        /// `direct` or `group`.
        kind: String,
        /// The conversation seq they have read up to.
        read_seq: i64,
        muted: bool,
        /// False once they left the group.
        active: bool,
    },
    /// A group they are or were a member of.
    Group {
        group_id: String,
        name: String,
        /// `owner`, `admin` or `member`.
        role: String,
        active: bool,
    },
    /// Someone they follow.
    Follow {
        followee: String,
        since: DateTime<Utc>,
    },
    /// Someone they block.
    Block {
        target: String,
        since: DateTime<Utc>,
    },
    /// A post of theirs that is not deleted.
    Post {
        post_id: String,
        body: String,
        created_at: DateTime<Utc>,
    },
    /// A message they sent; a recalled one without its body.
    Message {
        message_id: String,
        conversation_id: String,
        seq: i64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        body: Option<String>,
        created_at: DateTime<Utc>,
        recalled: bool,
    },
    /// The last line: how many records came before it (the first line included).
    End { records: i64 },
}
