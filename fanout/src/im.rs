//! Applies the IM events of conversations: groups and membership, messages, recalls and read markers.
//! (A user's own events, accounts and profiles, are [`crate::users`].)
//!
//! All of a conversation's events share its Kafka key (a group's membership changes too: `g:GROUP`), so
//! they arrive in order on one partition and are applied in that order. That is what makes the
//! conversation seq gap-free (it advances only when a message is applied, one at a time) and what makes
//! a message reach exactly the members the group had when it was written.
//!
//! Unread counts are exact after the transaction of every event that changes them (one row per member
//! and conversation, no separate total to drift: the total is the sum at read time); a direct
//! conversation stores them, a group derives them from its counters:
//! - a message: +1 for the other person (or, derived, for every active member but the sender); the
//!   sender reads up to it (unread 0);
//! - a read marker: clamped to what was delivered, forward only; unread is recounted from the messages;
//! - a recall: −1 for every member who had it delivered and not read (not the sender);
//! - leaving or being removed: the row stays (history) but inactive with unread 0; joining starts at
//!   the conversation's current seq (a new member reads from their join on).
//!
//! Idempotence: every event first moves its conversation's [`crate::watermark`]; an event at or below
//! it is skipped, whatever its outcome was when new (also an old read marker or membership change
//! replayed after newer ones). Within that, a message id (or a `client_msg_id` already used by the
//! sender in the conversation) is applied once (a retried send's other id becomes an alias), recalls
//! only tombstone a live message, and read markers only move forward.
//!
//! ingest cannot know membership: a message from a non-member, or to a group that does not exist, is
//! refused here — recorded in `refused_messages`, reported to the sender's devices as a `refused` sync
//! entry, counted by reason — and never delivered. Refused membership changes, group creations, edits
//! and reactions are told to their actor the same way ([`refusals`]).
//!
//! Group members' delivered seq, unread count and activity are derived at read time from the group's
//! counters (the `conversation_state` view), in both delivery modes, so a group message touches only
//! the sender's member row. Large groups (above `group_pull_above` members) are also read-diffused: a
//! message costs the message row and the sender's own inbox entry, and members' sync scans report the
//! conversation as advanced through its `last_position` ([`groups`]).
//!
//! # Layout
//! - [`groups`]: group creation, joins, invitations, requests, leaves, removals and role changes, the
//!   push/pull switch.
//! - [`membership`]: who may change whose membership — the permission matrix, pure.
//! - [`settings`]: a group's settings, owner transfer and dissolution.
//! - [`mutes`]: muted conversations and muted group members.
//! - [`blocks`]: blocks between users (their direct messages).
//! - [`messages`]: messages, their refusals, delivery into inboxes.
//! - [`content`]: what a message references (attachments, mentions, the message it replies to).
//! - [`recalls`]: recalls within the recall window, and operators' removals.
//! - [`edits`]: edits by the sender within the edit window, versioned.
//! - [`reactions`]: reactions — one row per message, key and user.
//! - [`changes`]: how devices hear of an edit or a reaction.
//! - [`reads`]: read markers.
//! - [`refusals`]: `refused` sync entries — to a refused message's sender, and to the actor of a refused
//!   membership change, group creation, edit or reaction.

mod blocks;
mod changes;
mod content;
mod edits;
mod groups;
mod membership;
mod messages;
mod mutes;
mod reactions;
mod reads;
mod recalls;
mod refusals;
mod settings;

use schemas::{
    BlockChange, ConversationMute, GroupCreated, GroupDissolved, GroupUpdated, MemberMute,
    MembershipChange, MessageEdited, MessageRecalled, MessageRemoved, MessageSent, Reaction,
    ReadMarked,
};
use sqlx::{Postgres, Transaction};

pub use crate::outcome::{ImOutcome, Refusal};
use crate::policy::Policy;
use crate::seq_lock::SeqLock;
use crate::sourced::SourcedEvent;
use crate::watermark;
pub(crate) use content::{attachments_json, searchable_text};
use membership::Request;

type Tx = Transaction<'static, Postgres>;

/// The events of a conversation's key.
#[derive(Debug, Clone, Copy)]
pub(crate) enum ImEvent<'a> {
    GroupCreated(&'a GroupCreated),
    MemberAdded(&'a MembershipChange),
    MemberRemoved(&'a MembershipChange),
    Message(&'a MessageSent),
    Recall(&'a MessageRecalled),
    Read(&'a ReadMarked),
    GroupUpdated(&'a GroupUpdated),
    GroupDissolved(&'a GroupDissolved),
    MemberMuted(&'a MemberMute),
    /// A block (true) or its lifting.
    Block(&'a BlockChange, bool),
    /// A conversation muted (true) or unmuted.
    ConversationMute(&'a ConversationMute, bool),
    /// An operator removed a message.
    Removed(&'a MessageRemoved),
    Edit(&'a MessageEdited),
    /// A reaction added (true) or removed.
    Reaction(&'a Reaction, bool),
}

/// Applies one IM event (at most once: [`watermark`]).
pub(crate) async fn apply(
    tx: &mut Tx,
    policy: &Policy,
    event: &SourcedEvent,
    im_event: ImEvent<'_>,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    if !watermark::advance(tx, event).await? {
        return Ok(ImOutcome::duplicate());
    }
    let mut outcome = apply_new(tx, policy, event, im_event, seq_lock).await?;
    if let Some(reason) = outcome.refusal() {
        refusals::tell_actor(tx, event, &im_event, reason, &mut outcome, seq_lock).await?;
    }
    Ok(outcome)
}

async fn apply_new(
    tx: &mut Tx,
    policy: &Policy,
    event: &SourcedEvent,
    im_event: ImEvent<'_>,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    match im_event {
        ImEvent::GroupCreated(group) => groups::apply_created(tx, group, seq_lock).await,
        ImEvent::MemberAdded(change) => {
            let request = Request::Add { role: change.role };
            groups::apply_membership(tx, policy, event, change, request, seq_lock).await
        }
        ImEvent::MemberRemoved(change) => {
            groups::apply_membership(tx, policy, event, change, Request::Remove, seq_lock).await
        }
        ImEvent::Message(message) => messages::apply(tx, policy, message, seq_lock).await,
        ImEvent::Recall(recall) => recalls::apply(tx, policy, recall, false, seq_lock).await,
        ImEvent::Removed(removed) => {
            let recall = MessageRecalled {
                message_id: removed.message_id.clone(),
                conversation: removed.conversation.clone(),
                sender: removed.by.clone(),
                recalled_at: removed.removed_at,
            };
            recalls::apply(tx, policy, &recall, true, seq_lock).await
        }
        ImEvent::Read(read) => reads::apply(tx, read).await,
        ImEvent::GroupUpdated(update) => settings::apply_updated(tx, event, update).await,
        ImEvent::GroupDissolved(dissolved) => settings::apply_dissolved(tx, event, dissolved).await,
        ImEvent::MemberMuted(mute) => mutes::apply_member(tx, mute).await,
        ImEvent::Block(change, blocked) => blocks::apply(tx, event, change, blocked).await,
        ImEvent::ConversationMute(mute, muted) => mutes::apply_conversation(tx, mute, muted).await,
        ImEvent::Edit(edit) => edits::apply(tx, policy, edit, seq_lock).await,
        ImEvent::Reaction(reaction, added) => reactions::apply(tx, reaction, added, seq_lock).await,
    }
}
