//! The read API's handlers: validate parameters, run one query, shape the page.

use std::sync::Arc;
use std::time::Duration;

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use httpkit::openapi::{
    BadRequest, Forbidden, InternalError, NoSuchRoute, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::{ApiError, ClientAddress, QueryParams};
use schemas::api::{FeedPage, SyncPage, MAX_WAIT_SECS};
use schemas::UserId;
use sqlx::PgPool;

use crate::db::ReadPool;
use crate::failure::read_error;
use crate::hub::Hub;
use crate::params::{page_limit, PageQuery};
use crate::presence::Presence;
use crate::queries;
use crate::sync::sync_page;

/// What the read handlers share: the connections for page reads, and the wake-up hub of long polls.
#[derive(Clone)]
pub struct ReadState {
    pub reads: ReadPool,
    /// For the multi-statement snapshots of [`sync_page`](crate::sync::sync_page).
    pub pool: PgPool,
    pub hub: Arc<Hub>,
    /// Cancelled when the server stops: a long poll then answers at once.
    pub shutdown: tokio_util::sync::CancellationToken,
    /// Waiting long polls per user and address.
    pub long_polls: Arc<crate::caps::Caps>,
}

impl axum::extract::FromRef<ReadState> for ReadPool {
    fn from_ref(state: &ReadState) -> ReadPool {
        state.reads.clone()
    }
}

pub fn router(state: ReadState) -> Router {
    Router::new()
        .route("/v1/users/{user}/feed", get(feed))
        .route("/v1/users/{user}/sync", get(sync))
        .route("/v1/users/{user}/posts", get(posts))
        .with_state(state)
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
    Extension(presence): Extension<Arc<Presence>>,
    State(reads): State<ReadPool>,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Json<FeedPage>, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let page = PageQuery::parse(&params)?;
    presence.arrive(&user).await?;
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
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, TooManyRequests, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn sync(
    bearer: Bearer,
    Extension(presence): Extension<Arc<Presence>>,
    State(state): State<ReadState>,
    client: ClientAddress,
    Path(user): Path<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let limit = page_limit(&params)?;
    let after = params.int_in("after", 0, i64::MAX)?.unwrap_or(0);
    let wait = params.int_in("wait", 0, MAX_WAIT_SECS)?.unwrap_or(0);
    presence.arrive(&user).await?;
    if wait == 0 {
        return sync_page(&state.reads, &state.pool, user.as_str(), after, limit)
            .await
            .map(|page| Json(page).into_response());
    }
    let _slot = match state.long_polls.enter(user.as_str(), client) {
        Ok(slot) => slot,
        Err(full) => return Ok(full.into_response()),
    };
    // Subscribe before the first read: an entry committed between the read and the wait still wakes.
    let mut subscription = state.hub.subscribe(user.as_str());
    let deadline = tokio::time::Instant::now() + Duration::from_secs(wait as u64);
    loop {
        let page = sync_page(&state.reads, &state.pool, user.as_str(), after, limit).await?;
        // Anything that moves the cursor answers, also a page of skipped (deleted) entries.
        if page.last_seq > after {
            return Ok(Json(page).into_response());
        }
        tokio::select! {
            () = subscription.woken() => {}
            () = tokio::time::sleep_until(deadline) => return Ok(Json(page).into_response()),
            () = state.shutdown.cancelled() => return Ok(Json(page).into_response()),
        }
    }
}
