//! Recalls: the sender takes a live message back within the recall window (an operator at any time). Its body is emptied, it no
//! longer counts as unread, and every timeline that got it gets a `recall` tombstone (a pull-mode
//! group's members learn of it from the conversation advancing).

use chrono::{DateTime, Utc};
use schemas::MessageRecalled;

use super::messages::advance_position;
use super::{ImOutcome, Refusal, Tx};
use crate::policy::Policy;
use crate::seq_lock::{SeqLock, SeqLockHeld};

/// The recalled message as stored.
struct Recalled {
    id: String,
    seq: i64,
    sender: String,
}

/// Applies a recall: a tombstone once, refused for someone else's or a missing message and after the
/// window, a duplicate for a message recalled already. An operator's removal (`moderated`: ingest
/// checked the role) is a recall of anyone's message at any time.
pub(super) async fn apply(
    tx: &mut Tx,
    policy: &Policy,
    recall: &MessageRecalled,
    moderated: bool,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    let id = stored_message_id(tx, recall.message_id.as_str()).await?;
    let found: Option<(i64, String, DateTime<Utc>, bool)> = sqlx::query_as(
        "SELECT seq, sender, created_at, recalled_at IS NOT NULL FROM messages
         WHERE message_id = $1 AND conversation_id = $2",
    )
    .bind(&id)
    .bind(recall.conversation.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((seq, sender, created_at, already)) = found else {
        return Ok(ImOutcome::refused(Refusal::NoSuchMessage));
    };
    if sender != recall.sender.as_str() && !moderated {
        return Ok(ImOutcome::refused(Refusal::NoSuchMessage));
    }
    if already {
        return Ok(ImOutcome::duplicate());
    }
    if recall.recalled_at - created_at > policy.recall_window && !moderated {
        return Ok(ImOutcome::refused(Refusal::RecallWindow));
    }
    let message = Recalled { id, seq, sender };
    tombstone(tx, recall, &message).await?;
    let held = seq_lock.acquire(tx).await?;
    let entries = tell_recipients(tx, recall.conversation.as_str(), &message, held).await?;
    Ok(ImOutcome {
        applied: 1,
        sync_entries: entries,
        ..ImOutcome::default()
    })
}

/// The id a message was stored under: itself, or the first copy of a retried send.
pub(super) async fn stored_message_id(
    tx: &mut Tx,
    message_id: &str,
) -> Result<String, sqlx::Error> {
    let (id,): (String,) = sqlx::query_as(
        "SELECT coalesce((SELECT message_id FROM message_aliases WHERE alias_message_id = $1), $1)",
    )
    .bind(message_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

/// Empties the message, which no longer counts for whoever had it delivered and unread.
async fn tombstone(
    tx: &mut Tx,
    recall: &MessageRecalled,
    message: &Recalled,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET recalled_at = $2, body = '', search = NULL WHERE message_id = $1",
    )
    .bind(&message.id)
    .bind(recall.recalled_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "UPDATE conversation_members SET unread = unread - 1
         WHERE conversation_id = $1 AND active AND NOT derived AND user_id <> $2
           AND from_seq < $3 AND delivered_seq >= $3 AND read_seq < $3",
    )
    .bind(recall.conversation.as_str())
    .bind(&message.sender)
    .bind(message.seq)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// A tombstone in every timeline that got the message, so devices that synced it learn of the recall.
/// A pull-mode group's members got it from the history: the conversation advancing, with the recall's
/// own position, tells them (only the sender's timeline gets an entry: O(1) rows there too). Returns
/// the entries written.
async fn tell_recipients(
    tx: &mut Tx,
    conversation: &str,
    message: &Recalled,
    held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    sqlx::query(
        "UPDATE messages SET recall_position = nextval('sync_seq')
         WHERE message_id = $1
           AND (SELECT mode FROM conversations WHERE conversation_id = $2) = 'pull'",
    )
    .bind(&message.id)
    .bind(conversation)
    .execute(&mut **tx)
    .await?;
    advance_position(tx, conversation, held).await?;
    let entries = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, conv_seq, message_id)
         SELECT m.user_id, nextval('sync_seq'), $2, 'recall', $1, $3, $4
         FROM (SELECT s.user_id FROM conversation_state s
               JOIN conversations c ON c.conversation_id = s.conversation_id
               WHERE s.conversation_id = $1 AND s.from_seq < $3 AND s.delivered_seq >= $3
                 AND (c.mode = 'push' OR s.user_id = $2)
               ORDER BY s.user_id) AS m
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .bind(&message.sender)
    .bind(message.seq)
    .bind(&message.id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(entries)
}
