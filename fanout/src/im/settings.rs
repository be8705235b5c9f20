//! A group's settings and end: `group_updated` (name, description, join rule, history visibility, a
//! new owner, retention) and `group_dissolved`. Owner and admins change settings; only the owner hands
//! the group over (to an active member; the old owner becomes an admin), sets how long its messages
//! are kept (`crate::store_retention` removes them), or dissolves it.

use schemas::{ConversationId, GroupDissolved, GroupUpdated, Role};

use super::groups::{active_role, live_group};
use super::{ImOutcome, Refusal, Tx};
use crate::sourced::SourcedEvent;

/// Applies a change of settings, or refuses it.
pub(super) async fn apply_updated(
    tx: &mut Tx,
    event: &SourcedEvent,
    update: &GroupUpdated,
) -> Result<ImOutcome, sqlx::Error> {
    let group = update.group.as_str();
    if live_group(tx, group).await?.is_none() {
        return Ok(ImOutcome::refused(Refusal::NoSuchGroup));
    }
    let by = active_role(tx, group, update.by.as_str()).await?;
    let may = match by {
        Some(Role::Owner) => true,
        Some(Role::Admin) => update.owner.is_none() && update.retention_days.is_none(),
        _ => false,
    };
    if !may {
        return Ok(ImOutcome::refused(Refusal::NotAllowed));
    }
    if let Some(owner) = update.owner.as_ref().filter(|owner| **owner != update.by) {
        if active_role(tx, group, owner.as_str()).await?.is_none() {
            return Ok(ImOutcome::refused(Refusal::NotAllowed));
        }
        hand_over(tx, event, update, owner.as_str()).await?;
    }
    sqlx::query(
        "UPDATE groups SET name = coalesce($2, name),
             description = CASE WHEN $3::text IS NULL THEN description ELSE nullif($3, '') END,
             join_rule = coalesce($4, join_rule), history = coalesce($5, history),
             retention_days = CASE WHEN $6::integer IS NULL THEN retention_days
                                   ELSE nullif($6, 0) END
         WHERE group_id = $1",
    )
    .bind(group)
    .bind(update.name.as_deref())
    .bind(update.description.as_deref())
    .bind(update.join_rule.map(|rule| rule.as_str()))
    .bind(update.history.map(|history| history.as_str()))
    .bind(update.retention_days.map(|days| days as i32))
    .execute(&mut **tx)
    .await?;
    index_group(tx, group).await?;
    Ok(ImOutcome::applied())
}

/// Writes the searchable form of the group's name and description (`schemas::search`).
pub(super) async fn index_group(tx: &mut Tx, group: &str) -> Result<(), sqlx::Error> {
    let (name, description): (String, Option<String>) =
        sqlx::query_as("SELECT name, description FROM groups WHERE group_id = $1")
            .bind(group)
            .fetch_one(&mut **tx)
            .await?;
    let text = format!("{name} {}", description.unwrap_or_default());
    sqlx::query("UPDATE groups SET search = $2::tsvector WHERE group_id = $1")
        .bind(group)
        .bind(schemas::search::document(&text))
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Makes `owner` the group's owner and its old owner (`update.by`) an admin.
async fn hand_over(
    tx: &mut Tx,
    event: &SourcedEvent,
    update: &GroupUpdated,
    owner: &str,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE group_members
         SET role = CASE WHEN user_id = $2 THEN 'owner' ELSE 'admin' END,
             src_partition = $4, src_offset = $5, updated_at = now()
         WHERE group_id = $1 AND user_id IN ($2, $3)",
    )
    .bind(update.group.as_str())
    .bind(owner)
    .bind(update.by.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?;
    sqlx::query("UPDATE groups SET owner = $2 WHERE group_id = $1")
        .bind(update.group.as_str())
        .bind(owner)
        .execute(&mut **tx)
        .await?;
    Ok(())
}

/// Dissolves a group: every member leaves (their rows stay, inactive, with nothing unread), what was
/// pending is dropped, and the group's row stays so its id is never given out again.
pub(super) async fn apply_dissolved(
    tx: &mut Tx,
    event: &SourcedEvent,
    dissolved: &GroupDissolved,
) -> Result<ImOutcome, sqlx::Error> {
    let group = dissolved.group.as_str();
    if live_group(tx, group).await?.is_none() {
        return Ok(ImOutcome::refused(Refusal::NoSuchGroup));
    }
    // An operator's dissolution was authorised by ingest (the role is configuration, not state here).
    if !dissolved.by_operator
        && active_role(tx, group, dissolved.by.as_str()).await? != Some(Role::Owner)
    {
        return Ok(ImOutcome::refused(Refusal::NotAllowed));
    }
    sqlx::query("UPDATE groups SET dissolved_at = $2, member_count = 0 WHERE group_id = $1")
        .bind(group)
        .bind(event.envelope.ts)
        .execute(&mut **tx)
        .await?;
    sqlx::query(
        "UPDATE group_members SET active = false, src_partition = $2, src_offset = $3,
             updated_at = now()
         WHERE group_id = $1 AND active",
    )
    .bind(group)
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?;
    sqlx::query("DELETE FROM group_pending WHERE group_id = $1")
        .bind(group)
        .execute(&mut **tx)
        .await?;
    // As a leave does for one member (groups::leave_conversation): derived state is fixed now.
    sqlx::query(
        "UPDATE conversation_members cm
         SET active = false, unread = 0, delivered_seq = c.last_seq,
             last_activity = greatest(cm.last_activity, coalesce(c.last_at, cm.last_activity))
         FROM conversations c
         WHERE cm.conversation_id = $1 AND cm.active AND c.conversation_id = cm.conversation_id",
    )
    .bind(ConversationId::group(&dissolved.group).as_str())
    .execute(&mut **tx)
    .await?;
    Ok(ImOutcome::applied())
}
