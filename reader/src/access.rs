//! Who may read a conversation: the one check every conversation read shares (history, receipts).

use authkit::Bearer;
use axum::http::StatusCode;
use httpkit::ApiError;
use schemas::ids::ConversationKind;
use schemas::{ConversationId, UserId};
use sqlx::PgPool;

use crate::failure::database_error;

/// `403` unless the caller is one of a direct conversation's two users or an active member of the
/// group (a former member's history access ended when they left). Returns the seq the caller's
/// history starts after: 0, or, in a group whose history visibility is `joined`, the conversation's
/// seq when they (last) joined.
pub(crate) async fn require_participant(
    pool: &PgPool,
    bearer: &Bearer,
    conversation: &ConversationId,
) -> Result<i64, ApiError> {
    let caller = UserId::parse("token", bearer.user())?;
    let floor = match conversation.kind() {
        ConversationKind::Direct(..) => conversation.is_direct_between(&caller).then_some(0),
        ConversationKind::Group(group) => sqlx::query_scalar::<_, i64>(
            "SELECT CASE WHEN g.history = 'shared' THEN 0 ELSE cm.from_seq END
             FROM group_members gm
             JOIN groups g ON g.group_id = gm.group_id
             JOIN conversation_members cm ON cm.user_id = gm.user_id AND cm.conversation_id = $3
             WHERE gm.group_id = $1 AND gm.user_id = $2 AND gm.active",
        )
        .bind(group.as_str())
        .bind(caller.as_str())
        .bind(conversation.as_str())
        .fetch_optional(pool)
        .await
        .map_err(database_error)?,
    };
    floor.ok_or_else(|| ApiError {
        status: StatusCode::FORBIDDEN,
        message: "only the conversation's members may read it".into(),
        field: Some("conversation".into()),
    })
}
