//! The safety write API: group settings, owner transfer and dissolution, muting group members, blocks
//! between users and muted conversations. Like every write, each handler checks what it can see (the
//! caller is who acts; fields valid; ids with accounts), appends its event(s) and answers `202` after
//! the broker's acknowledgement. Whether the actor *may* (their role) is decided by fanout, on the
//! key the rule is ordered on (`schemas::safety`).

use std::sync::Arc;

use authkit::{AccountDirectory, Bearer, Limited, WriteKind, WriteLimiter};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, put};
use axum::{Extension, Router};
use httpkit::openapi::{
    BadRequest, BodyRejected, Forbidden, NoSuchRoute, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::{ApiError, JsonBody, QueryParams};
use schemas::api::{Accepted, MuteMemberRequest, UpdateGroupRequest};
use schemas::{
    BlockChange, ConversationId, ConversationMute, Envelope, FollowBlock, GroupDissolved, GroupId,
    MemberMute, UserId,
};

use crate::im_routes::append;
use kafkakit::EventProducer;

pub fn router(producer: Arc<EventProducer>) -> Router {
    Router::new()
        .route(
            "/v1/groups/{group}",
            patch(update_group).delete(dissolve_group),
        )
        .route(
            "/v1/groups/{group}/mutes/{user}",
            put(mute_member).delete(unmute_member),
        )
        .route(
            "/v1/users/{user}/blocks/{target}",
            put(block).delete(unblock),
        )
        .route(
            "/v1/users/{user}/conversations/{conversation}/mute",
            put(mute_conversation).delete(unmute_conversation),
        )
        .with_state(producer)
}

/// The `by` query parameter, required: who acts.
fn by_param(params: &QueryParams) -> Result<UserId, ApiError> {
    let by = params
        .get("by")
        .ok_or_else(|| ApiError::bad_field("by", "required: who makes the change"))?;
    Ok(UserId::parse("by", by)?)
}

/// Spends one write of `kind` of the caller's budget: `Err` holds the `429`.
fn admit(writes: &WriteLimiter, kind: WriteKind, bearer: &Bearer) -> Result<(), Limited> {
    writes.admit(kind, bearer.user(), 1)
}

/// Change a group's settings.
///
/// Appends a `group_updated` event on the group's key. Owner and admins change the name, description,
/// join rule (`open`, `invite`, `approval`) and history visibility (`joined`, `shared`: whether new
/// members read what was said before they joined); only the owner hands the group to an active member
/// (`owner`), becoming an admin. Refused by fanout when `by` may not.
#[utoipa::path(
    patch, path = "/v1/groups/{group}", tag = "groups",
    params(("group" = schemas::GroupId, Path, description = "The group.")),
    request_body = UpdateGroupRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        (status = 404, description = "`owner` has no account.", body = schemas::api::ErrorBody),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn update_group(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<WriteLimiter>>,
    Extension(directory): Extension<Arc<AccountDirectory>>,
    Path(group): Path<String>,
    JsonBody(request): JsonBody<UpdateGroupRequest>,
) -> Result<Response, ApiError> {
    let update = request.into_event(&group)?;
    bearer.require_user("by", &update.by)?;
    if let Err(limited) = admit(&writes, WriteKind::Group, &bearer) {
        return Ok(limited.into_response());
    }
    if let Some(owner) = &update.owner {
        directory.require("owner", owner).await?;
    }
    let conversation = ConversationId::group(&update.group);
    append(
        &producer,
        &Envelope::group_updated(update),
        None,
        Some(&conversation),
    )
    .await
}

/// Dissolve a group.
///
/// Appends a `group_dissolved` event on the group's key: every member leaves (the conversation stays
/// in their lists, inactive), nothing more can be written to it, and its id is never given out again.
/// Only the owner may; refused by fanout otherwise.
#[utoipa::path(
    delete, path = "/v1/groups/{group}", tag = "groups",
    params(
        ("group" = schemas::GroupId, Path, description = "The group."),
        ("by" = schemas::UserId, Query, description = "The owner."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn dissolve_group(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<WriteLimiter>>,
    Path(group): Path<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let group = GroupId::parse("group", &group)?;
    let by = by_param(&params)?;
    bearer.require_user("by", &by)?;
    if let Err(limited) = admit(&writes, WriteKind::Group, &bearer) {
        return Ok(limited.into_response());
    }
    let conversation = ConversationId::group(&group);
    let envelope = Envelope::group_dissolved(GroupDissolved {
        group,
        by,
        by_operator: false,
    });
    append(&producer, &envelope, None, Some(&conversation)).await
}

/// Mute a group member.
///
/// Appends a `member_muted` event on the group's key: the member's messages written before `until`
/// are refused (a `refused` entry with reason `muted` on their devices). The owner mutes anyone but
/// themselves, an admin members only; refused by fanout otherwise.
#[utoipa::path(
    put, path = "/v1/groups/{group}/mutes/{user}", tag = "groups",
    params(
        ("group" = schemas::GroupId, Path, description = "The group."),
        ("user" = schemas::UserId, Path, description = "The member to mute."),
    ),
    request_body = MuteMemberRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn mute_member(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<WriteLimiter>>,
    Path((group, user)): Path<(String, String)>,
    JsonBody(request): JsonBody<MuteMemberRequest>,
) -> Result<Response, ApiError> {
    let mute = request.into_event(&group, &user)?;
    send_member_mute(&bearer, &producer, &writes, mute).await
}

/// Lift a member's mute.
#[utoipa::path(
    delete, path = "/v1/groups/{group}/mutes/{user}", tag = "groups",
    params(
        ("group" = schemas::GroupId, Path, description = "The group."),
        ("user" = schemas::UserId, Path, description = "The muted member."),
        ("by" = schemas::UserId, Query, description = "The owner or an admin."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn unmute_member(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<WriteLimiter>>,
    Path((group, user)): Path<(String, String)>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let mute = MemberMute {
        group: GroupId::parse("group", &group)?,
        user: UserId::parse("user", &user)?,
        by: by_param(&params)?,
        until: None,
    };
    send_member_mute(&bearer, &producer, &writes, mute).await
}

async fn send_member_mute(
    bearer: &Bearer,
    producer: &EventProducer,
    writes: &WriteLimiter,
    mute: MemberMute,
) -> Result<Response, ApiError> {
    bearer.require_user("by", &mute.by)?;
    if let Err(limited) = admit(writes, WriteKind::Group, bearer) {
        return Ok(limited.into_response());
    }
    let conversation = ConversationId::group(&mute.group);
    append(
        producer,
        &Envelope::member_muted(mute),
        None,
        Some(&conversation),
    )
    .await
}

/// Block a user.
///
/// While the block stands, direct messages between the two are refused (reason `blocked`, told to the
/// sender's devices only), follows between them are removed both ways and cannot be made again, and so
/// the target's posts leave and stay out of the blocker's inbox and feed. Appends `user_blocked` on the
/// pair's direct conversation and a `follow_blocked` on each follow edge's key; `202` once all three
/// are stored (a `503` may leave part of them stored: retrying the block completes it).
#[utoipa::path(
    put, path = "/v1/users/{user}/blocks/{target}", tag = "users",
    params(
        ("user" = schemas::UserId, Path, description = "The blocker (the caller)."),
        ("target" = schemas::UserId, Path, description = "Whom to block."),
    ),
    responses(
        (status = 202, description = "The broker stored the events.", body = Accepted),
        (status = 404, description = "`target` has no account.", body = schemas::api::ErrorBody),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn block(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<WriteLimiter>>,
    Extension(directory): Extension<Arc<AccountDirectory>>,
    Path((user, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = block_change(&bearer, &user, &target)?;
    if let Err(limited) = admit(&writes, WriteKind::Follow, &bearer) {
        return Ok(limited.into_response());
    }
    directory.require("target", &change.target).await?;
    send_block(&producer, change, true).await
}

/// Lift a block.
///
/// Messages and follows between the two are possible again; nothing removed by the block comes back
/// by itself (follow again to follow again).
#[utoipa::path(
    delete, path = "/v1/users/{user}/blocks/{target}", tag = "users",
    params(
        ("user" = schemas::UserId, Path, description = "The blocker (the caller)."),
        ("target" = schemas::UserId, Path, description = "The blocked user."),
    ),
    responses(
        (status = 202, description = "The broker stored the events.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn unblock(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<WriteLimiter>>,
    Path((user, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = block_change(&bearer, &user, &target)?;
    if let Err(limited) = admit(&writes, WriteKind::Follow, &bearer) {
        return Ok(limited.into_response());
    }
    send_block(&producer, change, false).await
}

fn block_change(bearer: &Bearer, user: &str, target: &str) -> Result<BlockChange, ApiError> {
    let change = BlockChange {
        blocker: UserId::parse("user", user)?,
        target: UserId::parse("target", target)?,
    };
    bearer.require_user("user", &change.blocker)?;
    change.validate()?;
    Ok(change)
}

/// Appends the block's three events: the follow edges' first, then the pair's (whose acknowledgement
/// the answer carries).
async fn send_block(
    producer: &EventProducer,
    change: BlockChange,
    blocked: bool,
) -> Result<Response, ApiError> {
    for edge in FollowBlock::both_ways(&change.blocker, &change.target) {
        producer
            .send(&Envelope::follow_blocked(edge, blocked))
            .await?;
    }
    let envelope = Envelope::user_blocked(change, blocked)
        .ok_or_else(|| ApiError::bad_field("target", "you cannot block yourself"))?;
    let conversation = ConversationId::parse("key", envelope.key.as_str())?;
    append(producer, &envelope, None, Some(&conversation)).await
}

/// Mute a conversation.
///
/// Appends a `conversation_muted` event on the conversation's key: its unread count stays in its own
/// row of the contact list but leaves the total. Refused by fanout unless the user takes part in it.
#[utoipa::path(
    put, path = "/v1/users/{user}/conversations/{conversation}/mute", tag = "messages",
    params(
        ("user" = schemas::UserId, Path, description = "The user (the caller)."),
        ("conversation" = schemas::ConversationId, Path, description = "The conversation."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn mute_conversation(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Path((user, conversation)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    send_conversation_mute(&bearer, &producer, &user, &conversation, true).await
}

/// Unmute a conversation.
#[utoipa::path(
    delete, path = "/v1/users/{user}/conversations/{conversation}/mute", tag = "messages",
    params(
        ("user" = schemas::UserId, Path, description = "The user (the caller)."),
        ("conversation" = schemas::ConversationId, Path, description = "The conversation."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn unmute_conversation(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Path((user, conversation)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    send_conversation_mute(&bearer, &producer, &user, &conversation, false).await
}

async fn send_conversation_mute(
    bearer: &Bearer,
    producer: &EventProducer,
    user: &str,
    conversation: &str,
    muted: bool,
) -> Result<Response, ApiError> {
    let mute = ConversationMute {
        user: UserId::parse("user", user)?,
        conversation: ConversationId::parse("conversation", conversation)?,
    };
    bearer.require_user("user", &mute.user)?;
    mute.validate()?;
    let id = mute.conversation.clone();
    let envelope = Envelope::conversation_muted(mute, muted);
    append(producer, &envelope, None, Some(&id)).await
}
