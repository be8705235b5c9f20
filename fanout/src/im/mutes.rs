//! Mutes: a user mutes a conversation (its unread count stays in its row, out of their total), and an
//! owner or admin mutes a group member for a time (their messages written before it ends are refused:
//! [`super::messages`]).

use schemas::{ConversationMute, MemberMute, Role};

use super::groups::{active_role, live_group};
use super::{ImOutcome, Refusal, Tx};

/// Mutes (or unmutes) a conversation for one of its members; refused for anyone else.
pub(super) async fn apply_conversation(
    tx: &mut Tx,
    mute: &ConversationMute,
    muted: bool,
) -> Result<ImOutcome, sqlx::Error> {
    let rows = sqlx::query(
        "UPDATE conversation_members SET muted = $3 WHERE user_id = $1 AND conversation_id = $2",
    )
    .bind(mute.user.as_str())
    .bind(mute.conversation.as_str())
    .bind(muted)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(if rows == 0 {
        ImOutcome::refused(Refusal::NotMember)
    } else {
        ImOutcome::applied()
    })
}

/// Mutes a group member until the event's `until` (or lifts it): the owner mutes anyone but
/// themselves, an admin members only.
pub(super) async fn apply_member(tx: &mut Tx, mute: &MemberMute) -> Result<ImOutcome, sqlx::Error> {
    let group = mute.group.as_str();
    if live_group(tx, group).await?.is_none() {
        return Ok(ImOutcome::refused(Refusal::NoSuchGroup));
    }
    let by = active_role(tx, group, mute.by.as_str()).await?;
    let target = active_role(tx, group, mute.user.as_str()).await?;
    let may = match (by, target) {
        (_, None | Some(Role::Owner)) => false,
        (Some(Role::Owner), _) => true,
        (Some(Role::Admin), Some(Role::Member)) => true,
        _ => false,
    };
    if !may {
        return Ok(ImOutcome::refused(Refusal::NotAllowed));
    }
    sqlx::query("UPDATE group_members SET muted_until = $3 WHERE group_id = $1 AND user_id = $2")
        .bind(group)
        .bind(mute.user.as_str())
        .bind(mute.until)
        .execute(&mut **tx)
        .await?;
    Ok(ImOutcome::applied())
}
