//! What changes a message after it was sent, besides a recall: its sender's edits and everyone's
//! reactions. Both are keyed by the conversation, so they apply in order with the message itself.
//!
//! Edits name the version they were made on (`version`, optimistic concurrency): a retried or late
//! edit of a version that is no longer current changes nothing, so the newest text wins whatever
//! the retries. Reactions are rows, one per (message, user, key); counts are derived from them.

use chrono::{DateTime, Utc};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::content::Content;
use crate::ids::{ConversationId, MessageId, PostId, UserId, ValidationError};

/// A reaction key's length in bytes (one emoji with its modifiers, or a `:shortcode:`).
pub const MAX_REACTION_KEY_BYTES: usize = 64;
/// At most this many different keys one user puts on one message.
pub const MAX_REACTIONS_PER_USER: i64 = 20;

/// Payload of `message_edited` (keyed by the conversation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageEdited {
    /// The message (or the id a retried duplicate got).
    pub message_id: MessageId,
    pub conversation: ConversationId,
    /// Only the sender edits.
    pub sender: UserId,
    /// The new text (rules as for a message).
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    /// Users the new text mentions (replaces the old mentions).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    /// The version this edit was made on (1 = as sent); absent: whatever is current.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<i32>,
    /// When ingest accepted it: the edit window counts from the message's time to this.
    pub edited_at: DateTime<Utc>,
}

impl MessageEdited {
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.content.validate(&self.body)?;
        if self.version.is_some_and(|v| v < 1) {
            return Err(ValidationError::new("version", "versions start at 1"));
        }
        crate::content::validate_mentions(&self.conversation, &self.mentions, self.mention_all)
    }
}

/// Payload of `post_edited` (keyed by the author): the author replaced a post's text and content.
/// Feeds and timelines read the current text, so no inbox changes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PostEdited {
    /// The post (or the id a retried duplicate got).
    pub post_id: PostId,
    pub author: UserId,
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    /// When ingest accepted it.
    pub edited_at: DateTime<Utc>,
}

impl PostEdited {
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.content.validate(&self.body)
    }
}

/// Payload of `reaction_added` and `reaction_removed` (keyed by the conversation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct Reaction {
    pub conversation: ConversationId,
    /// The message's conversation seq.
    pub seq: i64,
    pub user: UserId,
    /// One emoji (a single grapheme: skin tones and ZWJ sequences included) or a `:shortcode:` of
    /// 1 to 32 lower-case letters, digits, `_`, `+`, `-`.
    pub key: String,
    /// When ingest accepted it.
    pub at: DateTime<Utc>,
}

impl Reaction {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.seq < 1 {
            return Err(ValidationError::new("seq", "must be a seq, 1 or more"));
        }
        validate_reaction_key(&self.key)
    }
}

/// A reaction key: one grapheme that is not plain text (an emoji, a symbol), or a `:shortcode:`.
pub fn validate_reaction_key(key: &str) -> Result<(), ValidationError> {
    let shortcode = key
        .strip_prefix(':')
        .and_then(|k| k.strip_suffix(':'))
        .is_some_and(|code| {
            (1..=32).contains(&code.len())
                && code
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_+-".contains(&b))
        });
    if shortcode {
        return Ok(());
    }
    use unicode_segmentation::UnicodeSegmentation;
    let one_grapheme = key.len() <= MAX_REACTION_KEY_BYTES && key.graphemes(true).count() == 1;
    let plain = key
        .chars()
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c.is_whitespace() || c.is_control());
    if !one_grapheme || plain {
        return Err(ValidationError::new(
            "key",
            "must be one emoji or a :shortcode: (lower case, digits, _ + -)",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reaction_keys_are_one_emoji_or_a_shortcode() {
        for good in ["👍", "❤️", "👍🏽", "👩‍👩‍👧", "🇩🇪", ":party:", ":+1:", "✔"]
        {
            assert!(validate_reaction_key(good).is_ok(), "{good}");
        }
        for bad in [
            "", "a", "ok", "👍👍", " ", ":Party:", "::", ":a b:", "\u{7}",
        ] {
            assert!(validate_reaction_key(bad).is_err(), "{bad:?}");
        }
    }
}
