//! The write API. Every handler validates, builds one event and answers `202` only after the broker
//! acknowledged it.

use std::sync::Arc;

use authkit::Bearer;
use axum::extract::DefaultBodyLimit;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::Extension;
use axum::{Json, Router};
use httpkit::openapi::{
    BadRequest, BodyRejected, Forbidden, NoSuchRoute, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::{ApiError, JsonBody, QueryParams};
use schemas::api::{
    Accepted, BatchItemResult, BatchRequest, BatchResponse, CreatePostRequest, Registration,
    MAX_BATCH_POSTS,
};
use schemas::{AccountRegistered, Envelope, FollowChange, PostDeleted, PostId, UserId};

use kafkakit::{Acknowledged, EventProducer};

pub fn router(producer: Arc<EventProducer>, batch_body_limit_bytes: usize) -> Router {
    Router::new()
        .route("/v1/accounts", post(register))
        .route("/v1/accounts/{user}", delete(delete_account))
        .route("/v1/posts", post(create_post))
        .route(
            "/v1/posts/batch",
            post(create_posts).layer(DefaultBodyLimit::max(batch_body_limit_bytes)),
        )
        .route(
            "/v1/posts/{post_id}",
            delete(delete_post).patch(crate::revision_routes::edit_post),
        )
        .route(
            "/v1/users/{user}/following/{target}",
            put(follow).delete(unfollow),
        )
        .with_state(producer)
}

/// Register.
///
/// Hashes the password (argon2id) and appends an `account_registered` event keyed by the user; the
/// account can log in (`POST /v1/sessions` at the reader) once fanout applied it, typically well under
/// a second later. New ids are lowercase. A taken id: `409`, unless its registration is still on its
/// way to fanout — then the first one wins and a later one's password never logs in. An id without an
/// account that holds data from before (posts, messages, followers): `409` unless `claim_code` is the
/// one an operator issued for it.
#[utoipa::path(
    post, path = "/v1/accounts", tag = "accounts",
    request_body = Registration,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        (status = 409, description = "The id is taken, or holds data and needs a claim code.", body = schemas::api::ErrorBody),
        BadRequest, BodyRejected, TooManyRequests, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn register(
    State(producer): State<Arc<EventProducer>>,
    Extension(limiter): Extension<Arc<authkit::AddressLimiter>>,
    Extension(directory): Extension<Arc<authkit::AccountDirectory>>,
    Extension(key): Extension<Arc<authkit::TokenKey>>,
    client: httpkit::ClientAddress,
    JsonBody(request): JsonBody<Registration>,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &request.user)?;
    user.check_registrable("user")?;
    authkit::validate_password(&request.password)
        .map_err(|message| ApiError::bad_field("password", message))?;
    if let Err(wait) = limiter.check(client.0) {
        tracing::warn!(address = %client.0, "registration rate-limited");
        return Ok(httpkit::error::too_many_requests(
            "too many registrations from this address: wait and try again",
            wait,
        ));
    }
    // After the address's budget: the lookup answers which ids exist, and costs a query.
    check_claim(&directory, &key, &user, request.claim_code.as_deref()).await?;
    let password_hash = authkit::hash_password_rationed(request.password)
        .await
        .map_err(|err| match err {
            authkit::HashingError::Busy => ApiError::unavailable("too many registrations at once"),
            authkit::HashingError::Failed(_) => {
                tracing::error!(error = %err, "password hashing failed");
                ApiError::internal()
            }
        })?;
    let envelope = Envelope::account_registered(AccountRegistered {
        user,
        password_hash,
    });
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, None, ack))
}

/// Delete my account.
///
/// Appends `account_deleted` keyed by the user. Once fanout applied it (well under a second): the
/// profile, the account and its password, the contents of every post and message the user wrote
/// (tombstones: ids and seqs stay), their inbox, contact list, devices and sessions are gone — open
/// sockets and streams close, tokens are refused — and within seconds their memberships, follows and
/// blocks are ended (a group they own passes to its longest-standing admin or member). The id is
/// never registered again. What the Kafka log keeps, and for how long, is the operator's setting: README "Account
/// deletion". Clients should ask for the password again (a fresh login) before offering this.
#[utoipa::path(
    delete, path = "/v1/accounts/{user}", tag = "accounts",
    params(("user" = schemas::UserId, Path, description = "The account: the token's own.")),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn delete_account(
    bearer: authkit::Bearer,
    State(producer): State<Arc<EventProducer>>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    let envelope = Envelope::account_deleted(schemas::AccountDeleted {
        by: user.clone(),
        user,
    });
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, None, ack))
}

/// Who may register `user`: anyone when the id is free; nobody when it has an account; for an id
/// that holds data without an account (squatting it would take over its inbox), only the bearer of
/// its claim code.
async fn check_claim(
    directory: &authkit::AccountDirectory,
    key: &authkit::TokenKey,
    user: &UserId,
    claim_code: Option<&str>,
) -> Result<(), ApiError> {
    let conflict = |message: &'static str, field: &'static str| ApiError {
        status: StatusCode::CONFLICT,
        message: message.into(),
        field: Some(field.into()),
    };
    match directory.status(user).await? {
        authkit::IdStatus::Free => Ok(()),
        authkit::IdStatus::Account => Err(conflict("this id is taken", "user")),
        authkit::IdStatus::Erased => Err(conflict(
            "this id belonged to a deleted account and is not available",
            "user",
        )),
        authkit::IdStatus::HoldsData => match claim_code {
            Some(code) if key.is_claim_code(user.as_str(), code) => Ok(()),
            Some(_) => Err(conflict("not the claim code of this id", "claim_code")),
            None => Err(conflict(
                "this id holds data from before it had an account: ask the operator for its claim code",
                "claim_code",
            )),
        },
    }
}

fn accepted(envelope: &Envelope, post_id: Option<&PostId>, ack: Acknowledged) -> Response {
    let body = Accepted {
        post_id: post_id.map(|id| id.as_str().to_owned()),
        ..Accepted::of(&envelope.id, ack.partition, ack.offset)
    };
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// Post.
///
/// Appends a `post_created` event and answers once the broker acknowledged it. Retrying with the same
/// `(author, message_id)` never creates a second post.
#[utoipa::path(
    post, path = "/v1/posts", tag = "posts",
    request_body = CreatePostRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create_post(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(attachments): Extension<crate::attachment_routes::Attachments>,
    JsonBody(request): JsonBody<CreatePostRequest>,
) -> Result<Response, ApiError> {
    let post = request.into_event()?;
    bearer.require_user("author", &post.author)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Post, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let (blobs, author) = (attachments.blobs.as_deref(), post.author.as_str());
    blobkit::check_content(blobs, &post.content, author, blobkit::Age::Fresh).await?;
    let post_id = post.post_id.clone();
    let envelope = Envelope::post_created(post);
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, Some(&post_id), ack))
}

/// Post up to 500 posts.
///
/// Every item is validated and produced like a single post, concurrently; the answer lists each item's
/// status (202, or the 400/413/503 the single call would give) in request order.
#[utoipa::path(
    post, path = "/v1/posts/batch", tag = "posts",
    request_body = BatchRequest,
    responses(
        (status = 200, description = "One result per item, in request order.", body = BatchResponse),
        BadRequest, TooManyRequests, Unauthorized, BodyRejected,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create_posts(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(attachments): Extension<crate::attachment_routes::Attachments>,
    JsonBody(request): JsonBody<BatchRequest>,
) -> Result<Response, ApiError> {
    if request.posts.is_empty() || request.posts.len() > MAX_BATCH_POSTS {
        return Err(ApiError::bad_field(
            "posts",
            format!("must hold 1 to {MAX_BATCH_POSTS} posts"),
        ));
    }
    // Every item counts (each must be the token's user's own post).
    let count = request.posts.len() as u32;
    let burst = writes.burst(authkit::WriteKind::Post);
    if count > burst {
        return Err(ApiError::bad_field(
            "posts",
            format!("this server's write budget allows at most {burst} posts at once"),
        ));
    }
    if let Err(limited) = writes.admit(authkit::WriteKind::Post, bearer.user(), count) {
        return Ok(limited.into_response());
    }
    let sends = request.posts.into_iter().enumerate().map(|(index, item)| {
        let producer = producer.clone();
        let bearer = bearer.clone();
        let attachments = attachments.clone();
        async move {
            let prefix = format!("posts[{index}].");
            let post =
                httpkit::parse_value::<CreatePostRequest>(item, &prefix).and_then(|request| {
                    let in_item = |mut err: ApiError| {
                        err.field = err.field.map(|f| format!("{prefix}{f}").into());
                        err
                    };
                    let post = request
                        .into_event()
                        .map_err(ApiError::from)
                        .map_err(in_item)?;
                    bearer
                        .require_user("author", &post.author)
                        .map_err(in_item)?;
                    Ok(post)
                });
            let post = match post {
                Ok(post) => post,
                Err(err) => return failed(err),
            };
            let blobs = attachments.blobs.as_deref();
            let author = post.author.as_str();
            let checked = blobkit::check_content(blobs, &post.content, author, blobkit::Age::Fresh);
            if let Err(err) = checked.await {
                let mut err = ApiError::from(err);
                err.field = err.field.map(|f| format!("{prefix}{f}").into());
                return failed(err);
            }
            let post_id = post.post_id.to_string();
            let envelope = Envelope::post_created(post);
            match producer.send(&envelope).await {
                Ok(ack) => BatchItemResult {
                    status: StatusCode::ACCEPTED.as_u16(),
                    post_id: Some(post_id),
                    event_id: Some(envelope.id.clone()),
                    partition: Some(ack.partition),
                    offset: Some(ack.offset),
                    error: None,
                    field: None,
                },
                Err(err) => failed(err.into()),
            }
        }
    });
    let results = futures::future::join_all(sends).await;
    Ok(Json(BatchResponse { results }).into_response())
}

fn failed(err: ApiError) -> BatchItemResult {
    BatchItemResult {
        status: err.status.as_u16(),
        post_id: None,
        event_id: None,
        partition: None,
        offset: None,
        error: Some(err.message.into_owned()),
        field: err.field.map(|f| f.into_owned()),
    }
}

/// Delete a post.
///
/// Appends a `post_deleted` event on the author's key, so it is applied after the create; the post
/// disappears from every timeline and feed. A retried duplicate's id deletes the post it duplicates.
#[utoipa::path(
    delete, path = "/v1/posts/{post_id}", tag = "posts",
    params(
        ("post_id" = schemas::PostId, Path, description = "The post to delete."),
        ("author" = schemas::UserId, Query, description = "The post's author."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn delete_post(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Path(post_id): Path<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let post_id = PostId::parse("post_id", &post_id)?;
    let author = params
        .get("author")
        .ok_or_else(|| ApiError::bad_field("author", "required: the post's author"))?;
    let author = UserId::parse("author", author)?;
    bearer.require_user("author", &author)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Post, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let envelope = Envelope::post_deleted(PostDeleted { post_id, author });
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, None, ack))
}

/// Follow.
///
/// Appends a `followed` event on the followee's key: `user` follows `target`. `404` naming `target`
/// when it has no account, `403` naming it when either of the two blocked the other, `409` naming
/// `user` when they follow as many users as allowed (`FANLINE_MAX_FOLLOWS_PER_USER`).
#[utoipa::path(
    put, path = "/v1/users/{user}/following/{target}", tag = "follows",
    params(
        ("user" = schemas::UserId, Path, description = "The follower."),
        ("target" = schemas::UserId, Path, description = "The user to follow; not `user` itself.", example = "bob"),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        (status = 409, description = "`user` follows as many users as allowed.", body = schemas::api::ErrorBody),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn follow(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(directory): Extension<Arc<authkit::AccountDirectory>>,
    Extension(caps): Extension<Arc<crate::caps::Caps>>,
    Path((user, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = FollowChange::from_path(&user, &target)?;
    bearer.require_user("user", &change.follower)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Follow, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    directory.require("target", &change.followee).await?;
    directory
        .require_unblocked("target", &change.follower, &change.followee)
        .await?;
    caps.follow(&change.follower).await?;
    let envelope = Envelope::followed(change);
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, None, ack))
}

/// Unfollow.
///
/// Appends an `unfollowed` event on the followee's key: `user` stops following `target`.
#[utoipa::path(
    delete, path = "/v1/users/{user}/following/{target}", tag = "follows",
    params(
        ("user" = schemas::UserId, Path, description = "The follower."),
        ("target" = schemas::UserId, Path, description = "The user to unfollow; not `user` itself.", example = "bob"),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn unfollow(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Path((user, target)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let change = FollowChange::from_path(&user, &target)?;
    bearer.require_user("user", &change.follower)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Follow, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let envelope = Envelope::unfollowed(change);
    let ack = producer.send(&envelope).await?;
    Ok(accepted(&envelope, None, ack))
}
