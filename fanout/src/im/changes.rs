//! How devices hear that a message they have changed (an edit, a reaction): an entry of that kind in
//! the timeline of everyone the message was delivered to, as recalls do; in a pull-mode group, only
//! the author's and the message's sender's, and the conversation advances with the message's
//! `change_position`, so every member's next sync scan lists its seq under `changed`.

use super::messages::advance_position;
use super::Tx;
use crate::seq_lock::SeqLockHeld;

/// A change to tell: of which message, by whom, of which kind (`edit`, `reaction`).
pub(super) struct Change<'a> {
    pub conversation: &'a str,
    pub message_id: &'a str,
    pub seq: i64,
    pub author: &'a str,
    pub kind: &'static str,
}

/// Writes the change's entries; returns how many.
pub(super) async fn tell_audience(
    tx: &mut Tx,
    change: &Change<'_>,
    held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET change_position = nextval('sync_seq')
         WHERE conversation_id = $1 AND seq = $2
           AND (SELECT mode FROM conversations WHERE conversation_id = $1) = 'pull'",
    )
    .bind(change.conversation)
    .bind(change.seq)
    .execute(&mut **tx)
    .await?;
    advance_position(tx, change.conversation, held).await?;
    let entries = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, conv_seq, message_id)
         SELECT m.user_id, nextval('sync_seq'), $2, $5, $1, $3, $4
         FROM (SELECT s.user_id FROM conversation_state s
               JOIN conversations c ON c.conversation_id = s.conversation_id
               WHERE s.conversation_id = $1 AND s.from_seq < $3 AND s.delivered_seq >= $3
                 AND s.active AND NOT fanline_erased(s.user_id)
                 AND (c.mode = 'push' OR s.user_id = $2
                      OR s.user_id = (SELECT sender FROM messages
                                      WHERE conversation_id = $1 AND seq = $3))
               ORDER BY s.user_id) AS m
         ON CONFLICT DO NOTHING",
    )
    .bind(change.conversation)
    .bind(change.author)
    .bind(change.seq)
    .bind(change.message_id)
    .bind(change.kind)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(entries)
}
