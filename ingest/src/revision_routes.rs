//! Edits and reactions: appended on the conversation's key (a post's edit: the author's), after what
//! they change, like recalls. Whether
//! the message exists, is the editor's, is within the edit window or is readable by the reacting user
//! is fanout's to decide (it knows the conversation); what it refuses is counted by reason
//! (`fanline_fanout_im_refused_total`), as refused recalls are.

use std::sync::Arc;

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::routing::{patch, put};
use axum::{Extension, Router};
use httpkit::openapi::{
    BadRequest, BodyRejected, Forbidden, NoSuchRoute, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::{ApiError, JsonBody};
use kafkakit::EventProducer;
use schemas::api::{Accepted, EditMessageRequest, EditPostRequest};
use schemas::Envelope;

use crate::attachment_routes::Attachments;
use crate::im_routes::append;

pub fn router(producer: Arc<EventProducer>) -> Router {
    Router::new()
        // The message's own route: edits here, recalls (`im_routes`) on the same path.
        .route(
            "/v1/messages/{message_id}",
            patch(edit_message).delete(crate::im_routes::recall_message),
        )
        .route(
            "/v1/users/{user}/conversations/{conversation}/messages/{seq}/reactions/{key}",
            put(add_reaction).delete(remove_reaction),
        )
        .with_state(producer)
}

/// Edit a message.
///
/// Appends a `message_edited` event on the conversation's key. Fanout applies it if `from` sent the
/// message, it is live and within the edit window (`FANLINE_EDIT_WINDOW_SECS`, a day by default), and
/// `version` (if given) is still current: the text, content and mentions are replaced, the version
/// counts up, and everyone who has the message gets an `edit` sync entry.
#[utoipa::path(
    patch, path = "/v1/messages/{message_id}", tag = "messages",
    params(("message_id" = schemas::MessageId, Path, description = "The message (or the id a retried send got).")),
    request_body = EditMessageRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn edit_message(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(attachments): Extension<Attachments>,
    Path(message_id): Path<String>,
    JsonBody(request): JsonBody<EditMessageRequest>,
) -> Result<Response, ApiError> {
    let edit = request.into_event(&message_id)?;
    bearer.require_user("from", &edit.sender)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Message, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    // An edit may keep the sender's attachments uploaded long ago (the message holds them).
    blobkit::check_content(
        attachments.blobs.as_deref(),
        &edit.content,
        edit.sender.as_str(),
        blobkit::Age::Any,
    )
    .await?;
    let (id, conversation) = (edit.message_id.clone(), edit.conversation.clone());
    let envelope = Envelope::message_edited(edit);
    append(&producer, &envelope, Some(&id), Some(&conversation)).await
}

/// Edit a post.
///
/// Appends a `post_edited` event on the author's key (after the post). Fanout applies it if `author`
/// wrote the post, it is not deleted and within `FANLINE_POST_EDIT_WINDOW_SECS` (unlimited by
/// default): feeds and timelines show the new text from then on (`edited_at`).
#[utoipa::path(
    patch, path = "/v1/posts/{post_id}", tag = "posts",
    params(("post_id" = schemas::PostId, Path, description = "The post (or the id a retried duplicate got).")),
    request_body = EditPostRequest,
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, BodyRejected, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn edit_post(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Extension(attachments): Extension<Attachments>,
    Path(post_id): Path<String>,
    JsonBody(request): JsonBody<EditPostRequest>,
) -> Result<Response, ApiError> {
    let edit = request.into_event(&post_id)?;
    bearer.require_user("author", &edit.author)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Post, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let (blobs, author) = (attachments.blobs.as_deref(), edit.author.as_str());
    blobkit::check_content(blobs, &edit.content, author, blobkit::Age::Any).await?;
    let envelope = Envelope::post_edited(edit);
    append(&producer, &envelope, None, None).await
}

/// React to a message.
///
/// Appends a `reaction_added` event on the conversation's key: `user` puts `key` (one emoji, or a
/// `:shortcode:`) on message `seq` — once (adding it again changes nothing), at most 20 keys per user
/// and message. Fanout refuses it for a message the user may not read or that is gone. Histories show
/// the counts per key, derived from the reactions themselves.
#[utoipa::path(
    put, path = "/v1/users/{user}/conversations/{conversation}/messages/{seq}/reactions/{key}", tag = "messages",
    params(
        ("user" = schemas::UserId, Path, description = "Who reacts."),
        ("conversation" = schemas::ConversationId, Path, description = "The conversation."),
        ("seq" = i64, Path, minimum = 1, description = "The message's conversation seq."),
        ("key" = String, Path, description = "One emoji (URL-encoded) or a :shortcode:."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn add_reaction(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Path(parts): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    react(bearer, &producer, &writes, parts, true).await
}

/// Take a reaction back.
///
/// Appends a `reaction_removed` event; removing a reaction that is not there changes nothing.
#[utoipa::path(
    delete, path = "/v1/users/{user}/conversations/{conversation}/messages/{seq}/reactions/{key}", tag = "messages",
    params(
        ("user" = schemas::UserId, Path, description = "Who reacted."),
        ("conversation" = schemas::ConversationId, Path, description = "The conversation."),
        ("seq" = i64, Path, minimum = 1, description = "The message's conversation seq."),
        ("key" = String, Path, description = "One emoji (URL-encoded) or a :shortcode:."),
    ),
    responses(
        (status = 202, description = "The broker stored the event.", body = Accepted),
        BadRequest, TooManyRequests, Unauthorized, Forbidden, NoSuchRoute, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn remove_reaction(
    bearer: Bearer,
    State(producer): State<Arc<EventProducer>>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    Path(parts): Path<(String, String, String, String)>,
) -> Result<Response, ApiError> {
    react(bearer, &producer, &writes, parts, false).await
}

async fn react(
    bearer: Bearer,
    producer: &EventProducer,
    writes: &authkit::WriteLimiter,
    (user, conversation, seq, key): (String, String, String, String),
    added: bool,
) -> Result<Response, ApiError> {
    let reaction = schemas::requests::reaction(&user, &conversation, &seq, &key)?;
    bearer.require_user("user", &reaction.user)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Message, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let conversation = reaction.conversation.clone();
    let envelope = Envelope::reaction(reaction, added);
    append(producer, &envelope, None, Some(&conversation)).await
}
