//! What ingest (HTTP sends) and the reader (WebSocket sends) check about a message's or post's
//! attachments before it goes to Kafka — the checks that need the store: every attachment was
//! uploaded, has the size the message says, and was uploaded recently enough that the orphan sweep
//! will not delete it before fanout records the message (a forwarded message's attachments are
//! already held by the message they came from).

use chrono::Utc;
use schemas::content::validate_mime;
use schemas::{Content, ValidationError};

use crate::keys::uploaded_at;
use crate::{BlobError, Blobs};

/// Why a send's attachments were not accepted.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Bad input: a `400` naming the field.
    #[error("{}: {}", .0.field, .0.message)]
    Invalid(ValidationError),
    /// The store cannot answer: a `503`.
    #[error(transparent)]
    Unavailable(BlobError),
}

/// The sweep's margin: a fresh upload must be sent this long before it would count as orphaned.
const SWEEP_MARGIN_HOURS: i64 = 1;

/// Checks `content`'s attachments against the store (`None`: attachments are off).
pub async fn check_content(
    blobs: Option<&Blobs>,
    content: &Content,
    forwarded: bool,
) -> Result<(), CheckError> {
    if content.attachments.is_empty() {
        return Ok(());
    }
    let Some(blobs) = blobs else {
        return Err(CheckError::Invalid(ValidationError::new(
            "attachments",
            "this server takes no attachments (FANLINE_BLOB_STORE is not set)",
        )));
    };
    let window = blobs.limits.orphan_after - chrono::Duration::hours(SWEEP_MARGIN_HOURS);
    for (i, attachment) in content.attachments.iter().enumerate() {
        let invalid = |name: &str, message: String| {
            CheckError::Invalid(ValidationError::new(
                format!("attachments[{i}].{name}"),
                message,
            ))
        };
        if attachment.size > blobs.limits.max_bytes {
            return Err(invalid("size", blobs.too_big()));
        }
        if !forwarded && uploaded_at(&attachment.id) < Utc::now() - window {
            return Err(invalid(
                "id",
                "uploaded too long ago to be sent now: upload it again".into(),
            ));
        }
        let stored = blobs
            .stat(&attachment.id)
            .await
            .map_err(CheckError::Unavailable)?;
        match stored {
            None => {
                return Err(invalid(
                    "id",
                    "no such upload: PUT the bytes to the upload URL first".into(),
                ))
            }
            Some(object) if object.size != attachment.size => {
                return Err(invalid(
                    "size",
                    format!("the upload has {} bytes", object.size),
                ))
            }
            Some(_) => {}
        }
    }
    Ok(())
}

impl Blobs {
    fn too_big(&self) -> String {
        format!("must be at most {} bytes", self.limits.max_bytes)
    }

    /// Checks what an upload declares before it gets a signed URL: a media type we serve, a size
    /// within this server's limit, a SHA-256.
    pub fn check_upload(&self, mime: &str, size: u64, sha256: &str) -> Result<(), ValidationError> {
        validate_mime(mime)?;
        if size == 0 || size > self.limits.max_bytes {
            return Err(ValidationError::new("size", self.too_big()));
        }
        if !schemas::content::is_sha256_hex(sha256) {
            return Err(ValidationError::new(
                "sha256",
                "must be 64 lower-case hex digits",
            ));
        }
        Ok(())
    }
}
