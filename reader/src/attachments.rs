//! Downloads. `GET /v1/attachments/{id}` answers a short-lived signed URL to whoever may read a live
//! message or post holding the attachment — a direct conversation's two people, a group's active
//! members whose history reaches the message, anyone for a post — and refuses everyone else, so a
//! leaked id is worth nothing. The URL points at S3 itself, or, with the directory store, at
//! `GET /v1/files/{id}` here, which checks the signature and streams the bytes.
//!
//! Which messages and posts hold which attachments is fanout's record (`message_attachments`,
//! `post_attachments`: live content only — a recalled, removed or erased message holds none).

use std::collections::HashMap;

use authkit::Bearer;
use axum::body::Body;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Extension, Json, Router};
use httpkit::openapi::{
    AttachmentsOff, BadRequest, Forbidden, InternalError, NoSuchRoute, Unauthorized, Unavailable,
};
use httpkit::ApiError;
use schemas::api::DownloadLink;
use schemas::{Attachment, AttachmentId};
use sqlx::PgPool;

use crate::failure::database_error;

pub use blobkit::Attachments;

pub fn router(pool: PgPool) -> Router {
    Router::new()
        .route("/v1/attachments/{attachment}", get(download_link))
        .route("/v1/files/{attachment}", get(file))
        .with_state(pool)
}

/// The live references to an attachment ($1) and whether the caller ($2) may read each: a direct
/// conversation's two people, an active group member whose history reaches the message, anyone for
/// a post. Returns the attachment's metadata from a readable reference (if any) and whether any
/// reference exists.
const ACCESS_SQL: &str = "
    WITH refs AS (
        SELECT m.attachments,
               CASE WHEN ma.conversation_id LIKE 'd:%'
                    THEN $2 IN (split_part(ma.conversation_id, ':', 2),
                                split_part(ma.conversation_id, ':', 3))
                    ELSE EXISTS (
                        SELECT 1 FROM group_members gm
                        JOIN groups g ON g.group_id = gm.group_id
                        JOIN conversation_members cm
                          ON cm.user_id = gm.user_id AND cm.conversation_id = ma.conversation_id
                        WHERE gm.group_id = substr(ma.conversation_id, 3) AND gm.user_id = $2
                          AND gm.active AND (g.history = 'shared' OR ma.seq > cm.from_seq))
               END AS readable
        FROM message_attachments ma
        JOIN messages m ON m.conversation_id = ma.conversation_id AND m.seq = ma.seq
        WHERE ma.attachment_id = $1
        UNION ALL
        SELECT p.attachments, true FROM post_attachments pa
        JOIN posts p ON p.post_id = pa.post_id
        WHERE pa.attachment_id = $1
    )
    SELECT (SELECT e FROM refs r CROSS JOIN LATERAL jsonb_array_elements(r.attachments) e
            WHERE r.readable AND e->>'id' = $1 LIMIT 1),
           EXISTS (SELECT 1 FROM refs)";

/// The attachment's metadata if `caller` may download it; `404` if no live message or post holds
/// it, `403` if none the caller may read does.
pub async fn readable(
    pool: &PgPool,
    id: &AttachmentId,
    caller: &str,
) -> Result<Attachment, ApiError> {
    let (found, exists): (Option<serde_json::Value>, bool) = sqlx::query_as(ACCESS_SQL)
        .bind(id.as_str())
        .bind(caller)
        .fetch_one(pool)
        .await
        .map_err(database_error)?;
    match found.map(serde_json::from_value::<Attachment>) {
        Some(Ok(attachment)) => Ok(attachment),
        Some(Err(err)) => {
            tracing::error!(error = %err, "stored attachment metadata does not parse");
            Err(ApiError::internal())
        }
        None if exists => Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "only those who may read a message or post holding it may download it".into(),
            field: Some("attachment".into()),
        }),
        None => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "no message or post holds this attachment (never sent, recalled or removed)",
        )),
    }
}

/// Download an attachment.
///
/// A short-lived URL to fetch the bytes from (no token needed; valid `FANLINE_BLOB_URL_TTL_SECS`,
/// 15 minutes by default), for whoever may read a message or post holding it.
#[utoipa::path(
    get, path = "/v1/attachments/{attachment}", tag = "attachments",
    params(("attachment" = schemas::AttachmentId, Path, description = "The attachment.")),
    responses(
        (status = 200, description = "Where to download it.", body = DownloadLink),
        (status = 404, description = "No live message or post holds it.", body = schemas::api::ErrorBody),
        BadRequest, Unauthorized, Forbidden, AttachmentsOff, InternalError, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn download_link(
    bearer: Bearer,
    State(pool): State<PgPool>,
    Extension(attachments): Extension<Attachments>,
    Path(attachment): Path<String>,
) -> Result<Json<DownloadLink>, ApiError> {
    let blobs = attachments.blobs()?;
    let id = AttachmentId::parse("attachment", &attachment)?;
    let found = readable(&pool, &id, bearer.user()).await?;
    let (url, expires_at) = blobs
        .download_url(&id, &found.mime, &attachments.public_url)
        .await?;
    Ok(Json(DownloadLink {
        url,
        mime: found.mime,
        size: found.size,
        expires_at,
    }))
}

/// Download bytes (directory store).
///
/// The URL `GET /v1/attachments/{attachment}` gave: its signature is the permission. Served with
/// the attachment's media type, `nosniff`, and as a download unless it is an image, audio or video.
#[utoipa::path(
    get, path = "/v1/files/{attachment}", tag = "attachments",
    params(
        ("attachment" = schemas::AttachmentId, Path, description = "The attachment."),
        ("mime" = String, Query, description = "As signed."),
        ("expires" = i64, Query, description = "As signed."),
        ("sig" = String, Query, description = "The signature."),
    ),
    responses(
        (status = 200, description = "The bytes.", content_type = "application/octet-stream", body = Vec<u8>),
        Forbidden, NoSuchRoute, AttachmentsOff, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn file(
    Extension(attachments): Extension<Attachments>,
    Path(attachment): Path<String>,
    Query(query): Query<HashMap<String, String>>,
) -> Result<Response, ApiError> {
    let blobs = attachments.blobs()?;
    let mime = blobs.verify_download(&attachment, &query)?;
    let id = AttachmentId::parse("attachment", &attachment)?;
    let (size, bytes) = blobs.read(&id).await?;
    let inline = ["image/", "audio/", "video/"]
        .iter()
        .any(|class| mime.starts_with(class));
    let mut response = Body::from_stream(bytes).into_response();
    let headers = response.headers_mut();
    let mime = HeaderValue::from_str(&mime)
        .unwrap_or(HeaderValue::from_static("application/octet-stream"));
    headers.insert(header::CONTENT_TYPE, mime);
    headers.insert(header::CONTENT_LENGTH, HeaderValue::from(size));
    headers.insert(
        header::CONTENT_DISPOSITION,
        HeaderValue::from_static(if inline { "inline" } else { "attachment" }),
    );
    // Content addressed by a signed, expiring URL: private to the browser that fetched it.
    headers.insert(
        header::CACHE_CONTROL,
        HeaderValue::from_static("private, max-age=600"),
    );
    Ok(response)
}
