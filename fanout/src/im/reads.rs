//! Read markers: a member's read seq moves forward only, clamped to what was delivered to them, and
//! their unread count is recounted from the messages themselves.

use schemas::ReadMarked;

use super::{ImOutcome, Refusal, Tx};

/// Applies a read marker: refused from a non-member, a duplicate when it moves nothing.
pub(super) async fn apply(tx: &mut Tx, read: &ReadMarked) -> Result<ImOutcome, sqlx::Error> {
    let active: Option<(bool,)> = sqlx::query_as(
        "SELECT active FROM conversation_members WHERE user_id = $1 AND conversation_id = $2",
    )
    .bind(read.user.as_str())
    .bind(read.conversation.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    if active != Some((true,)) {
        return Ok(ImOutcome::refused(Refusal::NotMember));
    }
    let moved = move_marker(tx, read).await?;
    Ok(ImOutcome::applied_if(moved))
}

/// Moves the read seq, clamped to what was delivered, forward only; unread is recounted from the
/// messages themselves. (A group member has had everything up to the conversation's last seq: their
/// delivered seq is derived, and fixed here first.) Whether the marker moved.
async fn move_marker(tx: &mut Tx, read: &ReadMarked) -> Result<bool, sqlx::Error> {
    sqlx::query(
        "UPDATE conversation_members cm SET delivered_seq = c.last_seq
         FROM conversations c
         WHERE cm.user_id = $1 AND cm.conversation_id = $2 AND cm.derived AND cm.active
           AND c.conversation_id = cm.conversation_id",
    )
    .bind(read.user.as_str())
    .bind(read.conversation.as_str())
    .execute(&mut **tx)
    .await?;
    let moved = sqlx::query(
        "UPDATE conversation_members cm
         SET read_seq = least($3, cm.delivered_seq),
             unread = (SELECT count(*) FROM messages m
                       WHERE m.conversation_id = cm.conversation_id
                         AND m.seq > least($3, cm.delivered_seq) AND m.seq > cm.from_seq
                         AND m.seq <= cm.delivered_seq
                         AND m.sender <> cm.user_id AND m.recalled_at IS NULL)
         WHERE cm.user_id = $1 AND cm.conversation_id = $2
           AND least($3, cm.delivered_seq) > cm.read_seq",
    )
    .bind(read.user.as_str())
    .bind(read.conversation.as_str())
    .bind(read.seq)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(moved > 0)
}
