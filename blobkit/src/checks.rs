//! What ingest (HTTP sends) and the reader (WebSocket sends) check about a message's or post's
//! attachments before it goes to Kafka — the checks that need the store: every attachment is an
//! upload of the sender's own (its owner record says so: knowing an id grants nothing), has the size
//! the message says, and was uploaded recently enough that the orphan sweep will not delete it before
//! fanout records the message.

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

/// Whether a send's attachments may be old: an edit keeps the message's own earlier uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Age {
    /// A new message or post: uploads from within the orphan age less the sweep's margin.
    Fresh,
    /// An edit: the sender's uploads of any age (the message holds them).
    Any,
}

/// Checks `content`'s attachments against the store (`None`: attachments are off): each is an upload
/// `sender` asked for — nobody sends someone else's file by knowing its id (a forward re-uploads) —
/// that exists with the size the message says, and, unless `age` is [`Age::Any`], recent enough.
pub async fn check_content(
    blobs: Option<&Blobs>,
    content: &Content,
    sender: &str,
    age: Age,
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
        if age == Age::Fresh && uploaded_at(&attachment.id) < Utc::now() - window {
            return Err(invalid(
                "id",
                "uploaded too long ago to be sent now: upload it again".into(),
            ));
        }
        let owner = blobs
            .owner(&attachment.id)
            .await
            .map_err(CheckError::Unavailable)?;
        let stored = match owner.as_deref() == Some(sender) {
            true => blobs
                .stat(&attachment.id)
                .await
                .map_err(CheckError::Unavailable)?,
            false => None,
        };
        match stored {
            None => return Err(invalid(
                "id",
                "no upload of yours: ask for one (POST /v1/attachments) and PUT the bytes first"
                    .into(),
            )),
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
