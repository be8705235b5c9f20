//! What a message holds besides its body, as fanout stores it: the attachments and mentions it
//! references (rows that exist exactly while the message is live — the content migration's triggers
//! remove them with it), the checks only the conversation's state can make (a reply's target exists,
//! `@all` comes from an owner or admin), and the text search indexes (body and file names).

use schemas::{Content, ConversationId, MessageEdited, MessageSent, UserId};

use super::{Refusal, Tx};

/// What a message (as sent, or as edited) references.
pub(super) struct References<'a> {
    pub conversation: &'a ConversationId,
    pub sender: &'a UserId,
    pub content: &'a Content,
    pub reply_to: Option<i64>,
    pub mentions: &'a [UserId],
    pub mention_all: bool,
}

impl<'a> From<&'a MessageSent> for References<'a> {
    fn from(message: &'a MessageSent) -> Self {
        References {
            conversation: &message.conversation,
            sender: &message.sender,
            content: &message.content,
            reply_to: message.reply_to,
            mentions: &message.mentions,
            mention_all: message.mention_all,
        }
    }
}

impl<'a> From<&'a MessageEdited> for References<'a> {
    fn from(edit: &'a MessageEdited) -> Self {
        References {
            conversation: &edit.conversation,
            sender: &edit.sender,
            content: &edit.content,
            reply_to: None,
            mentions: &edit.mentions,
            mention_all: edit.mention_all,
        }
    }
}

/// Why a message's references cannot stand, if they cannot: a reply to a seq the conversation does
/// not have yet, or `@all` from someone who is not the group's owner or an admin. Decided by the
/// conversation's own state, in its key's order: the same on a replay.
pub(super) async fn refusal(
    tx: &mut Tx,
    message: &References<'_>,
) -> Result<Option<Refusal>, sqlx::Error> {
    if let Some(target) = message.reply_to {
        let last: Option<i64> =
            sqlx::query_scalar("SELECT last_seq FROM conversations WHERE conversation_id = $1")
                .bind(message.conversation.as_str())
                .fetch_optional(&mut **tx)
                .await?;
        if last.is_none_or(|last| target > last) {
            return Ok(Some(Refusal::NoSuchMessage));
        }
    }
    if message.mention_all {
        let role: Option<String> = sqlx::query_scalar(
            "SELECT role FROM group_members
             WHERE group_id = substr($1, 3) AND user_id = $2 AND active",
        )
        .bind(message.conversation.as_str())
        .bind(message.sender.as_str())
        .fetch_optional(&mut **tx)
        .await?;
        if !matches!(role.as_deref(), Some("owner" | "admin")) {
            return Ok(Some(Refusal::NotAllowed));
        }
    }
    Ok(None)
}

/// Records the attachments and mentions of a message stored (or edited) at `seq` — unless it was
/// stored as a tombstone (its sender deleted their account): then it references nothing.
pub(super) async fn record_references(
    tx: &mut Tx,
    message: &References<'_>,
    seq: i64,
) -> Result<(), sqlx::Error> {
    let conversation = message.conversation.as_str();
    let ids: Vec<&str> = message
        .content
        .attachments
        .iter()
        .map(|a| a.id.as_str())
        .collect();
    if !ids.is_empty() {
        sqlx::query(
            "INSERT INTO message_attachments (conversation_id, seq, attachment_id)
             SELECT $1, $2, id FROM unnest($3::text[]) AS id
             WHERE NOT fanline_erased($4)
             ON CONFLICT DO NOTHING",
        )
        .bind(conversation)
        .bind(seq)
        .bind(&ids)
        .bind(message.sender.as_str())
        .execute(&mut **tx)
        .await?;
    }
    let mut mentioned: Vec<&str> = message
        .mentions
        .iter()
        .map(|u| u.as_str())
        .filter(|u| *u != message.sender.as_str())
        .collect();
    if message.mention_all {
        mentioned.push("*");
    }
    if !mentioned.is_empty() {
        sqlx::query(
            "INSERT INTO message_mentions (conversation_id, user_id, seq, sender)
             SELECT $1, u, $2, $4 FROM unnest($3::text[]) AS u
             WHERE NOT fanline_erased($4)
             ON CONFLICT DO NOTHING",
        )
        .bind(conversation)
        .bind(seq)
        .bind(&mentioned)
        .bind(message.sender.as_str())
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// The attachments as stored with the message (`NULL` when there are none).
pub(crate) fn attachments_json(content: &Content) -> Option<serde_json::Value> {
    (!content.attachments.is_empty())
        .then(|| serde_json::to_value(&content.attachments).unwrap_or_default())
}

/// What search indexes of a message or post: its body and its files' names.
pub(crate) fn searchable_text(body: &str, content: &Content) -> String {
    let names = content.attachments.iter().filter_map(|a| a.name.as_deref());
    std::iter::once(body)
        .chain(names)
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ")
}
