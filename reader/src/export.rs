//! `GET /v1/users/{user}/export`: everything a user put into Fanline, streamed as JSON lines
//! ([`schemas::export`]). One read-only snapshot (`REPEATABLE READ`) for the counts and every record,
//! so the first line's counts are exactly what follows; read a thousand rows at a time by key and
//! written as the client reads (a bounded channel: a slow client holds a few pages, never the
//! account). Messages are found per conversation of the user (the history's primary key, filtered by
//! sender): no index on sender costs every message insert for a rare request.
//!
//! At most [`CONCURRENT`] exports run per reader process; more get `429`. A client that reads nothing
//! for [`SEND_TIMEOUT`] loses its export (the snapshot would hold back vacuum). A failure after the
//! first line ends the stream without its `end` line, which is how a client tells a cut download.

use std::sync::Arc;
use std::time::Duration;

use authkit::Bearer;
use axum::body::{Body, Bytes};
use axum::extract::{Path, State};
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use chrono::{DateTime, Utc};
use httpkit::openapi::{
    BadRequest, Forbidden, InternalError, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::ApiError;
use schemas::export::{ExportCounts, ExportRecord};
use schemas::UserId;
use sqlx::{PgConnection, PgPool, Postgres, Transaction};
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};

use crate::failure::database_error;

/// Exports running at once per reader process (each holds a connection and a snapshot).
pub const CONCURRENT: usize = 2;
/// Rows read per query.
const PAGE: i64 = 1_000;
/// A client that reads nothing for this long loses its export (its snapshot holds back vacuum).
const SEND_TIMEOUT: Duration = Duration::from_secs(30);
/// A statement of an export may take this long (the reads' usual bound is seconds: an export walks
/// whole histories, by conversation and sender, without an index of its own).
const STATEMENT_TIMEOUT: &str = "5min";

/// The export routes' state: the pool and the running exports' places.
#[derive(Clone)]
pub struct Exports {
    pool: PgPool,
    running: Arc<Semaphore>,
}

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/users/{user}/export", get(export))
        .with_state(Exports {
            pool,
            running: Arc::new(Semaphore::new(CONCURRENT)),
        })
}

/// Export my data.
///
/// JSON lines (`application/x-ndjson`), one record per line, tagged by `type`: first `export` (the
/// counts of what follows, for progress), then `profile`, `conversation`s, `group`s, `follow`s,
/// `block`s, `post`s, `message`s (those the user sent), last `end` (the number of lines before it;
/// without it the download was cut short). One snapshot: every record is as of `generated_at`.
#[utoipa::path(
    get, path = "/v1/users/{user}/export", tag = "accounts",
    params(("user" = schemas::UserId, Path, description = "The user (the caller).")),
    responses(
        (status = 200, description = "The export, one record per line.",
         content_type = "application/x-ndjson", body = ExportRecord),
        BadRequest, Unauthorized, Forbidden, TooManyRequests, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn export(
    bearer: Bearer,
    State(exports): State<Exports>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let permit = exports.running.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "too many exports running: try again in a minute",
        )
    })?;
    let (lines, receiver) = mpsc::channel::<Result<Bytes, std::io::Error>>(4);
    let (started, start) = oneshot::channel();
    let file = format!(
        "attachment; filename=\"fanline-export-{}.jsonl\"",
        user.as_str()
    );
    // The transaction begins in the task, never in this request's future: a client that goes away
    // mid-`BEGIN` would leave a pooled connection inside a transaction (seen under wrk, `sync.rs`).
    tokio::spawn(write(
        exports.pool,
        user,
        Lines {
            lines,
            _permit: permit,
        },
        started,
    ));
    start
        .await
        .map_err(|_| ApiError::internal())?
        .map_err(database_error)?;
    let body = Body::from_stream(futures::stream::unfold(receiver, |mut receiver| async {
        receiver.recv().await.map(|line| (line, receiver))
    }));
    Ok((
        [
            (header::CONTENT_TYPE, "application/x-ndjson".to_owned()),
            (header::CONTENT_DISPOSITION, file),
            (header::CACHE_CONTROL, "no-store".to_owned()),
        ],
        body,
    )
        .into_response())
}

/// Where the records go, and the export's place under [`CONCURRENT`] (held until the last line).
struct Lines {
    lines: mpsc::Sender<Result<Bytes, std::io::Error>>,
    _permit: OwnedSemaphorePermit,
}

/// Why the writing stopped early.
#[derive(Debug, thiserror::Error)]
enum Stopped {
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the client went away")]
    Gone,
}

impl Lines {
    /// Sends one record as a line; the count of lines goes up.
    async fn send(&self, record: &ExportRecord, written: &mut i64) -> Result<(), Stopped> {
        let mut line = serde_json::to_vec(record).unwrap_or_default();
        line.push(b'\n');
        tokio::time::timeout(SEND_TIMEOUT, self.lines.send(Ok(Bytes::from(line))))
            .await
            .map_err(|_| Stopped::Gone)?
            .map_err(|_| Stopped::Gone)?;
        *written += 1;
        Ok(())
    }
}

/// Opens the snapshot and counts (answering `started`, so the request can still fail with a status),
/// then writes every line.
async fn write(
    pool: PgPool,
    user: UserId,
    lines: Lines,
    started: oneshot::Sender<Result<(), sqlx::Error>>,
) {
    let opened = open(&pool, user.as_str()).await;
    let (mut snapshot, counts) = match opened {
        Ok(opened) => {
            let _ = started.send(Ok(()));
            opened
        }
        Err(err) => {
            let _ = started.send(Err(err));
            return;
        }
    };
    match records(&mut snapshot, user.as_str(), counts, &lines).await {
        Ok(()) | Err(Stopped::Gone) => {}
        Err(Stopped::Database(err)) => {
            tracing::warn!(error = %err, "export failed; the stream ends without its last line");
            let _ = lines
                .lines
                .send(Err(std::io::Error::other("export failed")))
                .await;
        }
    }
    let _ = snapshot.rollback().await;
}

/// The export's snapshot, with its statement bound, and the counts of its first line.
async fn open(
    pool: &PgPool,
    user: &str,
) -> Result<(Transaction<'static, Postgres>, ExportCounts), sqlx::Error> {
    let mut snapshot = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    sqlx::query(&format!(
        "SET LOCAL statement_timeout = '{STATEMENT_TIMEOUT}'"
    ))
    .execute(&mut *snapshot)
    .await?;
    let counts = count(&mut snapshot, user).await?;
    Ok((snapshot, counts))
}

/// Every line, in order.
async fn records(
    tx: &mut PgConnection,
    user: &str,
    counts: ExportCounts,
    lines: &Lines,
) -> Result<(), Stopped> {
    let mut written = 0;
    let (generated_at,): (DateTime<Utc>,) =
        sqlx::query_as("SELECT now()").fetch_one(&mut *tx).await?;
    let header = ExportRecord::Export {
        user: user.to_owned(),
        generated_at,
        counts,
    };
    lines.send(&header, &mut written).await?;
    lines.send(&profile(tx, user).await?, &mut written).await?;
    for record in small_lists(tx, user).await? {
        lines.send(&record, &mut written).await?;
    }
    posts(tx, user, lines, &mut written).await?;
    messages(tx, user, lines, &mut written).await?;
    lines
        .send(&ExportRecord::End { records: written }, &mut written)
        .await
}

/// The counts of the first line, in the snapshot.
async fn count(tx: &mut PgConnection, user: &str) -> Result<ExportCounts, sqlx::Error> {
    let (conversations, groups, follows, blocks, posts, messages) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM conversation_members WHERE user_id = $1),
                (SELECT count(*) FROM group_members WHERE user_id = $1),
                (SELECT count(*) FROM follows WHERE follower = $1 AND active),
                (SELECT count(*) FROM blocks WHERE blocker = $1),
                (SELECT count(*) FROM posts WHERE author = $1 AND deleted_at IS NULL),
                (SELECT count(*) FROM conversation_members cm
                 JOIN messages m ON m.conversation_id = cm.conversation_id AND m.sender = $1
                 WHERE cm.user_id = $1)",
    )
    .bind(user)
    .fetch_one(tx)
    .await?;
    Ok(ExportCounts {
        conversations,
        groups,
        follows,
        blocks,
        posts,
        messages,
    })
}

async fn profile(tx: &mut PgConnection, user: &str) -> Result<ExportRecord, sqlx::Error> {
    type Row = (
        Option<DateTime<Utc>>,
        Option<String>,
        Option<i16>,
        Option<String>,
        Option<String>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT a.registered_at, u.display_name, u.age, u.gender, u.signature
         FROM (SELECT $1::text AS user_id) AS me
         LEFT JOIN accounts a ON a.user_id = me.user_id
         LEFT JOIN users u ON u.user_id = me.user_id",
    )
    .bind(user)
    .fetch_optional(tx)
    .await?;
    let (registered_at, display_name, age, gender, signature) =
        row.unwrap_or((None, None, None, None, None));
    Ok(ExportRecord::Profile {
        user: user.to_owned(),
        registered_at,
        display_name,
        age,
        gender,
        signature,
    })
}

/// Conversations, groups, follows and blocks: bounded by the user's own choices (a member of a few
/// thousand conversations at most), read whole.
async fn small_lists(tx: &mut PgConnection, user: &str) -> Result<Vec<ExportRecord>, sqlx::Error> {
    let conversations: Vec<(String, String, i64, bool, bool)> = sqlx::query_as(
        "SELECT cm.conversation_id, c.kind, cm.read_seq, cm.muted, cm.active
         FROM conversation_members cm JOIN conversations c USING (conversation_id)
         WHERE cm.user_id = $1 ORDER BY cm.conversation_id",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    let groups: Vec<(String, String, String, bool)> = sqlx::query_as(
        "SELECT g.group_id, g.name, gm.role, gm.active
         FROM group_members gm JOIN groups g USING (group_id)
         WHERE gm.user_id = $1 ORDER BY g.group_id",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    let follows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT followee, updated_at FROM follows WHERE follower = $1 AND active ORDER BY followee",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    let blocks: Vec<(String, DateTime<Utc>)> =
        sqlx::query_as("SELECT target, created_at FROM blocks WHERE blocker = $1 ORDER BY target")
            .bind(user)
            .fetch_all(&mut *tx)
            .await?;
    let conversations =
        conversations
            .into_iter()
            .map(
                |(conversation_id, kind, read_seq, muted, active)| ExportRecord::Conversation {
                    conversation_id,
                    kind,
                    read_seq,
                    muted,
                    active,
                },
            );
    let groups = groups
        .into_iter()
        .map(|(group_id, name, role, active)| ExportRecord::Group {
            group_id,
            name,
            role,
            active,
        });
    let follows = follows
        .into_iter()
        .map(|(followee, since)| ExportRecord::Follow { followee, since });
    let blocks = blocks
        .into_iter()
        .map(|(target, since)| ExportRecord::Block { target, since });
    Ok(conversations
        .chain(groups)
        .chain(follows)
        .chain(blocks)
        .collect())
}

/// The user's live posts, oldest first, a page at a time.
async fn posts(
    tx: &mut PgConnection,
    user: &str,
    lines: &Lines,
    written: &mut i64,
) -> Result<(), Stopped> {
    let mut after = String::new();
    loop {
        let page: Vec<(String, String, DateTime<Utc>)> = sqlx::query_as(
            "SELECT post_id, body, created_at FROM posts
             WHERE author = $1 AND deleted_at IS NULL AND post_id > $2
             ORDER BY post_id LIMIT $3",
        )
        .bind(user)
        .bind(&after)
        .bind(PAGE)
        .fetch_all(&mut *tx)
        .await?;
        let full = page.len() as i64 == PAGE;
        for (post_id, body, created_at) in page {
            after.clone_from(&post_id);
            let record = ExportRecord::Post {
                post_id,
                body,
                created_at,
            };
            lines.send(&record, written).await?;
        }
        if !full {
            return Ok(());
        }
    }
}

/// The messages the user sent, conversation by conversation, in seq order, a page at a time.
async fn messages(
    tx: &mut PgConnection,
    user: &str,
    lines: &Lines,
    written: &mut i64,
) -> Result<(), Stopped> {
    let conversations: Vec<String> = sqlx::query_scalar(
        "SELECT conversation_id FROM conversation_members WHERE user_id = $1 ORDER BY conversation_id",
    )
    .bind(user)
    .fetch_all(&mut *tx)
    .await?;
    for conversation in conversations {
        let mut after = 0i64;
        loop {
            let page: Vec<(String, i64, String, DateTime<Utc>, bool)> = sqlx::query_as(
                "SELECT message_id, seq, body, created_at, recalled_at IS NOT NULL FROM messages
                 WHERE conversation_id = $1 AND sender = $2 AND seq > $3
                 ORDER BY seq LIMIT $4",
            )
            .bind(&conversation)
            .bind(user)
            .bind(after)
            .bind(PAGE)
            .fetch_all(&mut *tx)
            .await?;
            let full = page.len() as i64 == PAGE;
            for (message_id, seq, body, created_at, recalled) in page {
                after = seq;
                let record = ExportRecord::Message {
                    message_id,
                    conversation_id: conversation.clone(),
                    seq,
                    body: (!recalled).then_some(body),
                    created_at,
                    recalled,
                };
                lines.send(&record, written).await?;
            }
            if !full {
                break;
            }
        }
    }
    Ok(())
}
