//! The IM write API: messages, recalls, read markers, profiles, groups and membership. Like every write,
//! each handler validates what it can see, appends one event keyed by its conversation (or user) and
//! answers `202` only after the broker acknowledged it. Membership is not known here (ingest keeps no
//! state): fanout checks it and refuses what a non-member or an unauthorised user asked for, by the
//! group's join rule (`fanout/src/im/membership.rs`).

use std::sync::Arc;

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::Extension;
use axum::{Json, Router};
use chrono::Utc;
use httpkit::openapi::{
    BadRequest, BodyRejected, Forbidden, NoSuchRoute, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::{ApiError, JsonBody, QueryParams};
use schemas::api::{Accepted, CreateGroupRequest, ProfileRequest, ReadRequest, SendMessageRequest};
use schemas::{ConversationId, Envelope, MembershipChange, MessageId, MessageRecalled, UserId};

use crate::attachment_routes::Attachments;
use kafkakit::EventProducer;

pub fn router(producer: Arc<EventProducer>) -> Router {
    Router::new()
        .route("/v1/messages", post(send_message))
        .route("/v1/users/{user}", put(update_profile))
        .route(
            "/v1/users/{user}/conversations/{conversation}/read",
            put(mark_read),
        )
        .route("/v1/groups", post(create_group))
        .route(
            "/v1/groups/{group}/members/{user}",
            put(add_member).delete(remove_member),
        )
        .with_state(producer)
}

pub(crate) async fn append(
    producer: &EventProducer,
    envelope: &Envelope,
    message_id: Option<&MessageId>,
    conversation: Option<&ConversationId>,
) -> Result<Response, ApiError> {
    let ack = producer.send(envelope).await?;
    let body = Accepted {
        message_id: message_id.map(|id| id.as_str().to_owned()),
        conversation_id: conversation.map(|c| c.as_str().to_owned()),
        ..Accepted::of(&envelope.id, ack.partition, ack.offset)
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// Send a message.
///
/// Appends a `message_sent` event keyed by the conversation. A 1:1 conversation's id is the same
/// whoever writes (`d:` + both user ids in byte order). The message gets the conversation's next seq
/// when fanout applies it; it lands in the conversation's history and in the sync timeline of every
/// member, the sender's own included (for their other devices).
#[utoipa::path(
    post, path = "/v1/messages", tag = "messages",
    request_body = SendMessageRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        (status = 404, description = "`to` has no account.", body = schemas::api::ErrorBody),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn send_message(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(directory): Extension<Arc<authkit::AccountDirectory>>,
    Extension(attachments): Extension<Attachments>,
    JsonBody(request): JsonBody<SendMessageRequest>,
) -> Result<Response, ApiError> {
    let message = request.into_event()?;
    bearer.require_user("from", &message.sender)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Message, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    if let Some(recipient) = message.conversation.other_party(&message.sender) {
        directory.require("to", &recipient).await?;
    }
    let blobs = attachments.blobs.as_deref();
    let sender = message.sender.as_str();
    blobkit::check_content(blobs, &message.content, sender, blobkit::Age::Fresh).await?;
    let (id, conversation) = (message.message_id.clone(), message.conversation.clone());
    let envelope = Envelope::message_sent(message);
    append(&producer, &envelope, Some(&id), Some(&conversation)).await
}

/// Recall a message.
///
/// Appends a `message_recalled` event on the conversation's key (after the message). Fanout applies it
/// if `from` sent the message within the recall window (default 2 minutes): the message becomes a
/// tombstone everywhere, every member's timeline gets a `recall` entry, and unread counts drop where
/// it was unread. The conversation is needed because ingest keeps no state to look it up.
#[utoipa::path(
    delete, path = "/v1/messages/{message_id}", tag = "messages",
    params(
        ("message_id" = schemas::MessageId, Path, description = "The message (or the id a retried send got)."),
        ("from" = schemas::UserId, Query, description = "The sender."),
        ("conversation" = schemas::ConversationId, Query, description = "The message's conversation."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn recall_message(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Path(message_id): Path<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let message_id = MessageId::parse("message_id", &message_id)?;
    let sender = params
        .get("from")
        .ok_or_else(|| ApiError::bad_field("from", "required: the message's sender"))?;
    let sender = UserId::parse("from", sender)?;
    bearer.require_user("from", &sender)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Message, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let conversation = params.get("conversation").ok_or_else(|| {
        ApiError::bad_field("conversation", "required: the message's conversation")
    })?;
    let conversation = ConversationId::parse("conversation", conversation)?;
    let envelope = Envelope::message_recalled(MessageRecalled {
        message_id: message_id.clone(),
        conversation: conversation.clone(),
        sender,
        recalled_at: Utc::now(),
    });
    append(&producer, &envelope, Some(&message_id), Some(&conversation)).await
}

/// Mark a conversation read.
///
/// Appends a `read_marked` event on the conversation's key, so it is applied in order with the
/// conversation's messages. Markers only move forward and never past the last message delivered to
/// the user: a stale marker changes nothing, a too-large one is clamped.
#[utoipa::path(
    put, path = "/v1/users/{user}/conversations/{conversation}/read", tag = "messages",
    params(
        ("user" = schemas::UserId, Path, description = "The reader."),
        ("conversation" = schemas::ConversationId, Path, description = "The conversation."),
    ),
    request_body = ReadRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn mark_read(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Path((user, conversation)): Path<(String, String)>,
    JsonBody(request): JsonBody<ReadRequest>,
) -> Result<Response, ApiError> {
    let marker = request.into_event(&user, &conversation)?;
    bearer.require_user("user", &marker.user)?;
    let conversation = marker.conversation.clone();
    let envelope = Envelope::read_marked(marker);
    append(&producer, &envelope, None, Some(&conversation)).await
}

/// Set a profile.
///
/// Appends a `profile_updated` event keyed by the user: the whole profile (absent optional fields are
/// cleared).
#[utoipa::path(
    put, path = "/v1/users/{user}", tag = "users",
    params(("user" = schemas::UserId, Path, description = "The user.")),
    request_body = ProfileRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn update_profile(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Path(user): Path<String>,
    JsonBody(request): JsonBody<ProfileRequest>,
) -> Result<Response, ApiError> {
    let profile = request.into_event(&user)?;
    bearer.require_user("user", &profile.user)?;
    append(&producer, &Envelope::profile_updated(profile), None, None).await
}

/// Create a group.
///
/// Appends a `group_created` event keyed by the group's conversation (`g:GROUP`); the owner is its
/// first member. Creating a group whose id is taken by another owner is refused by fanout.
#[utoipa::path(
    post, path = "/v1/groups", tag = "groups",
    request_body = CreateGroupRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        (status = 409, description = "`owner` is in as many groups as allowed.", body = schemas::api::ErrorBody),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create_group(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(caps): Extension<Arc<crate::caps::Caps>>,
    JsonBody(request): JsonBody<CreateGroupRequest>,
) -> Result<Response, ApiError> {
    let group = request.into_event()?;
    bearer.require_user("owner", &group.owner)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Group, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    caps.join("owner", &group.owner, &group.group).await?;
    let conversation = ConversationId::group(&group.group);
    append(
        &producer,
        &Envelope::group_created(group),
        None,
        Some(&conversation),
    )
    .await
}

/// The membership change a path and its `by` (and, for additions, `role`) parameters describe.
fn membership(
    group: &str,
    user: &str,
    params: &QueryParams,
    with_role: bool,
) -> Result<MembershipChange, ApiError> {
    let role = if with_role { params.get("role") } else { None };
    Ok(MembershipChange::from_path(
        group,
        user,
        params.get("by"),
        role,
    )?)
}

/// The caller must be who acts: `by` when given, else the user themself. Whether they *may* (their
/// role) is checked by fanout, where membership is known.
fn require_actor(
    bearer: &Bearer,
    params: &QueryParams,
    change: &MembershipChange,
) -> Result<(), ApiError> {
    let field = if params.get("by").is_some() {
        "by"
    } else {
        "user"
    };
    bearer.require_user(field, &change.by)
}

/// Join, add, invite, accept or ask.
///
/// Appends a `member_added` event on the group's key; fanout decides what it does by the group's join
/// rule. Without `by` the user joins: an `open` group takes them, an invitation is accepted, and in an
/// `approval` group the join becomes a request (an `invite` group refuses it). With `by`, an owner or
/// admin adds them: directly in an open group, accepting their request, and otherwise as an invitation
/// the user accepts by joining (nobody enters a private group without consenting). `role=admin` (by the
/// owner) makes an admin, also of a member. A new member receives the group's messages from here on.
/// `404` naming `user` when it has no account; `409` naming `user` when they are in as many groups as
/// allowed (`FANLINE_MAX_GROUPS_PER_USER`), or `group` when it is full (`FANLINE_MAX_GROUP_MEMBERS`;
/// fanout refuses such a join too, reason `group_full`).
#[utoipa::path(
    put, path = "/v1/groups/{group}/members/{user}", tag = "groups",
    params(
        ("group" = schemas::GroupId, Path, description = "The group."),
        ("user" = schemas::UserId, Path, description = "The member."),
        ("by" = Option<schemas::UserId>, Query, description = "Who adds them (default: the user, a join)."),
        ("role" = Option<String>, Query, description = "member (default) or admin."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        (status = 409, description = "`user` is in as many groups as allowed, or the group is full.", body = schemas::api::ErrorBody),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn add_member(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(directory): Extension<Arc<authkit::AccountDirectory>>,
    Extension(caps): Extension<Arc<crate::caps::Caps>>,
    Path((group, user)): Path<(String, String)>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let change = membership(&group, &user, &params, true)?;
    require_actor(&bearer, &params, &change)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Group, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    directory.require("user", &change.user).await?;
    caps.join("user", &change.user, &change.group).await?;
    caps.members(&change.group, &change.user).await?;
    let conversation = ConversationId::group(&change.group);
    append(
        &producer,
        &Envelope::member_added(change),
        None,
        Some(&conversation),
    )
    .await
}

/// Leave, remove, decline or revoke.
///
/// Appends a `member_removed` event on the group's key: the member receives nothing written after it;
/// the conversation stays in their list, inactive, with nothing unread. Without `by` the user leaves
/// (or declines their invitation, or withdraws their request); with `by`, an owner (anyone but
/// themselves) or an admin (members only) removes them, or revokes an invitation, or declines a request.
#[utoipa::path(
    delete, path = "/v1/groups/{group}/members/{user}", tag = "groups",
    params(
        ("group" = schemas::GroupId, Path, description = "The group."),
        ("user" = schemas::UserId, Path, description = "The member."),
        ("by" = Option<schemas::UserId>, Query, description = "Who removes them (default: the user, a leave)."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn remove_member(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Path((group, user)): Path<(String, String)>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let change = membership(&group, &user, &params, false)?;
    require_actor(&bearer, &params, &change)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Group, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let conversation = ConversationId::group(&change.group);
    append(
        &producer,
        &Envelope::member_removed(change),
        None,
        Some(&conversation),
    )
    .await
}
