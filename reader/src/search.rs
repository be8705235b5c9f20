//! Message and post search, scoped to what the caller may read. Messages: their direct conversations, and each group during
//! their membership — from where its history is visible to them (the seq they joined at, or the start
//! of a `shared` group) to the seq they left at. Recalled and removed messages never match (fanout
//! clears their searchable form). How text becomes a query: [`schemas::search`].

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use httpkit::openapi::{BadRequest, Forbidden, InternalError, Unauthorized, Unavailable};
use httpkit::{ApiError, QueryParams};
use schemas::api::{
    decode_cursor, decode_time_cursor, encode_cursor, encode_time_cursor, Highlight, MessageHit,
    MessageSearchPage, PostHit, PostSearchPage,
};
use schemas::{ConversationId, UserId};
use sqlx::PgPool;

use crate::failure::database_error;
use crate::params::{cursor_param, page_limit, page_of};

/// Characters of context kept before the first match in a snippet, and the snippet's length.
const SNIPPET_BEFORE: usize = 20;
const SNIPPET_CHARS: usize = 80;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/users/{user}/search/messages", get(messages))
        .route("/v1/users/{user}/search/posts", get(posts))
        .with_state(pool)
}

/// The matches of the user's conversations, newest first: $1 user, $2 tsquery, $3 one conversation,
/// $4 sender, $5 before, $6 after, $7/$8 cursor (time, message id), $9 rows. A join, not a walk of
/// the user's conversations, so Postgres picks by how common the words are: a rare word through the
/// search index first (a word in 500 of a million messages: 1.8 ms, `fanline-search-bench`),
/// a common one by reading the user's conversations (its cost grows with their messages). Run as an
/// unnamed statement (`persistent(false)`), so each search is planned for its own words: a prepared
/// statement's generic plan would fix one path for rare and common words alike. Public for the search bench, which runs it
/// straight on Postgres to measure what HTTP adds.
pub const SEARCH_SQL: &str =
    "SELECT m.conversation_id, m.seq, m.message_id, m.sender, m.body, m.created_at
     FROM conversation_members cm
     LEFT JOIN groups g ON cm.derived AND g.group_id = substr(cm.conversation_id, 3)
     JOIN messages m ON m.conversation_id = cm.conversation_id
          AND m.seq > CASE WHEN cm.derived AND g.history IS DISTINCT FROM 'shared'
                           THEN cm.from_seq ELSE 0 END
          AND (cm.active OR m.seq <= cm.delivered_seq)
     WHERE cm.user_id = $1 AND ($3::text IS NULL OR cm.conversation_id = $3)
       AND m.search @@ $2::tsquery
       AND ($4::text IS NULL OR m.sender = $4)
       AND m.created_at < coalesce($5, 'infinity') AND m.created_at > coalesce($6, '-infinity')
       AND ($7::timestamptz IS NULL OR (m.created_at, m.message_id) < ($7, $8))
     ORDER BY m.created_at DESC, m.message_id DESC
     LIMIT $9";

/// Search messages.
///
/// The messages the caller may read that contain every word of `q` (Chinese words anywhere in a
/// sentence, other words by prefix; case and full-width folded), newest first. Each hit says where it
/// is: open the conversation's history around its `conversation_seq`.
#[utoipa::path(
    get, path = "/v1/users/{user}/search/messages", tag = "search",
    params(
        ("user" = schemas::UserId, Path, description = "The user (the caller)."),
        ("q" = String, Query, description = "Words to find, 1 to 200 characters, at least one letter or digit."),
        ("conversation" = Option<String>, Query, description = "Only this conversation."),
        ("from" = Option<schemas::UserId>, Query, description = "Only messages from this sender."),
        ("before" = Option<DateTime<Utc>>, Query, description = "Only messages written before this time."),
        ("after" = Option<DateTime<Utc>>, Query, description = "Only messages written after this time."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of hits, newest first.", body = MessageSearchPage),
        BadRequest, Unauthorized, Forbidden, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn messages(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<MessageSearchPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let (q, tsquery) = query_param(&params)?;
    let conversation = params
        .get("conversation")
        .map(|raw| ConversationId::parse("conversation", raw))
        .transpose()?;
    let from = params
        .get("from")
        .map(|raw| UserId::parse("from", raw))
        .transpose()?;
    let before = time_param(&params, "before")?;
    let after = time_param(&params, "after")?;
    let limit = page_limit(&params)?;
    let cursor = cursor_param(&params, decode_time_cursor)?;
    let (cursor_at, cursor_id) = cursor.unzip();
    let rows: Vec<(String, i64, String, String, String, DateTime<Utc>)> =
        sqlx::query_as(SEARCH_SQL)
            .persistent(false)
            .bind(user.as_str())
            .bind(&tsquery)
            .bind(conversation.as_ref().map(ConversationId::as_str))
            .bind(from.as_ref().map(UserId::as_str))
            .bind(before)
            .bind(after)
            .bind(cursor_at)
            .bind(cursor_id)
            .bind(limit + 1)
            .fetch_all(&pool)
            .await
            .map_err(database_error)?;
    let words = schemas::search::words(q);
    let hits = rows
        .into_iter()
        .map(
            |(conversation_id, seq, message_id, sender, body, created_at)| {
                let (snippet, highlights) = snippet(&body, &words);
                MessageHit {
                    conversation_id,
                    conversation_seq: seq,
                    message_id,
                    sender,
                    snippet,
                    highlights,
                    created_at,
                }
            },
        )
        .collect();
    let (hits, next_cursor) = page_of(hits, limit, |hit: &MessageHit| {
        encode_time_cursor(hit.created_at, &hit.message_id)
    });
    Ok(Json(MessageSearchPage { hits, next_cursor }))
}

/// The matching posts of `$1`'s own and followed authors (or of the one author `$3`), newest first: $2
/// tsquery, $4 cursor (post id), $5 rows.
const POST_SEARCH_SQL: &str = "SELECT p.post_id, p.author, p.body, p.created_at
     FROM (SELECT $1::text AS author WHERE $3::text IS NULL
           UNION ALL
           SELECT f.followee FROM follows f WHERE f.follower = $1 AND f.active AND $3::text IS NULL
           UNION ALL
           SELECT $3::text WHERE $3::text IS NOT NULL) AS source
     CROSS JOIN LATERAL (
         SELECT p.post_id, p.author, p.body, p.created_at FROM posts p
         WHERE p.author = source.author AND p.search @@ $2::tsquery AND p.deleted_at IS NULL
           AND p.post_id < coalesce($4::text, '8')
         ORDER BY p.post_id DESC
         LIMIT $5
     ) AS p
     ORDER BY p.post_id DESC
     LIMIT $5";

/// Search posts.
///
/// The posts that contain every word of `q` (as for messages), newest first: of the authors the
/// caller follows and their own, or — with `author` — of that author's store timeline (public to
/// every signed-in user, as the timeline is).
#[utoipa::path(
    get, path = "/v1/users/{user}/search/posts", tag = "search",
    params(
        ("user" = schemas::UserId, Path, description = "The user (the caller)."),
        ("q" = String, Query, description = "Words to find, 1 to 200 characters, at least one letter or digit."),
        ("author" = Option<schemas::UserId>, Query, description = "Only this author's posts (any author)."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of hits, newest first.", body = PostSearchPage),
        BadRequest, Unauthorized, Forbidden, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn posts(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<PostSearchPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let (q, tsquery) = query_param(&params)?;
    let author = params
        .get("author")
        .map(|raw| UserId::parse("author", raw))
        .transpose()?;
    let limit = page_limit(&params)?;
    let cursor = cursor_param(&params, |raw| decode_cursor(raw).map(|id| id.to_string()))?;
    let rows: Vec<(String, String, String, DateTime<Utc>)> = sqlx::query_as(POST_SEARCH_SQL)
        .bind(user.as_str())
        .bind(&tsquery)
        .bind(author.as_ref().map(UserId::as_str))
        .bind(cursor)
        .bind(limit + 1)
        .fetch_all(&pool)
        .await
        .map_err(database_error)?;
    let words = schemas::search::words(q);
    let hits = rows
        .into_iter()
        .map(|(post_id, author, body, created_at)| {
            let (snippet, highlights) = snippet(&body, &words);
            PostHit {
                post_id,
                author,
                snippet,
                highlights,
                created_at,
            }
        })
        .collect();
    let (hits, next_cursor) = page_of(hits, limit, |hit: &PostHit| encode_cursor(&hit.post_id));
    Ok(Json(PostSearchPage { hits, next_cursor }))
}

/// The `q` parameter every search needs, and its `tsquery` ([`schemas::search::query`]).
pub(crate) fn query_param(params: &QueryParams) -> Result<(&str, String), ApiError> {
    let q = params
        .get("q")
        .ok_or_else(|| ApiError::bad_field("q", "required: what to search for"))?;
    Ok((q, schemas::search::query("q", q)?))
}

/// An optional RFC 3339 time parameter.
fn time_param(params: &QueryParams, name: &'static str) -> Result<Option<DateTime<Utc>>, ApiError> {
    match params.get(name) {
        None => Ok(None),
        Some(raw) => DateTime::parse_from_rfc3339(raw)
            .map(|at| Some(at.with_timezone(&Utc)))
            .map_err(|_| ApiError::bad_field(name, "must be an RFC 3339 time")),
    }
}

/// Up to [`SNIPPET_CHARS`] characters of `body` starting a little before the first occurrence of one
/// of the (folded) `words`, and where each occurrence in it is. Matching runs on each character's
/// folded form, so `Ｈｅｌｌｏ` is highlighted for `hello`.
fn snippet(body: &str, words: &[String]) -> (String, Vec<Highlight>) {
    let chars: Vec<char> = body.chars().collect();
    // Each original character's folded form (one or more characters).
    let folded: Vec<Vec<char>> = chars
        .iter()
        .map(|c| schemas::search::fold(&c.to_string()).chars().collect())
        .collect();
    let matches_at = |start: usize, word: &[char]| -> Option<usize> {
        let (mut i, mut j) = (start, 0);
        while j < word.len() {
            let piece = folded.get(i)?;
            if word.get(j..j + piece.len())? != piece.as_slice() {
                return None;
            }
            j += piece.len();
            i += 1;
        }
        Some(i - start)
    };
    let words: Vec<Vec<char>> = words.iter().map(|w| w.chars().collect()).collect();
    let mut found: Vec<(usize, usize)> = Vec::new();
    let mut i = 0;
    while i < chars.len() {
        match words.iter().find_map(|w| matches_at(i, w)) {
            Some(length) if length > 0 => {
                found.push((i, length));
                i += length;
            }
            _ => i += 1,
        }
    }
    let start = found
        .first()
        .map_or(0, |(at, _)| at.saturating_sub(SNIPPET_BEFORE));
    let end = (start + SNIPPET_CHARS).min(chars.len());
    let highlights = found
        .into_iter()
        .filter(|(at, length)| *at >= start && at + length <= end)
        .map(|(at, length)| Highlight {
            start: at - start,
            length,
        })
        .collect();
    (chars[start..end].iter().collect(), highlights)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snippets_start_near_the_first_match_and_mark_every_one() {
        let words = schemas::search::words("会议 ＭＥＥＴ");
        let (text, marks) = snippet("明天的会议改到下午, the Meeting moved", &words);
        assert_eq!(text, "明天的会议改到下午, the Meeting moved");
        assert_eq!(
            marks,
            vec![
                Highlight {
                    start: 3,
                    length: 2
                },
                Highlight {
                    start: 15,
                    length: 4
                }
            ]
        );
        let long = format!("{}needle{}", "x".repeat(100), "y".repeat(100));
        let (text, marks) = snippet(&long, &schemas::search::words("needle"));
        assert_eq!(text.chars().count(), SNIPPET_CHARS);
        assert_eq!(
            marks,
            vec![Highlight {
                start: 20,
                length: 6
            }]
        );
    }
}
