//! The users a user blocked (`blocks`, written by fanout from `user_blocked` events), to themselves only.

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use httpkit::openapi::{BadRequest, Forbidden, InternalError, Unauthorized, Unavailable};
use httpkit::{ApiError, QueryParams};
use schemas::api::{decode_member_cursor, encode_member_cursor, BlockPage, Blocked};
use schemas::UserId;
use sqlx::PgPool;

use crate::failure::database_error;
use crate::params::{cursor_param, page_limit, page_of};

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/users/{user}/blocks", get(blocks))
        .with_state(pool)
}

/// Blocked users.
///
/// The users the caller blocked, by user id (block with `PUT /v1/users/{user}/blocks/{target}` at
/// ingest, lift with `DELETE`). Whom others blocked is never shown.
#[utoipa::path(
    get, path = "/v1/users/{user}/blocks", tag = "users",
    params(
        ("user" = schemas::UserId, Path, description = "The user (the caller)."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Page size, 20 when not given."),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page."),
    ),
    responses(
        (status = 200, description = "A page of blocked users.", body = BlockPage),
        BadRequest, Unauthorized, Forbidden, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn blocks(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<BlockPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let limit = page_limit(&params)?;
    let after = cursor_param(&params, decode_member_cursor)?;
    let rows: Vec<(String, DateTime<Utc>)> = sqlx::query_as(
        "SELECT target, created_at FROM blocks
         WHERE blocker = $1 AND target > coalesce($2, '')
         ORDER BY target LIMIT $3",
    )
    .bind(user.as_str())
    .bind(after)
    .bind(limit + 1)
    .fetch_all(&pool)
    .await
    .map_err(database_error)?;
    let blocked: Vec<Blocked> = rows
        .into_iter()
        .map(|(user, since)| Blocked { user, since })
        .collect();
    let (blocked, next_cursor) = page_of(blocked, limit, |last| encode_member_cursor(&last.user));
    Ok(Json(BlockPage {
        blocked,
        next_cursor,
    }))
}
