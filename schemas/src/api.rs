//! The HTTP API's request and response bodies, shared by the services and by clients such as the tests
//! and the bench.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Datelike, Utc};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::{Content, ConversationId, PostId, UserId};

/// Most posts accepted by one `POST /v1/posts/batch`.
pub const MAX_BATCH_POSTS: usize = 500;
/// Page size of feeds, timelines and sync scans when `limit` is not given.
pub const DEFAULT_PAGE_LIMIT: i64 = 20;
/// Largest accepted `limit`.
pub const MAX_PAGE_LIMIT: i64 = 200;
/// Longest `wait` of a long poll (`GET /v1/users/{user}/sync?wait=`), in seconds.
pub const MAX_WAIT_SECS: i64 = 60;
/// Length of a contact list entry's last-message preview, in characters.
pub const PREVIEW_CHARS: usize = 100;

/// Body of `POST /v1/posts`. Unknown fields are ignored so that newer clients keep working.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreatePostRequest {
    /// The author's user id.
    #[schema(value_type = crate::UserId)]
    pub author: String,
    /// Up to 4096 characters without NUL; text and markdown need one (not only white space), other
    /// content types may leave it empty (a caption).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    /// The client's idempotency key: retrying with the same author and message id never creates a
    /// second post. 1 to 128 characters without control characters.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, nullable = false)]
    pub message_id: Option<String>,
}

/// Body of `PATCH /v1/messages/{message_id}`: the message's new text and content (its mentions
/// replaced too; its reply and forward marks stay).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EditMessageRequest {
    /// The sender (only they edit).
    #[schema(value_type = crate::UserId)]
    pub from: String,
    #[schema(value_type = crate::ConversationId)]
    pub conversation: String,
    /// As for a message: text and markdown need one.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<crate::UserId>, max_items = 50)]
    pub mentions: Vec<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    /// The version being edited (history's `version`; 1 as sent): if another edit came first, this
    /// one changes nothing (fanout refuses it as `stale_version`). Absent: the last edit wins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    pub version: Option<i32>,
}

/// Body of `PATCH /v1/posts/{post_id}`: the post's new text and content.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct EditPostRequest {
    /// The author (only they edit).
    #[schema(value_type = crate::UserId)]
    pub author: String,
    /// As for a post: text and markdown need one.
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
}

/// Body of `POST /v1/attachments`: what the client is about to upload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadRequest {
    /// The media type the bytes are: lower case, `type/subtype`; not one a browser runs (HTML, SVG,
    /// JavaScript, XML).
    #[schema(example = "image/png", max_length = 127)]
    pub mime: String,
    /// The exact size in bytes (at most `FANLINE_ATTACHMENT_MAX_BYTES`, default 25 MiB).
    #[schema(minimum = 1)]
    pub size: u64,
    /// SHA-256 of the bytes, 64 lower-case hex digits: the store refuses other bytes.
    #[schema(min_length = 64, max_length = 64, pattern = "^[0-9a-f]{64}$")]
    pub sha256: String,
}

/// `201` of `POST /v1/attachments`: the new attachment's id and the request that uploads its bytes —
/// `method` to `url` with exactly `headers`, before `expires_at`. Then send a message or post whose
/// `attachments` name the id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UploadTicket {
    #[schema(value_type = crate::AttachmentId)]
    pub attachment: String,
    /// `PUT`.
    pub method: String,
    pub url: String,
    pub headers: std::collections::BTreeMap<String, String>,
    pub expires_at: DateTime<Utc>,
}

/// `GET /v1/attachments/{attachment}`: a short-lived URL to download it from (no token needed).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct DownloadLink {
    pub url: String,
    /// Media type and size, as the message holding it says.
    pub mime: String,
    pub size: u64,
    pub expires_at: DateTime<Utc>,
}

/// Body of a `202 Accepted` from ingest.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Accepted {
    /// Id of the post (posts only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::PostId>, nullable = false)]
    pub post_id: Option<String>,
    /// Id of the message (messages only). A retried send (same `client_msg_id`) gets another id that
    /// resolves to the first message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::MessageId>, nullable = false)]
    pub message_id: Option<String>,
    /// The conversation (messages, recalls and read markers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::ConversationId>, nullable = false)]
    pub conversation_id: Option<String>,
    /// Id of the report (reports only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub report_id: Option<String>,
    /// Id of the event appended to the log.
    pub event_id: String,
    /// Where the broker stored the event, for tracing it through the pipeline.
    pub partition: i32,
    pub offset: i64,
}

impl Accepted {
    /// The answer for an event the broker stored at `partition`/`offset`; the ids a write has are
    /// set on top (`Accepted { post_id: …, ..Accepted::of(…) }`).
    pub fn of(event_id: &str, partition: i32, offset: i64) -> Accepted {
        Accepted {
            report_id: None,
            post_id: None,
            message_id: None,
            conversation_id: None,
            event_id: event_id.to_owned(),
            partition,
            offset,
        }
    }
}

/// Body of `POST /v1/messages`: the sender and the message ([`MessageDraft`]'s fields).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SendMessageRequest {
    /// The sender.
    #[schema(value_type = crate::UserId)]
    pub from: String,
    #[serde(flatten)]
    pub draft: MessageDraft,
}

/// A message as its sender writes it (an HTTP send or a WebSocket `send` frame): to a user (`to`)
/// or a group (`group`), exactly one of them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageDraft {
    /// The other person of a 1:1 conversation (not `from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::UserId>, nullable = false)]
    pub to: Option<String>,
    /// The group of a group conversation; `from` must be a member (checked by fanout: a message from a
    /// non-member reaches nobody and comes back to the sender as a `refused` sync entry).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::GroupId>, nullable = false)]
    pub group: Option<String>,
    /// Up to 4096 characters without NUL; text and markdown need one (not only white space), other
    /// content types may leave it empty (a caption).
    #[serde(default)]
    #[schema(max_length = 4096)]
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    /// The client's idempotency key: retrying with the same one never creates a second message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 128, nullable = false)]
    pub client_msg_id: Option<String>,
    /// Replies to (quotes) the message with this seq in the same conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(minimum = 1, nullable = false)]
    pub reply_to: Option<i64>,
    /// The content was forwarded from another conversation (the client copies the text and uploads
    /// the files again: a message names only its sender's own uploads).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    /// Users mentioned (at most 50): each member's contact list counts unread mentions, muted or not.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<crate::UserId>, max_items = 50)]
    pub mentions: Vec<String>,
    /// `@all`: mentions every member of the group; a group's owner and admins only.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
}

/// Body of `PUT /v1/users/{user}`: the whole profile (absent optional fields are cleared).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ProfileRequest {
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 150, nullable = false)]
    pub age: Option<u16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 32, nullable = false)]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000, nullable = false)]
    pub signature: Option<String>,
}

/// Body of `POST /v1/sessions` (log in).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Credentials {
    #[schema(value_type = crate::UserId)]
    pub user: String,
    /// 8 characters to 256 bytes.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
}

/// Body of `POST /v1/accounts` (register).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Registration {
    /// Lowercase `[a-z0-9_.-]`, 1 to 64 characters.
    #[schema(value_type = crate::UserId)]
    pub user: String,
    /// 8 characters to 256 bytes.
    #[schema(min_length = 8, max_length = 256)]
    pub password: String,
    /// Needed only for an id that holds data from before it had an account; an operator gives it
    /// to the id's owner (`ingest --claim-code USER`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub claim_code: Option<String>,
}

impl std::fmt::Debug for Registration {
    // The password must never reach a log line, nor the claim code.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registration")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

/// What a user id is to a registration (`GET /v1/accounts/{user}/availability`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum IdState {
    /// Nobody has it: registering it works.
    Free,
    /// Someone registered it (a user to chat with).
    Taken,
    /// A deleted account's, or one holding data from before accounts: only an operator's claim code
    /// registers it.
    Reserved,
}

/// `GET /v1/accounts/{user}/availability`: asked by registration forms before they register, and by
/// "new chat" forms before they open a chat with an id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct IdAvailability {
    pub user: String,
    pub state: IdState,
}

/// Body of `PUT /v1/accounts/{user}/password`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PasswordChange {
    /// The password now: a stolen access token alone must not take the account over.
    pub current_password: String,
    /// 8 characters to 256 bytes.
    #[schema(min_length = 8, max_length = 256)]
    pub new_password: String,
}

impl std::fmt::Debug for PasswordChange {
    // Neither password may reach a log line.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PasswordChange { .. }")
    }
}

impl std::fmt::Debug for Credentials {
    // The password must never reach a log line, even through a debug print.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// Body of `POST /v1/sessions/refresh`.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct RefreshRequest {
    pub refresh_token: String,
}

impl std::fmt::Debug for RefreshRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RefreshRequest { refresh_token: <redacted> }")
    }
}

/// `200` of `POST /v1/sessions` and `/v1/sessions/refresh`: a short-lived access token for
/// `Authorization: Bearer`, and the refresh token that gets the next one (each refresh token works once).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SessionTokens {
    pub user: String,
    pub session_id: String,
    pub access_token: String,
    /// Seconds until the access token expires.
    pub expires_in: u64,
    pub refresh_token: String,
    /// Seconds until the refresh token (and so the session) expires.
    pub refresh_expires_in: u64,
}

impl std::fmt::Debug for SessionTokens {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTokens")
            .field("user", &self.user)
            .field("session_id", &self.session_id)
            .finish_non_exhaustive()
    }
}

/// Body of `POST /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct CreateGroupRequest {
    #[schema(value_type = crate::GroupId)]
    pub group: String,
    /// The creator: the group's owner and first member.
    #[schema(value_type = crate::UserId)]
    pub owner: String,
    /// 1 to 100 characters.
    #[schema(min_length = 1, max_length = 100)]
    pub name: String,
    /// A free tag, up to 32 characters.
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 32, nullable = false)]
    pub group_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000, nullable = false)]
    pub description: Option<String>,
    /// Who may join: `invite` (the default), `approval` or `open`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub join_rule: Option<crate::JoinRule>,
    /// How much history members read: `joined` (from their join on, the default) or `shared`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub history: Option<crate::HistoryVisibility>,
}

/// Body of `PATCH /v1/groups/{group}`: the settings to change (at least one).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateGroupRequest {
    /// Who changes them: the owner, or an admin (not `owner`).
    #[schema(value_type = crate::UserId)]
    pub by: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(min_length = 1, max_length = 100, nullable = false)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000, nullable = false)]
    pub description: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub join_rule: Option<crate::JoinRule>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub history: Option<crate::HistoryVisibility>,
    /// Hand the group to this active member (owner only; the old owner becomes an admin).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::UserId>, nullable = false)]
    pub owner: Option<String>,
    /// Keep the group's messages this many days (owner only; the deployment's retention, if it has
    /// one, still applies when shorter); 0: back to the deployment's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(maximum = 36500, nullable = false)]
    pub retention_days: Option<u32>,
}

/// Body of `POST /v1/reports`: what is reported and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReportRequest {
    /// Who reports (the caller).
    #[schema(value_type = crate::UserId)]
    pub reporter: String,
    pub kind: crate::ReportKind,
    /// The message id, post id, user id or group id.
    pub subject: String,
    /// The message's conversation (kind `message`) or the post's author (kind `post`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub context: Option<String>,
    #[schema(min_length = 1, max_length = 1000)]
    pub reason: String,
}

/// Body of `PUT /v1/admin/reports/{report_id}`: how an operator resolved a report.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ResolveReportRequest {
    #[schema(min_length = 1, max_length = 1000)]
    pub resolution: String,
}

/// Body of `PUT /v1/admin/accounts/{user}/disabled`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DisableAccountRequest {
    /// Why, for the record.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(max_length = 1000, nullable = false)]
    pub reason: Option<String>,
}

/// One report in the moderation queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportItem {
    pub report_id: String,
    pub reporter: String,
    /// message, post, user or group.
    pub kind: String,
    pub subject: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub context: Option<String>,
    pub reason: String,
    pub created_at: DateTime<Utc>,
    /// The reported message's or post's text, as it is now (empty once removed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub content: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resolved_by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resolution: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub resolved_at: Option<DateTime<Utc>>,
}

/// `GET /v1/admin/reports`: oldest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReportPage {
    pub reports: Vec<ReportItem>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// Body of `PUT /v1/groups/{group}/mutes/{user}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MuteMemberRequest {
    /// Who mutes: the owner, or an admin (members only).
    #[schema(value_type = crate::UserId)]
    pub by: String,
    /// Until when (at most a year ahead); messages written before then are refused with `muted`.
    pub until: DateTime<Utc>,
}

/// Body of `PUT /v1/users/{user}/conversations/{conversation}/read`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReadRequest {
    /// Read up to this conversation seq. A marker behind the current one changes nothing; one past the
    /// conversation's last seq is clamped to it.
    #[schema(minimum = 0)]
    pub seq: i64,
}

/// One post in a feed or store timeline page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedEntry {
    pub post_id: String,
    pub author: String,
    pub body: String,
    #[serde(flatten)]
    pub content: Content,
    pub created_at: DateTime<Utc>,
    /// When its author last edited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub edited_at: Option<DateTime<Utc>>,
}

/// `GET /v1/users/{user}/feed` and `/posts`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct FeedPage {
    pub entries: Vec<FeedEntry>,
    /// Pass as `cursor` for the next (older) page; `null` when there is none.
    #[schema(required)]
    pub next_cursor: Option<String>,
    /// An author's timeline (`/posts`) reached its end, and older posts were removed by retention.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub older_removed: bool,
}

/// What a sync entry carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum SyncKind {
    /// A post of a followed author (or the user's own).
    Post,
    /// A message of a conversation the user takes part in (their own too, for their other devices).
    Message,
    /// A message delivered earlier was recalled by its sender: drop it.
    Recall,
    /// A message the user sent was refused (e.g. not a member of the group); it reached nobody.
    Refused,
    /// A group invited the user (`conversation_id` is the group's, `author` who invited): accept with
    /// `PUT /v1/groups/{group}/members/{user}`, list with `GET /v1/users/{user}/invitations`.
    Invitation,
    /// A message delivered earlier was edited by its sender: `body` and content are the new ones.
    Edit,
    /// Someone (`author`) reacted to a message delivered earlier, or took a reaction back: its
    /// history (`after = conversation_seq - 1`, `limit = 1`) has the counts.
    Reaction,
}

/// One entry of a sync timeline: a post, a message, a recall or a refusal, in the user's one order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncEntry {
    pub seq: i64,
    pub kind: SyncKind,
    /// The post (kind `post`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub post_id: Option<String>,
    /// The message (kinds `message`, `recall`, `refused`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub message_id: Option<String>,
    /// The message's conversation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub conversation_id: Option<String>,
    /// The message's seq in its conversation (kinds `message` and `recall`): 1, 2, 3 … without gaps, so
    /// a device can tell it missed one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub conversation_seq: Option<i64>,
    /// The post's author or the message's sender.
    pub author: String,
    /// Empty for recalls, refusals and recalled messages.
    pub body: String,
    /// A post's or message's content type, attachments and payload (absent for plain text).
    #[serde(flatten)]
    pub content: Content,
    pub created_at: DateTime<Utc>,
    /// The message was recalled since (its body is gone).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// The message was removed since by its conversation's retention (its body is gone; the history
    /// now starts after it).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub expired: bool,
    /// Why a message or another write was refused (kind `refused`): `not_member`, `no_such_group`
    /// (also a dissolved group), `not_allowed`, `muted`, `blocked`, `edit_window`, `stale_version`, …
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reason: Option<String>,
    /// A refused write other than a message (kind `refused`, no `message_id`): `group_create`,
    /// `member_add`, `member_remove`, `edit`, `reaction_add`, `reaction_remove`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub action: Option<String>,
    /// What the refused write was about: the group, the member, the message id, the message's seq.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub subject: Option<String>,
}

/// A large (pull-mode) group conversation that advanced since the device's cursor: its messages are not
/// copied into members' inboxes; fetch them from the history after the last conversation seq you have.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct AdvancedConversation {
    pub conversation_id: String,
    /// The conversation's last message seq now.
    pub last_seq: i64,
    /// Its place in this sync timeline's order (≤ the page's `last_seq`).
    pub position: i64,
    /// Seqs of its messages recalled since the cursor: drop them (they reached nobody's inbox, so no
    /// `recall` entry tells of them).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub recalled: Vec<i64>,
    /// Seqs of its messages edited or reacted to since the cursor: fetch them again.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changed: Vec<i64>,
}

/// `GET /v1/users/{user}/sync`: ascending `seq`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct SyncPage {
    pub entries: Vec<SyncEntry>,
    /// Large group conversations (read-diffused) that advanced after `after` and up to `last_seq`: one
    /// poll tells a device about every big group without polling each.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub conversations: Vec<AdvancedConversation>,
    /// The highest seq in `entries`, or the request's `after` when there are none: poll with it next.
    pub last_seq: i64,
    /// Whether more entries follow right away.
    pub has_more: bool,
    /// Entries after `after` were removed by retention: this page has none, `last_seq` is the user's
    /// floor. Reload the contact list and the open histories (and the feed), then poll from `last_seq`.
    /// Unread counts and histories are whole; only the sync timeline's old entries are gone.
    #[serde(default)]
    pub reset: bool,
    /// With `reset`: the highest seq removed from this user's sync timeline.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub floor_seq: Option<i64>,
}

impl SyncPage {
    /// The answer to a cursor below the user's floor.
    pub fn reset(floor_seq: i64) -> SyncPage {
        SyncPage {
            entries: Vec::new(),
            conversations: Vec::new(),
            last_seq: floor_seq,
            has_more: true,
            reset: true,
            floor_seq: Some(floor_seq),
        }
    }
}

/// `GET /v1/users/{user}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Profile {
    pub user: String,
    pub display_name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub age: Option<i16>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub gender: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub signature: Option<String>,
}

/// `GET /v1/groups/{group}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Group {
    pub group: String,
    pub name: String,
    #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub group_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    pub owner: String,
    pub member_count: i64,
    pub created_at: DateTime<Utc>,
    /// The group's conversation id (`g:GROUP`).
    pub conversation_id: String,
    /// Who may join: `open`, `invite` or `approval`.
    pub join_rule: crate::JoinRule,
    /// How much history members read: `joined` or `shared`.
    pub history: crate::HistoryVisibility,
    /// The owner dissolved the group: it has no members and takes no messages.
    pub dissolved: bool,
    /// The owner's retention, in days (absent: the deployment's). Older messages are removed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub retention_days: Option<i32>,
}

/// An invitation to a group or a request to join one, waiting for the user (invitation) or for an
/// owner or admin (request).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingMembership {
    pub group: String,
    /// The group's name.
    pub name: String,
    pub user: String,
    /// `invitation` or `request`.
    pub kind: String,
    /// Who invited (an invitation) or the user (a request).
    pub by: String,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/users/{user}/invitations` and `GET /v1/groups/{group}/pending`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PendingPage {
    pub pending: Vec<PendingMembership>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// Where a search query's words occur in a hit's snippet: `length` characters from `start` (both counted
/// in characters, not bytes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Highlight {
    pub start: usize,
    pub length: usize,
}

/// A message that matches a search, with where to find it: open the conversation's history around
/// `conversation_seq` (`before=` / `after=`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageHit {
    pub conversation_id: String,
    pub conversation_seq: i64,
    pub message_id: String,
    pub sender: String,
    /// Up to 80 characters of the message around the first match.
    pub snippet: String,
    pub highlights: Vec<Highlight>,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/users/{user}/search/messages`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageSearchPage {
    pub hits: Vec<MessageHit>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// A post that matches a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostHit {
    pub post_id: String,
    pub author: String,
    /// Up to 80 characters of the post around the first match.
    pub snippet: String,
    pub highlights: Vec<Highlight>,
    pub created_at: DateTime<Utc>,
}

/// `GET /v1/users/{user}/search/posts`: newest first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct PostSearchPage {
    pub hits: Vec<PostHit>,
    /// Pass as `cursor` for the next (older) page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// A person found by a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserHit {
    pub user: String,
    /// Their profile's name, if they set one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub display_name: Option<String>,
}

/// `GET /v1/search/users`: best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct UserSearchPage {
    pub users: Vec<UserHit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// A group found by a search.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupHit {
    pub group: String,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub description: Option<String>,
    pub member_count: i64,
    /// `open`, `approval` or `invite`.
    pub join_rule: String,
}

/// `GET /v1/search/groups`: best first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct GroupSearchPage {
    pub groups: Vec<GroupHit>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// One user the caller blocked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Blocked {
    pub user: String,
    pub since: DateTime<Utc>,
}

/// `GET /v1/users/{user}/blocks`: by user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BlockPage {
    pub blocked: Vec<Blocked>,
    /// Pass as `cursor` for the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub next_cursor: Option<String>,
}

/// One member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Member {
    pub user: String,
    /// owner, admin or member.
    pub role: String,
}

/// `GET /v1/groups/{group}/members`: by user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MemberPage {
    pub members: Vec<Member>,
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// The last message of a conversation as its member saw it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct LastMessage {
    pub message_id: String,
    pub seq: i64,
    pub sender: String,
    /// The first 100 characters of the text, or what the message is ("[image]", "[file] report.pdf");
    /// empty when recalled.
    pub preview: String,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
}

/// One conversation of a user's contact list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationSummary {
    pub conversation_id: String,
    /// direct or group.
    pub kind: String,
    /// The other person (direct).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub peer: Option<String>,
    /// The peer's display name (direct, once they set a profile) or the group's name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub last_message: Option<LastMessage>,
    /// The seq of the last message delivered to this user.
    pub last_seq: i64,
    /// Read up to this seq.
    pub read_seq: i64,
    /// Messages from others after `read_seq` that were delivered to this user and not recalled.
    pub unread: i64,
    /// False once the user left the group (nothing is delivered after that, nothing counts as unread).
    pub active: bool,
    /// The user muted the conversation: its `unread` is not in `total_unread`.
    pub muted: bool,
    /// Unread messages that mention the user (or everyone): "[someone @ me]", shown muted or not.
    #[serde(default)]
    pub mentions: i64,
    pub last_activity: DateTime<Utc>,
}

/// `GET /v1/users/{user}/conversations`: most recent activity first.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ConversationPage {
    pub conversations: Vec<ConversationSummary>,
    /// The sum of `unread` over all the user's conversations that are not muted (not only this page).
    pub total_unread: i64,
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// One message of a conversation's history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct Message {
    pub seq: i64,
    pub message_id: String,
    pub sender: String,
    /// Empty when recalled or when its sender deleted their account.
    pub body: String,
    /// Content type, attachments and payload (absent for plain text; gone when recalled).
    #[serde(flatten)]
    pub content: Content,
    /// The message this one replies to, as the caller may see it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub reply_to: Option<QuotedMessage>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub forwarded: bool,
    /// Users it mentions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schema(value_type = Vec<crate::UserId>)]
    pub mentions: Vec<String>,
    /// It mentions every member (`@all`).
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub mention_all: bool,
    /// 1 as sent, one more per edit (absent: 1).
    #[serde(default = "first_version", skip_serializing_if = "is_first_version")]
    pub version: i32,
    /// When its sender last edited it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub edited_at: Option<DateTime<Utc>>,
    /// Reactions per key, most first (derived from the reactions themselves).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reactions: Vec<ReactionCount>,
    pub created_at: DateTime<Utc>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    /// Its sender deleted their account: the body is gone, the seq stays.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sender_deleted: bool,
    /// How many of the group's other members read it (the caller's own messages, in groups of at
    /// most 500 members: `GET …/messages/{seq}/readers` lists them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub read_by: Option<i64>,
}

fn first_version() -> i32 {
    1
}

fn is_first_version(version: &i32) -> bool {
    *version == 1
}

/// How many reacted to a message with one key, and whether the caller is among them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ReactionCount {
    pub key: String,
    pub count: i64,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub me: bool,
}

/// The message a reply quotes: its sender and a preview ("[image]", the start of its text), or why
/// there is none — recalled ("message recalled"), or unavailable (removed by retention, or before
/// the caller's history starts).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct QuotedMessage {
    pub seq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<crate::UserId>, nullable = false)]
    pub sender: Option<String>,
    /// At most 100 characters; empty when recalled or unavailable.
    pub snippet: String,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub recalled: bool,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub unavailable: bool,
}

/// `GET /v1/conversations/{conversation}/messages`: ascending seq.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessagePage {
    pub messages: Vec<Message>,
    /// Whether more messages lie beyond this page in the direction asked (older for `before` and for
    /// the latest page, newer for `after`).
    pub has_more: bool,
    /// Older messages were removed by the conversation's retention and this page reaches where they
    /// were: scrolling back, nothing older is left ("older messages were removed"); catching up
    /// (`after`), messages after the cursor were among them.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub older_removed: bool,
    /// The highest seq retention removed (absent: none); history starts after it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub removed_through_seq: Option<i64>,
    /// A direct conversation's receipts: the other person read up to this seq (read ticks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub peer_read_seq: Option<i64>,
    /// A direct conversation's receipts: a device of the other person acknowledged messages up to this
    /// seq (delivered ticks; 0 until one acknowledges over the WebSocket).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub peer_delivered_seq: Option<i64>,
}

/// `GET /v1/conversations/{conversation}/messages/{seq}/readers`: who read one of the caller's
/// messages (the other members whose read position reached it), by user id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct MessageReaders {
    pub seq: i64,
    /// All of them, also beyond this page.
    pub count: i64,
    pub readers: Vec<String>,
    /// Pass as `cursor` for the next page; `null` when there is none.
    #[schema(required)]
    pub next_cursor: Option<String>,
}

/// Every error response: `field` names the request field at fault, if one is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    /// What is wrong, in words.
    pub error: String,
    /// The request field, path segment or query parameter at fault, if one is (e.g. `posts[3].author`).
    #[schema(required)]
    pub field: Option<String>,
}

/// Body of `POST /v1/posts/batch`: up to [`MAX_BATCH_POSTS`] posts.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct BatchRequest {
    /// Each item is checked on its own, so it stays raw JSON until then: an item that is not a valid
    /// `CreatePostRequest` gets its own 400 in `results`, the others are posted.
    #[schema(min_items = 1, max_items = 500)]
    pub posts: Vec<serde_json::Value>,
}

/// One item's outcome in a batch: the single call's `202` body, or its error body, with the status.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchItemResult {
    /// The status the single call would have answered: 202, 400, 413 or 503.
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub post_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<i32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<i64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub field: Option<String>,
}

/// Body of the `200` answer to `POST /v1/posts/batch`: one result per item, in request order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BatchResponse {
    pub results: Vec<BatchItemResult>,
}

const CURSOR_PREFIX: &str = "p1:";

/// The opaque cursor of a feed or store-timeline page: the position after `post_id` (pages are
/// ordered by post id, newest first). Versioned by its prefix, so the format can change later.
pub fn encode_cursor(post_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{post_id}"))
}

/// Decodes a cursor from [`encode_cursor`]; `None` when it is not one.
pub fn decode_cursor(cursor: &str) -> Option<PostId> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    PostId::parse("cursor", text.strip_prefix(CURSOR_PREFIX)?).ok()
}

/// A contact-list cursor: the last row's activity time and conversation id.
pub fn encode_conversation_cursor(at: DateTime<Utc>, conversation: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("c1:{}:{conversation}", at.timestamp_micros()))
}

pub fn decode_conversation_cursor(raw: &str) -> Option<(DateTime<Utc>, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (micros, conversation) = text.strip_prefix("c1:")?.split_once(':')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    // Postgres timestamps span fewer years than chrono's: an edited cursor must be a 400, not a 500.
    if !(1970..=9999).contains(&at.year()) {
        return None;
    }
    ConversationId::parse("cursor", conversation).ok()?;
    Some((at, conversation.to_owned()))
}

/// The cursor of a page ordered by time then id (a user or group id): the last row's.
pub fn encode_time_cursor(at: DateTime<Utc>, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("t1:{}:{id}", at.timestamp_micros()))
}

/// Decodes a cursor from [`encode_time_cursor`]; `None` when it is not one.
pub fn decode_time_cursor(raw: &str) -> Option<(DateTime<Utc>, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (micros, id) = text.strip_prefix("t1:")?.split_once(':')?;
    let at = DateTime::from_timestamp_micros(micros.parse().ok()?)?;
    if !(1970..=9999).contains(&at.year()) {
        return None;
    }
    let valid = UserId::parse("cursor", id).is_ok() || crate::GroupId::parse("cursor", id).is_ok();
    valid.then(|| (at, id.to_owned()))
}

/// A member-list cursor: the last row's user id.
pub fn encode_member_cursor(user: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("m1:{user}"))
}

pub fn decode_member_cursor(raw: &str) -> Option<String> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let user = text.strip_prefix("m1:")?;
    UserId::parse("cursor", user).ok()?;
    Some(user.to_owned())
}

/// The cursor of a ranked search page: the last hit's rank and id.
pub fn encode_rank_cursor(rank: i32, id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("r1:{rank}:{id}"))
}

/// The rank and id of a [`encode_rank_cursor`] cursor.
pub fn decode_rank_cursor(raw: &str) -> Option<(i32, String)> {
    let text = String::from_utf8(URL_SAFE_NO_PAD.decode(raw).ok()?).ok()?;
    let (rank, id) = text.strip_prefix("r1:")?.split_once(':')?;
    Some((rank.parse().ok()?, id.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_reject_garbage() {
        let id = PostId::generate();
        let cursor = encode_cursor(id.as_str());
        assert_eq!(decode_cursor(&cursor), Some(id));
        assert_eq!(decode_cursor("not base64!"), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("p1:nope")), None);
        assert_eq!(decode_cursor(&URL_SAFE_NO_PAD.encode("x")), None);
    }

    /// utoipa's attributes take literals only: the documented limits must be the enforced ones.
    #[test]
    fn documented_limits_are_the_enforced_ones() {
        use crate::ids::{MAX_BODY_CHARS, MAX_MESSAGE_ID_CHARS};
        use utoipa::PartialSchema;
        let json = |schema| serde_json::to_value(schema).expect("schema serializes");
        // Flattened content makes the body schema an `allOf` of the struct's own part and the content.
        let post = json(CreatePostRequest::schema());
        let own = match post["allOf"].as_array() {
            Some(parts) => parts
                .iter()
                .find(|part| part.get("properties").is_some())
                .cloned()
                .expect("the struct's own part"),
            None => post,
        };
        assert_eq!(own["properties"]["body"]["maxLength"], MAX_BODY_CHARS);
        assert_eq!(
            own["properties"]["message_id"]["maxLength"],
            MAX_MESSAGE_ID_CHARS
        );
        let batch = json(BatchRequest::schema());
        assert_eq!(batch["properties"]["posts"]["maxItems"], MAX_BATCH_POSTS);
    }

    #[test]
    fn contact_and_member_cursors_round_trip_and_reject_garbage() {
        let at = DateTime::from_timestamp_micros(1_795_000_000_123_456).unwrap();
        let cursor = encode_conversation_cursor(at, "d:alice:bob");
        assert_eq!(
            decode_conversation_cursor(&cursor),
            Some((at, "d:alice:bob".to_owned()))
        );
        assert_eq!(decode_conversation_cursor("garbage!"), None);
        assert_eq!(
            decode_conversation_cursor(&URL_SAFE_NO_PAD.encode("c1:12:d:bob:alice")),
            None
        );
        assert_eq!(
            decode_member_cursor(&encode_member_cursor("bob")),
            Some("bob".to_owned())
        );
        assert_eq!(
            decode_member_cursor(&URL_SAFE_NO_PAD.encode("m1:a b")),
            None
        );
        let ancient = format!("c1:{}:d:alice:bob", -3_000_000_000_000_000_000_i64);
        assert_eq!(
            decode_conversation_cursor(&URL_SAFE_NO_PAD.encode(ancient)),
            None
        );
    }
}
