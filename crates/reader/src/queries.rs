//! The reader's SQL and its cursor format.
//!
//! Feeds and store timelines are ordered by post id, newest first. Post ids are ULIDs and sort by
//! creation time, so "older than the last post id I saw" is a cursor that neither repeats nor skips,
//! whatever is written meanwhile (new posts appear at the top, never inside pages already read).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use chrono::{DateTime, Utc};
use schemas::api::{FeedEntry, SyncEntry};
use schemas::PostId;
use sqlx::PgPool;

const CURSOR_PREFIX: &str = "p1:";

/// Encodes the position after `post_id` as an opaque cursor.
pub fn encode_cursor(post_id: &str) -> String {
    URL_SAFE_NO_PAD.encode(format!("{CURSOR_PREFIX}{post_id}"))
}

/// Decodes a cursor from [`encode_cursor`]; `None` when it is not one.
pub fn decode_cursor(cursor: &str) -> Option<PostId> {
    let bytes = URL_SAFE_NO_PAD.decode(cursor).ok()?;
    let text = String::from_utf8(bytes).ok()?;
    PostId::parse("cursor", text.strip_prefix(CURSOR_PREFIX)?).ok()
}

type FeedRow = (String, String, String, DateTime<Utc>);

fn feed_entry((post_id, author, body, created_at): FeedRow) -> FeedEntry {
    FeedEntry {
        post_id,
        author,
        body,
        created_at,
    }
}

/// Up to `limit` entries of `user`'s home feed older than `before`, newest first.
pub async fn feed(
    pool: &PgPool,
    user: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<FeedEntry>, sqlx::Error> {
    let rows: Vec<FeedRow> = sqlx::query_as(
        "SELECT s.post_id, p.author, p.body, p.created_at
         FROM sync_entries s JOIN posts p ON p.post_id = s.post_id
         WHERE s.user_id = $1 AND ($2::text IS NULL OR s.post_id < $2)
         ORDER BY s.post_id DESC
         LIMIT $3",
    )
    .bind(user)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(feed_entry).collect())
}

/// Up to `limit` of `author`'s own posts older than `before`, newest first.
pub async fn store_timeline(
    pool: &PgPool,
    author: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<Vec<FeedEntry>, sqlx::Error> {
    let rows: Vec<FeedRow> = sqlx::query_as(
        "SELECT post_id, author, body, created_at
         FROM posts
         WHERE author = $1 AND ($2::text IS NULL OR post_id < $2)
         ORDER BY post_id DESC
         LIMIT $3",
    )
    .bind(author)
    .bind(before)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows.into_iter().map(feed_entry).collect())
}

/// Up to `limit` entries of `user`'s sync timeline with seq greater than `after`, ascending.
pub async fn sync(
    pool: &PgPool,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<Vec<SyncEntry>, sqlx::Error> {
    let rows: Vec<(i64, String, String, String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT s.seq, s.post_id, p.author, p.body, p.created_at
         FROM sync_entries s JOIN posts p ON p.post_id = s.post_id
         WHERE s.user_id = $1 AND s.seq > $2
         ORDER BY s.seq
         LIMIT $3",
    )
    .bind(user)
    .bind(after)
    .bind(limit)
    .fetch_all(pool)
    .await?;
    Ok(rows
        .into_iter()
        .map(|(seq, post_id, author, body, created_at)| SyncEntry {
            seq,
            post_id,
            author,
            body,
            created_at,
        })
        .collect())
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
}
