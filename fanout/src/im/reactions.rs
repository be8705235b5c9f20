//! Reactions: a member puts a key (an emoji, a `:shortcode:`) on a live message they may read, or
//! takes it back. One row per (message, key, user) — adding twice, or removing what is not there,
//! changes nothing — so the counts the reader shows are derived from the rows and cannot drift,
//! whatever duplicates or orders the events come in.

use schemas::ids::ConversationKind;
use schemas::revisions::MAX_REACTIONS_PER_USER;
use schemas::Reaction;

use super::changes::{tell_audience, Change};
use super::messages::sender_refusal;
use super::{ImOutcome, Refusal, Tx};
use crate::seq_lock::SeqLock;

/// Applies a reaction (`added`) or its removal.
pub(super) async fn apply(
    tx: &mut Tx,
    reaction: &Reaction,
    added: bool,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    let conversation = reaction.conversation.as_str();
    let message: Option<String> = sqlx::query_scalar(
        "SELECT message_id FROM messages
         WHERE conversation_id = $1 AND seq = $2 AND recalled_at IS NULL AND erased_at IS NULL",
    )
    .bind(conversation)
    .bind(reaction.seq)
    .fetch_optional(&mut **tx)
    .await?;
    let Some(message_id) = message else {
        return Ok(ImOutcome::refused(Refusal::NoSuchMessage));
    };
    if !may_read(tx, reaction).await? {
        return Ok(ImOutcome::refused(Refusal::NotMember));
    }
    // Reacting is writing to the conversation: not across a block, not while muted.
    let (conversation_id, user) = (&reaction.conversation, &reaction.user);
    if let Some(reason) = sender_refusal(tx, conversation_id, user, reaction.at).await? {
        return Ok(ImOutcome::refused(reason));
    }
    let changed = match added {
        true => add(tx, reaction).await?,
        false => remove(tx, reaction).await?,
    };
    let Some(changed) = changed else {
        return Ok(ImOutcome::refused(Refusal::NotAllowed));
    };
    if !changed {
        return Ok(ImOutcome::duplicate());
    }
    let held = seq_lock.acquire(tx).await?;
    let change = Change {
        conversation,
        message_id: &message_id,
        seq: reaction.seq,
        author: reaction.user.as_str(),
        kind: "reaction",
    };
    let entries = tell_audience(tx, &change, held).await?;
    Ok(ImOutcome {
        applied: 1,
        sync_entries: entries,
        ..ImOutcome::default()
    })
}

/// Whether the user may read the message: one of a direct conversation's two, or an active member of
/// the group whose history reaches it (the group's state, on this key: the same on a replay).
async fn may_read(tx: &mut Tx, reaction: &Reaction) -> Result<bool, sqlx::Error> {
    match reaction.conversation.kind() {
        ConversationKind::Direct(..) => Ok(reaction.conversation.is_direct_between(&reaction.user)),
        ConversationKind::Group(group) => {
            sqlx::query_scalar(
                "SELECT EXISTS (
                 SELECT 1 FROM group_members gm
                 JOIN groups g ON g.group_id = gm.group_id
                 JOIN conversation_members cm ON cm.user_id = gm.user_id AND cm.conversation_id = $3
                 WHERE gm.group_id = $1 AND gm.user_id = $2 AND gm.active
                   AND (g.history = 'shared' OR $4 > cm.from_seq))",
            )
            .bind(group.as_str())
            .bind(reaction.user.as_str())
            .bind(reaction.conversation.as_str())
            .bind(reaction.seq)
            .fetch_one(&mut **tx)
            .await
        }
    }
}

/// Adds the row: `Some(true)` when new, `Some(false)` when it was there, `None` past the user's
/// number of keys on one message. An erased user adds nothing (crate::erasure).
async fn add(tx: &mut Tx, reaction: &Reaction) -> Result<Option<bool>, sqlx::Error> {
    let mine: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM message_reactions
         WHERE conversation_id = $1 AND seq = $2 AND user_id = $3 AND key <> $4",
    )
    .bind(reaction.conversation.as_str())
    .bind(reaction.seq)
    .bind(reaction.user.as_str())
    .bind(&reaction.key)
    .fetch_one(&mut **tx)
    .await?;
    if mine >= MAX_REACTIONS_PER_USER {
        return Ok(None);
    }
    let inserted = sqlx::query(
        "INSERT INTO message_reactions (conversation_id, seq, key, user_id, reacted_at)
         SELECT $1, $2, $3, $4, $5 WHERE NOT fanline_erased($4)
         ON CONFLICT DO NOTHING",
    )
    .bind(reaction.conversation.as_str())
    .bind(reaction.seq)
    .bind(&reaction.key)
    .bind(reaction.user.as_str())
    .bind(reaction.at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(Some(inserted > 0))
}

/// Removes the row: `Some(true)` when it was there.
async fn remove(tx: &mut Tx, reaction: &Reaction) -> Result<Option<bool>, sqlx::Error> {
    let deleted = sqlx::query(
        "DELETE FROM message_reactions
         WHERE conversation_id = $1 AND seq = $2 AND key = $3 AND user_id = $4",
    )
    .bind(reaction.conversation.as_str())
    .bind(reaction.seq)
    .bind(&reaction.key)
    .bind(reaction.user.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(Some(deleted > 0))
}
