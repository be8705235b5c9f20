//! Applies events to Postgres: store timelines, the follow graph and sync timelines.
//!
//! One batch of events is one transaction. Every write is idempotent, so a batch that is applied again
//! (Kafka redelivers after a crash or rebalance, or an operator replays the topic) changes nothing:
//! - a post is inserted with `ON CONFLICT DO NOTHING`, and it is fanned out only when this transaction
//!   inserted it — the earlier transaction that inserted it also committed its fan-out;
//! - a follow edge remembers the Kafka position of the event that last set it and ignores older events.
//!
//! Sync sequence numbers come from the `sync_seq` sequence, drawn only while this transaction holds
//! [`SYNC_SEQ_LOCK`] (released at commit). Transactions that assign seqs therefore commit one at a time in
//! seq order, so a reader that saw seq N of a user can never later see a smaller seq of that user appear.

use chrono::{DateTime, Utc};
use schemas::{Envelope, Event, FollowChange, PostCreated};
use sqlx::{PgPool, Postgres, Transaction};

/// Key of the transaction-scoped advisory lock that serialises seq assignment ("FANLSYNC").
pub const SYNC_SEQ_LOCK: i64 = 0x4641_4e4c_5359_4e43;

/// An event with the Kafka position it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct SourcedEvent {
    pub partition: i32,
    pub offset: i64,
    pub envelope: Envelope,
}

/// What one applied batch did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ApplyOutcome {
    /// Posts inserted into store timelines.
    pub posts_created: u64,
    /// Posts already present (redelivery, replay, or a retried request with the same message id).
    pub posts_duplicate: u64,
    /// Sync timeline entries written by push fan-out.
    pub sync_entries_pushed: u64,
    /// Follow edges whose state changed.
    pub follow_changes_applied: u64,
    /// Follow/unfollow events older than the edge's state (replays).
    pub follow_changes_stale: u64,
}

impl ApplyOutcome {
    fn add(&mut self, other: ApplyOutcome) {
        self.posts_created += other.posts_created;
        self.posts_duplicate += other.posts_duplicate;
        self.sync_entries_pushed += other.sync_entries_pushed;
        self.follow_changes_applied += other.follow_changes_applied;
        self.follow_changes_stale += other.follow_changes_stale;
    }
}

/// Applies `events` (in Kafka order per partition) in one transaction.
#[tracing::instrument(skip_all, fields(events = events.len()))]
pub async fn apply_batch(
    pool: &PgPool,
    events: &[SourcedEvent],
) -> Result<ApplyOutcome, sqlx::Error> {
    let mut tx = pool.begin().await?;
    let mut outcome = ApplyOutcome::default();
    let mut holds_seq_lock = false;
    // Consecutive posts are written with one statement per step; a follow change between them keeps its
    // place, so a post fans out to exactly the followers its author had when it was written.
    for run in runs(events) {
        match run {
            Run::Posts(posts) => {
                outcome.add(apply_posts(&mut tx, &posts, &mut holds_seq_lock).await?);
            }
            Run::Follow(event, change, active) => {
                let changed = apply_follow(&mut tx, event, change, active).await?;
                if changed {
                    outcome.follow_changes_applied += 1;
                } else {
                    outcome.follow_changes_stale += 1;
                }
            }
        }
    }
    tx.commit().await?;
    Ok(outcome)
}

enum Run<'a> {
    Posts(Vec<&'a PostCreated>),
    Follow(&'a SourcedEvent, &'a FollowChange, bool),
}

fn runs(events: &[SourcedEvent]) -> Vec<Run<'_>> {
    let mut runs = Vec::new();
    for event in events {
        match &event.envelope.event {
            Event::PostCreated(post) => match runs.last_mut() {
                Some(Run::Posts(posts)) => posts.push(post),
                _ => runs.push(Run::Posts(vec![post])),
            },
            Event::Followed(change) => runs.push(Run::Follow(event, change, true)),
            Event::Unfollowed(change) => runs.push(Run::Follow(event, change, false)),
        }
    }
    runs
}

async fn apply_posts(
    tx: &mut Transaction<'static, Postgres>,
    posts: &[&PostCreated],
    holds_seq_lock: &mut bool,
) -> Result<ApplyOutcome, sqlx::Error> {
    let post_ids: Vec<&str> = posts.iter().map(|p| p.post_id.as_str()).collect();
    let authors: Vec<&str> = posts.iter().map(|p| p.author.as_str()).collect();
    let bodies: Vec<&str> = posts.iter().map(|p| p.body.as_str()).collect();
    let message_ids: Vec<Option<&str>> = posts.iter().map(|p| p.message_id.as_deref()).collect();
    let created_at: Vec<DateTime<Utc>> = posts.iter().map(|p| p.created_at).collect();

    // DO NOTHING without a conflict target covers both the post id and (author, message_id), also for
    // two copies of one retried request inside this very batch.
    let inserted: Vec<(String, String)> = sqlx::query_as(
        "INSERT INTO posts (post_id, author, body, message_id, created_at)
         SELECT * FROM UNNEST($1::text[], $2::text[], $3::text[], $4::text[], $5::timestamptz[])
         ON CONFLICT DO NOTHING
         RETURNING post_id, author",
    )
    .bind(&post_ids)
    .bind(&authors)
    .bind(&bodies)
    .bind(&message_ids)
    .bind(&created_at)
    .fetch_all(&mut **tx)
    .await?;

    let mut outcome = ApplyOutcome {
        posts_created: inserted.len() as u64,
        posts_duplicate: (posts.len() - inserted.len()) as u64,
        ..ApplyOutcome::default()
    };
    if outcome.posts_duplicate > 0 && message_ids.iter().any(Option::is_some) {
        record_aliases(tx, &post_ids, &authors, &message_ids).await?;
    }
    if inserted.is_empty() {
        return Ok(outcome);
    }
    if !*holds_seq_lock {
        // Taken as late as possible: from here to commit, this transaction is the only seq writer.
        sqlx::query("SELECT pg_advisory_xact_lock($1)")
            .bind(SYNC_SEQ_LOCK)
            .execute(&mut **tx)
            .await?;
        *holds_seq_lock = true;
    }
    let (new_ids, new_authors): (Vec<String>, Vec<String>) = inserted.into_iter().unzip();
    outcome.sync_entries_pushed = push_to_sync_timelines(tx, &new_ids, &new_authors).await?;
    Ok(outcome)
}

/// Keeps the post ids of duplicate requests resolvable to the post that was kept.
async fn record_aliases(
    tx: &mut Transaction<'static, Postgres>,
    post_ids: &[&str],
    authors: &[&str],
    message_ids: &[Option<&str>],
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO post_aliases (alias_post_id, post_id)
         SELECT a.post_id, p.post_id
         FROM UNNEST($1::text[], $2::text[], $3::text[]) AS a(post_id, author, message_id)
         JOIN posts p ON p.author = a.author AND p.message_id = a.message_id
         WHERE p.post_id <> a.post_id
         ON CONFLICT DO NOTHING",
    )
    .bind(post_ids)
    .bind(authors)
    .bind(message_ids)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Push fan-out: one sync entry per post for its author (their other devices) and each active follower,
/// with seqs drawn in post order. Must run while holding [`SYNC_SEQ_LOCK`].
async fn push_to_sync_timelines(
    tx: &mut Transaction<'static, Postgres>,
    post_ids: &[String],
    authors: &[String],
) -> Result<u64, sqlx::Error> {
    let result = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, post_id, author)
         SELECT audience.user_id, nextval('sync_seq'), audience.post_id, audience.author
         FROM (
             SELECT a.user_id, p.post_id, p.author
             FROM UNNEST($1::text[], $2::text[]) AS p(post_id, author)
             CROSS JOIN LATERAL (
                 SELECT p.author AS user_id
                 UNION ALL
                 SELECT f.follower FROM follows f
                 WHERE f.followee = p.author AND f.active AND f.follower <> p.author
             ) AS a
             ORDER BY p.post_id, a.user_id
         ) AS audience
         ON CONFLICT DO NOTHING",
    )
    .bind(post_ids)
    .bind(authors)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected())
}

/// Sets a follow edge unless the edge was last set by a later event of the same partition.
async fn apply_follow(
    tx: &mut Transaction<'static, Postgres>,
    event: &SourcedEvent,
    change: &FollowChange,
    active: bool,
) -> Result<bool, sqlx::Error> {
    // Events of one edge share a key (the followee) and so a partition, where offsets order them. An
    // event from another partition means the topic was repartitioned or replaced: it is newer.
    let result = sqlx::query(
        "INSERT INTO follows (followee, follower, active, src_partition, src_offset)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (followee, follower) DO UPDATE
         SET active = EXCLUDED.active, src_partition = EXCLUDED.src_partition,
             src_offset = EXCLUDED.src_offset, updated_at = now()
         WHERE follows.src_partition <> EXCLUDED.src_partition
            OR follows.src_offset < EXCLUDED.src_offset",
    )
    .bind(change.followee.as_str())
    .bind(change.follower.as_str())
    .bind(active)
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?;
    Ok(result.rows_affected() > 0)
}

/// Whether a database error is worth retrying (the database is down, overloaded or a transaction lost a
/// race) rather than a property of the events (bad data). Unknown errors count as transient: retrying
/// a healthy event forever is visible and recoverable, dead-lettering it is silent data loss.
pub fn is_transient(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Database(db) => {
            let code = db.code().unwrap_or_default();
            // 22: data exception, 23: integrity constraint violation. Everything else (connection,
            // serialization failure, deadlock, admin shutdown, out of resources) passes with time.
            !(code.starts_with("22") || code.starts_with("23"))
        }
        sqlx::Error::Encode(_) | sqlx::Error::TypeNotFound { .. } => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use schemas::{PostId, UserId};

    fn user(name: &str) -> UserId {
        UserId::parse("user", name).unwrap()
    }

    fn sourced(offset: i64, envelope: Envelope) -> SourcedEvent {
        SourcedEvent {
            partition: 0,
            offset,
            envelope,
        }
    }

    fn post(author: &str) -> Envelope {
        Envelope::post_created(PostCreated {
            post_id: PostId::generate(),
            author: user(author),
            body: "x".into(),
            message_id: None,
            created_at: Utc::now(),
        })
    }

    fn follow(follower: &str, followee: &str) -> Envelope {
        Envelope::followed(FollowChange {
            follower: user(follower),
            followee: user(followee),
        })
    }

    #[test]
    fn consecutive_posts_share_a_run_and_follows_keep_their_place() {
        let events = vec![
            sourced(0, post("a")),
            sourced(1, post("b")),
            sourced(2, follow("c", "a")),
            sourced(3, post("a")),
        ];
        let shape: Vec<usize> = runs(&events)
            .iter()
            .map(|run| match run {
                Run::Posts(posts) => posts.len(),
                Run::Follow(..) => 0,
            })
            .collect();
        assert_eq!(shape, vec![2, 0, 1]);
    }
}
