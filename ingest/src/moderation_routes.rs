//! Reports and the operators' write API (`/v1/admin/…`). Anyone signed in files a report; only the
//! deployment's operators (`FANLINE_OPERATORS`, checked here against the token's user) resolve reports,
//! disable and re-enable accounts, remove posts and messages and dissolve groups. Each is an event:
//! fanout applies an operator's event without asking for the owner's or sender's role, because only
//! this edge, after the check, appends one.

use std::sync::Arc;

use authkit::{Bearer, Operators, WriteKind, WriteLimiter};
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post, put};
use axum::{Extension, Json, Router};
use chrono::Utc;
use httpkit::openapi::{
    BadRequest, BodyRejected, Forbidden, NoSuchRoute, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::{ApiError, JsonBody, QueryParams};
use schemas::api::{Accepted, DisableAccountRequest, ReportRequest, ResolveReportRequest};
use schemas::moderation::validate_report_id;
use schemas::{
    AccountModeration, ConversationId, Envelope, GroupDissolved, GroupId, MessageId,
    MessageRemoved, PostDeleted, PostId, ReportResolved, UserId,
};

use crate::im_routes::append;
use kafkakit::EventProducer;

pub fn router(producer: Arc<EventProducer>) -> Router {
    Router::new()
        .route("/v1/reports", post(report))
        .route("/v1/admin/reports/{report_id}", put(resolve))
        .route(
            "/v1/admin/accounts/{user}/disabled",
            put(disable).delete(enable),
        )
        .route("/v1/admin/accounts/{user}", delete(delete_account))
        .route("/v1/admin/posts/{post_id}", delete(remove_post))
        .route("/v1/admin/messages/{message_id}", delete(remove_message))
        .route("/v1/admin/groups/{group}", delete(dissolve_group))
        .with_state(producer)
}

/// Report.
///
/// Files a report (a message, post, user or group, with a reason) into the operators' queue
/// (`GET /v1/admin/reports` at the reader). Appends `report_filed` keyed by the reporter; `202`
/// carries the `report_id`.
#[utoipa::path(
    post, path = "/v1/reports", tag = "moderation",
    request_body = ReportRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn report(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<WriteLimiter>>,
    JsonBody(request): JsonBody<ReportRequest>,
) -> Result<Response, ApiError> {
    let report = request.into_event()?;
    bearer.require_user("reporter", &report.reporter)?;
    if let Err(limited) = writes.admit(WriteKind::Message, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let report_id = report.report_id.clone();
    let envelope = Envelope::report_filed(report);
    let ack = producer.send(&envelope).await?;
    let body = Accepted {
        report_id: Some(report_id),
        ..Accepted::of(&envelope.id, ack.partition, ack.offset)
    };
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}

/// The operator behind the token, or `403`.
fn operator(bearer: &Bearer, operators: &Operators) -> Result<UserId, ApiError> {
    operators.require(bearer.user())?;
    Ok(UserId::parse("token", bearer.user())?)
}

/// Resolve a report (operators).
#[utoipa::path(
    put, path = "/v1/admin/reports/{report_id}", tag = "moderation",
    params(("report_id" = String, Path, description = "The report.")),
    request_body = ResolveReportRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn resolve(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(operators): Extension<Arc<Operators>>,
    Path(report_id): Path<String>,
    JsonBody(request): JsonBody<ResolveReportRequest>,
) -> Result<Response, ApiError> {
    let by = operator(&bearer, &operators)?;
    validate_report_id("report_id", &report_id)?;
    let resolved = ReportResolved {
        report_id,
        by,
        resolution: request.resolution,
        resolved_at: Utc::now(),
    };
    resolved.validate()?;
    append(&producer, &Envelope::report_resolved(resolved), None, None).await
}

/// Disable an account (operators).
///
/// Appends `account_disabled` keyed by the user: once fanout applied it, the account cannot log in
/// or refresh, its sessions end (sockets and streams close) and its access tokens are refused by
/// ingest and reader — within fanout's lag plus `FANLINE_DISABLED_POLL_MS` (5 s by default).
#[utoipa::path(
    put, path = "/v1/admin/accounts/{user}/disabled", tag = "moderation",
    params(("user" = schemas::UserId, Path, description = "The account.")),
    request_body = DisableAccountRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn disable(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(operators): Extension<Arc<Operators>>,
    Path(user): Path<String>,
    JsonBody(request): JsonBody<DisableAccountRequest>,
) -> Result<Response, ApiError> {
    let change = AccountModeration {
        user: UserId::parse("user", &user)?,
        by: operator(&bearer, &operators)?,
        reason: request.reason,
    };
    change.validate()?;
    if change.user == change.by {
        return Err(ApiError::bad_field(
            "user",
            "an operator cannot disable themselves",
        ));
    }
    append(
        &producer,
        &Envelope::account_disabled(change, true),
        None,
        None,
    )
    .await
}

/// Re-enable an account (operators).
#[utoipa::path(
    delete, path = "/v1/admin/accounts/{user}/disabled", tag = "moderation",
    params(("user" = schemas::UserId, Path, description = "The account.")),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn enable(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(operators): Extension<Arc<Operators>>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let change = AccountModeration {
        user: UserId::parse("user", &user)?,
        by: operator(&bearer, &operators)?,
        reason: None,
    };
    append(
        &producer,
        &Envelope::account_disabled(change, false),
        None,
        None,
    )
    .await
}

/// Delete an account (operators).
///
/// As `DELETE /v1/accounts/{user}` by the user (see there), for an operator.
#[utoipa::path(
    delete, path = "/v1/admin/accounts/{user}", tag = "moderation",
    params(("user" = schemas::UserId, Path, description = "The account.")),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn delete_account(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(operators): Extension<Arc<Operators>>,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let deleted = schemas::AccountDeleted {
        user: UserId::parse("user", &user)?,
        by: operator(&bearer, &operators)?,
    };
    if deleted.user == deleted.by {
        return Err(ApiError::bad_field(
            "user",
            "an operator deletes their own account as a user does (DELETE /v1/accounts/{user})",
        ));
    }
    append(&producer, &Envelope::account_deleted(deleted), None, None).await
}

/// Remove a post (operators).
///
/// Appends `post_deleted` on the author's key: the post becomes a tombstone everywhere, as when its
/// author deletes it.
#[utoipa::path(
    delete, path = "/v1/admin/posts/{post_id}", tag = "moderation",
    params(
        ("post_id" = schemas::PostId, Path, description = "The post."),
        ("author" = schemas::UserId, Query, description = "Its author."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn remove_post(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(operators): Extension<Arc<Operators>>,
    Path(post_id): Path<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    operator(&bearer, &operators)?;
    let post_id = PostId::parse("post_id", &post_id)?;
    let author = params
        .get("author")
        .ok_or_else(|| ApiError::bad_field("author", "required: the post's author"))?;
    let author = UserId::parse("author", author)?;
    let envelope = Envelope::post_deleted(PostDeleted { post_id, author });
    append(&producer, &envelope, None, None).await
}

/// Remove a message (operators).
///
/// Appends `message_removed` on the conversation's key: the message becomes a tombstone, as a recall
/// by its sender would make it, at any time.
#[utoipa::path(
    delete, path = "/v1/admin/messages/{message_id}", tag = "moderation",
    params(
        ("message_id" = schemas::MessageId, Path, description = "The message."),
        ("conversation" = schemas::ConversationId, Query, description = "Its conversation."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn remove_message(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(operators): Extension<Arc<Operators>>,
    Path(message_id): Path<String>,
    params: QueryParams,
) -> Result<Response, ApiError> {
    let by = operator(&bearer, &operators)?;
    let conversation = params.get("conversation").ok_or_else(|| {
        ApiError::bad_field("conversation", "required: the message's conversation")
    })?;
    let removed = MessageRemoved {
        message_id: MessageId::parse("message_id", &message_id)?,
        conversation: ConversationId::parse("conversation", conversation)?,
        by,
        removed_at: Utc::now(),
    };
    let conversation = removed.conversation.clone();
    let envelope = Envelope::message_removed(removed);
    append(&producer, &envelope, None, Some(&conversation)).await
}

/// Dissolve a group (operators).
#[utoipa::path(
    delete, path = "/v1/admin/groups/{group}", tag = "moderation",
    params(("group" = schemas::GroupId, Path, description = "The group.")),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn dissolve_group(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(operators): Extension<Arc<Operators>>,
    Path(group): Path<String>,
) -> Result<Response, ApiError> {
    let by = operator(&bearer, &operators)?;
    let group = GroupId::parse("group", &group)?;
    let conversation = ConversationId::group(&group);
    let envelope = Envelope::group_dissolved(GroupDissolved {
        group,
        by,
        by_operator: true,
    });
    append(&producer, &envelope, None, Some(&conversation)).await
}
