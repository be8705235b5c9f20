//! The IM read API: contact lists with unread counts, conversation histories and profiles (groups
//! are [`crate::groups`]). One index-driven query per page (see the indexes in
//! `schemas/migrations/20261125000001_im.sql`).

use std::sync::Arc;

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Extension, Json, Router};
use chrono::{DateTime, Utc};
use httpkit::openapi::{
    BadRequest, Forbidden, InternalError, NoSuchRoute, Unauthorized, Unavailable,
};
use httpkit::{ApiError, QueryParams};
use schemas::api::{
    decode_conversation_cursor, encode_conversation_cursor, ConversationPage, ConversationSummary,
    LastMessage, Message, MessagePage, Profile, PREVIEW_CHARS,
};
use schemas::{Content, ConversationId, UserId};
use sqlx::PgPool;

use crate::access::require_participant;
use crate::db::ReadPool;
use crate::failure::{database_error, read_error};
use crate::params::{cursor_param, page_limit};
use crate::presence::Presence;

/// The IM routes' state: sqlx's pool for the occasional reads, [`ReadPool`] for the pages.
#[derive(Clone)]
pub struct ImState {
    pub pool: PgPool,
    pub reads: ReadPool,
}

impl axum::extract::FromRef<ImState> for PgPool {
    fn from_ref(state: &ImState) -> PgPool {
        state.pool.clone()
    }
}

impl axum::extract::FromRef<ImState> for ReadPool {
    fn from_ref(state: &ImState) -> ReadPool {
        state.reads.clone()
    }
}

pub fn router(state: ImState) -> Router {
    Router::new()
        .route("/v1/users/{user}", get(profile))
        .route("/v1/users/{user}/conversations", get(conversations))
        .route("/v1/conversations/{conversation}/messages", get(messages))
        .with_state(state)
}

fn not_found(what: &str) -> ApiError {
    ApiError::new(axum::http::StatusCode::NOT_FOUND, format!("no such {what}"))
}

/// Profile.
#[utoipa::path(
    get, path = "/v1/users/{user}", tag = "users",
    params(("user" = schemas::UserId, Path, description = "The user.")),
    responses(
        (status = 200, description = "The profile.", body = Profile),
        (status = 404, description = "The user never set a profile.", body = schemas::api::ErrorBody),
        BadRequest, Unauthorized, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn profile(
    _bearer: Bearer,
    State(pool): State<PgPool>,
    Path(user): Path<String>,
) -> Result<Json<Profile>, ApiError> {
    let user = UserId::parse("user", &user)?;
    type Row = (String, Option<i16>, Option<String>, Option<String>);
    let row: Option<Row> =
        sqlx::query_as("SELECT display_name, age, gender, signature FROM users WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(&pool)
            .await
            .map_err(database_error)?;
    let (display_name, age, gender, signature) = row.ok_or_else(|| not_found("user"))?;
    Ok(Json(Profile {
        user: user.to_string(),
        display_name,
        age,
        gender,
        signature,
    }))
}

/// A user's total unread count ($1 user), muted conversations left out: the stored counters of their direct conversations plus the
/// derived ones of their groups, each row found through the user's own index range (the derived state
/// per row through `LATERAL … LIMIT 1`, so that missing statistics cannot turn it into a scan of all
/// conversations; tested by `plans.rs`).
macro_rules! total_unread_sql {
    () => {
        "(SELECT coalesce(sum(cm.unread), 0) FROM conversation_members cm
          WHERE cm.user_id = $1 AND NOT cm.derived AND NOT cm.muted)
         + (SELECT coalesce(sum(s.unread), 0) FROM conversation_members cm
            CROSS JOIN LATERAL (
                SELECT unread FROM conversation_state s
                WHERE s.user_id = cm.user_id AND s.conversation_id = cm.conversation_id LIMIT 1
            ) s
            WHERE cm.user_id = $1 AND cm.derived AND NOT cm.muted)"
    };
}

/// The contact list's total alone: $1 user (for an empty page; a page's rows carry it).
pub const TOTAL_UNREAD_SQL: &str = concat!("SELECT (", total_unread_sql!(), ")::bigint");

/// One row of [`CONVERSATIONS_SQL`] (its 15th column, the user's total unread count, is read apart).
fn conversation_summary(
    row: &tokio_postgres::Row,
) -> Result<ConversationSummary, tokio_postgres::Error> {
    let last_seq = row.try_get(2)?;
    let message_id: Option<String> = row.try_get(9)?;
    let sender: Option<String> = row.try_get(10)?;
    let created_at: Option<DateTime<Utc>> = row.try_get(11)?;
    Ok(ConversationSummary {
        last_message: match (message_id, sender, created_at) {
            (Some(message_id), Some(sender), Some(created_at)) => Some(LastMessage {
                message_id,
                seq: last_seq,
                sender,
                preview: preview(row)?,
                created_at,
                recalled: row.try_get::<_, Option<bool>>(12)?.unwrap_or(false),
            }),
            _ => None,
        },
        conversation_id: row.try_get(0)?,
        kind: row.try_get(1)?,
        last_seq,
        read_seq: row.try_get(3)?,
        unread: row.try_get(4)?,
        active: row.try_get(5)?,
        last_activity: row.try_get(6)?,
        peer: row.try_get(7)?,
        name: row.try_get(8)?,
        muted: row.try_get(15)?,
        mentions: row.try_get(19)?,
    })
}

/// The last message's preview in a [`CONVERSATIONS_SQL`] row: its text, or what it is ("[image]").
fn preview(row: &tokio_postgres::Row) -> Result<String, tokio_postgres::Error> {
    let body: Option<String> = row.try_get(13)?;
    let label: Option<&str> = row.try_get(16)?;
    let content = Content::from_stored(label.unwrap_or("text"), row.try_get(17)?, row.try_get(18)?);
    Ok(content.preview(body.as_deref().unwrap_or_default(), PREVIEW_CHARS))
}

/// The contact list page: $1 user, $2 cursor time, $3 cursor conversation, $4 rows wanted, $5 preview
/// characters. Every row also carries the user's total unread count: page and total come from one
/// statement, hence one snapshot, so that they agree (an empty page reads the total on its own). A merge of
/// two sources, like the feed: the user's direct conversations by stored activity (index
/// `conversation_members_recent`, at most `limit` rows after the cursor) and their groups by derived
/// activity (`conversation_members_derived`: every group of the user, sorted). Values come from the
/// `conversation_state` view (stored counters for direct conversations, derived ones for groups); the
/// last message, the group's name and the peer's profile are looked up per row (`LATERAL … LIMIT 1`: index
/// lookups that a missing statistic cannot turn into scans; tested by `plans.rs`).
pub const CONVERSATIONS_SQL: &str = concat!(
    "WITH page AS (
             (SELECT cm.conversation_id, cm.last_activity AS activity
              FROM conversation_members cm
              WHERE cm.user_id = $1 AND NOT cm.derived
                AND (cm.last_activity, cm.conversation_id)
                    < (coalesce($2, 'infinity'::timestamptz), coalesce($3, ''))
              ORDER BY cm.last_activity DESC, cm.conversation_id DESC
              LIMIT $4)
             UNION ALL
             (SELECT s.conversation_id, s.activity
              FROM conversation_state s
              WHERE s.user_id = $1 AND s.derived
                AND (s.activity, s.conversation_id)
                    < (coalesce($2, 'infinity'::timestamptz), coalesce($3, ''))
              ORDER BY s.activity DESC, s.conversation_id DESC
              LIMIT $4)
         )
         SELECT p.conversation_id, c.kind, s.delivered_seq, s.read_seq, s.unread, s.active, p.activity,
                CASE WHEN c.kind = 'direct' THEN
                    CASE WHEN split_part(p.conversation_id, ':', 2) = $1
                         THEN split_part(p.conversation_id, ':', 3)
                         ELSE split_part(p.conversation_id, ':', 2) END
                END AS peer,
                coalesce(g.name, u.display_name),
                m.message_id, m.sender, m.created_at, m.recalled_at IS NOT NULL, left(m.body, $5),
                (",
    total_unread_sql!(),
    ")::bigint, s.muted, m.content_type, m.attachments::text, m.payload::text,
                -- Unread mentions of the user or of everyone, muted or not (derived: the read
                -- marker alone resets them).
                CASE WHEN s.active THEN
                    (SELECT count(*) FROM message_mentions mm
                     WHERE mm.conversation_id = p.conversation_id AND mm.user_id IN ($1, '*')
                       AND mm.seq > greatest(s.read_seq, s.from_seq) AND mm.sender <> $1)
                ELSE 0 END
         FROM (SELECT * FROM page ORDER BY activity DESC, conversation_id DESC LIMIT $4) p
         JOIN conversation_state s ON s.user_id = $1 AND s.conversation_id = p.conversation_id
         JOIN conversations c ON c.conversation_id = p.conversation_id
         LEFT JOIN LATERAL (
             SELECT message_id, sender, created_at, recalled_at, body, content_type, attachments,
                    payload FROM messages
             WHERE conversation_id = p.conversation_id AND seq = s.delivered_seq AND seq > s.from_seq
         ) m ON true
         LEFT JOIN LATERAL (
             SELECT name FROM groups
             WHERE c.kind = 'group' AND group_id = substr(p.conversation_id, 3) LIMIT 1
         ) g ON true
         LEFT JOIN LATERAL (
             SELECT display_name FROM users
             WHERE c.kind = 'direct' AND user_id =
                 CASE WHEN split_part(p.conversation_id, ':', 2) = $1
                      THEN split_part(p.conversation_id, ':', 3)
                      ELSE split_part(p.conversation_id, ':', 2) END
             LIMIT 1
         ) u ON true
         ORDER BY p.activity DESC, p.conversation_id DESC"
);

/// Contact list.
///
/// The user's conversations, most recent activity first, each with its last message, seqs and exact
/// unread count, and the user's total unread count.
#[utoipa::path(
    get, path = "/v1/users/{user}/conversations", tag = "messages",
    params(
        ("user" = schemas::UserId, Path, description = "Whose contact list."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of conversations.", body = ConversationPage),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn conversations(
    bearer: Bearer,
    Extension(presence): Extension<Arc<Presence>>,
    State(reads): State<ReadPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<ConversationPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let limit = page_limit(&params)?;
    let cursor = cursor_param(&params, decode_conversation_cursor)?;
    // Counts and order never depend on inboxes: complete for a returning user without waiting.
    presence.touch(&user).await;
    let (at, conversation) = cursor.unzip();
    let rows = reads
        .query(
            CONVERSATIONS_SQL,
            &[
                &user.as_str(),
                &at,
                &conversation,
                &(limit + 1),
                &(PREVIEW_CHARS as i32),
            ],
        )
        .await
        .map_err(read_error)?;
    let total_unread: i64 = match rows.first() {
        Some(row) => row.try_get(14),
        None => reads
            .query(TOTAL_UNREAD_SQL, &[&user.as_str()])
            .await
            .map_err(read_error)?
            .first()
            .ok_or_else(ApiError::internal)?
            .try_get(0),
    }
    .map_err(|err| read_error(err.into()))?;
    let has_more = rows.len() as i64 > limit;
    let conversations: Vec<ConversationSummary> = rows
        .iter()
        .take(limit as usize)
        .map(conversation_summary)
        .collect::<Result<_, tokio_postgres::Error>>()
        .map_err(|err| read_error(err.into()))?;
    let next_cursor = match conversations.last() {
        Some(last) if has_more => Some(encode_conversation_cursor(
            last.last_activity,
            &last.conversation_id,
        )),
        _ => None,
    };
    Ok(Json(ConversationPage {
        conversations,
        total_unread,
        next_cursor,
    }))
}

/// Conversation history.
///
/// Messages in ascending seq: the latest `limit` without `before`/`after`; the ones just before seq
/// `before` (scrolling back); or the ones just after seq `after` (catching up). Recalled messages stay
/// as tombstones (empty body), so seqs have no holes. In a group whose history visibility is `joined`
/// a member's history starts after the seq at which they (last) joined.
#[utoipa::path(
    get, path = "/v1/conversations/{conversation}/messages", tag = "messages",
    params(
        ("conversation" = schemas::ConversationId, Path, description = "The conversation."),
        ("before" = Option<i64>, Query, minimum = 1, description = "Messages with a smaller seq."),
        ("after" = Option<i64>, Query, minimum = 0, description = "Messages with a larger seq."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
    ),
    responses(
        (status = 200, description = "A page of messages, ascending seq.", body = MessagePage),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn messages(
    bearer: Bearer,
    State(pool): State<PgPool>,
    State(reads): State<ReadPool>,
    Path(conversation): Path<String>,
    params: QueryParams,
) -> Result<Json<MessagePage>, ApiError> {
    let conversation = ConversationId::parse("conversation", &conversation)?;
    let limit = page_limit(&params)?;
    let member_floor = require_participant(&pool, &bearer, &conversation).await?;
    let removed_through = history_floor(&pool, &conversation).await?;
    let floor = member_floor.max(removed_through);
    let before = params.int_in("before", 1, i64::MAX)?;
    let after = params.int_in("after", 0, i64::MAX)?;
    let (sql, bound) = match (before, after) {
        (Some(_), Some(_)) => {
            return Err(ApiError::bad_field(
                "after",
                "give at most one of before and after",
            ))
        }
        (None, Some(after)) => (crate::history::HISTORY_AFTER_SQL, after),
        (before, None) => (
            crate::history::HISTORY_BEFORE_SQL,
            before.unwrap_or(i64::MAX),
        ),
    };
    let mut rows = reads
        .query(
            sql,
            &[
                &conversation.as_str(),
                &bound,
                &(limit + 1),
                &floor,
                &bearer.user(),
            ],
        )
        .await
        .map_err(read_error)?
        .iter()
        .map(|row| crate::history::message_of(row, floor))
        .collect::<Result<Vec<Message>, tokio_postgres::Error>>()
        .map_err(|err| read_error(err.into()))?;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    if after.is_none() {
        rows.reverse();
    }
    let peer = crate::receipts::attach(&pool, &conversation, bearer.user(), &mut rows).await?;
    // Retention removed what this reader could otherwise have read, and this page reaches it: going
    // back, nothing older is left; catching up, the page starts above a cursor that was removed.
    let older_removed = removed_through > member_floor
        && match after {
            None => !has_more,
            Some(after) => after < removed_through,
        };
    Ok(Json(MessagePage {
        messages: rows,
        has_more,
        older_removed,
        removed_through_seq: (removed_through > 0).then_some(removed_through),
        peer_read_seq: peer.map(|(read, _)| read),
        peer_delivered_seq: peer.map(|(_, delivered)| delivered),
    }))
}

/// The highest seq retention removed from the conversation (0: none).
async fn history_floor(pool: &PgPool, conversation: &ConversationId) -> Result<i64, ApiError> {
    let floor: Option<i64> =
        sqlx::query_scalar("SELECT history_floor FROM conversations WHERE conversation_id = $1")
            .bind(conversation.as_str())
            .fetch_optional(pool)
            .await
            .map_err(database_error)?;
    Ok(floor.unwrap_or(0))
}
