//! The read API's handlers: validate parameters, run one query, shape the page.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use httpkit::openapi::{BadRequest, InternalError, NoSuchRoute, Unavailable};
use httpkit::{ApiError, QueryParams};
use schemas::api::{decode_cursor, FeedPage, SyncPage, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT};
use schemas::db::DbFailure;
use schemas::{PostId, UserId};
use sqlx::PgPool;

use crate::queries;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route(
            "/openapi.json",
            httpkit::json_document(crate::openapi::document_json()),
        )
        .route("/v1/users/{user}/feed", get(feed))
        .route("/v1/users/{user}/sync", get(sync))
        .route("/v1/users/{user}/posts", get(posts))
        .with_state(pool)
}

/// `limit` of any page: 1 to [`MAX_PAGE_LIMIT`], [`DEFAULT_PAGE_LIMIT`] when not given.
pub(crate) fn page_limit(params: &QueryParams) -> Result<i64, ApiError> {
    Ok(params
        .int_in("limit", 1, MAX_PAGE_LIMIT)?
        .unwrap_or(DEFAULT_PAGE_LIMIT))
}

/// `cursor` of any page, decoded by the page's own format: none when absent or empty, 400 when it is
/// not a cursor this API returned.
pub(crate) fn cursor_param<T>(
    params: &QueryParams,
    decode: impl Fn(&str) -> Option<T>,
) -> Result<Option<T>, ApiError> {
    match params.get("cursor") {
        None | Some("") => Ok(None),
        Some(raw) => decode(raw)
            .map(Some)
            .ok_or_else(|| ApiError::bad_field("cursor", "not a cursor returned by this API")),
    }
}

/// A read-only transaction whose statements all see one snapshot.
pub(crate) async fn read_snapshot(
    pool: &PgPool,
) -> Result<sqlx::Transaction<'static, sqlx::Postgres>, sqlx::Error> {
    let mut transaction = pool.begin().await?;
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *transaction)
        .await?;
    Ok(transaction)
}

/// 503 while the database is unavailable (the client may retry); 500 for anything else, which is a
/// bug on our side and must not look like an outage.
pub(crate) fn database_error(err: sqlx::Error) -> ApiError {
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

/// `limit` and `cursor` of a feed or store-timeline page: one struct documents them (utoipa) and
/// parses them, so the document and the checks cannot part.
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct PageQuery {
    /// Page size, 20 when not given.
    #[param(minimum = 1, maximum = 200)]
    limit: Option<i64>,
    /// `next_cursor` of the previous page; the first page without it.
    #[param(value_type = Option<String>)]
    cursor: Option<PostId>,
}

impl PageQuery {
    fn parse(params: &QueryParams) -> Result<Self, ApiError> {
        Ok(PageQuery {
            limit: params.int_in("limit", 1, MAX_PAGE_LIMIT)?,
            cursor: cursor_param(params, decode_cursor)?,
        })
    }

    fn limit(&self) -> i64 {
        self.limit.unwrap_or(DEFAULT_PAGE_LIMIT)
    }

    fn cursor(&self) -> Option<&str> {
        self.cursor.as_ref().map(PostId::as_str)
    }
}

/// Home feed.
///
/// The user's inbox (pushed posts) merged with the posts of the pull-mode authors they follow,
/// newest first, deduplicated. Pages never repeat or skip: new posts only appear on top.
#[utoipa::path(
    get, path = "/v1/users/{user}/feed", tag = "timelines",
    params(
        ("user" = schemas::UserId, Path, description = "Whose feed."),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page, newest first.", body = FeedPage),
        BadRequest, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(skip_all)]
pub async fn feed(
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<FeedPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    let page = PageQuery::parse(&params)?;
    queries::feed(&pool, user.as_str(), page.cursor(), page.limit())
        .await
        .map(Json)
        .map_err(database_error)
}

/// Store timeline.
///
/// The author's own posts, newest first.
#[utoipa::path(
    get, path = "/v1/users/{user}/posts", tag = "timelines",
    params(
        ("user" = schemas::UserId, Path, description = "The author."),
        PageQuery,
    ),
    responses(
        (status = 200, description = "A page, newest first.", body = FeedPage),
        BadRequest, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(skip_all)]
pub async fn posts(
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<FeedPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    let page = PageQuery::parse(&params)?;
    queries::store_timeline(&pool, user.as_str(), page.cursor(), page.limit())
        .await
        .map(Json)
        .map_err(database_error)
}

/// Sync timeline scan.
///
/// The entries of the user's inbox with a seq greater than `after`, ascending — posts, messages, recalls
/// and refusals — and the large groups (read-diffused) that advanced since. A device keeps the
/// `last_seq` of each answer and polls with it as `after`: it never misses an entry or a group.
#[utoipa::path(
    get, path = "/v1/users/{user}/sync", tag = "timelines",
    params(
        ("user" = schemas::UserId, Path, description = "Whose sync timeline."),
        ("after" = Option<i64>, Query, minimum = 0, description = "The last seq the device has; 0 when not given."),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 200, description = "Most entries, 20 when not given."),
    ),
    responses(
        (status = 200, description = "Entries after `after`, ascending seq.", body = SyncPage),
        BadRequest, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(skip_all)]
pub async fn sync(
    State(pool): State<PgPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<SyncPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    let limit = page_limit(&params)?;
    let after = params.int_in("after", 0, i64::MAX)?.unwrap_or(0);
    // One snapshot for both reads: a large group's position read after an entry committed that the scan
    // did not see would move the cursor past that entry.
    let mut snapshot = read_snapshot(&pool).await.map_err(database_error)?;
    let scan = queries::sync(&mut *snapshot, user.as_str(), after, limit)
        .await
        .map_err(database_error)?;
    let entries = scan.entries;
    let has_more = scan.has_more;
    // Large groups advanced within the scanned range; without more entries, up to now.
    let upto = if has_more {
        scan.last_scanned_seq
    } else {
        None
    };
    let conversations = queries::advanced_conversations(&mut *snapshot, user.as_str(), after, upto)
        .await
        .map_err(database_error)?;
    snapshot.commit().await.map_err(database_error)?;
    let last_position = conversations.iter().map(|c| c.position).max();
    let last_seq = scan
        .last_scanned_seq
        .into_iter()
        .chain(last_position)
        .max()
        .unwrap_or(after);
    Ok(Json(SyncPage {
        entries,
        conversations,
        last_seq,
        has_more,
    }))
}
