//! Account deletion (`account_deleted`, keyed by the user): in one transaction, on the user's key, in
//! order with their registration, profile and posts.
//!
//! What is the user's own is erased here: the account (password hash), the profile, the contents of
//! their posts and messages (tombstones: bodies and search vectors gone, ids and seqs kept), their
//! inbox, floors and counts, their contact-list rows, devices' cursors, sessions (their sockets and
//! streams close: a session end is announced on the readers' channel) and activity. An
//! `erased_users` row keeps the id taken for good: the handle is the account's identity in every key
//! and row, so a second owner could not be told from the first on a replay.
//!
//! What is shared with others — memberships, follows, blocks — decides what happens on *other* keys
//! (whether a member may send, whom a post reaches), and a replay applies other keys in any order
//! relative to this one. So those are not touched here: [`crate::departures`] ends them with ordinary
//! events of their own keys (a leave, an unfollow, an unblock), which the log then holds for every
//! replay. Until they apply, nothing reaches the erased user: their follow edges stop copying posts
//! (as for a dormant user) and without contact-list rows no message is delivered to them.
//!
//! Events of other keys applied after the deletion ask `fanline_erased(user)` (the migration
//! `20261212000001_erasure.sql`): a message of an erased sender is stored as a tombstone, a direct
//! conversation, a group join or an invitation opens no row or inbox entry for an erased user, a
//! follow copies nothing to them. None of that changes a decision (who may send, whom a post reaches),
//! only contents and the erased user's own rows, so either order gives the same state — what makes
//! the deletion survive a replay.

use schemas::AccountDeleted;
use sqlx::{Postgres, Transaction};

use crate::outcome::ImOutcome;
use crate::seq_lock::SeqLock;
use crate::sourced::SourcedEvent;
use crate::watermark;

type Tx = Transaction<'static, Postgres>;

/// Applies `account_deleted` (at most once: [`watermark`]).
pub(crate) async fn apply(
    tx: &mut Tx,
    event: &SourcedEvent,
    deleted: &AccountDeleted,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    if !watermark::advance(tx, event).await? {
        return Ok(ImOutcome::duplicate());
    }
    let user = deleted.user.as_str();
    let at = event.envelope.ts;
    sqlx::query(
        "INSERT INTO erased_users (user_id, erased_at, erased_by) VALUES ($1, $2, $3)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(user)
    .bind(at)
    .bind(deleted.by.as_str())
    .execute(&mut **tx)
    .await?;
    // Every contact-list row of the user, then the seq lock, as a message's apply takes them (its
    // members' rows, then the seq lock): the two wait for each other instead of deadlocking, and no
    // fan-out is half way through writing their inbox while it goes.
    sqlx::query("SELECT 1 FROM conversation_members WHERE user_id = $1 FOR UPDATE")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    let _held = seq_lock.acquire(tx).await?;
    let erased = erase_contents(tx, user, at).await? + erase_own_rows(tx, user).await?;
    tracing::info!(user, by = %deleted.by, erased, "account deleted");
    Ok(ImOutcome::applied())
}

/// Whether `user`'s account was deleted (other keys' events ask, as `fanline_erased` does in SQL).
pub(crate) async fn is_erased(tx: &mut Tx, user: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar("SELECT fanline_erased($1)")
        .bind(user)
        .fetch_one(&mut **tx)
        .await
}

/// Tombstones the user's posts and messages; returns how many.
async fn erase_contents(
    tx: &mut Tx,
    user: &str,
    at: chrono::DateTime<chrono::Utc>,
) -> Result<u64, sqlx::Error> {
    let posts = sqlx::query(
        "UPDATE posts SET body = '', search = NULL, deleted_at = coalesce(deleted_at, $2)
         WHERE author = $1 AND (deleted_at IS NULL OR body <> '')",
    )
    .bind(user)
    .bind(at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    // Found through the user's conversations (their contact-list rows, also of groups they left): no
    // index on the sender is kept for this one rare walk.
    let messages = sqlx::query(
        "UPDATE messages m SET body = '', search = NULL, erased_at = $2
         FROM conversation_members cm
         WHERE cm.user_id = $1 AND m.conversation_id = cm.conversation_id AND m.sender = $1
           AND m.erased_at IS NULL",
    )
    .bind(user)
    .bind(at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(posts + messages)
}

/// Deletes the rows that are the user's alone; returns how many.
async fn erase_own_rows(tx: &mut Tx, user: &str) -> Result<u64, sqlx::Error> {
    // Their follow edges stay until the departures' unfollows, but copy nothing to them meanwhile.
    sqlx::query("UPDATE follows SET follower_active = false WHERE follower = $1")
        .bind(user)
        .execute(&mut **tx)
        .await?;
    let mut erased = 0;
    for table in [
        "accounts",
        "users",
        "user_activity",
        "conversation_members",
        "sync_entries",
        "sync_floors",
        "sync_counts",
        "device_cursors",
        "message_reactions",
    ] {
        erased += sqlx::query(&format!("DELETE FROM {table} WHERE user_id = $1"))
            .bind(user)
            .execute(&mut **tx)
            .await?
            .rows_affected();
    }
    // Sessions are the reader's, but an erased account keeps none: their ends are announced as the
    // reader's own revocations are, so every reader closes their sockets and streams at commit.
    let sessions: Vec<(bool,)> = sqlx::query_as(&format!(
        "WITH ended AS (DELETE FROM sessions WHERE user_id = $1 RETURNING session_id)
         SELECT true FROM ended, LATERAL pg_notify('{}', '{}' || session_id)",
        schemas::db::SYNC_CHANNEL,
        schemas::db::SESSION_ENDED_PREFIX,
    ))
    .bind(user)
    .fetch_all(&mut **tx)
    .await?;
    Ok(erased + sessions.len() as u64)
}
