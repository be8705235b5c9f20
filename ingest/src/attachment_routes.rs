//! Uploads. A client asks for an upload (`POST /v1/attachments`: type, size, SHA-256), gets a new
//! attachment id and a signed request, and puts the bytes straight into the store — S3 itself, or,
//! with the directory store, `PUT /v1/uploads/{id}` here, which verifies the signature, the size and
//! the hash as the bytes stream in. Nothing goes to Kafka: the bytes are not an event, and an upload
//! nobody sends is swept away by fanout (`fanout/src/attachment_sweep.rs`). The message that sends it
//! is the event.

use std::collections::HashMap;
use std::sync::Arc;

use authkit::Bearer;
use axum::body::Body;
use axum::extract::{Path, Query};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{post, put};
use axum::{Extension, Json, Router};
use blobkit::Upload;
use httpkit::openapi::{
    AttachmentsOff, BadRequest, BodyRejected, Forbidden, NoSuchRoute, TooManyRequests,
    Unauthorized, Unavailable,
};
use httpkit::{ApiError, JsonBody};
use schemas::api::{UploadRequest, UploadTicket};
use schemas::AttachmentId;

pub use blobkit::Attachments;

pub fn router() -> Router {
    Router::new()
        .route("/v1/attachments", post(create_upload))
        .route("/v1/uploads/{attachment}", put(upload_bytes))
}

/// Start an upload.
///
/// Gives a new attachment id and the signed request that uploads its bytes (valid for
/// `FANLINE_BLOB_URL_TTL_SECS`, 15 minutes by default). The store accepts exactly the declared size,
/// type and SHA-256. Send the message or post that uses it within `FANLINE_ATTACHMENT_ORPHAN_HOURS`
/// (24) less an hour; an upload nobody sends is deleted after that.
#[utoipa::path(
    post, path = "/v1/attachments", tag = "attachments",
    request_body = UploadRequest,
    responses(
        (status = 201, description = "Upload here.", body = UploadTicket),
        BadRequest, TooManyRequests, Unauthorized, BodyRejected, AttachmentsOff, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn create_upload(
    bearer: Bearer,
    Extension(attachments): Extension<Attachments>,
    Extension(writes): Extension<Arc<authkit::WriteLimiter>>,
    JsonBody(request): JsonBody<UploadRequest>,
) -> Result<Response, ApiError> {
    let blobs = attachments.blobs()?;
    blobs.check_upload(&request.mime, request.size, &request.sha256)?;
    if let Err(limited) = writes.admit(authkit::WriteKind::Message, bearer.user(), 1) {
        return Ok(limited.into_response());
    }
    let upload = Upload {
        id: AttachmentId::generate(),
        mime: request.mime,
        size: request.size,
        sha256: request.sha256,
    };
    // Who asked: a message may name only its sender's own uploads (`blobkit::check_content`).
    blobs.record_owner(&upload.id, bearer.user()).await?;
    let signed = blobs
        .upload_request(&upload, &attachments.public_url)
        .await?;
    let ticket = UploadTicket {
        attachment: upload.id.to_string(),
        method: signed.method.to_owned(),
        url: signed.url,
        headers: signed.headers.into_iter().collect(),
        expires_at: signed.expires_at,
    };
    Ok((StatusCode::CREATED, Json(ticket)).into_response())
}

/// Upload bytes (directory store).
///
/// The URL `POST /v1/attachments` gave, as it gave it: its signature is the permission (no token).
/// The bytes are stored only if they are exactly the declared size and hash to the declared
/// SHA-256; uploading the same bytes again is harmless.
#[utoipa::path(
    put, path = "/v1/uploads/{attachment}", tag = "attachments",
    params(
        ("attachment" = schemas::AttachmentId, Path, description = "The attachment."),
        ("mime" = String, Query, description = "As signed."),
        ("size" = u64, Query, description = "As signed."),
        ("sha256" = String, Query, description = "As signed."),
        ("expires" = i64, Query, description = "As signed."),
        ("sig" = String, Query, description = "The signature."),
    ),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses(
        (status = 204, description = "Stored."),
        BadRequest, Forbidden, NoSuchRoute, AttachmentsOff, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn upload_bytes(
    Extension(attachments): Extension<Attachments>,
    Path(attachment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    body: Body,
) -> Result<StatusCode, ApiError> {
    let blobs = attachments.blobs()?;
    let upload = blobs.verify_upload(&attachment, &query)?;
    blobs.write(&upload, body.into_data_stream()).await?;
    Ok(StatusCode::NO_CONTENT)
}
