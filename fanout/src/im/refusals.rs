//! Refused writes other than messages — membership changes, edits, reactions: recorded in
//! `refused_writes` and told to the one who tried through a `refused` entry in their sync timeline,
//! so the page that asked can say so where it asked (an invitation a demoted admin sent, an edit past
//! its window). Messages have their own ([`super::messages`]): their refusal also answers a
//! `client_msg_id`. Exactly once like every effect here: inside the event's transaction, behind its
//! watermark, and keyed by the event id.

use schemas::ConversationId;

use super::{ImEvent, ImOutcome, Refusal, Tx};
use crate::seq_lock::{SeqLock, SeqLockHeld};
use crate::sourced::SourcedEvent;

/// Who tried what: the actor, the conversation, the action and what it was about.
struct Attempt<'a> {
    actor: &'a str,
    conversation: String,
    action: &'static str,
    subject: String,
}

fn attempt<'a>(im_event: &ImEvent<'a>) -> Option<Attempt<'a>> {
    let membership = |change: &'a schemas::MembershipChange, action| Attempt {
        actor: change.by.as_str(),
        conversation: ConversationId::group(&change.group).to_string(),
        action,
        subject: change.user.to_string(),
    };
    Some(match *im_event {
        ImEvent::GroupCreated(group) => Attempt {
            actor: group.owner.as_str(),
            conversation: ConversationId::group(&group.group).to_string(),
            action: "group_create",
            subject: group.group.to_string(),
        },
        ImEvent::MemberAdded(change) => membership(change, "member_add"),
        ImEvent::MemberRemoved(change) => membership(change, "member_remove"),
        ImEvent::Edit(edit) => Attempt {
            actor: edit.sender.as_str(),
            conversation: edit.conversation.to_string(),
            action: "edit",
            subject: edit.message_id.to_string(),
        },
        ImEvent::Reaction(reaction, added) => Attempt {
            actor: reaction.user.as_str(),
            conversation: reaction.conversation.to_string(),
            action: if added {
                "reaction_add"
            } else {
                "reaction_remove"
            },
            subject: reaction.seq.to_string(),
        },
        _ => return None,
    })
}

/// Tells the actor of a refused membership change, edit or reaction (`outcome` refused for `reason`);
/// adds the entry written to `outcome`.
pub(super) async fn tell_actor(
    tx: &mut Tx,
    event: &SourcedEvent,
    im_event: &ImEvent<'_>,
    reason: Refusal,
    outcome: &mut ImOutcome,
    seq_lock: &mut SeqLock,
) -> Result<(), sqlx::Error> {
    let Some(attempt) = attempt(im_event) else {
        return Ok(());
    };
    let reason = match im_event {
        ImEvent::MemberAdded(change) | ImEvent::MemberRemoved(change)
            if !may_see(tx, change.group.as_str(), attempt.actor).await? =>
        {
            // A private group answers a stranger as an id never used (the reader's rule too).
            Refusal::NoSuchGroup
        }
        _ => reason,
    };
    let recorded = sqlx::query(
        "INSERT INTO refused_writes (event_id, user_id, conversation_id, action, subject, reason)
         VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT DO NOTHING",
    )
    .bind(&event.envelope.id)
    .bind(attempt.actor)
    .bind(&attempt.conversation)
    .bind(attempt.action)
    .bind(&attempt.subject)
    .bind(reason.label())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if recorded == 0 {
        return Ok(());
    }
    let held = seq_lock.acquire(tx).await?;
    outcome.sync_entries += refused_entry(
        tx,
        attempt.actor,
        &attempt.conversation,
        &event.envelope.id,
        held,
    )
    .await?;
    Ok(())
}

/// The `refused` entry in `user`'s sync timeline about `what` (a message id, or a refused write's
/// event id); returns the entries written. Messages' refusals write it too.
pub(super) async fn refused_entry(
    tx: &mut Tx,
    user: &str,
    conversation: &str,
    what: &str,
    _held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    // An erased user has no inbox (crate::erasure).
    let written = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, message_id)
         SELECT $1, nextval('sync_seq'), $1, 'refused', $2, $3 WHERE NOT fanline_erased($1)
         ON CONFLICT DO NOTHING",
    )
    .bind(user)
    .bind(conversation)
    .bind(what)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(written)
}

/// Whether `user` may know the group exists: it is open, or they are in it or invited or asking.
async fn may_see(tx: &mut Tx, group: &str, user: &str) -> Result<bool, sqlx::Error> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM groups WHERE group_id = $1 AND join_rule = 'open'
                        AND dissolved_at IS NULL)
             OR EXISTS (SELECT 1 FROM group_members WHERE group_id = $1 AND user_id = $2 AND active)
             OR EXISTS (SELECT 1 FROM group_pending WHERE group_id = $1 AND user_id = $2)",
    )
    .bind(group)
    .bind(user)
    .fetch_one(&mut **tx)
    .await
}
