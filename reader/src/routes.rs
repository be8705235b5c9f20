//! The read API's handlers: validate parameters, run one query, shape the page.

use std::sync::Arc;
use std::time::Duration;

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};
use httpkit::openapi::{
    BadRequest, Forbidden, InternalError, NoSuchRoute, Unauthorized, Unavailable,
};
use httpkit::{ApiError, QueryParams};
use schemas::api::{
    decode_cursor, AdvancedConversation, FeedPage, SyncPage, DEFAULT_PAGE_LIMIT, MAX_PAGE_LIMIT,
};
use schemas::db::DbFailure;
use schemas::{PostId, UserId};
use sqlx::PgPool;

use crate::db::ReadPool;
use crate::hub::Hub;
use crate::queries;

/// What the read handlers share: the connections for page reads, and the wake-up hub of long polls.
#[derive(Clone)]
pub struct ReadState {
    pub reads: ReadPool,
    /// For the multi-statement snapshots of [`sync_page`].
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    /// Cancelled when the server stops: a long poll then answers at once.
    pub shutdown: tokio_util::sync::CancellationToken,
}

impl axum::extract::FromRef<ReadState> for ReadPool {
    fn from_ref(state: &ReadState) -> ReadPool {
        state.reads.clone()
    }
}

pub fn router(state: ReadState) -> Router {
    Router::new()
        .route(
            "/openapi.json",
            httpkit::json_document(crate::openapi::document_json()),
        )
        .route("/v1/users/{user}/feed", get(feed))
        .route("/v1/users/{user}/sync", get(sync))
        .route("/v1/users/{user}/posts", get(posts))
        .with_state(state)
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

/// 503 while the database is unavailable (the client may retry); 500 for anything else, which is a
/// bug on our side and must not look like an outage.
pub(crate) fn database_error(err: sqlx::Error) -> ApiError {
    failure_response(schemas::db::classify(&err), &err)
}

/// The same for a page read ([`crate::db::ReadPool`]).
pub(crate) fn read_error(err: crate::db::ReadError) -> ApiError {
    failure_response(err.failure(), &err)
}

fn failure_response(failure: DbFailure, err: &dyn std::fmt::Display) -> ApiError {
    match failure {
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
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn feed(
    bearer: Bearer,
    State(reads): State<ReadPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<FeedPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let page = PageQuery::parse(&params)?;
    queries::feed(&reads, user.as_str(), page.cursor(), page.limit())
        .await
        .map(Json)
        .map_err(read_error)
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
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn posts(
    // An author's posts are public to every signed-in user, like a profile page.
    _bearer: Bearer,
    State(reads): State<ReadPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<FeedPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    let page = PageQuery::parse(&params)?;
    queries::store_timeline(&reads, user.as_str(), page.cursor(), page.limit())
        .await
        .map(Json)
        .map_err(read_error)
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
        ("wait" = Option<i64>, Query, minimum = 0, maximum = 60, description = "Long poll: when there is nothing after `after`, wait up to this many seconds for something to arrive (0, the default: answer at once)."),
    ),
    responses(
        (status = 200, description = "Entries after `after`, ascending seq (empty when a long poll's wait ended without news).", body = SyncPage),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn sync(
    bearer: Bearer,
    State(state): State<ReadState>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<SyncPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let limit = page_limit(&params)?;
    let after = params.int_in("after", 0, i64::MAX)?.unwrap_or(0);
    let wait = params.int_in("wait", 0, MAX_WAIT_SECS)?.unwrap_or(0);
    if wait == 0 {
        return sync_page(&state.reads, &state.pool, user.as_str(), after, limit)
            .await
            .map(Json);
    }
    // Subscribe before the first read: an entry committed between the read and the wait still wakes.
    let mut subscription = state.hub.subscribe(user.as_str());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait as u64);
    loop {
        let page = sync_page(&state.reads, &state.pool, user.as_str(), after, limit).await?;
        // Anything that moves the cursor answers, also a page of skipped (deleted) entries.
        if page.last_seq > after {
            return Ok(Json(page));
        }
        tokio::select! {
            () = subscription.woken() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(Json(page)),
            () = state.shutdown.cancelled() => return Ok(Json(page)),
        }
    }
}

/// Longest `wait` of a long poll, in seconds.
pub const MAX_WAIT_SECS: i64 = 60;

/// One page of a user's sync timeline after `after`: the entries, and the large groups that advanced
/// within the scanned range. Shared by `/sync`, the long poll, the WebSocket and the SSE stream.
///
/// `snapshots` runs the two-statement snapshot (a scan that found nothing, or a user whose large group
/// advanced): a transaction needs a connection of its own, which the shared page connections are not.
pub(crate) async fn sync_page(
    reads: &ReadPool,
    snapshots: &PgPool,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<SyncPage, ApiError> {
    // Most users have no large group that advanced: then one statement is the whole page.
    let (scan, in_large_group) = queries::sync_flagged(reads, user, after, limit)
        .await
        .map_err(read_error)?;
    if !in_large_group {
        return Ok(SyncPage {
            last_seq: scan.last_scanned_seq.unwrap_or(after),
            entries: scan.entries,
            conversations: Vec::new(),
            has_more: scan.has_more,
        });
    }
    let user = user.to_owned();
    // In a task of its own, to completion: a request that goes away must not cancel the transaction
    // halfway (a cancelled `BEGIN` leaves the pooled connection inside a transaction; seen under wrk).
    let pool = snapshots.clone();
    let (scan, conversations) =
        tokio::spawn(async move { snapshot_scan(&pool, &user, after, limit).await })
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "snapshot read task failed");
                ApiError::internal()
            })?
            .map_err(database_error)?;
    let last_position = conversations.iter().map(|c| c.position).max();
    let last_seq = scan
        .last_scanned_seq
        .into_iter()
        .chain(last_position)
        .max()
        .unwrap_or(after);
    Ok(SyncPage {
        entries: scan.entries,
        conversations,
        last_seq,
        has_more: scan.has_more,
    })
}

/// The scan and the large groups that advanced in its range, from one snapshot: a large group's
/// position read after an entry committed that the scan did not see would move the cursor past that
/// entry.
async fn snapshot_scan(
    pool: &PgPool,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<(queries::SyncScan, Vec<AdvancedConversation>), sqlx::Error> {
    let mut snapshot = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let scan = queries::sync(&mut *snapshot, user, after, limit).await?;
    // Large groups advanced within the scanned range; without more entries, up to now.
    let upto = if scan.has_more {
        scan.last_scanned_seq
    } else {
        None
    };
    let conversations = queries::advanced_conversations(&mut *snapshot, user, after, upto).await?;
    snapshot.commit().await?;
    Ok((scan, conversations))
}
