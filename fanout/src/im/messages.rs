//! Messages: a new message takes the conversation's next seq, is stored once, counts as unread for the
//! other person of a direct conversation (a group's counts are derived), and reaches the inboxes of the
//! members it was written to — every awake member in push mode, a bounded number of them in pull mode.
//! A message the sender may not send (not a member, no such or a dissolved group, muted in the group,
//! a block between the two of a direct conversation) is refused: recorded, and reported to the
//! sender's devices alone.

use chrono::{DateTime, Utc};
use schemas::ids::ConversationKind;
use schemas::{ConversationId, GroupId, MessageSent, UserId};

use super::content::{self, References};
use super::groups::live_group;
use super::{ImOutcome, Refusal, Tx};
use crate::policy::{DeliveryMode, Policy};
use crate::seq_lock::{SeqLock, SeqLockHeld};

/// Applies a message: stored and delivered once, refused, or a duplicate of one seen before.
pub(super) async fn apply(
    tx: &mut Tx,
    policy: &Policy,
    message: &MessageSent,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    if is_known(tx, message.message_id.as_str()).await?
        || is_retried_send(tx, message).await?
        || was_removed(tx, message).await?
    {
        return Ok(ImOutcome::duplicate());
    }
    match message.conversation.kind() {
        ConversationKind::Direct(a, b) => {
            if super::blocks::between(tx, &a, &b).await? {
                return refuse(tx, message, Refusal::Blocked, seq_lock).await;
            }
            open_direct(
                tx,
                message.conversation.as_str(),
                [a, b],
                message.created_at,
            )
            .await?;
        }
        ConversationKind::Group(group) => {
            let (sender, at) = (&message.sender, message.created_at);
            if let Some(reason) = group_refusal(tx, &group, sender, at).await? {
                return refuse(tx, message, reason, seq_lock).await;
            }
        }
    }
    if let Some(reason) = content::refusal(tx, &References::from(message)).await? {
        return refuse(tx, message, reason, seq_lock).await;
    }
    let (seq, mode) = store(tx, policy, message).await?;
    let held = seq_lock.acquire(tx).await?;
    let audience = Audience {
        seq,
        mode,
        pull_max: policy.active_audience_max,
    };
    let entries = deliver(tx, message, audience, held).await?;
    Ok(ImOutcome {
        applied: 1,
        sync_entries: entries,
        ..ImOutcome::default()
    })
}

/// Whether this message id was applied, refused or aliased before (a redelivery or replay).
async fn is_known(tx: &mut Tx, message_id: &str) -> Result<bool, sqlx::Error> {
    let known: Option<(bool,)> = sqlx::query_as(
        "SELECT true FROM messages WHERE message_id = $1
         UNION ALL SELECT true FROM refused_messages WHERE message_id = $1
         UNION ALL SELECT true FROM message_aliases WHERE alias_message_id = $1
         LIMIT 1",
    )
    .bind(message_id)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(known.is_some())
}

/// Whether retention removed this message (a replay meets it again): it is no newer than the newest
/// message removed from the conversation (`crate::store_retention`).
async fn was_removed(tx: &mut Tx, message: &MessageSent) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM conversations
                        WHERE conversation_id = $1 AND history_floor_at >= $2)",
    )
    .bind(message.conversation.as_str())
    .bind(message.created_at)
    .fetch_one(&mut **tx)
    .await
}

/// Whether the sender already sent this `client_msg_id` in the conversation (a retried request): then
/// this message id becomes an alias of the first.
async fn is_retried_send(tx: &mut Tx, message: &MessageSent) -> Result<bool, sqlx::Error> {
    let Some(client_msg_id) = &message.client_msg_id else {
        return Ok(false);
    };
    let first: Option<(String,)> = sqlx::query_as(
        "SELECT message_id FROM messages
         WHERE conversation_id = $1 AND sender = $2 AND client_msg_id = $3",
    )
    .bind(message.conversation.as_str())
    .bind(message.sender.as_str())
    .bind(client_msg_id)
    .fetch_optional(&mut **tx)
    .await?;
    let Some((first,)) = first else {
        return Ok(false);
    };
    sqlx::query(
        "INSERT INTO message_aliases (alias_message_id, message_id) VALUES ($1, $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(message.message_id.as_str())
    .bind(first)
    .execute(&mut **tx)
    .await?;
    Ok(true)
}

/// A direct conversation exists from its first message on, with both people as members — but for a
/// person who deleted their account (crate::erasure).
async fn open_direct(
    tx: &mut Tx,
    conversation: &str,
    people: [UserId; 2],
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversations (conversation_id, kind) VALUES ($1, 'direct')
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .execute(&mut **tx)
    .await?;
    for user in people {
        sqlx::query(
            "INSERT INTO conversation_members (user_id, conversation_id, last_activity)
             SELECT $1, $2, $3 WHERE NOT fanline_erased($1)
             ON CONFLICT DO NOTHING",
        )
        .bind(user.as_str())
        .bind(conversation)
        .bind(at)
        .execute(&mut **tx)
        .await?;
    }
    Ok(())
}

/// Why the message's sender may not write to `group`, if they may not: it does not exist or was
/// dissolved, they are no member, or an owner or admin muted them until after the message was written.
async fn group_refusal(
    tx: &mut Tx,
    group: &GroupId,
    sender: &UserId,
    at: DateTime<Utc>,
) -> Result<Option<Refusal>, sqlx::Error> {
    if live_group(tx, group.as_str()).await?.is_none() {
        return Ok(Some(Refusal::NoSuchGroup));
    }
    let member: Option<(Option<DateTime<Utc>>,)> = sqlx::query_as(
        "SELECT muted_until FROM group_members WHERE group_id = $1 AND user_id = $2 AND active",
    )
    .bind(group.as_str())
    .bind(sender.as_str())
    .fetch_optional(&mut **tx)
    .await?;
    Ok(match member {
        None => Some(Refusal::NotMember),
        // The message's own time decides (set by ingest, in the event): the same on a replay.
        Some((Some(until),)) if at < until => Some(Refusal::Muted),
        Some(_) => None,
    })
}

/// Why `sender` may not write to `conversation` at `at`, if they may not — a message, or an edit or
/// reaction (written then): a block between a direct conversation's two, or, in a group, no such
/// group, no membership, a mute.
pub(super) async fn sender_refusal(
    tx: &mut Tx,
    conversation: &ConversationId,
    sender: &UserId,
    at: DateTime<Utc>,
) -> Result<Option<Refusal>, sqlx::Error> {
    match conversation.kind() {
        ConversationKind::Direct(a, b) => Ok(super::blocks::between(tx, &a, &b)
            .await?
            .then_some(Refusal::Blocked)),
        ConversationKind::Group(group) => group_refusal(tx, &group, sender, at).await,
    }
}

/// Takes the conversation's next seq and stores the message under it; the sender has read everything
/// up to their own message, and the other person of a direct conversation gets it counted. A group's
/// members' counts are derived (`conversation_state`), so a group message touches no member row but
/// the sender's. Returns the seq and the conversation's delivery mode.
async fn store(
    tx: &mut Tx,
    policy: &Policy,
    message: &MessageSent,
) -> Result<(i64, DeliveryMode), sqlx::Error> {
    let conversation = message.conversation.as_str();
    let (seq, mode): (i64, String) = sqlx::query_as(
        "UPDATE conversations SET last_seq = last_seq + 1, last_at = $2
         WHERE conversation_id = $1 RETURNING last_seq, mode",
    )
    .bind(conversation)
    .bind(message.created_at)
    .fetch_one(&mut **tx)
    .await?;
    // A sender who deleted their account (a message in flight then, or a replay applying the deletion
    // first): stored as the deletion leaves their messages, a tombstone (crate::erasure).
    sqlx::query(
        "INSERT INTO messages (conversation_id, seq, message_id, sender, body, client_msg_id, created_at,
                               search, erased_at, content_type, attachments, payload, reply_to,
                               forwarded)
         SELECT $1, $2, $3, $4, CASE WHEN e.erased_at IS NULL THEN $5 ELSE '' END, $6, $7,
                CASE WHEN e.erased_at IS NULL THEN $8::tsvector END, e.erased_at, $9,
                CASE WHEN e.erased_at IS NULL THEN $10::jsonb END,
                CASE WHEN e.erased_at IS NULL THEN $11::jsonb END, $12, $13
         FROM (SELECT (SELECT erased_at FROM erased_users WHERE user_id = $4) AS erased_at) e",
    )
    .bind(conversation)
    .bind(seq)
    .bind(message.message_id.as_str())
    .bind(message.sender.as_str())
    .bind(&message.body)
    .bind(message.client_msg_id.as_deref())
    .bind(message.created_at)
    .bind(policy.searchable(&content::searchable_text(&message.body, &message.content)))
    .bind(message.content.content_type.label())
    .bind(content::attachments_json(&message.content))
    .bind(message.content.payload.as_ref())
    .bind(message.reply_to)
    .bind(message.forwarded)
    .execute(&mut **tx)
    .await?;
    content::record_references(tx, &References::from(message), seq).await?;
    // A group's rows are all derived: only the sender's changes, found by its key (a scan of the
    // conversation's rows cost a 100,000-member group 10 ms a message); a direct conversation has two.
    let members = if matches!(message.conversation.kind(), ConversationKind::Group(_)) {
        "user_id = $3 AND conversation_id = $1 AND active"
    } else {
        "conversation_id = $1 AND active"
    };
    sqlx::query(&format!(
        "UPDATE conversation_members
         SET delivered_seq = $2,
             last_activity = greatest(last_activity, $4),
             read_seq = CASE WHEN user_id = $3 THEN $2 ELSE read_seq END,
             unread = CASE WHEN user_id = $3 THEN 0 ELSE unread + 1 END
         WHERE {members}"
    ))
    .bind(conversation)
    .bind(seq)
    .bind(message.sender.as_str())
    .bind(message.created_at)
    .execute(&mut **tx)
    .await?;
    Ok((seq, DeliveryMode::parse(&mode)))
}

/// A stored message's seq, its conversation's delivery mode, and the bound of a pull-mode audience.
struct Audience {
    seq: i64,
    mode: DeliveryMode,
    pull_max: i64,
}

/// Push: an inbox entry for every active member who is not dormant ([`crate::activity`]; a direct
/// conversation's two always), the sender's own too. Pull (a large group, read diffusion): the sender's
/// own entry and those of the first `pull_max` awake members (by id) — bounded whatever the group's
/// size — and the conversation's new position tells every member's sync scan that it advanced.
/// Returns the entries.
async fn deliver(
    tx: &mut Tx,
    message: &MessageSent,
    audience: Audience,
    held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    let conversation = message.conversation.as_str();
    advance_position(tx, conversation, held).await?;
    // `dormant` is only ever set on group rows. Pull: the sender's own entry looked up directly (they
    // may be beyond the bound); a sender still dormant here gets theirs from their return.
    let recipients = if audience.mode == DeliveryMode::Pull {
        "SELECT user_id FROM conversation_members
         WHERE user_id = $2 AND conversation_id = $1 AND NOT dormant
         UNION ALL
         (SELECT user_id FROM conversation_members
          WHERE conversation_id = $1 AND active AND NOT dormant AND user_id <> $2
          ORDER BY user_id
          LIMIT $5)"
    } else {
        "SELECT user_id FROM conversation_members
         WHERE conversation_id = $1 AND active AND NOT dormant
         ORDER BY user_id"
    };
    let entries = sqlx::query(&format!(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, conv_seq, message_id)
         SELECT m.user_id, nextval('sync_seq'), $2, 'message', $1, $3, $4
         FROM ({recipients}) AS m
         ON CONFLICT DO NOTHING"
    ))
    .bind(conversation)
    .bind(message.sender.as_str())
    .bind(audience.seq)
    .bind(message.message_id.as_str())
    .bind(audience.pull_max)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(entries)
}

/// Gives a pull-mode conversation a new position in the sync order: every member's next sync scan from
/// below it reports the conversation as advanced.
pub(super) async fn advance_position(
    tx: &mut Tx,
    conversation: &str,
    _held: SeqLockHeld<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE conversations SET last_position = nextval('sync_seq')
         WHERE conversation_id = $1 AND mode = 'pull'",
    )
    .bind(conversation)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Records a refused message and tells the sender's devices, through a `refused` entry in their sync
/// timeline; nobody else sees anything.
async fn refuse(
    tx: &mut Tx,
    message: &MessageSent,
    reason: Refusal,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    sqlx::query(
        "INSERT INTO refused_messages (message_id, conversation_id, sender, reason)
         VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
    )
    .bind(message.message_id.as_str())
    .bind(message.conversation.as_str())
    .bind(message.sender.as_str())
    .bind(reason.label())
    .execute(&mut **tx)
    .await?;
    let held = seq_lock.acquire(tx).await?;
    let mut outcome = ImOutcome::refused(reason);
    outcome.sync_entries = super::refusals::refused_entry(
        tx,
        message.sender.as_str(),
        message.conversation.as_str(),
        message.message_id.as_str(),
        held,
    )
    .await?;
    Ok(outcome)
}
