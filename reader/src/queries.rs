//! The reader's SQL. (The cursor format is part of the API contract: [`schemas::api::encode_cursor`].)
//!
//! Feeds and store timelines are ordered by post id, newest first. Post ids are ULIDs and sort by
//! creation time, so "older than the last post id I saw" is a cursor that neither repeats nor skips,
//! whatever is written meanwhile (new posts appear at the top, never inside pages already read).

use chrono::{DateTime, Utc};
use schemas::api::{encode_cursor, AdvancedConversation, FeedEntry, FeedPage, SyncEntry, SyncKind};

use schemas::Content;

use crate::db::{ReadError, ReadPool};

// The queries bound pages with `post_id < coalesce($cursor, '8')` rather than `$cursor IS NULL OR ...`:
// '8' sorts above every ULID (they start with 0-7), and a plain range stays an index bound even when
// Postgres switches a prepared statement to its generic plan.
//
// Their shapes leave the planner no join order to get wrong when statistics are missing (after a crash
// restart or a bulk load that autovacuum has not analyzed yet): a page always starts from the inbox (or
// author) index range and stops after `limit` rows. Posts are looked up per row through
// `LATERAL (... WHERE post_id = ... LIMIT 1)`, which Postgres cannot flatten into a hash join over all
// posts, and the inbox's "not deleted" check is a scalar subquery, which stays a per-row filter. Tested
// with statistics removed (`reads_stay_index_driven_without_statistics`).

/// A post row: post id, author, body, creation time, then its content type, attachments and payload
/// (JSON text) and when it was edited — the columns every post page selects, in this order.
fn feed_entry(row: &tokio_postgres::Row) -> Result<FeedEntry, tokio_postgres::Error> {
    Ok(FeedEntry {
        post_id: row.try_get(0)?,
        author: row.try_get(1)?,
        body: row.try_get(2)?,
        created_at: row.try_get(3)?,
        content: Content::from_stored(row.try_get(4)?, row.try_get(5)?, row.try_get(6)?),
        edited_at: row.try_get(7)?,
    })
}

/// Shapes a page from up to `limit + 1` rows: the extra row only says that another page exists.
fn page_of(mut entries: Vec<FeedEntry>, limit: i64) -> FeedPage {
    let has_more = entries.len() as i64 > limit;
    entries.truncate(limit.max(0) as usize);
    let next_cursor = match entries.last() {
        Some(last) if has_more => Some(encode_cursor(&last.post_id)),
        _ => None,
    };
    FeedPage {
        entries,
        next_cursor,
        older_removed: false,
    }
}

/// The home feed page: $1 user, $2 cursor (post id or NULL), $3 rows wanted.
pub const FEED_SQL: &str = "WITH candidates AS (
             (SELECT s.post_id
              FROM sync_entries s
              WHERE s.user_id = $1 AND s.post_id < coalesce($2::text, '8')
                AND (SELECT live.deleted_at IS NULL FROM posts live WHERE live.post_id = s.post_id)
              ORDER BY s.post_id DESC
              LIMIT $3)
             UNION
             (SELECT pulled.post_id
              FROM follows f
              JOIN authors a ON a.author = f.followee AND a.has_pull_posts
              CROSS JOIN LATERAL (
                  SELECT p.post_id FROM posts p
                  WHERE p.author = f.followee AND p.delivery_mode = 'pull' AND p.deleted_at IS NULL
                    AND p.post_id < coalesce($2::text, '8')
                  ORDER BY p.post_id DESC
                  LIMIT $3
              ) AS pulled
              WHERE f.follower = $1 AND f.active)
             UNION
             (SELECT below.post_id
              FROM (SELECT c.below
                    FROM (SELECT greatest(
                              (SELECT feed_pull_below FROM user_activity WHERE user_id = $1),
                              (SELECT feed_below FROM sync_floors WHERE user_id = $1)) AS below) AS c
                    -- Only when the page reaches below the cut: fewer than a page of live inbox
                    -- posts between the cut and the cursor (else every page would read every
                    -- followed author's timeline).
                    WHERE c.below IS NOT NULL
                      AND (SELECT count(*) FROM (
                               SELECT 1 FROM sync_entries s
                               WHERE s.user_id = $1 AND s.post_id >= c.below
                                 AND s.post_id < coalesce($2::text, '8')
                                 AND (SELECT live.deleted_at IS NULL FROM posts live
                                      WHERE live.post_id = s.post_id)
                               LIMIT $3) AS above) < $3) AS cut
              CROSS JOIN LATERAL (
                  SELECT $1::text AS author
                  UNION ALL
                  SELECT f.followee FROM follows f WHERE f.follower = $1 AND f.active
              ) AS source
              CROSS JOIN LATERAL (
                  SELECT p.post_id FROM posts p
                  WHERE p.author = source.author AND p.deleted_at IS NULL
                    AND p.post_id < least(coalesce($2::text, '8'), cut.below)
                  ORDER BY p.post_id DESC
                  LIMIT $3
              ) AS below)
         )
         SELECT c.post_id, p.author, p.body, p.created_at, p.content_type, p.attachments::text,
                p.payload::text, p.edited_at
         FROM (SELECT post_id FROM candidates ORDER BY post_id DESC LIMIT $3) c
         CROSS JOIN LATERAL (
             SELECT author, body, created_at, content_type, attachments, payload, edited_at
             FROM posts WHERE post_id = c.post_id LIMIT 1
         ) p
         ORDER BY c.post_id DESC";

/// A page of up to `limit` entries of `user`'s home feed older than `before`, newest first: the user's inbox
/// (pushed posts) merged with the pull-mode posts of the authors they follow, deduplicated by post id.
/// Below a returned user's `feed_pull_below` (where their return stopped copying what they missed while
/// dormant), or their `sync_floors.feed_below` (above the newest post retention removed from their
/// inbox), every post of the authors they follow and their own is read from the store timelines.
///
/// The cost is bounded by the number of sources, not by their history: each source contributes at most
/// `limit` rows through an index range scan that starts at the cursor (`sync_entries (user_id, post_id)`
/// for the inbox, `posts_pull_by_author` for each pull source), and Postgres merges those
/// `(1 + sources) × limit` rows. Sources are the followed authors that have pull-mode posts at all, and,
/// for a user who returned from dormancy, every followed author below the cut.
/// Deleted posts are skipped inside each source, before its limit, so a page is never cut short.
pub async fn feed(
    reads: &ReadPool,
    user: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<FeedPage, ReadError> {
    post_page(reads, FEED_SQL, user, before, limit).await
}

/// An author's store timeline page: $1 author, $2 cursor, $3 rows wanted.
pub const STORE_TIMELINE_SQL: &str = "SELECT post_id, author, body, created_at, content_type,
                attachments::text, payload::text, edited_at
         FROM posts
         WHERE author = $1 AND deleted_at IS NULL AND post_id < coalesce($2::text, '8')
         ORDER BY post_id DESC
         LIMIT $3";

/// A page of up to `limit` of `author`'s own posts older than `before`, newest first; its last page
/// says whether retention removed older posts.
pub async fn store_timeline(
    reads: &ReadPool,
    author: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<FeedPage, ReadError> {
    let mut page = post_page(reads, STORE_TIMELINE_SQL, author, before, limit).await?;
    if page.next_cursor.is_none() {
        let removed = reads
            .query(
                "SELECT 1 FROM authors WHERE author = $1 AND posts_removed_below IS NOT NULL",
                &[&author],
            )
            .await?;
        page.older_removed = !removed.is_empty();
    }
    Ok(page)
}

/// Runs a page query ordered by post id (`$1` whose page, `$2` cursor, `$3` rows wanted) for one row
/// more than `limit`, which only says whether another page exists.
async fn post_page(
    reads: &ReadPool,
    sql: &'static str,
    owner: &str,
    before: Option<&str>,
    limit: i64,
) -> Result<FeedPage, ReadError> {
    let rows = reads.query(sql, &[&owner, &before, &(limit + 1)]).await?;
    let rows = rows
        .iter()
        .map(feed_entry)
        .collect::<Result<Vec<FeedEntry>, tokio_postgres::Error>>()?;
    Ok(page_of(rows, limit))
}

/// One scanned page of a sync timeline: the live entries, and the highest seq scanned (deleted posts
/// included), which is where the next scan must start.
pub struct SyncScan {
    pub entries: Vec<SyncEntry>,
    pub last_scanned_seq: Option<i64>,
    /// Whether entries follow the scanned ones right away.
    pub has_more: bool,
}

/// A sync scan: $1 user, $2 after seq, $3 rows wanted. Posts and messages are looked up per entry
/// (`LEFT JOIN LATERAL … LIMIT 1`, index lookups, as for feeds).
macro_rules! sync_sql {
    ($user:literal, $after:literal, $limit:literal) => {
        concat!(
            "SELECT s.seq, s.kind, s.post_id, s.message_id, s.conversation_id, s.conv_seq,
                coalesce(p.author, s.author) AS author, coalesce(p.body, m.body, '') AS body,
                coalesce(p.content_type, m.content_type, 'text') AS content_type,
                coalesce(p.attachments, m.attachments)::text AS attachments,
                coalesce(p.payload, m.payload)::text AS payload,
                coalesce(p.created_at, m.created_at, r.refused_at, now()) AS created_at,
                -- A post removed by retention is skipped as a deleted one is.
                (p.deleted_at IS NOT NULL OR (s.kind = 'post' AND p.author IS NULL)) AS deleted,
                m.recalled_at IS NOT NULL AS recalled,
                (s.kind = 'message' AND m.body IS NULL) AS expired, r.reason, r.action, r.subject
         FROM (SELECT seq, kind, post_id, message_id, conversation_id, conv_seq, author
               FROM sync_entries
               WHERE user_id = ",
            $user,
            " AND seq > ",
            $after,
            "
               ORDER BY seq
               LIMIT ",
            $limit,
            ") s
         LEFT JOIN LATERAL (
             SELECT author, body, created_at, deleted_at, content_type, attachments, payload
             FROM posts WHERE post_id = s.post_id LIMIT 1
         ) p ON true
         LEFT JOIN LATERAL (
             SELECT body, created_at, recalled_at, content_type, attachments, payload
             FROM messages WHERE message_id = s.message_id LIMIT 1
         ) m ON true
         LEFT JOIN LATERAL (
             SELECT reason, refused_at, NULL AS action, NULL AS subject FROM refused_messages
             WHERE message_id = s.message_id AND s.kind = 'refused'
             UNION ALL
             -- Other refused writes: the entry's message_id column holds the event's id.
             SELECT reason, refused_at, action, subject FROM refused_writes
             WHERE event_id = s.message_id AND s.kind = 'refused'
             LIMIT 1
         ) r ON true
         ORDER BY s.seq"
        )
    };
}

pub const SYNC_SQL: &str = sync_sql!("$1", "$2", "$3");

/// [`SYNC_SQL`] and, in the same statement (so the same snapshot), whether one of the user's groups has
/// read-diffused (large-group) messages after the cursor — exactly the groups
/// [`advanced_conversations`] would report. Without one, a page needs no second query and no explicit
/// snapshot: one round trip instead of five, which is most of what a page or a realtime wake-up costs.
/// (Asking only "is the user in any group" sent every group member down the slow path: sync pages at
/// 2,000/s instead of 4,000/s in `scripts/bench.sh`.)
pub const SYNC_FLAGGED_SQL: &str = concat!(
    // The flag comes from a row that always exists; the entries join it (none: one row of NULLs).
    "SELECT f.large_group_advanced, f.floor_seq, e.*
     FROM (SELECT EXISTS (SELECT 1 FROM conversation_members cm
                          JOIN conversations c ON c.conversation_id = cm.conversation_id
                          WHERE cm.user_id = $1 AND cm.derived AND cm.active
                            AND c.last_position > $2) AS large_group_advanced,
                  (SELECT floor_seq FROM sync_floors WHERE user_id = $1) AS floor_seq) f
     LEFT JOIN LATERAL (",
    sync_sql!("$1", "$2", "$3"),
    ") e ON true ORDER BY e.seq"
);

/// One scanned sync entry, by the column names of [`SYNC_SQL`].
#[derive(sqlx::FromRow)]
struct SyncRow {
    seq: i64,
    kind: String,
    post_id: Option<String>,
    message_id: Option<String>,
    conversation_id: Option<String>,
    conv_seq: Option<i64>,
    author: String,
    body: String,
    content_type: String,
    attachments: Option<String>,
    payload: Option<String>,
    created_at: DateTime<Utc>,
    deleted: bool,
    recalled: bool,
    expired: bool,
    reason: Option<String>,
    action: Option<String>,
    subject: Option<String>,
}

impl SyncRow {
    /// The same row from a page read's connection ([`ReadPool`]).
    fn from_read(row: &tokio_postgres::Row) -> Result<SyncRow, tokio_postgres::Error> {
        Ok(SyncRow {
            seq: row.try_get("seq")?,
            kind: row.try_get("kind")?,
            post_id: row.try_get("post_id")?,
            message_id: row.try_get("message_id")?,
            conversation_id: row.try_get("conversation_id")?,
            conv_seq: row.try_get("conv_seq")?,
            author: row.try_get("author")?,
            body: row.try_get("body")?,
            content_type: row.try_get("content_type")?,
            attachments: row.try_get("attachments")?,
            payload: row.try_get("payload")?,
            created_at: row.try_get("created_at")?,
            deleted: row.try_get("deleted")?,
            recalled: row.try_get("recalled")?,
            expired: row.try_get("expired")?,
            reason: row.try_get("reason")?,
            action: row.try_get("action")?,
            subject: row.try_get("subject")?,
        })
    }
}

/// A [`SyncRow`] with whether one of its user's large groups advanced ([`SYNC_BATCH_SQL`]).
#[derive(sqlx::FromRow)]
struct FlaggedRow {
    #[sqlx(flatten)]
    row: SyncRow,
    large_group_advanced: bool,
}

#[derive(sqlx::FromRow)]
struct BatchRow {
    user_id: String,
    #[sqlx(flatten)]
    flagged: FlaggedRow,
}

fn sync_kind(kind: &str) -> SyncKind {
    match kind {
        "message" => SyncKind::Message,
        "recall" => SyncKind::Recall,
        "refused" => SyncKind::Refused,
        "invitation" => SyncKind::Invitation,
        "edit" => SyncKind::Edit,
        "reaction" => SyncKind::Reaction,
        _ => SyncKind::Post,
    }
}

/// Scans up to `limit` entries of `user`'s sync timeline with seq greater than `after`, ascending.
/// Entries of deleted posts are scanned but not returned, so a device skips past them; a recalled
/// message's entry stays (marked `recalled`, body empty) next to the recall entry that came later.
pub async fn sync<'e, E>(
    executor: E,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<SyncScan, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let rows: Vec<SyncRow> = sqlx::query_as(SYNC_SQL)
        .bind(user)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(executor)
        .await?;
    Ok(scan_of(rows, limit))
}

/// A flagged sync scan ([`sync_flagged`]).
pub struct FlaggedScan {
    pub scan: SyncScan,
    /// One of the user's large groups advanced after the cursor: the page needs their positions too.
    pub large_group_advanced: bool,
    /// The highest seq retention removed from the user's sync timeline (from the same snapshot).
    pub floor_seq: Option<i64>,
}

/// The highest seq retention removed from `user`'s sync timeline, if any.
pub async fn sync_floor<'e, E>(executor: E, user: &str) -> Result<Option<i64>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    sqlx::query_scalar("SELECT floor_seq FROM sync_floors WHERE user_id = $1")
        .bind(user)
        .fetch_optional(executor)
        .await
}

/// A sync scan, whether one of the user's large groups advanced after `after` (see
/// [`SYNC_FLAGGED_SQL`]) and the user's floor.
pub async fn sync_flagged(
    reads: &ReadPool,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<FlaggedScan, ReadError> {
    let rows = reads
        .query(SYNC_FLAGGED_SQL, &[&user, &after, &(limit + 1)])
        .await?;
    // The statement always returns a row (the flag's); without entries its entry columns are NULL.
    // Were there none, the snapshot path is the safe answer.
    let (large_group_advanced, floor_seq) = match rows.first() {
        Some(row) => (
            row.try_get("large_group_advanced")?,
            row.try_get("floor_seq")?,
        ),
        None => (true, None),
    };
    let mut entries = Vec::with_capacity(rows.len());
    for row in &rows {
        if row.try_get::<_, Option<i64>>("seq")?.is_some() {
            entries.push(SyncRow::from_read(row)?);
        }
    }
    Ok(FlaggedScan {
        scan: scan_of(entries, limit),
        large_group_advanced,
        floor_seq,
    })
}

/// [`SYNC_FLAGGED_SQL`] for many users at once, each from their own cursor: $1 users, $2 their
/// cursors, $3 rows wanted per user. One statement, so one snapshot for all.
const SYNC_BATCH_SQL: &str = concat!(
    "SELECT w.user_id, e.*, EXISTS (SELECT 1 FROM conversation_members cm
                                    JOIN conversations c ON c.conversation_id = cm.conversation_id
                                    WHERE cm.user_id = w.user_id AND cm.derived AND cm.active
                                      AND c.last_position > w.after)
                            AS large_group_advanced
     FROM unnest($1::text[], $2::bigint[]) AS w (user_id, after)
     CROSS JOIN LATERAL (",
    sync_sql!("w.user_id", "w.after", "$3"),
    ") e ORDER BY w.user_id, e.seq"
);

/// One user's part of [`sync_batch`].
pub struct BatchScan {
    pub user: String,
    pub scan: SyncScan,
    /// One of the user's large groups advanced after their cursor.
    pub large_group_advanced: bool,
}

/// The next page of each user's sync timeline after their cursor, in one statement. Users with
/// nothing after their cursor are left out.
pub async fn sync_batch(
    pool: &sqlx::PgPool,
    users: &[String],
    cursors: &[i64],
    limit: i64,
) -> Result<Vec<BatchScan>, sqlx::Error> {
    let rows: Vec<BatchRow> = sqlx::query_as(SYNC_BATCH_SQL)
        .bind(users)
        .bind(cursors)
        .bind(limit + 1)
        .fetch_all(pool)
        .await?;
    let mut scans: Vec<BatchScan> = Vec::new();
    let mut current: Option<(String, bool, Vec<SyncRow>)> = None;
    for BatchRow { user_id, flagged } in rows {
        let large_group_advanced = flagged.large_group_advanced;
        let row = flagged.row;
        match &mut current {
            Some((user, _, rows)) if *user == user_id => rows.push(row),
            _ => {
                if let Some((user, large_group_advanced, rows)) = current.take() {
                    scans.push(BatchScan {
                        user,
                        scan: scan_of(rows, limit),
                        large_group_advanced,
                    });
                }
                current = Some((user_id, large_group_advanced, vec![row]));
            }
        }
    }
    if let Some((user, large_group_advanced, rows)) = current {
        scans.push(BatchScan {
            user,
            scan: scan_of(rows, limit),
            large_group_advanced,
        });
    }
    Ok(scans)
}

fn scan_of(rows: Vec<SyncRow>, limit: i64) -> SyncScan {
    // The extra row only tells whether another page exists.
    let mut rows = rows;
    let has_more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let last_scanned_seq = rows.last().map(|row| row.seq);
    let entries = rows
        .into_iter()
        .filter(|row| !row.deleted)
        .map(|mut row| {
            if row.kind == "reaction" {
                // The message's text is in its message entry; this one tells only that it changed.
                (row.body, row.content_type, row.attachments, row.payload) =
                    (String::new(), "text".into(), None, None);
            }
            row
        })
        .map(|row| SyncEntry {
            seq: row.seq,
            kind: sync_kind(&row.kind),
            post_id: row.post_id,
            // A refused write other than a message: the column holds its event's id.
            message_id: row.message_id.filter(|_| row.action.is_none()),
            conversation_id: row.conversation_id,
            conversation_seq: row.conv_seq,
            content: Content::from_stored(
                &row.content_type,
                row.attachments.as_deref(),
                row.payload.as_deref(),
            ),
            author: row.author,
            body: row.body,
            created_at: row.created_at,
            recalled: row.recalled,
            expired: row.expired,
            reason: row.reason,
            action: row.action,
            subject: row.subject,
        })
        .collect();
    SyncScan {
        entries,
        last_scanned_seq,
        has_more,
    }
}

/// A conversation, its last seq and position, the seqs recalled and changed since the cursor.
type AdvancedRow = (String, i64, i64, Vec<i64>, Vec<i64>);

/// The user's group conversations whose (pull-mode) position is after `after` (and at most `upto`), in
/// position order, with the seqs recalled, and those edited or reacted to, in that range. Starts from
/// the user's group rows (`conversation_members_derived`). A group that switched back to push keeps its
/// last pull position, so messages of its pull era are still reported.
pub async fn advanced_conversations<'e, E>(
    executor: E,
    user: &str,
    after: i64,
    upto: Option<i64>,
) -> Result<Vec<AdvancedConversation>, sqlx::Error>
where
    E: sqlx::Executor<'e, Database = sqlx::Postgres>,
{
    let rows: Vec<AdvancedRow> = sqlx::query_as(
        "SELECT c.conversation_id, c.last_seq, c.last_position,
                ARRAY(SELECT m.seq FROM messages m
                      WHERE m.conversation_id = c.conversation_id
                        AND m.recall_position > $2
                        AND m.recall_position <= coalesce($3, m.recall_position)
                      ORDER BY m.seq),
                ARRAY(SELECT m.seq FROM messages m
                      WHERE m.conversation_id = c.conversation_id
                        AND m.change_position > $2
                        AND m.change_position <= coalesce($3, m.change_position)
                        AND m.recalled_at IS NULL
                      ORDER BY m.seq)
         FROM conversation_members cm
         JOIN conversations c ON c.conversation_id = cm.conversation_id
         WHERE cm.user_id = $1 AND cm.derived AND cm.active
           AND c.last_position > $2 AND c.last_position <= coalesce($3, c.last_position)
         ORDER BY c.last_position",
    )
    .bind(user)
    .bind(after)
    .bind(upto)
    .fetch_all(executor)
    .await?;
    Ok(rows
        .into_iter()
        .map(
            |(conversation_id, last_seq, position, recalled, changed)| AdvancedConversation {
                conversation_id,
                last_seq,
                position,
                recalled,
                changed,
            },
        )
        .collect())
}
