//! Caps on how much of the graph one user or group may hold (issue 21): follows per user, groups per
//! user, members per group. Checked where a write enters, from Postgres, so the client hears `409`
//! with the reason at once and the log holds only writes within the caps. Follows and memberships of
//! one user are spread over many keys (followees, groups), where no fanout partition sees them all;
//! the member cap is also fanout's rule, on the group's key, so a replay refuses the same joins.
//! Concurrent writes can overshoot a per-user cap by the requests in flight (docs/limits.md).

use axum::http::StatusCode;
use httpkit::ApiError;
use schemas::{GroupId, UserId};
use sqlx::PgPool;

/// The caps' flags (0: no cap).
#[derive(Debug, Clone, clap::Args)]
pub struct CapArgs {
    /// The most users one user may follow (0: no cap).
    #[arg(long, env = "FANLINE_MAX_FOLLOWS_PER_USER", default_value_t = schemas::DEFAULT_MAX_FOLLOWS_PER_USER)]
    pub max_follows_per_user: i64,

    /// The most groups one user may be a member of (0: no cap).
    #[arg(long, env = "FANLINE_MAX_GROUPS_PER_USER", default_value_t = schemas::DEFAULT_MAX_GROUPS_PER_USER)]
    pub max_groups_per_user: i64,

    /// The most members a group may have (0: no cap); fanout's `FANLINE_MAX_GROUP_MEMBERS` should
    /// match.
    #[arg(long, env = "FANLINE_MAX_GROUP_MEMBERS", default_value_t = schemas::DEFAULT_MAX_GROUP_MEMBERS)]
    pub max_group_members: i64,
}

impl CapArgs {
    /// No caps (tests and embedding).
    pub fn none() -> Self {
        CapArgs {
            max_follows_per_user: 0,
            max_groups_per_user: 0,
            max_group_members: 0,
        }
    }
}

/// The caps and where the counts are read.
pub struct Caps {
    args: CapArgs,
    pool: PgPool,
}

fn over(field: &'static str, message: String) -> ApiError {
    ApiError {
        status: StatusCode::CONFLICT,
        message: message.into(),
        field: Some(field.into()),
    }
}

fn unavailable(err: sqlx::Error) -> ApiError {
    tracing::warn!(error = %err, "cannot read the counts the caps need");
    ApiError::unavailable("cannot check the caps now; try again")
}

impl Caps {
    pub fn new(args: CapArgs, pool: PgPool) -> Self {
        Caps { args, pool }
    }

    /// `409` naming `user` when they follow as many users as allowed.
    pub async fn follow(&self, user: &UserId) -> Result<(), ApiError> {
        let max = self.args.max_follows_per_user;
        if max <= 0 {
            return Ok(());
        }
        let follows: i64 =
            sqlx::query_scalar("SELECT count(*) FROM follows WHERE follower = $1 AND active")
                .bind(user.as_str())
                .fetch_one(&self.pool)
                .await
                .map_err(unavailable)?;
        if follows >= max {
            return Err(over(
                "user",
                format!(
                    "you follow {follows} users, the most allowed ({max}): unfollow someone first"
                ),
            ));
        }
        Ok(())
    }

    /// `409` naming `field` when `user` is in as many groups as allowed (not counting `group`, which
    /// they may be in already: a role change).
    pub async fn join(
        &self,
        field: &'static str,
        user: &UserId,
        group: &GroupId,
    ) -> Result<(), ApiError> {
        let max = self.args.max_groups_per_user;
        if max <= 0 {
            return Ok(());
        }
        let groups: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM conversation_members
             WHERE user_id = $1 AND derived AND active AND conversation_id <> 'g:' || $2",
        )
        .bind(user.as_str())
        .bind(group.as_str())
        .fetch_one(&self.pool)
        .await
        .map_err(unavailable)?;
        if groups >= max {
            return Err(over(
                field,
                format!("{user} is in {groups} groups, the most allowed ({max})"),
            ));
        }
        Ok(())
    }

    /// `409` naming `group` when it has as many members as allowed and `user` is not one of them.
    pub async fn members(&self, group: &GroupId, user: &UserId) -> Result<(), ApiError> {
        let max = self.args.max_group_members;
        if max <= 0 {
            return Ok(());
        }
        let full: Option<bool> = sqlx::query_scalar(
            "SELECT g.member_count >= $3 AND NOT EXISTS (
                        SELECT 1 FROM group_members m
                        WHERE m.group_id = g.group_id AND m.user_id = $2 AND m.active)
             FROM groups g WHERE g.group_id = $1",
        )
        .bind(group.as_str())
        .bind(user.as_str())
        .bind(max)
        .fetch_optional(&self.pool)
        .await
        .map_err(unavailable)?;
        if full == Some(true) {
            return Err(over(
                "group",
                format!("the group has {max} members, the most allowed"),
            ));
        }
        Ok(())
    }
}
