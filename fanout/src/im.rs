//! Applies the IM events: profiles, groups and membership, messages, recalls and read markers.
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
//! Idempotence: a message id (or a `client_msg_id` already used by the sender in the conversation) is
//! applied once; recalls only tombstone a live message; read markers only move forward; read markers,
//! membership and profiles remember the Kafka position that last set them and ignore older events.
//!
//! ingest cannot know membership: a message from a non-member, or to a group that does not exist, is
//! refused here — recorded in `refused_messages`, reported to the sender's devices as a `refused` sync
//! entry, counted by reason — and never delivered.
//!
//! Group members' delivered seq, unread count and activity are derived at read time from the group's
//! counters (the `conversation_state` view), in both delivery modes, so a group message touches only
//! the sender's member row. Large groups (above `group_pull_above` members) are also read-diffused: a
//! message costs the message row and the sender's own inbox entry, and members' sync scans report the
//! conversation as advanced through its `last_position` ([`update_group_mode`]).

use chrono::{DateTime, Utc};
use schemas::ids::ConversationKind;
use schemas::{
    AccountRegistered, ConversationId, Event, GroupCreated, MembershipChange, MessageRecalled,
    MessageSent, ProfileUpdated, ReadMarked, Role,
};
use sqlx::{Postgres, Transaction};

use crate::store::{next_mode_between, DeliveryMode, Policy, SeqLock, SourcedEvent};

/// Why fanout refused an IM event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// A message or read marker from a user who is not an active member.
    NotMember,
    /// An event for a group that was never created.
    NoSuchGroup,
    /// A membership change the acting user may not make (or a group created twice).
    NotAllowed,
    /// A recall after the recall window.
    RecallWindow,
    /// A recall by someone else than the sender, or of a message that does not exist.
    NoSuchMessage,
}

impl Refusal {
    pub const ALL: [Refusal; 5] = [
        Refusal::NotMember,
        Refusal::NoSuchGroup,
        Refusal::NotAllowed,
        Refusal::RecallWindow,
        Refusal::NoSuchMessage,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refusal::NotMember => "not_member",
            Refusal::NoSuchGroup => "no_such_group",
            Refusal::NotAllowed => "not_allowed",
            Refusal::RecallWindow => "recall_window",
            Refusal::NoSuchMessage => "no_such_message",
        }
    }
}

/// What applying one IM event did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct ImOutcome {
    /// The event changed state (a new message, a moved read marker, a membership change …).
    pub applied: u64,
    /// Already applied (redelivery, replay, retried request) or changing nothing.
    pub duplicate: u64,
    /// Refused, by [`Refusal`] in [`Refusal::ALL`] order.
    pub refused: [u64; 5],
    /// Sync entries written (messages, recalls, refusals).
    pub sync_entries: u64,
}

impl ImOutcome {
    pub fn add(&mut self, other: ImOutcome) {
        self.applied += other.applied;
        self.duplicate += other.duplicate;
        self.sync_entries += other.sync_entries;
        for (total, more) in self.refused.iter_mut().zip(other.refused) {
            *total += more;
        }
    }

    fn applied() -> Self {
        ImOutcome {
            applied: 1,
            ..ImOutcome::default()
        }
    }

    fn duplicate() -> Self {
        ImOutcome {
            duplicate: 1,
            ..ImOutcome::default()
        }
    }

    fn refused(reason: Refusal) -> Self {
        let mut outcome = ImOutcome::default();
        if let Some(index) = Refusal::ALL.iter().position(|r| *r == reason) {
            outcome.refused[index] = 1;
        }
        outcome
    }
}

type Tx = Transaction<'static, Postgres>;

/// Applies one IM event (`None` for the timeline events handled by [`crate::store`]).
pub(crate) async fn apply(
    tx: &mut Tx,
    policy: &Policy,
    event: &SourcedEvent,
    seq_lock: &mut SeqLock,
) -> Result<Option<ImOutcome>, sqlx::Error> {
    if matches!(
        event.envelope.event,
        Event::PostCreated(_) | Event::PostDeleted(_) | Event::Followed(_) | Event::Unfollowed(_)
    ) {
        return Ok(None);
    }
    // One effect per event: an event at or below its key's applied position was handled when it was
    // new, whatever came of it (an event from another partition counts as newer: the topic was recreated).
    let fresh = sqlx::query(
        "INSERT INTO applied_positions (event_key, src_partition, src_offset) VALUES ($1, $2, $3)
         ON CONFLICT (event_key) DO UPDATE
         SET src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset
         WHERE applied_positions.src_partition <> EXCLUDED.src_partition
            OR applied_positions.src_offset < EXCLUDED.src_offset",
    )
    .bind(event.envelope.key.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if fresh == 0 {
        return Ok(Some(ImOutcome::duplicate()));
    }
    let outcome = match &event.envelope.event {
        Event::ProfileUpdated(profile) => apply_profile(tx, event, profile).await?,
        Event::GroupCreated(group) => apply_group_created(tx, group).await?,
        Event::MemberAdded(change) => apply_membership(tx, policy, event, change, true).await?,
        Event::MemberRemoved(change) => apply_membership(tx, policy, event, change, false).await?,
        Event::MessageSent(message) => apply_message(tx, message, seq_lock).await?,
        Event::MessageRecalled(recall) => apply_recall(tx, policy, recall, seq_lock).await?,
        Event::ReadMarked(read) => apply_read(tx, event, read).await?,
        Event::AccountRegistered(account) => apply_account(tx, event, account).await?,
        Event::PostCreated(_)
        | Event::PostDeleted(_)
        | Event::Followed(_)
        | Event::Unfollowed(_) => return Ok(None),
    };
    Ok(Some(outcome))
}

/// The first registration of a user id wins; a later one (someone else trying the same id) changes
/// nothing, and its sender's login keeps failing.
async fn apply_account(
    tx: &mut Tx,
    event: &SourcedEvent,
    account: &AccountRegistered,
) -> Result<ImOutcome, sqlx::Error> {
    let written = sqlx::query(
        "INSERT INTO accounts (user_id, password_hash, registered_at, src_partition, src_offset)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (user_id) DO NOTHING",
    )
    .bind(account.user.as_str())
    .bind(&account.password_hash)
    .bind(event.envelope.ts)
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(if written > 0 {
        ImOutcome::applied()
    } else {
        ImOutcome::duplicate()
    })
}

async fn apply_profile(
    tx: &mut Tx,
    event: &SourcedEvent,
    profile: &ProfileUpdated,
) -> Result<ImOutcome, sqlx::Error> {
    // A user's profile events share the user's key; an older position is a replayed, stale profile.
    let written = sqlx::query(
        "INSERT INTO users (user_id, display_name, age, gender, signature, src_partition, src_offset)
         VALUES ($1, $2, $3, $4, $5, $6, $7)
         ON CONFLICT (user_id) DO UPDATE
         SET display_name = EXCLUDED.display_name, age = EXCLUDED.age, gender = EXCLUDED.gender,
             signature = EXCLUDED.signature, src_partition = EXCLUDED.src_partition,
             src_offset = EXCLUDED.src_offset, updated_at = now()
         WHERE users.src_partition <> EXCLUDED.src_partition OR users.src_offset < EXCLUDED.src_offset",
    )
    .bind(profile.user.as_str())
    .bind(&profile.display_name)
    .bind(profile.age.map(|age| age as i16))
    .bind(profile.gender.as_deref())
    .bind(profile.signature.as_deref())
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(if written > 0 {
        ImOutcome::applied()
    } else {
        ImOutcome::duplicate()
    })
}

async fn apply_group_created(tx: &mut Tx, group: &GroupCreated) -> Result<ImOutcome, sqlx::Error> {
    let created = sqlx::query(
        "INSERT INTO groups (group_id, name, group_type, description, owner, created_at, member_count)
         VALUES ($1, $2, $3, $4, $5, $6, 1)
         ON CONFLICT (group_id) DO NOTHING",
    )
    .bind(group.group.as_str())
    .bind(&group.name)
    .bind(group.group_type.as_deref())
    .bind(group.description.as_deref())
    .bind(group.owner.as_str())
    .bind(group.created_at)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if created == 0 {
        // The same creation again is a redelivery; another one for a taken id is refused.
        let (owner,): (String,) = sqlx::query_as("SELECT owner FROM groups WHERE group_id = $1")
            .bind(group.group.as_str())
            .fetch_one(&mut **tx)
            .await?;
        return Ok(if owner == group.owner.as_str() {
            ImOutcome::duplicate()
        } else {
            ImOutcome::refused(Refusal::NotAllowed)
        });
    }
    let conversation = ConversationId::group(&group.group);
    sqlx::query(
        "INSERT INTO conversations (conversation_id, kind, last_at) VALUES ($1, 'group', $2)
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation.as_str())
    .bind(group.created_at)
    .execute(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id, role, active, src_partition, src_offset)
         VALUES ($1, $2, 'owner', true, -1, -1)
         ON CONFLICT DO NOTHING",
    )
    .bind(group.group.as_str())
    .bind(group.owner.as_str())
    .execute(&mut **tx)
    .await?;
    join_conversation(tx, &conversation, group.owner.as_str(), group.created_at).await?;
    Ok(ImOutcome::applied())
}

/// Makes `user` an active member of `conversation` from its current seq on: what was said before they
/// joined is neither delivered nor unread.
async fn join_conversation(
    tx: &mut Tx,
    conversation: &ConversationId,
    user: &str,
    at: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversation_members
             (user_id, conversation_id, from_seq, delivered_seq, read_seq, unread, active,
              last_activity, derived)
         SELECT $1, c.conversation_id, c.last_seq, c.last_seq, c.last_seq, 0, true, $3,
                c.kind = 'group'
         FROM conversations c WHERE c.conversation_id = $2
         ON CONFLICT (user_id, conversation_id) DO UPDATE
         SET from_seq = EXCLUDED.from_seq, delivered_seq = EXCLUDED.delivered_seq,
             read_seq = EXCLUDED.read_seq, unread = 0, active = true,
             last_activity = EXCLUDED.last_activity, derived = EXCLUDED.derived
         WHERE NOT conversation_members.active",
    )
    .bind(user)
    .bind(conversation.as_str())
    .bind(at)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The active role of `user` in `group`, if they are a member.
async fn active_role(tx: &mut Tx, group: &str, user: &str) -> Result<Option<Role>, sqlx::Error> {
    let role: Option<(String,)> = sqlx::query_as(
        "SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2 AND active",
    )
    .bind(group)
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(role.map(|(role,)| match role.as_str() {
        "owner" => Role::Owner,
        "admin" => Role::Admin,
        _ => Role::Member,
    }))
}

/// Joins, additions and role changes (`added`), leaves and removals. Who may do what: anyone may join
/// (groups are open) and leave (but the owner, who cannot leave their group); an owner or admin adds
/// and removes members; only the owner makes or removes admins; nobody becomes or removes the owner.
async fn apply_membership(
    tx: &mut Tx,
    policy: &Policy,
    event: &SourcedEvent,
    change: &MembershipChange,
    added: bool,
) -> Result<ImOutcome, sqlx::Error> {
    let group = change.group.as_str();
    let exists: Option<(String,)> = sqlx::query_as("SELECT owner FROM groups WHERE group_id = $1")
        .bind(group)
        .fetch_optional(&mut **tx)
        .await?;
    if exists.is_none() {
        return Ok(ImOutcome::refused(Refusal::NoSuchGroup));
    }
    // A replayed older change of this membership must not undo a newer one.
    let stale: Option<(bool,)> = sqlx::query_as(
        "SELECT true FROM group_members WHERE group_id = $1 AND user_id = $2
           AND src_partition = $3 AND src_offset >= $4",
    )
    .bind(group)
    .bind(change.user.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .fetch_optional(&mut **tx)
    .await?;
    if stale.is_some() {
        return Ok(ImOutcome::duplicate());
    }
    let actor = active_role(tx, group, change.by.as_str()).await?;
    let target = active_role(tx, group, change.user.as_str()).await?;
    let by_self = change.by == change.user;
    let wanted = change.role.unwrap_or(Role::Member);
    let allowed = if added {
        match (by_self, actor, wanted) {
            (_, _, Role::Owner) => target == Some(Role::Owner),
            (true, _, Role::Member) => true,
            (_, Some(Role::Owner), _) => true,
            (false, Some(Role::Admin), Role::Member) => target != Some(Role::Admin),
            _ => false,
        }
    } else {
        match (by_self, actor, target) {
            (_, _, Some(Role::Owner)) => false,
            (true, _, _) => true,
            (false, Some(Role::Owner), _) => true,
            (false, Some(Role::Admin), Some(Role::Member) | None) => true,
            _ => false,
        }
    };
    if !allowed {
        return Ok(ImOutcome::refused(Refusal::NotAllowed));
    }
    let conversation = ConversationId::group(&change.group);
    if added {
        // A join or add of a member changes nothing; a role changes only when one is asked for.
        if target == Some(wanted)
            || target == Some(Role::Owner)
            || (target.is_some() && change.role.is_none())
        {
            record_position(tx, event, change).await?;
            return Ok(ImOutcome::duplicate());
        }
        sqlx::query(
            "INSERT INTO group_members (group_id, user_id, role, active, src_partition, src_offset)
             VALUES ($1, $2, $3, true, $4, $5)
             ON CONFLICT (group_id, user_id) DO UPDATE
             SET role = EXCLUDED.role, active = true, src_partition = EXCLUDED.src_partition,
                 src_offset = EXCLUDED.src_offset, updated_at = now()",
        )
        .bind(group)
        .bind(change.user.as_str())
        .bind(wanted.as_str())
        .bind(event.partition)
        .bind(event.offset)
        .execute(&mut **tx)
        .await?;
        if target.is_none() {
            sqlx::query("UPDATE groups SET member_count = member_count + 1 WHERE group_id = $1")
                .bind(group)
                .execute(&mut **tx)
                .await?;
            join_conversation(tx, &conversation, change.user.as_str(), event.envelope.ts).await?;
            update_group_mode(tx, policy, &conversation, group).await?;
        }
    } else {
        if target.is_none() {
            record_position(tx, event, change).await?;
            return Ok(ImOutcome::duplicate());
        }
        sqlx::query(
            "UPDATE group_members SET active = false, src_partition = $3, src_offset = $4,
                 updated_at = now()
             WHERE group_id = $1 AND user_id = $2",
        )
        .bind(group)
        .bind(change.user.as_str())
        .bind(event.partition)
        .bind(event.offset)
        .execute(&mut **tx)
        .await?;
        sqlx::query("UPDATE groups SET member_count = member_count - 1 WHERE group_id = $1")
            .bind(group)
            .execute(&mut **tx)
            .await?;
        // A member who left keeps the conversation in their list, with nothing left to read. (A group
        // member's delivered seq and activity are derived while active: fix them now.)
        sqlx::query(
            "UPDATE conversation_members cm
             SET active = false, unread = 0,
                 delivered_seq = CASE WHEN cm.derived THEN c.last_seq ELSE cm.delivered_seq END,
                 last_activity = CASE WHEN cm.derived
                     THEN greatest(cm.last_activity, coalesce(c.last_at, cm.last_activity))
                     ELSE cm.last_activity END
             FROM conversations c
             WHERE cm.user_id = $1 AND cm.conversation_id = $2
               AND c.conversation_id = cm.conversation_id",
        )
        .bind(change.user.as_str())
        .bind(conversation.as_str())
        .execute(&mut **tx)
        .await?;
        update_group_mode(tx, policy, &conversation, group).await?;
    }
    Ok(ImOutcome::applied())
}

/// Switches a group between push (a message goes into every member's inbox) and pull (read diffusion:
/// 2 rows per message, members find the conversation advanced in their sync scans) when its member
/// count crosses the thresholds. Members' state is derived in both modes (`conversation_state`), so a
/// switch changes nothing else.
async fn update_group_mode(
    tx: &mut Tx,
    policy: &Policy,
    conversation: &ConversationId,
    group: &str,
) -> Result<(), sqlx::Error> {
    let (members, mode): (i64, String) = sqlx::query_as(
        "SELECT g.member_count, c.mode FROM groups g, conversations c
         WHERE g.group_id = $1 AND c.conversation_id = $2",
    )
    .bind(group)
    .bind(conversation.as_str())
    .fetch_one(&mut **tx)
    .await?;
    let current = DeliveryMode::parse(&mode);
    let next = next_mode_between(
        current,
        members,
        policy.group_pull_above,
        policy.group_push_below,
    );
    if next == current {
        return Ok(());
    }
    sqlx::query("UPDATE conversations SET mode = $2 WHERE conversation_id = $1")
        .bind(conversation.as_str())
        .bind(next.as_str())
        .execute(&mut **tx)
        .await?;
    tracing::info!(conversation = %conversation, members, mode = next.as_str(), "group delivery mode changed");
    Ok(())
}

/// Remembers the position of a change that changed nothing, so an older replayed one stays stale.
async fn record_position(
    tx: &mut Tx,
    event: &SourcedEvent,
    change: &MembershipChange,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE group_members SET src_partition = $3, src_offset = $4
         WHERE group_id = $1 AND user_id = $2",
    )
    .bind(change.group.as_str())
    .bind(change.user.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// The id a message was stored under: itself, or the first copy of a retried send.
async fn stored_message_id(tx: &mut Tx, message_id: &str) -> Result<String, sqlx::Error> {
    let (id,): (String,) = sqlx::query_as(
        "SELECT coalesce((SELECT message_id FROM message_aliases WHERE alias_message_id = $1), $1)",
    )
    .bind(message_id)
    .fetch_one(&mut **tx)
    .await?;
    Ok(id)
}

async fn apply_message(
    tx: &mut Tx,
    message: &MessageSent,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    let conversation = message.conversation.as_str();
    let id = message.message_id.as_str();
    let known: Option<(bool,)> = sqlx::query_as(
        "SELECT true FROM messages WHERE message_id = $1
         UNION ALL SELECT true FROM refused_messages WHERE message_id = $1
         UNION ALL SELECT true FROM message_aliases WHERE alias_message_id = $1
         LIMIT 1",
    )
    .bind(id)
    .fetch_optional(&mut **tx)
    .await?;
    if known.is_some() {
        return Ok(ImOutcome::duplicate());
    }
    if let Some(client_msg_id) = &message.client_msg_id {
        let first: Option<(String,)> = sqlx::query_as(
            "SELECT message_id FROM messages
             WHERE conversation_id = $1 AND sender = $2 AND client_msg_id = $3",
        )
        .bind(conversation)
        .bind(message.sender.as_str())
        .bind(client_msg_id)
        .fetch_optional(&mut **tx)
        .await?;
        if let Some((first,)) = first {
            sqlx::query(
                "INSERT INTO message_aliases (alias_message_id, message_id) VALUES ($1, $2)
                 ON CONFLICT DO NOTHING",
            )
            .bind(id)
            .bind(first)
            .execute(&mut **tx)
            .await?;
            return Ok(ImOutcome::duplicate());
        }
    }
    match message.conversation.kind() {
        ConversationKind::Direct(a, b) => {
            sqlx::query(
                "INSERT INTO conversations (conversation_id, kind) VALUES ($1, 'direct')
                 ON CONFLICT DO NOTHING",
            )
            .bind(conversation)
            .execute(&mut **tx)
            .await?;
            for user in [a, b] {
                sqlx::query(
                    "INSERT INTO conversation_members (user_id, conversation_id, last_activity)
                     VALUES ($1, $2, $3)
                     ON CONFLICT DO NOTHING",
                )
                .bind(user.as_str())
                .bind(conversation)
                .bind(message.created_at)
                .execute(&mut **tx)
                .await?;
            }
        }
        ConversationKind::Group(group) => {
            let exists: Option<(bool,)> =
                sqlx::query_as("SELECT true FROM groups WHERE group_id = $1")
                    .bind(group.as_str())
                    .fetch_optional(&mut **tx)
                    .await?;
            let reason = if exists.is_none() {
                Some(Refusal::NoSuchGroup)
            } else if active_role(tx, group.as_str(), message.sender.as_str())
                .await?
                .is_none()
            {
                Some(Refusal::NotMember)
            } else {
                None
            };
            if let Some(reason) = reason {
                return refuse_message(tx, message, reason, seq_lock).await;
            }
        }
    }
    let (seq, mode): (i64, String) = sqlx::query_as(
        "UPDATE conversations SET last_seq = last_seq + 1, last_at = $2
         WHERE conversation_id = $1 RETURNING last_seq, mode",
    )
    .bind(conversation)
    .bind(message.created_at)
    .fetch_one(&mut **tx)
    .await?;
    sqlx::query(
        "INSERT INTO messages (conversation_id, seq, message_id, sender, body, client_msg_id, created_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7)",
    )
    .bind(conversation)
    .bind(seq)
    .bind(id)
    .bind(message.sender.as_str())
    .bind(&message.body)
    .bind(message.client_msg_id.as_deref())
    .bind(message.created_at)
    .execute(&mut **tx)
    .await?;
    // The sender has read everything up to their own message. The other person of a direct
    // conversation gets it counted; a group's members' counts are derived (conversation_state), so a
    // group message touches no member row but the sender's.
    sqlx::query(
        "UPDATE conversation_members
         SET delivered_seq = $2,
             last_activity = greatest(last_activity, $4),
             read_seq = CASE WHEN user_id = $3 THEN $2 ELSE read_seq END,
             unread = CASE WHEN user_id = $3 THEN 0 ELSE unread + 1 END
         WHERE conversation_id = $1 AND active AND (NOT derived OR user_id = $3)",
    )
    .bind(conversation)
    .bind(seq)
    .bind(message.sender.as_str())
    .bind(message.created_at)
    .execute(&mut **tx)
    .await?;
    // Push: an inbox entry for every active member, the sender's own too. Pull (a large group, read
    // diffusion): the sender's own entry only — 2 rows written whatever the group's size — and the
    // conversation's new position tells the members' sync scans that it advanced.
    let pulled = DeliveryMode::parse(&mode) == DeliveryMode::Pull;
    seq_lock.acquire(tx).await?;
    advance_position(tx, conversation).await?;
    let entries = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, conv_seq, message_id)
         SELECT m.user_id, nextval('sync_seq'), $2, 'message', $1, $3, $4
         FROM (SELECT user_id FROM conversation_members
               WHERE conversation_id = $1 AND active AND (NOT $5 OR user_id = $2)
               ORDER BY user_id) AS m
         ON CONFLICT DO NOTHING",
    )
    .bind(conversation)
    .bind(message.sender.as_str())
    .bind(seq)
    .bind(id)
    .bind(pulled)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(ImOutcome {
        applied: 1,
        sync_entries: entries,
        ..ImOutcome::default()
    })
}

/// Gives a pull-mode conversation a new position in the sync order (under the seq lock): every member's
/// next sync scan from below it reports the conversation as advanced.
async fn advance_position(tx: &mut Tx, conversation: &str) -> Result<(), sqlx::Error> {
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
async fn refuse_message(
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
    seq_lock.acquire(tx).await?;
    let entries = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, message_id)
         VALUES ($1, nextval('sync_seq'), $1, 'refused', $2, $3)
         ON CONFLICT DO NOTHING",
    )
    .bind(message.sender.as_str())
    .bind(message.conversation.as_str())
    .bind(message.message_id.as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    let mut outcome = ImOutcome::refused(reason);
    outcome.sync_entries = entries;
    Ok(outcome)
}

async fn apply_recall(
    tx: &mut Tx,
    policy: &Policy,
    recall: &MessageRecalled,
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
    if sender != recall.sender.as_str() {
        return Ok(ImOutcome::refused(Refusal::NoSuchMessage));
    }
    if already {
        return Ok(ImOutcome::duplicate());
    }
    if recall.recalled_at - created_at > policy.recall_window {
        return Ok(ImOutcome::refused(Refusal::RecallWindow));
    }
    let conversation = recall.conversation.as_str();
    sqlx::query("UPDATE messages SET recalled_at = $2, body = '' WHERE message_id = $1")
        .bind(&id)
        .bind(recall.recalled_at)
        .execute(&mut **tx)
        .await?;
    // It no longer counts for whoever had it delivered and unread.
    sqlx::query(
        "UPDATE conversation_members SET unread = unread - 1
         WHERE conversation_id = $1 AND active AND NOT derived AND user_id <> $2
           AND from_seq < $3 AND delivered_seq >= $3 AND read_seq < $3",
    )
    .bind(conversation)
    .bind(&sender)
    .bind(seq)
    .execute(&mut **tx)
    .await?;
    // A tombstone in every timeline that got the message, so devices that synced it learn of the
    // recall. A pull-mode group's members got it from the history: the conversation advancing, with the
    // recall's own position, tells them (only the sender's timeline gets an entry: O(1) rows there too).
    seq_lock.acquire(tx).await?;
    sqlx::query(
        "UPDATE messages SET recall_position = nextval('sync_seq')
         WHERE message_id = $1
           AND (SELECT mode FROM conversations WHERE conversation_id = $2) = 'pull'",
    )
    .bind(&id)
    .bind(conversation)
    .execute(&mut **tx)
    .await?;
    advance_position(tx, conversation).await?;
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
    .bind(&sender)
    .bind(seq)
    .bind(&id)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(ImOutcome {
        applied: 1,
        sync_entries: entries,
        ..ImOutcome::default()
    })
}

async fn apply_read(
    tx: &mut Tx,
    event: &SourcedEvent,
    read: &ReadMarked,
) -> Result<ImOutcome, sqlx::Error> {
    let member: Option<(bool, bool)> = sqlx::query_as(
        "SELECT active, read_src_partition = $3 AND read_src_offset >= $4
         FROM conversation_members WHERE user_id = $1 AND conversation_id = $2",
    )
    .bind(read.user.as_str())
    .bind(read.conversation.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .fetch_optional(&mut **tx)
    .await?;
    match member {
        None | Some((false, _)) => return Ok(ImOutcome::refused(Refusal::NotMember)),
        // A replayed marker: it was applied (or found stale) when it was new.
        Some((true, true)) => return Ok(ImOutcome::duplicate()),
        Some((true, false)) => {}
    }
    sqlx::query(
        "UPDATE conversation_members SET read_src_partition = $3, read_src_offset = $4
         WHERE user_id = $1 AND conversation_id = $2",
    )
    .bind(read.user.as_str())
    .bind(read.conversation.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?;
    // A group member has had everything up to the conversation's last seq (derived state).
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
    // Clamped to what was delivered, forward only; unread recounted from the messages themselves.
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
    Ok(if moved > 0 {
        ImOutcome::applied()
    } else {
        ImOutcome::duplicate()
    })
}
