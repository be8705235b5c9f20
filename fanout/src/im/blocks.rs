//! Blocks between users, on their direct conversation's key (`d:A:B`): `user_blocked` records that the
//! blocker blocked the target, `user_unblocked` lifts it, and while either of the two blocked the other
//! their direct messages are refused ([`super::messages`]). Being on the conversation's key, a block
//! is ordered with the pair's messages: a replay refuses exactly the messages it refused live. Its
//! effect on follows is carried by the `follow_blocked` events on each followee's key
//! (`crate::store`).

use schemas::{BlockChange, UserId};

use super::{ImOutcome, Tx};
use crate::sourced::SourcedEvent;

/// Records (or, `blocked` false, lifts) a block.
pub(super) async fn apply(
    tx: &mut Tx,
    event: &SourcedEvent,
    change: &BlockChange,
    blocked: bool,
) -> Result<ImOutcome, sqlx::Error> {
    let rows = if blocked {
        sqlx::query(
            "INSERT INTO blocks (blocker, target, created_at) VALUES ($1, $2, $3)
             ON CONFLICT DO NOTHING",
        )
        .bind(change.blocker.as_str())
        .bind(change.target.as_str())
        .bind(event.envelope.ts)
        .execute(&mut **tx)
        .await?
    } else {
        sqlx::query("DELETE FROM blocks WHERE blocker = $1 AND target = $2")
            .bind(change.blocker.as_str())
            .bind(change.target.as_str())
            .execute(&mut **tx)
            .await?
    };
    Ok(ImOutcome::applied_if(rows.rows_affected() > 0))
}

/// Whether either of the two blocked the other.
pub(super) async fn between(tx: &mut Tx, a: &UserId, b: &UserId) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM blocks
                        WHERE (blocker = $1 AND target = $2) OR (blocker = $2 AND target = $1))",
    )
    .bind(a.as_str())
    .bind(b.as_str())
    .fetch_one(&mut **tx)
    .await
}
