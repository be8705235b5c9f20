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

use crate::activity::{UserActive, UserDormant};
use crate::content::Content;
use crate::ids::{
    validate_message_id, ConversationId, GroupId, MessageId, PostId, TimelineKey, UserId,
    ValidationError,
};
use crate::moderation::{
    AccountDeleted, AccountModeration, MessageRemoved, ReportFiled, ReportResolved,
};
use crate::revisions::{MessageEdited, PostEdited, Reaction};
use crate::safety::{
    BlockChange, ConversationMute, FollowBlock, GroupDissolved, GroupUpdated, HistoryVisibility,
    JoinRule, MemberMute,
};

/// The envelope version this build writes and the newest it reads.
pub const ENVELOPE_VERSION: u32 = 1;

/// Every event type this build understands, as spelled in the envelope's `type`.
pub const KNOWN_EVENT_TYPES: &[&str] = &[
    "post_created",
    "post_deleted",
    "followed",
    "unfollowed",
    "profile_updated",
    "group_created",
    "member_added",
    "member_removed",
    "message_sent",
    "message_recalled",
    "read_marked",
    "account_registered",
    "password_changed",
    "group_updated",
    "group_dissolved",
    "member_muted",
    "user_blocked",
    "user_unblocked",
    "follow_blocked",
    "follow_unblocked",
    "conversation_muted",
    "conversation_unmuted",
    "report_filed",
    "report_resolved",
    "account_disabled",
    "account_enabled",
    "message_removed",
    "user_active",
    "user_dormant",
    "account_deleted",
    "message_edited",
    "reaction_added",
    "reaction_removed",
    "post_edited",
];

/// One event on the topic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[schemars(title = "Fanline event")]
pub struct Envelope {
    /// Envelope version. Consumers dead-letter events whose version is newer than they understand.
    pub v: u32,
    /// Unique id of this event (a ULID).
    pub id: String,
    /// The timeline the event belongs to, also used as the Kafka message key: the author of a post, the
    /// followee of a follow or unfollow, the user of a profile; the conversation of a message, recall or
    /// read marker; the group's conversation (`g:GROUP`) of a group's creation and membership changes.
    pub key: TimelineKey,
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
    /// A user set their profile (the whole profile: absent optional fields are cleared).
    ProfileUpdated(ProfileUpdated),
    /// A group was created with its owner as first member.
    GroupCreated(GroupCreated),
    /// `user` joined a group (`by` = `user`) or was added by an owner or admin, or had their role changed.
    MemberAdded(MembershipChange),
    /// `user` left a group (`by` = `user`) or was removed by an owner or admin.
    MemberRemoved(MembershipChange),
    /// A message to a direct or group conversation.
    MessageSent(MessageSent),
    /// The sender took a message back (within the recall window).
    MessageRecalled(MessageRecalled),
    /// A user has read a conversation up to `seq`.
    ReadMarked(ReadMarked),
    /// Someone registered an account; the first registration of a user id wins.
    AccountRegistered(AccountRegistered),
    /// An account's owner set a new password (after giving the current one).
    PasswordChanged(PasswordChanged),
    /// An owner or admin changed a group's settings, or the owner handed it over.
    GroupUpdated(GroupUpdated),
    /// The owner ended a group.
    GroupDissolved(GroupDissolved),
    /// An owner or admin silenced a member for a time (or lifted it).
    MemberMuted(MemberMute),
    /// `blocker` blocked `target` (keyed by their direct conversation).
    UserBlocked(BlockChange),
    /// `blocker` lifted their block of `target`.
    UserUnblocked(BlockChange),
    /// A block's effect on one follow edge (keyed by the followee): removed, not re-creatable.
    FollowBlocked(FollowBlock),
    /// A lifted block's effect on one follow edge: it may be created again.
    FollowUnblocked(FollowBlock),
    /// A user muted a conversation (out of their total unread count).
    ConversationMuted(ConversationMute),
    /// A user unmuted a conversation.
    ConversationUnmuted(ConversationMute),
    /// A user reported a message, post, user or group to the operators.
    ReportFiled(ReportFiled),
    /// An operator closed a report.
    ReportResolved(ReportResolved),
    /// An operator locked an account out.
    AccountDisabled(AccountModeration),
    /// An operator let a disabled account back in.
    AccountEnabled(AccountModeration),
    /// An operator removed a message (a tombstone, as a recall).
    MessageRemoved(MessageRemoved),
    /// A user's device was there: fan-out writes their inbox again (keyed by the user).
    UserActive(UserActive),
    /// A user was away for the active window: fan-out stops writing their inbox (keyed by the user).
    UserDormant(UserDormant),
    /// A user (or an operator) deleted the account: erased, its relationships ended (keyed by the user).
    AccountDeleted(AccountDeleted),
    /// The sender changed a message's text or content (keyed by the conversation).
    MessageEdited(MessageEdited),
    /// A member reacted to a message with a key (keyed by the conversation).
    ReactionAdded(Reaction),
    /// A member took a reaction back.
    ReactionRemoved(Reaction),
    /// An author changed a post's text or content (keyed by the author).
    PostEdited(PostEdited),
}

pub use crate::ids::{validate_text, MAX_AGE, MAX_NAME_CHARS, MAX_TAG_CHARS, MAX_TEXT_CHARS};

/// Payload of `profile_updated` (keyed by the user).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ProfileUpdated {
    pub user: UserId,
    /// 1 to 100 characters.
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub age: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<String>,
}

/// Payload of `account_registered` (keyed by the user). The password is already an argon2id hash: a
/// plain password never reaches the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct AccountRegistered {
    pub user: UserId,
    /// An argon2id PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
}

/// Payload of `password_changed` (keyed by the user, in order with the registration). The new
/// password is already an argon2id hash.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct PasswordChanged {
    pub user: UserId,
    /// An argon2id PHC string (`$argon2id$v=19$...`).
    pub password_hash: String,
}

/// Whether `hash` is a plausible argon2id PHC string (what registrations and changes carry).
fn check_password_hash(hash: &str) -> Result<(), ValidationError> {
    if !hash.starts_with("$argon2id$") || hash.len() > 512 {
        return Err(ValidationError::new(
            "payload.password_hash",
            "must be an argon2id PHC string",
        ));
    }
    Ok(())
}

/// A member's role in a group: the owner (one, the creator), admins (may add and remove members) and
/// members.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, JsonSchema, utoipa::ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    Owner,
    Admin,
    Member,
}

impl Role {
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
        }
    }

    /// The role stored as `text` (anything else reads as the least: a member).
    pub fn parse(text: &str) -> Role {
        match text {
            "owner" => Role::Owner,
            "admin" => Role::Admin,
            _ => Role::Member,
        }
    }
}

/// Payload of `group_created` (keyed by `g:GROUP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct GroupCreated {
    pub group: GroupId,
    pub owner: UserId,
    /// 1 to 100 characters.
    pub name: String,
    /// A free tag (e.g. "team", "interest"), up to 32 characters.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    pub group_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Who may join. Absent in events written before join rules existed: those groups were open.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join_rule: Option<JoinRule>,
    /// How much history a member reads (absent: `joined`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history: Option<HistoryVisibility>,
    pub created_at: DateTime<Utc>,
}

/// Payload of `member_added` and `member_removed` (keyed by `g:GROUP`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MembershipChange {
    pub group: GroupId,
    pub user: UserId,
    /// Who made the change: the user themselves (join, leave) or an owner or admin.
    pub by: UserId,
    /// The role given (member_added only; default member). Only the owner gives admin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<Role>,
}

/// Payload of `message_sent` (keyed by the conversation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageSent {
    pub message_id: MessageId,
    pub conversation: ConversationId,
    pub sender: UserId,
    /// Up to 4096 characters (text and markdown: at least one).
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    /// The client's idempotency key: one message per (conversation, sender, client_msg_id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_msg_id: Option<String>,
    /// The seq of the message this one replies to, in the same conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reply_to: Option<i64>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    /// Users mentioned (at most [`MAX_MENTIONS`], no repeats).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mentions: Vec<UserId>,
    /// Mentions every member (group owners and admins only; fanout checks the role).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    pub created_at: DateTime<Utc>,
}

pub use crate::content::MAX_MENTIONS;

/// Payload of `message_recalled` (keyed by the conversation). `message_id` may also be the id a
/// retried duplicate got.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct MessageRecalled {
    pub message_id: MessageId,
    pub conversation: ConversationId,
    pub sender: UserId,
    pub recalled_at: DateTime<Utc>,
}

/// Payload of `read_marked` (keyed by the conversation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ReadMarked {
    pub conversation: ConversationId,
    pub user: UserId,
    /// Read up to this conversation seq (clamped to the conversation's last seq when applied).
    pub seq: i64,
}

impl ProfileUpdated {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_text("display_name", &self.display_name, true, MAX_NAME_CHARS)?;
        if self.age.is_some_and(|age| age > MAX_AGE) {
            return Err(ValidationError::new(
                "age",
                format!("must be at most {MAX_AGE}"),
            ));
        }
        if let Some(gender) = &self.gender {
            validate_text("gender", gender, false, MAX_TAG_CHARS)?;
        }
        if let Some(signature) = &self.signature {
            validate_text("signature", signature, false, MAX_TEXT_CHARS)?;
        }
        Ok(())
    }
}

impl GroupCreated {
    pub fn validate(&self) -> Result<(), ValidationError> {
        validate_text("name", &self.name, true, MAX_NAME_CHARS)?;
        if let Some(kind) = &self.group_type {
            validate_text("type", kind, false, MAX_TAG_CHARS)?;
        }
        if let Some(description) = &self.description {
            validate_text("description", description, false, MAX_TEXT_CHARS)?;
        }
        Ok(())
    }
}

impl MessageSent {
    /// The rules a message has by itself; membership is checked where it is known (fanout).
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.content.validate(&self.body)?;
        if let Some(id) = &self.client_msg_id {
            validate_message_id("client_msg_id", id)?;
        }
        if self.reply_to.is_some_and(|seq| seq < 1) {
            return Err(ValidationError::new("reply_to", "must be a seq, 1 or more"));
        }
        crate::content::validate_mentions(&self.conversation, &self.mentions, self.mention_all)?;
        if matches!(
            self.conversation.kind(),
            crate::ids::ConversationKind::Direct(..)
        ) && !self.conversation.is_direct_between(&self.sender)
        {
            return Err(ValidationError::new(
                "conversation",
                "a direct conversation's messages come from one of its two users",
            ));
        }
        Ok(())
    }
}

/// Payload of `post_created`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PostCreated {
    pub post_id: PostId,
    pub author: UserId,
    /// Up to 4096 characters (text and markdown: at least one).
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    /// The client's idempotency key: posts with the same author and message id are one post.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    pub created_at: DateTime<Utc>,
}

impl PostCreated {
    /// A post's own rules: its body, and its idempotency key if it has one.
    pub fn validate(&self) -> Result<(), ValidationError> {
        self.content.validate(&self.body)?;
        if let Some(id) = &self.message_id {
            validate_message_id("message_id", id)?;
        }
        Ok(())
    }
}

impl ReadMarked {
    /// A marker's own rule: seqs start at 0 (clamping to the conversation is fanout's).
    pub fn validate(&self) -> Result<(), ValidationError> {
        if self.seq < 0 {
            return Err(ValidationError::new("seq", "must not be negative"));
        }
        Ok(())
    }
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
    fn wrap(key: TimelineKey, event: Event) -> Self {
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
        Self::wrap((&post.author).into(), Event::PostCreated(post))
    }

    /// A new `post_deleted` event, keyed by its author (so it follows the create on one partition).
    pub fn post_deleted(delete: PostDeleted) -> Self {
        Self::wrap((&delete.author).into(), Event::PostDeleted(delete))
    }

    /// A new `followed` event, keyed by the followee.
    pub fn followed(change: FollowChange) -> Self {
        Self::wrap((&change.followee).into(), Event::Followed(change))
    }

    /// A new `unfollowed` event, keyed by the followee.
    pub fn unfollowed(change: FollowChange) -> Self {
        Self::wrap((&change.followee).into(), Event::Unfollowed(change))
    }

    /// A new `profile_updated` event, keyed by the user.
    pub fn profile_updated(profile: ProfileUpdated) -> Self {
        Self::wrap((&profile.user).into(), Event::ProfileUpdated(profile))
    }

    /// A new `group_created` event, keyed by the group's conversation.
    pub fn group_created(group: GroupCreated) -> Self {
        let key = (&ConversationId::group(&group.group)).into();
        Self::wrap(key, Event::GroupCreated(group))
    }

    /// A new `member_added` event, keyed by the group's conversation (in order with its messages).
    pub fn member_added(change: MembershipChange) -> Self {
        let key = (&ConversationId::group(&change.group)).into();
        Self::wrap(key, Event::MemberAdded(change))
    }

    /// A new `member_removed` event, keyed by the group's conversation.
    pub fn member_removed(change: MembershipChange) -> Self {
        let key = (&ConversationId::group(&change.group)).into();
        Self::wrap(key, Event::MemberRemoved(change))
    }

    /// A new `message_sent` event, keyed by its conversation.
    pub fn message_sent(message: MessageSent) -> Self {
        Self::wrap((&message.conversation).into(), Event::MessageSent(message))
    }

    /// A new `message_recalled` event, keyed by its conversation (after the message).
    pub fn message_recalled(recall: MessageRecalled) -> Self {
        Self::wrap(
            (&recall.conversation).into(),
            Event::MessageRecalled(recall),
        )
    }

    /// A new `post_edited` event, keyed by its author (after the post).
    pub fn post_edited(edit: PostEdited) -> Self {
        Self::wrap((&edit.author).into(), Event::PostEdited(edit))
    }

    /// A new `message_edited` event, keyed by its conversation (after the message).
    pub fn message_edited(edit: MessageEdited) -> Self {
        Self::wrap((&edit.conversation).into(), Event::MessageEdited(edit))
    }

    /// A new `reaction_added` (`added`) or `reaction_removed` event, keyed by its conversation.
    pub fn reaction(reaction: Reaction, added: bool) -> Self {
        let key = (&reaction.conversation).into();
        match added {
            true => Self::wrap(key, Event::ReactionAdded(reaction)),
            false => Self::wrap(key, Event::ReactionRemoved(reaction)),
        }
    }

    /// A new `read_marked` event, keyed by its conversation (in order with its messages).
    pub fn read_marked(read: ReadMarked) -> Self {
        Self::wrap((&read.conversation).into(), Event::ReadMarked(read))
    }

    /// A new `account_registered` event, keyed by the user (so registrations of one id are ordered).
    pub fn account_registered(account: AccountRegistered) -> Self {
        Self::wrap((&account.user).into(), Event::AccountRegistered(account))
    }

    /// A new `password_changed` event, keyed by the user (after the registration).
    pub fn password_changed(change: PasswordChanged) -> Self {
        Self::wrap((&change.user).into(), Event::PasswordChanged(change))
    }

    /// A new `group_updated` event, keyed by the group's conversation.
    pub fn group_updated(update: GroupUpdated) -> Self {
        let key = (&ConversationId::group(&update.group)).into();
        Self::wrap(key, Event::GroupUpdated(update))
    }

    /// A new `group_dissolved` event, keyed by the group's conversation.
    pub fn group_dissolved(dissolved: GroupDissolved) -> Self {
        let key = (&ConversationId::group(&dissolved.group)).into();
        Self::wrap(key, Event::GroupDissolved(dissolved))
    }

    /// A new `member_muted` event, keyed by the group's conversation (in order with its messages).
    pub fn member_muted(mute: MemberMute) -> Self {
        let key = (&ConversationId::group(&mute.group)).into();
        Self::wrap(key, Event::MemberMuted(mute))
    }

    /// A new `user_blocked` (or, `blocked` false, `user_unblocked`) event, keyed by the pair's direct
    /// conversation (in order with their direct messages). `None` for a block of oneself.
    pub fn user_blocked(change: BlockChange, blocked: bool) -> Option<Self> {
        let key = (&ConversationId::direct(&change.blocker, &change.target)?).into();
        Some(Self::wrap(
            key,
            if blocked {
                Event::UserBlocked(change)
            } else {
                Event::UserUnblocked(change)
            },
        ))
    }

    /// A new `follow_blocked` (or `follow_unblocked`) event, keyed by the followee (in order with the
    /// edge's follows).
    pub fn follow_blocked(edge: FollowBlock, blocked: bool) -> Self {
        let key = (&edge.followee).into();
        Self::wrap(
            key,
            if blocked {
                Event::FollowBlocked(edge)
            } else {
                Event::FollowUnblocked(edge)
            },
        )
    }

    /// A new `conversation_muted` (or `conversation_unmuted`) event, keyed by the conversation.
    pub fn conversation_muted(mute: ConversationMute, muted: bool) -> Self {
        let key = (&mute.conversation).into();
        Self::wrap(
            key,
            if muted {
                Event::ConversationMuted(mute)
            } else {
                Event::ConversationUnmuted(mute)
            },
        )
    }

    /// A new `report_filed` event, keyed by the reporter.
    pub fn report_filed(report: ReportFiled) -> Self {
        Self::wrap((&report.reporter).into(), Event::ReportFiled(report))
    }

    /// A new `report_resolved` event, keyed by the operator (it merges with the filing in any order).
    pub fn report_resolved(resolved: ReportResolved) -> Self {
        Self::wrap((&resolved.by).into(), Event::ReportResolved(resolved))
    }

    /// A new `account_disabled` (or, `disabled` false, `account_enabled`) event, keyed by the user.
    pub fn account_disabled(change: AccountModeration, disabled: bool) -> Self {
        let key = (&change.user).into();
        Self::wrap(
            key,
            if disabled {
                Event::AccountDisabled(change)
            } else {
                Event::AccountEnabled(change)
            },
        )
    }

    /// A new `account_deleted` event, keyed by the user (after their registration and posts).
    pub fn account_deleted(deleted: AccountDeleted) -> Self {
        Self::wrap((&deleted.user).into(), Event::AccountDeleted(deleted))
    }

    /// A new `message_removed` event, keyed by its conversation (after the message).
    pub fn message_removed(removed: MessageRemoved) -> Self {
        Self::wrap(
            (&removed.conversation).into(),
            Event::MessageRemoved(removed),
        )
    }

    /// A new `user_active` event, keyed by the user.
    pub fn user_active(active: UserActive) -> Self {
        Self::wrap((&active.user).into(), Event::UserActive(active))
    }

    /// A new `user_dormant` event, keyed by the user.
    pub fn user_dormant(dormant: UserDormant) -> Self {
        Self::wrap((&dormant.user).into(), Event::UserDormant(dormant))
    }

    /// The event type as spelled on the wire.
    pub fn event_type(&self) -> &'static str {
        match self.event {
            Event::PostCreated(_) => "post_created",
            Event::PostDeleted(_) => "post_deleted",
            Event::Followed(_) => "followed",
            Event::Unfollowed(_) => "unfollowed",
            Event::ProfileUpdated(_) => "profile_updated",
            Event::GroupCreated(_) => "group_created",
            Event::MemberAdded(_) => "member_added",
            Event::MemberRemoved(_) => "member_removed",
            Event::MessageSent(_) => "message_sent",
            Event::MessageRecalled(_) => "message_recalled",
            Event::ReadMarked(_) => "read_marked",
            Event::AccountRegistered(_) => "account_registered",
            Event::PasswordChanged(_) => "password_changed",
            Event::GroupUpdated(_) => "group_updated",
            Event::GroupDissolved(_) => "group_dissolved",
            Event::MemberMuted(_) => "member_muted",
            Event::UserBlocked(_) => "user_blocked",
            Event::UserUnblocked(_) => "user_unblocked",
            Event::FollowBlocked(_) => "follow_blocked",
            Event::FollowUnblocked(_) => "follow_unblocked",
            Event::ConversationMuted(_) => "conversation_muted",
            Event::ConversationUnmuted(_) => "conversation_unmuted",
            Event::ReportFiled(_) => "report_filed",
            Event::ReportResolved(_) => "report_resolved",
            Event::AccountDisabled(_) => "account_disabled",
            Event::AccountEnabled(_) => "account_enabled",
            Event::MessageRemoved(_) => "message_removed",
            Event::UserActive(_) => "user_active",
            Event::UserDormant(_) => "user_dormant",
            Event::AccountDeleted(_) => "account_deleted",
            Event::MessageEdited(_) => "message_edited",
            Event::ReactionAdded(_) => "reaction_added",
            Event::ReactionRemoved(_) => "reaction_removed",
            Event::PostEdited(_) => "post_edited",
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
                if post.author.as_str() != self.key.as_str() {
                    return Err(ValidationError::new(
                        "key",
                        "must equal payload.author for post_created",
                    ));
                }
                post.validate().map_err(in_payload)?;
            }
            Event::PostDeleted(delete) => {
                if delete.author.as_str() != self.key.as_str() {
                    return Err(ValidationError::new(
                        "key",
                        "must equal payload.author for post_deleted",
                    ));
                }
            }
            Event::Followed(change) | Event::Unfollowed(change) => {
                if change.followee.as_str() != self.key.as_str() {
                    return Err(ValidationError::new(
                        "key",
                        "must equal payload.followee for followed/unfollowed",
                    ));
                }
                change
                    .validate()
                    .map_err(|err| err.in_field("payload.followee"))?;
            }
            Event::ProfileUpdated(profile) => {
                self.expect_key(profile.user.as_str(), "payload.user")?;
                profile.validate().map_err(in_payload)?;
            }
            Event::GroupCreated(group) => {
                self.expect_key(
                    ConversationId::group(&group.group).as_str(),
                    "g:payload.group",
                )?;
                group.validate().map_err(in_payload)?;
            }
            Event::MemberAdded(change) | Event::MemberRemoved(change) => {
                self.expect_key(
                    ConversationId::group(&change.group).as_str(),
                    "g:payload.group",
                )?;
            }
            Event::MessageSent(message) => {
                self.expect_key(message.conversation.as_str(), "payload.conversation")?;
                message.validate().map_err(in_payload)?;
            }
            Event::MessageRecalled(recall) => {
                self.expect_key(recall.conversation.as_str(), "payload.conversation")?;
            }
            Event::MessageEdited(_)
            | Event::ReactionAdded(_)
            | Event::ReactionRemoved(_)
            | Event::PostEdited(_) => self.validate_revision()?,
            Event::ReadMarked(read) => {
                self.expect_key(read.conversation.as_str(), "payload.conversation")?;
                read.validate().map_err(in_payload)?;
            }
            Event::AccountRegistered(_) | Event::PasswordChanged(_) | Event::AccountDeleted(_) => {
                self.validate_account()?
            }
            Event::GroupUpdated(_)
            | Event::GroupDissolved(_)
            | Event::MemberMuted(_)
            | Event::UserBlocked(_)
            | Event::UserUnblocked(_)
            | Event::FollowBlocked(_)
            | Event::FollowUnblocked(_)
            | Event::ConversationMuted(_)
            | Event::ConversationUnmuted(_) => self.validate_safety()?,
            Event::ReportFiled(_)
            | Event::ReportResolved(_)
            | Event::AccountDisabled(_)
            | Event::AccountEnabled(_)
            | Event::MessageRemoved(_) => self.validate_moderation()?,
            Event::UserActive(_) | Event::UserDormant(_) => self.validate_activity()?,
        }
        Ok(())
    }

    /// [`Self::validate`] of an account's events: keyed by their user; hashes that are argon2id.
    fn validate_account(&self) -> Result<(), ValidationError> {
        match &self.event {
            Event::AccountRegistered(account) => {
                self.expect_key(account.user.as_str(), "payload.user")?;
                check_password_hash(&account.password_hash)
            }
            Event::PasswordChanged(change) => {
                self.expect_key(change.user.as_str(), "payload.user")?;
                check_password_hash(&change.password_hash)
            }
            Event::AccountDeleted(deleted) => {
                self.expect_key(deleted.user.as_str(), "payload.user")
            }
            _ => Ok(()),
        }
    }

    /// [`Self::validate`] of edits and reactions (`crate::revisions`): keyed by their conversation.
    fn validate_revision(&self) -> Result<(), ValidationError> {
        match &self.event {
            Event::MessageEdited(edit) => {
                self.expect_key(edit.conversation.as_str(), "payload.conversation")?;
                edit.validate().map_err(in_payload)
            }
            Event::ReactionAdded(reaction) | Event::ReactionRemoved(reaction) => {
                self.expect_key(reaction.conversation.as_str(), "payload.conversation")?;
                reaction.validate().map_err(in_payload)
            }
            Event::PostEdited(edit) => {
                self.expect_key(edit.author.as_str(), "payload.author")?;
                edit.validate().map_err(in_payload)
            }
            _ => Ok(()),
        }
    }

    /// [`Self::validate`] of the activity events (`crate::activity`): keyed by their user.
    fn validate_activity(&self) -> Result<(), ValidationError> {
        match &self.event {
            Event::UserActive(active) => self.expect_key(active.user.as_str(), "payload.user"),
            Event::UserDormant(dormant) => self.expect_key(dormant.user.as_str(), "payload.user"),
            _ => Ok(()),
        }
    }

    /// [`Self::validate`] of the moderation events (`crate::moderation`): keys and payload rules.
    fn validate_moderation(&self) -> Result<(), ValidationError> {
        match &self.event {
            Event::ReportFiled(report) => {
                self.expect_key(report.reporter.as_str(), "payload.reporter")?;
                report.validate().map_err(in_payload)?;
            }
            Event::ReportResolved(resolved) => {
                self.expect_key(resolved.by.as_str(), "payload.by")?;
                resolved.validate().map_err(in_payload)?;
            }
            Event::AccountDisabled(change) | Event::AccountEnabled(change) => {
                self.expect_key(change.user.as_str(), "payload.user")?;
                change.validate().map_err(in_payload)?;
            }
            Event::MessageRemoved(removed) => {
                self.expect_key(removed.conversation.as_str(), "payload.conversation")?;
            }
            _ => {}
        }
        Ok(())
    }

    /// [`Self::validate`] of the safety events (`crate::safety`): keys and payload rules.
    fn validate_safety(&self) -> Result<(), ValidationError> {
        match &self.event {
            Event::GroupUpdated(update) => {
                self.expect_key(
                    ConversationId::group(&update.group).as_str(),
                    "g:payload.group",
                )?;
                update.validate().map_err(in_payload)?;
            }
            Event::GroupDissolved(dissolved) => {
                self.expect_key(
                    ConversationId::group(&dissolved.group).as_str(),
                    "g:payload.group",
                )?;
            }
            Event::MemberMuted(mute) => {
                self.expect_key(
                    ConversationId::group(&mute.group).as_str(),
                    "g:payload.group",
                )?;
            }
            Event::UserBlocked(change) | Event::UserUnblocked(change) => {
                change.validate().map_err(in_payload)?;
                let pair = ConversationId::direct(&change.blocker, &change.target);
                self.expect_key(
                    pair.as_ref().map_or("", ConversationId::as_str),
                    "the direct conversation of payload.blocker and payload.target",
                )?;
            }
            Event::FollowBlocked(edge) | Event::FollowUnblocked(edge) => {
                self.expect_key(edge.followee.as_str(), "payload.followee")?;
                edge.validate().map_err(in_payload)?;
            }
            Event::ConversationMuted(mute) | Event::ConversationUnmuted(mute) => {
                self.expect_key(mute.conversation.as_str(), "payload.conversation")?;
                mute.validate().map_err(in_payload)?;
            }
            _ => {}
        }
        Ok(())
    }

    fn expect_key(&self, expected: &str, what: &str) -> Result<(), ValidationError> {
        if self.key.as_str() != expected {
            return Err(ValidationError::new(
                "key",
                format!("must equal {what} for {}", self.event_type()),
            ));
        }
        Ok(())
    }
}

/// The payload's own error, named as a field of the envelope.
fn in_payload(err: ValidationError) -> ValidationError {
    let field = format!("payload.{}", err.field);
    err.in_field(field)
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
            content: Default::default(),
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

    fn conversation(raw: &str) -> ConversationId {
        ConversationId::parse("conversation", raw).unwrap()
    }

    fn message(conversation_id: &str, sender: &str) -> Envelope {
        Envelope::message_sent(MessageSent {
            message_id: MessageId::generate(),
            conversation: conversation(conversation_id),
            sender: user(sender),
            body: "hi".into(),
            content: Default::default(),
            reply_to: None,
            forwarded: false,
            mentions: Vec::new(),
            mention_all: false,
            client_msg_id: Some("c1".into()),
            created_at: Utc::now(),
        })
    }

    #[test]
    fn im_events_round_trip_and_are_keyed_by_their_conversation() {
        let group = GroupId::parse("group", "team").unwrap();
        let events = [
            message("d:alice:bob", "bob"),
            message("g:team", "carol"),
            Envelope::group_created(GroupCreated {
                group: group.clone(),
                owner: user("alice"),
                name: "Team".into(),
                group_type: Some("work".into()),
                description: None,
                join_rule: None,
                history: None,
                created_at: Utc::now(),
            }),
            Envelope::member_added(MembershipChange {
                group: group.clone(),
                user: user("bob"),
                by: user("alice"),
                role: Some(Role::Admin),
            }),
            Envelope::member_removed(MembershipChange {
                group,
                user: user("bob"),
                by: user("bob"),
                role: None,
            }),
            Envelope::read_marked(ReadMarked {
                conversation: conversation("d:alice:bob"),
                user: user("alice"),
                seq: 3,
            }),
            Envelope::message_recalled(MessageRecalled {
                message_id: MessageId::generate(),
                conversation: conversation("d:alice:bob"),
                sender: user("alice"),
                recalled_at: Utc::now(),
            }),
            Envelope::profile_updated(ProfileUpdated {
                user: user("alice"),
                display_name: "Alice".into(),
                age: Some(30),
                gender: None,
                signature: Some("hello".into()),
            }),
        ];
        for event in events {
            assert_eq!(decode(&event.to_json()).unwrap(), event);
        }
        assert_eq!(message("d:alice:bob", "bob").key.as_str(), "d:alice:bob");
        let value: serde_json::Value =
            serde_json::from_slice(&message("g:team", "carol").to_json()).unwrap();
        assert_eq!(value["key"], "g:team");
        assert_eq!(value["payload"]["conversation"], "g:team");
    }

    #[test]
    fn im_rules_are_checked() {
        // A direct message from a third user, or keyed by another conversation.
        assert_eq!(
            decode(&message("d:alice:bob", "mallory").to_json()).unwrap_err(),
            DecodeError::Invalid(ValidationError::new(
                "payload.conversation",
                "a direct conversation's messages come from one of its two users"
            ))
        );
        let mut moved = message("d:alice:bob", "bob");
        moved.key = TimelineKey::parse("key", "g:team").unwrap();
        assert!(
            matches!(decode(&moved.to_json()), Err(DecodeError::Invalid(e)) if e.field == "key")
        );
        let read = Envelope::read_marked(ReadMarked {
            conversation: conversation("g:team"),
            user: user("alice"),
            seq: -1,
        });
        assert!(
            matches!(decode(&read.to_json()), Err(DecodeError::Invalid(e)) if e.field == "payload.seq")
        );
        let profile = Envelope::profile_updated(ProfileUpdated {
            user: user("alice"),
            display_name: " ".into(),
            age: Some(200),
            gender: None,
            signature: None,
        });
        assert!(
            matches!(decode(&profile.to_json()), Err(DecodeError::Invalid(e)) if e.field == "payload.display_name")
        );
        let reversed = json!({"v":1,"id":"e1","type":"read_marked","key":"d:bob:alice","ts":"2026-11-23T12:00:00Z",
                              "payload":{"conversation":"d:bob:alice","user":"bob","seq":1}});
        assert_eq!(
            decode(reversed.to_string().as_bytes())
                .unwrap_err()
                .reason(),
            "malformed"
        );
    }

    #[test]
    fn semantic_rules_are_checked() {
        let mut wrong_key = post("alice");
        wrong_key.key = (&user("mallory")).into();
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
