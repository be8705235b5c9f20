//! Activity: whose inboxes fan-out writes (docs/design.md "1 + M").
//!
//! A user is active until fanout's sweeper finds them silent for the active window and writes
//! `user_dormant`; from then on posts and group messages are stored but not copied into their inbox
//! (`follows.follower_active`, `conversation_members.dormant`: the fan-outs' indexes skip them). Their
//! next `user_active` is a *return*: in one transaction, holding the sync seq lock, the flags flip back and
//! their inbox gets what they missed within the return window — every live post of the authors they
//! follow from the window's start on, every message of their groups since they went dormant. Holding the
//! seq lock makes the flip atomic with respect to every fan-out: a fan-out committed before it skipped
//! the user and its post or message is copied here; one after it sees the user active. Posts below the
//! window's start stay where they are, and the home feed reads them from the store timelines
//! (`user_activity.feed_pull_below`), so the feed is exact whatever was copied.
//!
//! Direct messages are written to both inboxes whatever the activity (two rows; they are also what an
//! offline push is for), and so are recalls and invitations. Unread counts never depend on inboxes.

use chrono::{DateTime, Utc};
use schemas::{UserActive, UserDormant};
use sqlx::{Postgres, Transaction};

use crate::outcome::ImOutcome;
use crate::policy::{Policy, ReturnWindow};
use crate::seq_lock::{SeqLock, SeqLockHeld};
use crate::sourced::SourcedEvent;
use crate::watermark;

type Tx = Transaction<'static, Postgres>;

/// The events of a user's activity.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ActivityEvent<'a> {
    Active(&'a UserActive),
    Dormant(&'a UserDormant),
}

/// Applies one activity event (at most once: [`watermark`], on the user's key).
pub(crate) async fn apply(
    tx: &mut Tx,
    policy: &Policy,
    event: &SourcedEvent,
    change: ActivityEvent<'_>,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    if !watermark::advance(tx, event).await? {
        return Ok(ImOutcome::duplicate());
    }
    match change {
        ActivityEvent::Active(active) => {
            apply_active(tx, &policy.return_window, active, seq_lock).await
        }
        ActivityEvent::Dormant(dormant) => apply_dormant(tx, dormant, seq_lock).await,
    }
}

/// Records a new account's registration as its first activity: an account nobody ever uses goes
/// dormant one window after it was created.
pub(crate) async fn registered(
    tx: &mut Tx,
    user: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO user_activity (user_id, last_active_at) VALUES ($1, $2)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user)
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Applies `user_active`: a later activity time, and a return if the user was dormant.
async fn apply_active(
    tx: &mut Tx,
    window: &ReturnWindow,
    active: &UserActive,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    let user = active.user.as_str();
    if crate::erasure::is_erased(tx, user).await? {
        // A device heard of just before the account went: nothing comes back (crate::erasure).
        return Ok(ImOutcome::duplicate());
    }
    let known: Option<(bool, DateTime<Utc>)> = sqlx::query_as(
        "SELECT active, last_active_at FROM user_activity WHERE user_id = $1 FOR UPDATE",
    )
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    match known {
        // Dormant, and this is news: the user is back.
        Some((false, last)) if active.at > last => {
            lock_group_rows(tx, user).await?;
            let held = seq_lock.acquire(tx).await?;
            let entries = come_back(tx, window, user, active.at, held).await?;
            Ok(ImOutcome {
                applied: 1,
                sync_entries: entries,
                ..ImOutcome::default()
            })
        }
        // An older activity of a dormant user (a replay) changes nothing.
        Some((false, _)) => Ok(ImOutcome::duplicate()),
        _ => {
            sqlx::query(
                "INSERT INTO user_activity (user_id, last_active_at) VALUES ($1, $2)
                 ON CONFLICT (user_id) DO UPDATE
                 SET last_active_at = greatest(user_activity.last_active_at, EXCLUDED.last_active_at)",
            )
            .bind(user)
            .bind(active.at)
            .execute(&mut **tx)
            .await?;
            Ok(ImOutcome::applied())
        }
    }
}

/// Applies `user_dormant`, unless the user was heard of since the sweeper looked: their inboxes stop
/// getting posts and group messages, and each group remembers where it was.
async fn apply_dormant(
    tx: &mut Tx,
    dormant: &UserDormant,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    // The seq lock first: a fan-out either committed before the flip (and delivered) or comes after it
    // (and skips), and the groups' seqs read below are exactly what was delivered.
    let user = dormant.user.as_str();
    lock_group_rows(tx, user).await?;
    let _held = seq_lock.acquire(tx).await?;
    let flipped = sqlx::query(
        "UPDATE user_activity SET active = false
         WHERE user_id = $1 AND active AND last_active_at = $2",
    )
    .bind(user)
    .bind(dormant.last_active_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if flipped == 0 {
        return Ok(ImOutcome::duplicate());
    }
    sqlx::query("UPDATE follows SET follower_active = false WHERE follower = $1 AND active")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE conversation_members cm SET dormant = true, dormant_seq = c.last_seq
         FROM conversations c
         WHERE cm.user_id = $1 AND cm.derived AND cm.active AND NOT cm.dormant
           AND c.conversation_id = cm.conversation_id",
    )
    .bind(user)
    .execute(&mut **tx)
    .await?;
    Ok(ImOutcome::applied())
}

/// Locks the user's active group rows before the seq lock, in the order a message takes them (its
/// sender's row, then the seq lock), so that a flip and a message of the same user wait for each other
/// instead of deadlocking.
async fn lock_group_rows(tx: &mut Tx, user: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "SELECT 1 FROM conversation_members WHERE user_id = $1 AND derived AND active FOR UPDATE",
    )
    .bind(user)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The return of a dormant user at `at`: active again, and their inbox filled; returns the entries
/// written.
async fn come_back(
    tx: &mut Tx,
    window: &ReturnWindow,
    user: &str,
    at: DateTime<Utc>,
    held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    sqlx::query("UPDATE follows SET follower_active = true WHERE follower = $1 AND active")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    let since = at - window.span;
    let (posts, cut) = copy_posts(tx, window, user, since, held).await?;
    let messages = copy_messages(tx, window, user, since, held).await?;
    sqlx::query(
        "UPDATE user_activity
         SET active = true, last_active_at = $2, feed_pull_below = greatest(feed_pull_below, $3)
         WHERE user_id = $1",
    )
    .bind(user)
    .bind(at)
    .bind(&cut)
    .execute(&mut **tx)
    .await?;
    tracing::debug!(user, posts, messages, "a dormant user returned");
    Ok(posts + messages)
}

/// Copies the live posts of the authors `user` follows from `since` on (the newest `max_posts` of them)
/// into their inbox, in post order. Returns the entries written and the post id from which on every
/// such post is in the inbox: below it the feed reads the store timelines.
async fn copy_posts(
    tx: &mut Tx,
    window: &ReturnWindow,
    user: &str,
    since: DateTime<Utc>,
    _held: SeqLockHeld<'_>,
) -> Result<(u64, String), sqlx::Error> {
    let since_id = schemas::PostId::lowest_at(since).to_string();
    let (written, copied, lowest): (i64, i64, Option<String>) = sqlx::query_as(
        "WITH recent AS (
             SELECT p.post_id, p.author
             FROM follows f
             CROSS JOIN LATERAL (
                 SELECT post_id, author FROM posts
                 WHERE author = f.followee AND post_id >= $2 AND deleted_at IS NULL
                 ORDER BY post_id DESC
                 LIMIT $3
             ) AS p
             WHERE f.follower = $1 AND f.active
             ORDER BY p.post_id DESC
             LIMIT $3
         ), written AS (
             INSERT INTO sync_entries (user_id, seq, post_id, author)
             SELECT $1, nextval('sync_seq'), r.post_id, r.author
             FROM (SELECT post_id, author FROM recent ORDER BY post_id) AS r
             -- Not already in the inbox (no unique index can say it on a partitioned inbox; the seq
             -- lock makes the check exact).
             WHERE NOT EXISTS (SELECT 1 FROM sync_entries s
                               WHERE s.user_id = $1 AND s.post_id = r.post_id)
             RETURNING 1
         )
         SELECT (SELECT count(*) FROM written), (SELECT count(*) FROM recent),
                (SELECT min(post_id) FROM recent)",
    )
    .bind(user)
    .bind(&since_id)
    .bind(window.max_posts)
    .fetch_one(&mut **tx)
    .await?;
    // Cut short by the cap: complete only from the oldest post copied on.
    let cut = match lowest {
        Some(lowest) if copied >= window.max_posts => lowest,
        _ => since_id,
    };
    Ok((written as u64, cut))
}

/// Copies the messages of `user`'s groups written since they went dormant (from `since` on, the newest
/// `max_messages_per_group` of each) into their inbox, and marks them awake in every group.
async fn copy_messages(
    tx: &mut Tx,
    window: &ReturnWindow,
    user: &str,
    since: DateTime<Utc>,
    _held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    let written = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, conv_seq, message_id)
         SELECT $1, nextval('sync_seq'), m.sender, 'message', m.conversation_id, m.seq, m.message_id
         FROM (
             SELECT m.conversation_id, m.seq, m.sender, m.message_id, m.created_at
             FROM conversation_members cm
             CROSS JOIN LATERAL (
                 SELECT conversation_id, seq, sender, message_id, created_at FROM messages
                 WHERE conversation_id = cm.conversation_id
                   AND seq > greatest(cm.dormant_seq, cm.from_seq) AND created_at >= $2
                 ORDER BY seq DESC
                 LIMIT $3
             ) AS m
             WHERE cm.user_id = $1 AND cm.derived AND cm.active AND cm.dormant
             ORDER BY m.created_at, m.conversation_id, m.seq
         ) AS m",
    )
    .bind(user)
    .bind(since)
    .bind(window.max_messages_per_group)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    sqlx::query(
        "UPDATE conversation_members SET dormant = false, dormant_seq = NULL
         WHERE user_id = $1 AND dormant",
    )
    .bind(user)
    .execute(&mut **tx)
    .await?;
    Ok(written)
}
