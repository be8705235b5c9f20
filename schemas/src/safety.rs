//! The payloads of the safety events: group policies (join rule, history visibility, owner transfer,
//! dissolution) and blocks between users. Their `Event` variants and keys are in [`crate::events`].
//!
//! Each event is keyed so that the rule it changes is decided in order with what it governs: a group's
//! settings on the group's key (`g:GROUP`), with its joins and messages; a block on the pair's direct
//! conversation (`d:A:B`), with their direct messages, and — one event per direction — on each
//! followee's key, with the follows it forbids.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::ids::{validate_text, GroupId, UserId, ValidationError, MAX_NAME_CHARS, MAX_TEXT_CHARS};

/// Who may become a member of a group.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum JoinRule {
    /// Anyone may join, and owner and admins add members directly.
    Open,
    /// Only whom an owner or admin invited, after accepting (the default of new groups).
    Invite,
    /// Anyone may ask; an owner or admin accepts or declines. An invitation also works.
    Approval,
}

impl JoinRule {
    pub fn as_str(self) -> &'static str {
        match self {
            JoinRule::Open => "open",
            JoinRule::Invite => "invite",
            JoinRule::Approval => "approval",
        }
    }

    /// The rule stored as `text` (an unknown spelling reads as the safe `invite`).
    pub fn parse(text: &str) -> JoinRule {
        match text {
            "open" => JoinRule::Open,
            "approval" => JoinRule::Approval,
            _ => JoinRule::Invite,
        }
    }
}

/// How much of a group's history a member reads.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum HistoryVisibility {
    /// From their (latest) join on (the default).
    Joined,
    /// The whole history, also what was said before they joined.
    Shared,
}

impl HistoryVisibility {
    pub fn as_str(self) -> &'static str {
        match self {
            HistoryVisibility::Joined => "joined",
            HistoryVisibility::Shared => "shared",
        }
    }

    /// The visibility stored as `text` (an unknown spelling reads as the safe `joined`).
    pub fn parse(text: &str) -> HistoryVisibility {
        match text {
            "shared" => HistoryVisibility::Shared,
            _ => HistoryVisibility::Joined,
        }
    }
}

/// Payload of `group_updated` (keyed by `g:GROUP`): the settings `by` changes; absent ones stay.
/// Owner and admins change name, description, join rule and history visibility; only the owner
/// hands the group to another active member (`owner`), and becomes an admin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupUpdated {
    pub group: GroupId,
    pub by: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_rule: Option<JoinRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryVisibility>,
    /// The new owner (owner only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub owner: Option<UserId>,
    /// Keep the group's messages this many days (owner only; at most the deployment's retention);
    /// 0: back to the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retention_days: Option<u32>,
}

/// The longest per-group retention, in days (a hundred years).
pub const MAX_RETENTION_DAYS: u32 = 36_500;

impl GroupUpdated {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if let Some(name) = &self.name {
            validate_text("name", name, true, MAX_NAME_CHARS)?;
        }
        if let Some(description) = &self.description {
            validate_text("description", description, false, MAX_TEXT_CHARS)?;
        }
        if self
            .retention_days
            .is_some_and(|days| days > MAX_RETENTION_DAYS)
        {
            return Err(ValidationError::new(
                "retention_days",
                "at most 36500 days (0: the deployment's retention)",
            ));
        }
        if self.name.is_none()
            && self.description.is_none()
            && self.join_rule.is_none()
            && self.history.is_none()
            && self.owner.is_none()
            && self.retention_days.is_none()
        {
            return Err(ValidationError::new(
                "name",
                "give at least one of name, description, join_rule, history, owner, retention_days",
            ));
        }
        Ok(())
    }
}

/// Payload of `group_dissolved` (keyed by `g:GROUP`): the owner (or an operator) ends the group. Every member leaves,
/// nothing more can be written to it, and its id is never given out again.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupDissolved {
    pub group: GroupId,
    pub by: UserId,
    /// `by` is an operator (moderation): ingest checked it, fanout does not ask for the owner.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub by_operator: bool,
}

/// Payload of `user_blocked` and `user_unblocked` (keyed by the pair's direct conversation `d:A:B`):
/// `blocker` blocks `target`. Direct messages between the two are refused while it stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct BlockChange {
    pub blocker: UserId,
    pub target: UserId,
}

impl BlockChange {
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.blocker == self.target {
            return Err(ValidationError::new("target", "you cannot block yourself"));
        }
        Ok(())
    }
}

/// Payload of `follow_blocked` and `follow_unblocked` (keyed by `followee`): the follow edge from
/// `follower` to `followee` is removed and cannot be re-created while a block between the two stands
/// (`by` blocked the other). A block writes one of these per direction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct FollowBlock {
    pub follower: UserId,
    pub followee: UserId,
    /// The blocker (one of the two).
    pub by: UserId,
}

impl FollowBlock {
    /// The two edges a block between `blocker` and `target` governs.
    pub fn both_ways(blocker: &UserId, target: &UserId) -> [FollowBlock; 2] {
        [
            FollowBlock {
                follower: blocker.clone(),
                followee: target.clone(),
                by: blocker.clone(),
            },
            FollowBlock {
                follower: target.clone(),
                followee: blocker.clone(),
                by: blocker.clone(),
            },
        ]
    }

    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.follower == self.followee {
            return Err(ValidationError::new("followee", "must not be the follower"));
        }
        if self.by != self.follower && self.by != self.followee {
            return Err(ValidationError::new("by", "must be one of the two users"));
        }
        Ok(())
    }
}

/// Payload of `conversation_muted` and `conversation_unmuted` (keyed by the conversation, in order
/// with its read markers): `user` mutes a conversation they take part in. Its unread count stays in
/// its own row but leaves the user's total.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ConversationMute {
    pub conversation: crate::ids::ConversationId,
    pub user: UserId,
}

impl ConversationMute {
    pub fn validate(&self) -> Result<(), ValidationError> {
        let direct = matches!(
            self.conversation.kind(),
            crate::ids::ConversationKind::Direct(..)
        );
        if direct && !self.conversation.is_direct_between(&self.user) {
            return Err(ValidationError::new(
                "conversation",
                "a direct conversation is muted by one of its two users",
            ));
        }
        Ok(())
    }
}

/// Payload of `member_muted` (keyed by `g:GROUP`): an owner or admin silences a member until `until`
/// (absent: lifted). Their messages written before then are refused (`muted`); the owner is never
/// muted, an admin only by the owner.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MemberMute {
    pub group: GroupId,
    pub user: UserId,
    pub by: UserId,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
}
