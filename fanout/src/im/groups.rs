//! Groups: creation, and membership changes carried out as [`super::membership`] decides them —
//! joins and additions, invitations and requests, role changes, leaves and removals — with the member
//! count, the members' conversation rows and the group's delivery mode kept up to date.

use chrono::{DateTime, Utc};
use schemas::{ConversationId, GroupCreated, HistoryVisibility, JoinRule, MembershipChange, Role};

use super::membership::{self, Actor, Decision, Pending, Request, Target};
use super::{ImOutcome, Refusal, Tx};
use crate::policy::{next_mode_between, DeliveryMode, Policy};
use crate::seq_lock::{SeqLock, SeqLockHeld};
use crate::sourced::SourcedEvent;

/// Creates a group with its owner as the first member; the same creation again is a duplicate,
/// another one for a taken id is refused.
pub(super) async fn apply_created(
    tx: &mut Tx,
    group: &GroupCreated,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    let created = sqlx::query(
        "INSERT INTO groups (group_id, name, group_type, description, owner, created_at, member_count,
                             join_rule, history)
         VALUES ($1, $2, $3, $4, $5, $6, 1, $7, $8)
         ON CONFLICT (group_id) DO NOTHING",
    )
    .bind(group.group.as_str())
    .bind(&group.name)
    .bind(group.group_type.as_deref())
    .bind(group.description.as_deref())
    .bind(group.owner.as_str())
    .bind(group.created_at)
    // A creation without a rule was written before rules existed, when every group was open.
    .bind(group.join_rule.unwrap_or(JoinRule::Open).as_str())
    .bind(group.history.unwrap_or(HistoryVisibility::Joined).as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    if created == 0 {
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
    super::settings::index_group(tx, group.group.as_str()).await?;
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
    let held = seq_lock.acquire(tx).await?;
    join_conversation(
        tx,
        &conversation,
        group.owner.as_str(),
        group.created_at,
        held,
    )
    .await?;
    Ok(ImOutcome::applied())
}

/// Makes `user` an active member of `conversation` from its current seq on: what was said before they
/// joined is neither delivered nor unread. A dormant user joins dormant ([`crate::activity`]); the seq
/// lock (`_held`) orders the join against their return or dormancy.
pub(super) async fn join_conversation(
    tx: &mut Tx,
    conversation: &ConversationId,
    user: &str,
    at: DateTime<Utc>,
    _held: SeqLockHeld<'_>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO conversation_members
             (user_id, conversation_id, from_seq, delivered_seq, read_seq, unread, active,
              last_activity, derived, dormant, dormant_seq)
         SELECT $1, c.conversation_id, c.last_seq, c.last_seq, c.last_seq, 0, true, $3,
                c.kind = 'group', d.dormant, CASE WHEN d.dormant THEN c.last_seq END
         FROM conversations c
         CROSS JOIN (SELECT coalesce((SELECT NOT active FROM user_activity WHERE user_id = $1),
                                     false) AS dormant) d
         -- A join applied after its user's account deletion (a replay) opens no row (crate::erasure).
         WHERE c.conversation_id = $2 AND NOT fanline_erased($1)
         ON CONFLICT (user_id, conversation_id) DO UPDATE
         SET from_seq = EXCLUDED.from_seq, delivered_seq = EXCLUDED.delivered_seq,
             read_seq = EXCLUDED.read_seq, unread = 0, active = true,
             last_activity = EXCLUDED.last_activity, derived = EXCLUDED.derived,
             dormant = EXCLUDED.dormant AND EXCLUDED.derived,
             dormant_seq = CASE WHEN EXCLUDED.derived THEN EXCLUDED.dormant_seq END
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
pub(super) async fn active_role(
    tx: &mut Tx,
    group: &str,
    user: &str,
) -> Result<Option<Role>, sqlx::Error> {
    let role: Option<(String,)> = sqlx::query_as(
        "SELECT role FROM group_members WHERE group_id = $1 AND user_id = $2 AND active",
    )
    .bind(group)
    .bind(user)
    .fetch_optional(&mut **tx)
    .await?;
    Ok(role.map(|(role,)| Role::parse(&role)))
}

/// The join rule of a group that exists and was not dissolved.
pub(super) async fn live_group(tx: &mut Tx, group: &str) -> Result<Option<JoinRule>, sqlx::Error> {
    let rule: Option<(String,)> =
        sqlx::query_as("SELECT join_rule FROM groups WHERE group_id = $1 AND dissolved_at IS NULL")
            .bind(group)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(rule.map(|(rule,)| JoinRule::parse(&rule)))
}

/// What is pending for `user` in `group`.
async fn pending(tx: &mut Tx, group: &str, user: &str) -> Result<Option<Pending>, sqlx::Error> {
    let kind: Option<(String,)> =
        sqlx::query_as("SELECT kind FROM group_pending WHERE group_id = $1 AND user_id = $2")
            .bind(group)
            .bind(user)
            .fetch_optional(&mut **tx)
            .await?;
    Ok(kind.map(|(kind,)| match kind.as_str() {
        "invitation" => Pending::Invitation,
        _ => Pending::Request,
    }))
}

/// A join, addition or role change (`Request::Add`), a leave or removal (`Request::Remove`) of a live
/// group, as [`membership::decide`] rules on it.
pub(super) async fn apply_membership(
    tx: &mut Tx,
    policy: &Policy,
    event: &SourcedEvent,
    change: &MembershipChange,
    request: Request,
    seq_lock: &mut SeqLock,
) -> Result<ImOutcome, sqlx::Error> {
    let group = change.group.as_str();
    let Some(rule) = live_group(tx, group).await? else {
        return Ok(ImOutcome::refused(Refusal::NoSuchGroup));
    };
    let target = Target {
        role: active_role(tx, group, change.user.as_str()).await?,
        pending: pending(tx, group, change.user.as_str()).await?,
    };
    let actor = if change.by == change.user {
        Actor::Themselves
    } else {
        Actor::Other(active_role(tx, group, change.by.as_str()).await?)
    };
    let conversation = ConversationId::group(&change.group);
    match membership::decide(request, actor, target, rule) {
        Decision::Refused => return Ok(ImOutcome::refused(Refusal::NotAllowed)),
        Decision::Unchanged => return Ok(ImOutcome::duplicate()),
        Decision::Join(_) if is_full(tx, policy, group).await? => {
            return Ok(ImOutcome::refused(Refusal::GroupFull));
        }
        Decision::Join(role) => {
            set_pending(tx, event, change, None).await?;
            set_member(tx, event, change, role).await?;
            count_member(tx, group, 1).await?;
            let held = seq_lock.acquire(tx).await?;
            let user = change.user.as_str();
            join_conversation(tx, &conversation, user, event.envelope.ts, held).await?;
            update_group_mode(tx, policy, &conversation, group).await?;
        }
        Decision::SetRole(role) => set_member(tx, event, change, role).await?,
        Decision::Leave => {
            deactivate_member(tx, event, change).await?;
            count_member(tx, group, -1).await?;
            leave_conversation(tx, &conversation, change.user.as_str()).await?;
            update_group_mode(tx, policy, &conversation, group).await?;
        }
        Decision::Invite => {
            set_pending(tx, event, change, Some(Pending::Invitation)).await?;
            let held = seq_lock.acquire(tx).await?;
            let entries = tell_invitee(tx, change, held).await?;
            return Ok(ImOutcome {
                applied: 1,
                sync_entries: entries,
                ..ImOutcome::default()
            });
        }
        Decision::Ask => set_pending(tx, event, change, Some(Pending::Request)).await?,
        Decision::Withdraw => set_pending(tx, event, change, None).await?,
    }
    Ok(ImOutcome::applied())
}

/// The `invitation` entry in the invitee's sync timeline (their devices learn of it live); returns the
/// entries written.
async fn tell_invitee(
    tx: &mut Tx,
    change: &MembershipChange,
    _held: SeqLockHeld<'_>,
) -> Result<u64, sqlx::Error> {
    // An erased invitee has no inbox (crate::erasure).
    let entries = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id)
         SELECT $1, nextval('sync_seq'), $2, 'invitation', $3 WHERE NOT fanline_erased($1)",
    )
    .bind(change.user.as_str())
    .bind(change.by.as_str())
    .bind(ConversationId::group(&change.group).as_str())
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(entries)
}

/// Whether the group has as many members as `policy` allows (what is pending stays pending).
async fn is_full(tx: &mut Tx, policy: &Policy, group: &str) -> Result<bool, sqlx::Error> {
    if policy.max_group_members <= 0 {
        return Ok(false);
    }
    let (members,): (i64,) = sqlx::query_as("SELECT member_count FROM groups WHERE group_id = $1")
        .bind(group)
        .fetch_one(&mut **tx)
        .await?;
    Ok(members >= policy.max_group_members)
}

/// Records what is pending for the change's user (an invitation by `by`, their request), or removes it.
async fn set_pending(
    tx: &mut Tx,
    event: &SourcedEvent,
    change: &MembershipChange,
    pending: Option<Pending>,
) -> Result<(), sqlx::Error> {
    let Some(pending) = pending else {
        sqlx::query("DELETE FROM group_pending WHERE group_id = $1 AND user_id = $2")
            .bind(change.group.as_str())
            .bind(change.user.as_str())
            .execute(&mut **tx)
            .await?;
        return Ok(());
    };
    let kind = match pending {
        Pending::Invitation => "invitation",
        Pending::Request => "request",
    };
    sqlx::query(
        "INSERT INTO group_pending (group_id, user_id, kind, by_user, created_at)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (group_id, user_id) DO UPDATE
         SET kind = EXCLUDED.kind, by_user = EXCLUDED.by_user, created_at = EXCLUDED.created_at",
    )
    .bind(change.group.as_str())
    .bind(change.user.as_str())
    .bind(kind)
    .bind(change.by.as_str())
    .bind(event.envelope.ts)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Makes the user an active member with `role` (the row names the event that last changed it).
async fn set_member(
    tx: &mut Tx,
    event: &SourcedEvent,
    change: &MembershipChange,
    role: Role,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO group_members (group_id, user_id, role, active, src_partition, src_offset)
         VALUES ($1, $2, $3, true, $4, $5)
         ON CONFLICT (group_id, user_id) DO UPDATE
         SET role = EXCLUDED.role, active = true, src_partition = EXCLUDED.src_partition,
             src_offset = EXCLUDED.src_offset, updated_at = now()",
    )
    .bind(change.group.as_str())
    .bind(change.user.as_str())
    .bind(role.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Makes the user an inactive member (the row stays; it names the event that last changed it).
async fn deactivate_member(
    tx: &mut Tx,
    event: &SourcedEvent,
    change: &MembershipChange,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE group_members SET active = false, src_partition = $3, src_offset = $4,
             updated_at = now()
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

/// Adds `delta` (±1) to the group's member count.
pub(super) async fn count_member(tx: &mut Tx, group: &str, delta: i64) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE groups SET member_count = member_count + $2 WHERE group_id = $1")
        .bind(group)
        .bind(delta)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// A member who left keeps the conversation in their list, with nothing left to read. (A group
/// member's delivered seq and activity are derived while active: they are fixed now.)
async fn leave_conversation(
    tx: &mut Tx,
    conversation: &ConversationId,
    user: &str,
) -> Result<(), sqlx::Error> {
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
    .bind(user)
    .bind(conversation.as_str())
    .execute(&mut **tx)
    .await?;
    Ok(())
}

/// Switches a group between push (a message goes into every member's inbox) and pull (read diffusion:
/// 2 rows per message, members find the conversation advanced in their sync scans) when its member
/// count crosses the thresholds. Members' state is derived in both modes (`conversation_state`), so a
/// switch changes nothing else.
pub(super) async fn update_group_mode(
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
