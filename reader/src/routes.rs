//! The read API's handlers: validate parameters, run one query, shape the page.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use httpkit::{ApiError, QueryParams};
use schemas::api::{decode_cursor, FeedPage, SyncPage, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use schemas::db::DbFailure;
use schemas::UserId;
use sqlx::PgPool;

use crate::queries;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/users/{user}/feed", get(feed))
        .route("/v1/users/{user}/sync", get(sync))
        .route("/v1/users/{user}/posts", get(posts))
        .with_state(pool)
}

/// 503 while the database is unavailable (the client may retry); 500 for anything else, which is a
/// bug on our side and must not look like an outage.
fn database_error(err: sqlx::Error) -> ApiError {
    match schemas::db::classify(&err) {
        DbFailure::Unavailable => {
            tracing::warn!(error = %err, "database unavailable");
            ApiError::unavailable("database unavailable")
        }
        DbFailure::Refused | DbFailure::Bug => {
            tracing::error!(error = %err, "query failed");
            ApiError::internal()
        }
    }
}

struct PageRequest {
    user: UserId,
    limit: i64,
    cursor: Option<String>,
}

fn page_request(user: &str, params: &QueryParams) -> Result<PageRequest, ApiError> {
    let user = UserId::parse("user", user)?;
    let limit = params
        .int_in("limit", 1, MAX_PAGE_LIMIT)?
        .unwrap_or(DEFAULT_PAGE_LIMIT);
    let cursor = match params.get("cursor") {
        None | Some("") => None,
        Some(raw) => Some(
            decode_cursor(raw)
                .ok_or_else(|| ApiError::bad_field("cursor", "not a cursor returned by this API"))?
                .as_str()
                .to_owned(),
        ),
    };
    Ok(PageRequest {
        user,
        limit,
        cursor,
    })
}

#[tracing::instrument(skip_all)]
async fn feed(
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<FeedPage>, ApiError> {
    let request = page_request(&user, &params)?;
    let page = queries::feed(
        &pool,
        request.user.as_str(),
        request.cursor.as_deref(),
        request.limit,
    )
    .await
    .map_err(database_error)?;
    Ok(Json(page))
}

#[tracing::instrument(skip_all)]
async fn posts(
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<FeedPage>, ApiError> {
    let request = page_request(&user, &params)?;
    let page = queries::store_timeline(
        &pool,
        request.user.as_str(),
        request.cursor.as_deref(),
        request.limit,
    )
    .await
    .map_err(database_error)?;
    Ok(Json(page))
}

#[tracing::instrument(skip_all)]
async fn sync(
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<SyncPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    let limit = params
        .int_in("limit", 1, MAX_PAGE_LIMIT)?
        .unwrap_or(DEFAULT_PAGE_LIMIT);
    let after = params.int_in("after", 0, i64::MAX)?.unwrap_or(0);
    let scan = queries::sync(&pool, user.as_str(), after, limit)
        .await
        .map_err(database_error)?;
    let entries = scan.entries;
    let has_more = scan.has_more;
    let last_seq = scan.last_scanned_seq.unwrap_or(after);
    Ok(Json(SyncPage {
        entries,
        last_seq,
        has_more,
    }))
}
