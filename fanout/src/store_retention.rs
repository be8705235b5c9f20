//! Retention of store timelines, both off by default:
//! - conversation histories: messages older than the deployment's retention
//!   (`FANLINE_HISTORY_RETENTION_DAYS`) or their group owner's shorter one (`groups.retention_days`,
//!   set by `group_updated`) are removed, a conversation at a time, oldest first;
//!   `conversations.history_floor` records the highest seq removed, and history pages stop above it
//!   and say so (`older_removed`, `reader/src/im.rs`). Seqs above it never change.
//! - authors' timelines: posts older than `FANLINE_POST_RETENTION_DAYS` are removed, oldest first by
//!   id (ids are ULIDs minted at the post's time); `authors.posts_removed_below` records where, and
//!   the author's timeline says so at its end. Feeds and inboxes skip what is gone.
//!
//! Not an event, like the sync timelines' retention ([`crate::retention`]): removal is a function of
//! time and policy (the policy itself — a group's retention — is an event); a rebuild stores the
//! messages again and the next run removes them again.
//!
//! Unread counts stay exact: a removed message cannot be read, so members' read positions move up to
//! the floor, and a direct conversation's stored count is recounted from what is left (a group's is
//! derived from its seqs). Sync entries that pointed at a removed message stay until the inbox's own
//! retention and arrive marked `expired`.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::election::{every, if_elected};

/// Key of the transaction-scoped advisory lock held by the worker that trims ("FANLHIST").
const TRIM_LOCK: i64 = 0x4641_4e4c_4849_5354;
/// Conversations trimmed per run.
const CONVERSATIONS_PER_RUN: i64 = 1_000;
/// Messages looked at per conversation and run (the rest next run).
const MESSAGES_PER_TRIM: i64 = 10_000;

/// Removes messages past their conversation's retention.
pub struct StoreRetention {
    pub pool: PgPool,
    /// The deployment's retention of messages (`None`: kept unless their group says otherwise).
    pub age: Option<TimeDelta>,
    /// The deployment's retention of posts (`None`: kept).
    pub post_age: Option<TimeDelta>,
    /// Time between runs.
    pub every: Duration,
}

/// What one run did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct TrimReport {
    /// This worker held the lock (another was running otherwise).
    pub elected: bool,
    pub conversations: u64,
    pub messages: u64,
    pub posts: u64,
}

impl StoreRetention {
    /// Runs every `every` until `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        let this = &self;
        every(self.every, cancel, "store retention", || async move {
            let report = this.run_once(Utc::now()).await?;
            if report.messages + report.posts > 0 {
                tracing::info!(?report, "old messages and posts removed");
            }
            Ok::<_, sqlx::Error>(())
        })
        .await;
    }

    /// One run as of `now`, if no other worker is running one.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<TrimReport, sqlx::Error> {
        let report = if_elected(&self.pool, TRIM_LOCK, self.run_elected(now)).await?;
        Ok(report.unwrap_or_default())
    }

    async fn run_elected(&self, now: DateTime<Utc>) -> Result<TrimReport, sqlx::Error> {
        let mut report = TrimReport {
            elected: true,
            ..TrimReport::default()
        };
        for conversation in self.due(now).await? {
            let removed = trim(&self.pool, &conversation, now, self.age).await?;
            report.conversations += u64::from(removed > 0);
            report.messages += removed;
        }
        if let Some(age) = self.post_age {
            report.posts = trim_posts(&self.pool, now - age).await?;
        }
        Ok(report)
    }

    /// Conversations holding messages past a retention: by the deployment's (through the BRIN index
    /// on `created_at`), and every group with a retention of its own whose oldest message is past it.
    async fn due(&self, now: DateTime<Utc>) -> Result<Vec<String>, sqlx::Error> {
        let mut due: Vec<String> = Vec::new();
        if let Some(age) = self.age {
            // Rows rather than DISTINCT: the scan stops at the limit instead of aggregating a backlog.
            let rows: Vec<String> = sqlx::query_scalar(
                "SELECT conversation_id FROM messages WHERE created_at < $1 LIMIT $2",
            )
            .bind(now - age)
            .bind(CONVERSATIONS_PER_RUN * 10)
            .fetch_all(&self.pool)
            .await?;
            due.extend(rows);
        }
        let groups: Vec<String> = sqlx::query_scalar(
            "SELECT c.conversation_id FROM groups g
             JOIN conversations c ON c.conversation_id = 'g:' || g.group_id
             JOIN messages m ON m.conversation_id = c.conversation_id AND m.seq = c.history_floor + 1
             WHERE g.retention_days IS NOT NULL
               AND m.created_at < $1 - make_interval(days => g.retention_days)
             LIMIT $2",
        )
        .bind(now)
        .bind(CONVERSATIONS_PER_RUN)
        .fetch_all(&self.pool)
        .await?;
        due.extend(groups);
        due.sort();
        due.dedup();
        due.truncate(CONVERSATIONS_PER_RUN as usize);
        Ok(due)
    }
}

/// Removes `conversation`'s messages past its retention as of `now` (up to [`MESSAGES_PER_TRIM`]);
/// returns how many.
async fn trim(
    pool: &PgPool,
    conversation: &str,
    now: DateTime<Utc>,
    age: Option<TimeDelta>,
) -> Result<u64, sqlx::Error> {
    let mut tx = pool.begin().await?;
    // The conversation's row, then its members' rows: a message's apply takes them in that order, but
    // a batch may hold a member's row (a read marker) before a message of the same conversation. The
    // trim gives way rather than wait (it runs again next time); fan-out never waits long on it.
    sqlx::query("SET LOCAL lock_timeout = '500ms'")
        .execute(&mut *tx)
        .await?;
    let row: Option<(i64, Option<i32>)> = sqlx::query_as(
        "SELECT c.history_floor, g.retention_days FROM conversations c
         LEFT JOIN groups g ON c.conversation_id = 'g:' || g.group_id
         WHERE c.conversation_id = $1 FOR UPDATE OF c",
    )
    .bind(conversation)
    .fetch_optional(&mut *tx)
    .await?;
    let Some((floor, group_days)) = row else {
        return Ok(0);
    };
    // The shorter of the two retentions wins: a group may keep less than the deployment, not more.
    let cutoff = [age, group_days.map(|days| TimeDelta::days(days.into()))]
        .into_iter()
        .flatten()
        .map(|age| now - age)
        .max();
    let Some(cutoff) = cutoff else {
        return Ok(0);
    };
    // Seqs follow ingest's clocks closely but not exactly: the floor is the last seq of the oldest
    // run of messages past the cutoff, so nothing newer than a kept message goes.
    let new_floor: Option<i64> = sqlx::query_scalar(
        "SELECT max(seq) FROM (
             SELECT seq, created_at, bool_and(created_at < $3) OVER (ORDER BY seq) AS old
             FROM (SELECT seq, created_at FROM messages
                   WHERE conversation_id = $1 AND seq > $2 ORDER BY seq LIMIT $4) page
         ) walked WHERE old",
    )
    .bind(conversation)
    .bind(floor)
    .bind(cutoff)
    .bind(MESSAGES_PER_TRIM)
    .fetch_one(&mut *tx)
    .await?;
    let Some(new_floor) = new_floor else {
        return Ok(0);
    };
    let removed = remove_below(&mut tx, conversation, floor, new_floor).await?;
    tx.commit().await?;
    Ok(removed)
}

/// Removes the messages in (`floor`, `new_floor`], raises the floor, and moves members' read
/// positions up to it with their stored unread counts recounted.
async fn remove_below(
    tx: &mut sqlx::Transaction<'static, sqlx::Postgres>,
    conversation: &str,
    floor: i64,
    new_floor: i64,
) -> Result<u64, sqlx::Error> {
    let (removed, newest_removed): (i64, Option<DateTime<Utc>>) = sqlx::query_as(
        "WITH gone AS (
             DELETE FROM messages WHERE conversation_id = $1 AND seq > $2 AND seq <= $3
             RETURNING created_at)
         SELECT count(*), max(created_at) FROM gone",
    )
    .bind(conversation)
    .bind(floor)
    .bind(new_floor)
    .fetch_one(&mut **tx)
    .await?;
    let removed = removed as u64;
    // The floor's time too: a replay's copy of a removed message is recognised by it and skipped
    // (`crate::im` messages), instead of coming back under a new seq.
    sqlx::query(
        "UPDATE conversations SET history_floor = $2,
             history_floor_at = greatest(history_floor_at, $3)
         WHERE conversation_id = $1",
    )
    .bind(conversation)
    .bind(new_floor)
    .bind(newest_removed)
    .execute(&mut **tx)
    .await?;
    // A group's unread is derived from its seqs and the recalled messages above the read position:
    // with that position at the floor, the removed recalls no longer count. A direct conversation
    // stores its count: recounted from the messages left, for the members whose position moved.
    sqlx::query(
        "UPDATE conversation_members cm
         SET read_seq = CASE WHEN cm.derived THEN $2 ELSE least($2, cm.delivered_seq) END,
             unread = CASE WHEN cm.derived OR NOT cm.active THEN cm.unread ELSE (
                 SELECT count(*) FROM messages m
                 WHERE m.conversation_id = cm.conversation_id
                   AND m.seq > least($2, cm.delivered_seq) AND m.seq <= cm.delivered_seq
                   AND m.sender <> cm.user_id AND m.recalled_at IS NULL) END
         WHERE cm.conversation_id = $1 AND cm.read_seq < $2
           AND (cm.derived OR cm.read_seq < cm.delivered_seq)",
    )
    .bind(conversation)
    .bind(new_floor)
    .execute(&mut **tx)
    .await?;
    Ok(removed)
}

/// Removes up to [`MESSAGES_PER_TRIM`] posts created before `cutoff`, oldest first, and records each
/// author's new floor (every post with a smaller id is gone); returns how many.
async fn trim_posts(pool: &PgPool, cutoff: DateTime<Utc>) -> Result<u64, sqlx::Error> {
    let below = schemas::PostId::lowest_at(cutoff);
    let removed: i64 = sqlx::query_scalar(
        "WITH gone AS (
             DELETE FROM posts WHERE post_id IN (
                 SELECT post_id FROM posts WHERE post_id < $1 ORDER BY post_id LIMIT $2)
             RETURNING author, post_id
         ), floors AS (
             INSERT INTO authors (author, posts_removed_below)
             SELECT author, max(post_id) || '0' FROM gone GROUP BY author
             ON CONFLICT (author) DO UPDATE
             SET posts_removed_below = greatest(authors.posts_removed_below,
                                                EXCLUDED.posts_removed_below)
         )
         SELECT count(*) FROM gone",
    )
    .bind(below.as_str())
    .bind(MESSAGES_PER_TRIM)
    .fetch_one(pool)
    .await?;
    Ok(removed as u64)
}
