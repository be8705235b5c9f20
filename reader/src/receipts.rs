//! Read receipts (issue 24), from the positions fanout already keeps — no new writes:
//! - a direct conversation: the other person's read seq (`conversation_members.read_seq`, moved by their
//!   read markers) and how far a device of theirs acknowledged it (the newest of the conversation's
//!   messages in their inbox at or below their highest acknowledged sync seq, `device_cursors`);
//! - a group of at most [`RECEIPTS_MAX_MEMBERS`] members: for each of the caller's own messages, how many
//!   other members' read positions reached it, and who (paged). Counting is a pass over the group's
//!   member rows per message, so bigger groups (also every read-diffused one) have none: an index on
//!   (conversation, read seq) would cost every read marker in every group. Large IM products draw the
//!   same line (DingTalk and WeCom cap group read receipts at a few hundred members).
//!
//! Only a message's sender sees who read it.

use std::collections::HashMap;

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use httpkit::openapi::{
    BadRequest, Forbidden, InternalError, NoSuchRoute, Unauthorized, Unavailable,
};
use httpkit::{ApiError, QueryParams};
use schemas::api::MessageReaders;
use schemas::ids::ConversationKind;
use schemas::{ConversationId, UserId};
use sqlx::PgPool;

use crate::access::require_participant;
use crate::failure::database_error;
use crate::params::{cursor_param, page_limit};

/// The largest group whose messages have receipts.
pub const RECEIPTS_MAX_MEMBERS: i64 = 500;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route(
            "/v1/conversations/{conversation}/messages/{seq}/readers",
            get(readers),
        )
        .with_state(pool)
}

/// A direct conversation's receipts for `caller`: the other person's (read seq, delivered seq).
pub async fn direct(
    pool: &PgPool,
    conversation: &ConversationId,
    caller: &str,
) -> Result<Option<(i64, i64)>, ApiError> {
    let ConversationKind::Direct(a, b) = conversation.kind() else {
        return Ok(None);
    };
    let peer = if a.as_str() == caller { b } else { a };
    let receipts: Option<(i64, Option<i64>)> = sqlx::query_as(
        "SELECT cm.read_seq,
                (SELECT s.conv_seq FROM sync_entries s
                 WHERE s.user_id = $1 AND s.conversation_id = $2 AND s.kind = 'message'
                   AND s.seq <= (SELECT max(acked_seq) FROM device_cursors WHERE user_id = $1)
                 ORDER BY s.seq DESC LIMIT 1)
         FROM conversation_members cm WHERE cm.user_id = $1 AND cm.conversation_id = $2",
    )
    .bind(peer.as_str())
    .bind(conversation.as_str())
    .fetch_optional(pool)
    .await
    .map_err(database_error)?;
    Ok(receipts.map(|(read, delivered)| {
        // A device that acknowledged a later message also holds the earlier ones; reading implies it.
        (read, delivered.unwrap_or(0).max(read))
    }))
}

/// For `caller`'s own messages among `seqs` in a group with receipts: how many others read each.
pub async fn group_read_counts(
    pool: &PgPool,
    conversation: &ConversationId,
    caller: &str,
    seqs: &[i64],
) -> Result<HashMap<i64, i64>, ApiError> {
    if seqs.is_empty() || !has_receipts(pool, conversation).await? {
        return Ok(HashMap::new());
    }
    let rows: Vec<(i64, i64)> = sqlx::query_as(
        "SELECT m.seq,
                (SELECT count(*) FROM conversation_members cm
                 WHERE cm.conversation_id = $1 AND cm.active AND cm.user_id <> $2
                   AND cm.read_seq >= m.seq AND cm.from_seq < m.seq)
         FROM messages m
         WHERE m.conversation_id = $1 AND m.seq = ANY($3) AND m.sender = $2",
    )
    .bind(conversation.as_str())
    .bind(caller)
    .bind(seqs)
    .fetch_all(pool)
    .await
    .map_err(database_error)?;
    Ok(rows.into_iter().collect())
}

/// Adds the receipts a history page carries for `caller`: `read_by` on their own messages in a small
/// group; the other person's (read seq, delivered seq) of a direct conversation, returned.
pub async fn attach(
    pool: &PgPool,
    conversation: &ConversationId,
    caller: &str,
    messages: &mut [schemas::api::Message],
) -> Result<Option<(i64, i64)>, ApiError> {
    if matches!(conversation.kind(), ConversationKind::Direct(..)) {
        return direct(pool, conversation, caller).await;
    }
    let own: Vec<i64> = messages
        .iter()
        .filter(|m| m.sender == caller)
        .map(|m| m.seq)
        .collect();
    let counts = group_read_counts(pool, conversation, caller, &own).await?;
    for message in messages.iter_mut() {
        message.read_by = counts.get(&message.seq).copied();
    }
    Ok(None)
}

/// Whether a group is small enough for receipts.
async fn has_receipts(pool: &PgPool, conversation: &ConversationId) -> Result<bool, ApiError> {
    let ConversationKind::Group(group) = conversation.kind() else {
        return Ok(false);
    };
    let members: Option<i64> =
        sqlx::query_scalar("SELECT member_count FROM groups WHERE group_id = $1")
            .bind(group.as_str())
            .fetch_optional(pool)
            .await
            .map_err(database_error)?;
    Ok(members.is_some_and(|n| n <= RECEIPTS_MAX_MEMBERS))
}

/// Readers of a message.
///
/// Who read one of the caller's messages: the other person of a direct conversation, or the group's
/// other members, once their read position reached it; by user id, paged. Only the message's sender
/// may ask; groups of more than 500 members have no receipts (`409`).
#[utoipa::path(
    get, path = "/v1/conversations/{conversation}/messages/{seq}/readers", tag = "messages",
    params(
        ("conversation" = schemas::ConversationId, Path, description = "The conversation."),
        ("seq" = i64, Path, minimum = 1, description = "The message's seq."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "The readers.", body = MessageReaders),
        (status = 404, description = "No such message.", body = schemas::api::ErrorBody),
        (status = 409, description = "The group is too large for receipts.", body = schemas::api::ErrorBody),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn readers(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path((conversation, seq)): Path<(String, String)>,
    params: QueryParams,
) -> Result<Json<MessageReaders>, ApiError> {
    let conversation = ConversationId::parse("conversation", &conversation)?;
    let seq: i64 = seq
        .parse()
        .ok()
        .filter(|seq| *seq >= 1)
        .ok_or_else(|| ApiError::bad_field("seq", "must be a message's seq: 1 or more"))?;
    let limit = page_limit(&params)?;
    let after = cursor_param(&params, |c| UserId::parse("cursor", c).ok())?;
    require_participant(&pool, &bearer, &conversation).await?;
    require_sender(&pool, &conversation, seq, bearer.user()).await?;
    if matches!(conversation.kind(), ConversationKind::Group(_))
        && !has_receipts(&pool, &conversation).await?
    {
        return Err(ApiError {
            status: StatusCode::CONFLICT,
            message: "groups of more than 500 members have no read receipts".into(),
            field: Some("conversation".into()),
        });
    }
    let (count, mut readers): (i64, Vec<String>) = readers_page(
        &pool,
        &conversation,
        seq,
        bearer.user(),
        after.as_ref(),
        limit,
    )
    .await?;
    let next_cursor = (readers.len() as i64 > limit).then(|| {
        readers.truncate(limit as usize);
        readers.last().cloned().unwrap_or_default()
    });
    Ok(Json(MessageReaders {
        seq,
        count,
        readers,
        next_cursor,
    }))
}

/// `404` for no such message, `403` unless `caller` sent it.
async fn require_sender(
    pool: &PgPool,
    conversation: &ConversationId,
    seq: i64,
    caller: &str,
) -> Result<(), ApiError> {
    let sender: Option<String> =
        sqlx::query_scalar("SELECT sender FROM messages WHERE conversation_id = $1 AND seq = $2")
            .bind(conversation.as_str())
            .bind(seq)
            .fetch_optional(pool)
            .await
            .map_err(database_error)?;
    match sender {
        None => Err(ApiError {
            status: StatusCode::NOT_FOUND,
            message: "no such message".into(),
            field: Some("seq".into()),
        }),
        Some(sender) if sender == caller => Ok(()),
        Some(_) => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "only a message's sender sees who read it".into(),
            field: Some("seq".into()),
        }),
    }
}

/// The total and one page (`limit` + 1 rows: the extra one says another page exists) of readers.
async fn readers_page(
    pool: &PgPool,
    conversation: &ConversationId,
    seq: i64,
    sender: &str,
    after: Option<&UserId>,
    limit: i64,
) -> Result<(i64, Vec<String>), ApiError> {
    const READ: &str = "cm.conversation_id = $1 AND cm.active AND cm.user_id <> $2
                        AND cm.read_seq >= $3 AND cm.from_seq < $3";
    let count: i64 = sqlx::query_scalar(&format!(
        "SELECT count(*) FROM conversation_members cm WHERE {READ}"
    ))
    .bind(conversation.as_str())
    .bind(sender)
    .bind(seq)
    .fetch_one(pool)
    .await
    .map_err(database_error)?;
    let readers: Vec<String> = sqlx::query_scalar(&format!(
        "SELECT cm.user_id FROM conversation_members cm
         WHERE {READ} AND cm.user_id > coalesce($4, '')
         ORDER BY cm.user_id LIMIT $5"
    ))
    .bind(conversation.as_str())
    .bind(sender)
    .bind(seq)
    .bind(after.map(UserId::as_str))
    .bind(limit + 1)
    .fetch_all(pool)
    .await
    .map_err(database_error)?;
    Ok((count, readers))
}
