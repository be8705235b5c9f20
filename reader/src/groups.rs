//! Groups as their users may see them: the group's card, its members, invitations and join requests.
//! Who sees what ([`access`]): an active member sees everything; a former member, an invited user and
//! one who asked to join see the card; anyone signed in sees an open group's card and members. To
//! everyone else a private (`invite`, `approval`) or dissolved group does not exist: `404`, the same
//! answer as for an id never used, so private groups cannot be found by trying names.

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use httpkit::openapi::{BadRequest, Forbidden, InternalError, Unauthorized, Unavailable};
use httpkit::{ApiError, QueryParams};
use schemas::api::{
    decode_member_cursor, decode_time_cursor, encode_member_cursor, encode_time_cursor, Group,
    Member, MemberPage, PendingMembership, PendingPage,
};
use schemas::{ConversationId, GroupId, HistoryVisibility, JoinRule, Role, UserId};
use sqlx::PgPool;

use crate::failure::database_error;
use crate::params::{cursor_param, page_limit, page_of};

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/groups/{group}", get(group))
        .route("/v1/groups/{group}/members", get(members))
        .route("/v1/groups/{group}/pending", get(pending))
        .route("/v1/users/{user}/invitations", get(invitations))
        .with_state(pool)
}

/// What the caller may see of a group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Access {
    /// Nothing: it answers as if it did not exist.
    Hidden,
    /// The card, not the members.
    Card,
    /// The card and the members (an open group's to anyone; a private one's to its members).
    Members,
}

/// What `caller` may see of a group: how much, their active role, the card.
struct Seen {
    access: Access,
    role: Option<Role>,
    card: Group,
}

/// What `caller` may see of `group` (`None`: no such group).
async fn access(pool: &PgPool, group: &GroupId, caller: &str) -> Result<Option<Seen>, ApiError> {
    type Row = (
        String,
        Option<String>,
        Option<String>,
        String,
        i64,
        DateTime<Utc>,
        String,
        String,
        bool,
        Option<bool>,
        Option<String>,
        bool,
        Option<i32>,
    );
    let row: Option<Row> = sqlx::query_as(
        "SELECT g.name, g.group_type, g.description, g.owner, g.member_count, g.created_at,
                g.join_rule, g.history, g.dissolved_at IS NOT NULL, m.active, m.role,
                EXISTS (SELECT 1 FROM group_pending WHERE group_id = g.group_id AND user_id = $2),
                g.retention_days
         FROM groups g
         LEFT JOIN group_members m ON m.group_id = g.group_id AND m.user_id = $2
         WHERE g.group_id = $1",
    )
    .bind(group.as_str())
    .bind(caller)
    .fetch_optional(pool)
    .await
    .map_err(database_error)?;
    let Some(row) = row else {
        return Ok(None);
    };
    let (name, group_type, description, owner, member_count, created_at) =
        (row.0, row.1, row.2, row.3, row.4, row.5);
    let (join_rule, history, dissolved) = (JoinRule::parse(&row.6), row.7, row.8);
    let (active, was_member, pending) = (row.9 == Some(true), row.9.is_some(), row.11);
    let role = active.then(|| Role::parse(row.10.as_deref().unwrap_or("member")));
    let public = join_rule == JoinRule::Open && !dissolved;
    let access = if active || public {
        Access::Members
    } else if was_member || pending {
        Access::Card
    } else {
        Access::Hidden
    };
    let card = Group {
        conversation_id: ConversationId::group(group).to_string(),
        group: group.to_string(),
        name,
        group_type,
        description,
        owner,
        member_count,
        created_at,
        join_rule,
        history: HistoryVisibility::parse(&history),
        dissolved,
        retention_days: row.12,
    };
    Ok(Some(Seen { access, role, card }))
}

/// What `caller` may see of `group`, `404` when it is nothing.
async fn visible(pool: &PgPool, group: &GroupId, caller: &str) -> Result<Seen, ApiError> {
    match access(pool, group, caller).await? {
        Some(seen) if seen.access != Access::Hidden => Ok(seen),
        _ => Err(no_such_group()),
    }
}

fn no_such_group() -> ApiError {
    ApiError {
        status: StatusCode::NOT_FOUND,
        message: "no such group".into(),
        field: Some("group".into()),
    }
}

fn forbidden(message: &'static str) -> ApiError {
    ApiError {
        status: StatusCode::FORBIDDEN,
        message: message.into(),
        field: Some("group".into()),
    }
}

/// Group.
///
/// The group's card: to its members and former members, to users it invited or who asked to join, and
/// to anyone signed in for an open group. `404` otherwise, as for an id never used.
#[utoipa::path(
    get, path = "/v1/groups/{group}", tag = "groups",
    params(("group" = schemas::GroupId, Path, description = "The group.")),
    responses(
        (status = 200, description = "The group.", body = Group),
        (status = 404, description = "No such group, or not one the caller may see.", body = schemas::api::ErrorBody),
        BadRequest, Unauthorized, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn group(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path(group): Path<String>,
) -> Result<Json<Group>, ApiError> {
    let group = GroupId::parse("group", &group)?;
    Ok(Json(visible(&pool, &group, bearer.user()).await?.card))
}

/// Group members.
///
/// The active members by user id: an open group's to anyone signed in, a private group's to its
/// members only (`403` to a former member or an invited user, `404` to everyone else).
#[utoipa::path(
    get, path = "/v1/groups/{group}/members", tag = "groups",
    params(
        ("group" = schemas::GroupId, Path, description = "The group."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of members.", body = MemberPage),
        (status = 404, description = "No such group, or not one the caller may see.", body = schemas::api::ErrorBody),
        BadRequest, Unauthorized, Forbidden, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn members(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path(group): Path<String>,
    params: QueryParams,
) -> Result<Json<MemberPage>, ApiError> {
    let group = GroupId::parse("group", &group)?;
    let limit = page_limit(&params)?;
    let after = cursor_param(&params, decode_member_cursor)?;
    if visible(&pool, &group, bearer.user()).await?.access != Access::Members {
        return Err(forbidden("only members see a private group's members"));
    }
    let rows: Vec<(String, String)> = sqlx::query_as(
        "SELECT user_id, role FROM group_members
         WHERE group_id = $1 AND active AND user_id > coalesce($2, '')
         ORDER BY user_id LIMIT $3",
    )
    .bind(group.as_str())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&pool)
    .await
    .map_err(database_error)?;
    let members: Vec<Member> = rows
        .into_iter()
        .map(|(user, role)| Member { user, role })
        .collect();
    let (members, next_cursor) = page_of(members, limit, |last| encode_member_cursor(&last.user));
    Ok(Json(MemberPage {
        members,
        next_cursor,
    }))
}

/// A group's pending rows ($1), newest first, after the cursor ($2 time, $3 user); $4 rows.
const GROUP_PENDING_SQL: &str =
    "SELECT p.group_id, g.name, p.user_id, p.kind, p.by_user, p.created_at
     FROM group_pending p JOIN groups g ON g.group_id = p.group_id
     WHERE p.group_id = $1
       AND (p.created_at, p.user_id) < (coalesce($2, 'infinity'::timestamptz), coalesce($3, ''))
     ORDER BY p.created_at DESC, p.user_id DESC LIMIT $4";

/// A user's pending rows ($1, index `group_pending_by_user`), newest first, after the cursor ($2 time,
/// $3 group); $4 rows.
const USER_PENDING_SQL: &str =
    "SELECT p.group_id, g.name, p.user_id, p.kind, p.by_user, p.created_at
     FROM group_pending p JOIN groups g ON g.group_id = p.group_id
     WHERE p.user_id = $1
       AND (p.created_at, p.group_id) < (coalesce($2, 'infinity'::timestamptz), coalesce($3, ''))
     ORDER BY p.created_at DESC, p.group_id DESC LIMIT $4";

type PendingRow = (String, String, String, String, String, DateTime<Utc>);

/// One page of pending rows of a group (`of_group`: $1 is a group) or of a user.
async fn pending_page(
    pool: &PgPool,
    of_group: bool,
    id: &str,
    params: &QueryParams,
) -> Result<PendingPage, ApiError> {
    let limit = page_limit(params)?;
    let (at, after) = cursor_param(params, decode_time_cursor)?.unzip();
    let sql = if of_group {
        GROUP_PENDING_SQL
    } else {
        USER_PENDING_SQL
    };
    let rows: Vec<PendingRow> = sqlx::query_as(sql)
        .bind(id)
        .bind(at)
        .bind(after)
        .bind(limit + 1)
        .fetch_all(pool)
        .await
        .map_err(database_error)?;
    let pending: Vec<PendingMembership> = rows
        .into_iter()
        .map(
            |(group, name, user, kind, by, created_at)| PendingMembership {
                group,
                name,
                user,
                kind,
                by,
                created_at,
            },
        )
        .collect();
    let (pending, next_cursor) = page_of(pending, limit, |last| {
        encode_time_cursor(
            last.created_at,
            if of_group { &last.user } else { &last.group },
        )
    });
    Ok(PendingPage {
        pending,
        next_cursor,
    })
}

/// Pending invitations and requests of a group.
///
/// Who was invited and has not answered, and who asked to join: to the group's owner and admins
/// (accept a request with `PUT …/members/{user}?by=`, decline it or revoke an invitation with
/// `DELETE`).
#[utoipa::path(
    get, path = "/v1/groups/{group}/pending", tag = "groups",
    params(
        ("group" = schemas::GroupId, Path, description = "The group."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of invitations and requests, newest first.", body = PendingPage),
        (status = 404, description = "No such group, or not one the caller may see.", body = schemas::api::ErrorBody),
        BadRequest, Unauthorized, Forbidden, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn pending(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path(group): Path<String>,
    params: QueryParams,
) -> Result<Json<PendingPage>, ApiError> {
    let group = GroupId::parse("group", &group)?;
    let seen = visible(&pool, &group, bearer.user()).await?;
    if !matches!(seen.role, Some(Role::Owner | Role::Admin)) {
        return Err(forbidden("only the owner and admins see who is pending"));
    }
    Ok(Json(
        pending_page(&pool, true, group.as_str(), &params).await?,
    ))
}

/// A user's invitations and requests.
///
/// The groups that invited the user (accept with `PUT /v1/groups/{group}/members/{user}`, decline with
/// `DELETE`) and the ones they asked to join, newest first.
#[utoipa::path(
    get, path = "/v1/users/{user}/invitations", tag = "groups",
    params(
        ("user" = schemas::UserId, Path, description = "The user (the caller)."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of invitations and requests, newest first.", body = PendingPage),
        BadRequest, Unauthorized, Forbidden, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn invitations(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<PendingPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    Ok(Json(
        pending_page(&pool, false, user.as_str(), &params).await?,
    ))
}
