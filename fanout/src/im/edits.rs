//! Edits: the sender replaces a live message's text and content within the edit window. The message
//! keeps its seq; its version counts up and `edited_at` records when; mentions and attachments are
//! replaced (an attachment no longer held goes to the sweep); devices that have it hear of it through
//! an `edit` entry (a pull-mode group's through the conversation advancing).
//!
//! Order: edits apply in the conversation's Kafka order. An edit names the version it was made on;
//! one whose version is no longer current — a retry, or a late copy of an older edit — changes
//! nothing, so the newest text stands however requests were retried. An edit without a version
//! applies to whatever is current (last writer wins).

use schemas::MessageEdited;

use super::changes::{tell_audience, Change};
use super::content::{self, References};
use super::messages::sender_refusal;
use super::recalls::stored_message_id;
use super::{ImOutcome, Refusal, Tx};
use crate::policy::Policy;
use crate::seq_lock::SeqLock;

/// The edited message as stored.
struct Current {
    id: String,
    seq: i64,
    version: i32,
    body: String,
}

/// Applies an edit: once, refused for someone else's, a missing, recalled or erased message, after
/// the window, and from a sender who could not send it now (blocked, removed, muted); a stale version changes nothing (a duplicate when it would set the text the
/// message has, refused otherwise).
pub(super) async fn apply(
    tx: &mut Tx,
    policy: &Policy,
    edit: &MessageEdited,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    let id = stored_message_id(tx, edit.message_id.as_str()).await?;
    let found: Option<(
        i64,
        String,
        chrono::DateTime<chrono::Utc>,
        bool,
        i32,
        String,
    )> = sqlx::query_as(
        "SELECT seq, sender, created_at, recalled_at IS NOT NULL OR erased_at IS NOT NULL,
                    version, body
             FROM messages WHERE message_id = $1 AND conversation_id = $2",
    )
    .bind(&id)
    .bind(edit.conversation.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    let Some((seq, sender, created_at, gone, version, body)) = found else {
        return Ok(ImOutcome::refused(Refusal::NoSuchMessage));
    };
    if sender != edit.sender.as_str() || gone {
        return Ok(ImOutcome::refused(Refusal::NoSuchMessage));
    }
    if policy
        .edit_window
        .is_some_and(|window| edit.edited_at - created_at > window)
    {
        return Ok(ImOutcome::refused(Refusal::EditWindow));
    }
    let current = Current {
        id,
        seq,
        version,
        body,
    };
    if edit.version.is_some_and(|v| v != current.version) {
        return Ok(match current.body == edit.body {
            true => ImOutcome::duplicate(),
            false => ImOutcome::refused(Refusal::StaleVersion),
        });
    }
    let (conversation, sender) = (&edit.conversation, &edit.sender);
    if let Some(reason) = sender_refusal(tx, conversation, sender, edit.edited_at).await? {
        return Ok(ImOutcome::refused(reason));
    }
    if let Some(reason) = content::refusal(tx, &References::from(edit)).await? {
        return Ok(ImOutcome::refused(reason));
    }
    rewrite(tx, policy, edit, &current).await?;
    let held = seq_lock.acquire(tx).await?;
    let change = Change {
        conversation: edit.conversation.as_str(),
        message_id: &current.id,
        seq: current.seq,
        author: edit.sender.as_str(),
        kind: "edit",
    };
    let entries = tell_audience(tx, &change, held).await?;
    Ok(ImOutcome {
        applied: 1,
        sync_entries: entries,
        ..ImOutcome::default()
    })
}

/// Replaces the message's text, content and references; the version counts up.
async fn rewrite(
    tx: &mut Tx,
    policy: &Policy,
    edit: &MessageEdited,
    current: &Current,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE messages
         SET body = $2, content_type = $3, attachments = $4::jsonb, payload = $5, search = $6::tsvector,
             version = version + 1, edited_at = $7
         WHERE message_id = $1",
    )
    .bind(&current.id)
    .bind(&edit.body)
    .bind(edit.content.content_type.label())
    .bind(content::attachments_json(&edit.content))
    .bind(edit.content.payload.as_ref())
    .bind(policy.searchable(&content::searchable_text(&edit.body, &edit.content)))
    .bind(edit.edited_at)
    .execute(&mut **tx)
    .await?;
    let kept: Vec<&str> = edit
        .content
        .attachments
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    // Attachments the new content no longer names lose this holder (the sweep may delete them).
    sqlx::query(
        "DELETE FROM message_attachments
         WHERE conversation_id = $1 AND seq = $2 AND attachment_id <> ALL($3::text[])",
    )
    .bind(edit.conversation.as_str())
    .bind(current.seq)
    .bind(&kept)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM message_mentions WHERE conversation_id = $1 AND seq = $2")
        .bind(edit.conversation.as_str())
        .bind(current.seq)
        .execute(&mut **tx)
        .await?;
    content::record_references(tx, &References::from(edit), current.seq).await
}
