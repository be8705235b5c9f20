//! Where attachments' bytes live: object storage behind one interface ([`Blobs`]), S3-compatible in
//! production (AWS S3, MinIO, Garage, Ceph) or a local directory by default, reached by clients
//! only through short-lived signed URLs. Bytes never pass through Kafka or Postgres: a message
//! carries an attachment's metadata and id, fanout records which messages hold which ids, and the
//! reader decides who may have a download URL.
//!
//! # Layout
//! - [`checks`]: what a send's attachments must be (uploaded, the size said, recent enough) and
//!   what an upload may declare.
//! - [`config`]: the command-line/environment settings and opening the configured store.
//! - [`keys`]: the object key of an attachment id (`att/{day}/{id}`: listable by day, for the
//!   orphan sweep).
//! - [`signing`]: the directory store's own signed URLs (HMAC-SHA256), verified by ingest (uploads)
//!   and the reader (downloads); S3 signs its own (SigV4 presigned URLs).
//! - [`store`]: [`Blobs`] — upload and download URLs, existence checks, streaming writes into the
//!   directory store, listing and deleting for the sweep.

pub mod checks;
pub mod config;
pub mod keys;
pub mod signing;
pub mod store;

pub use checks::{check_content, Age, CheckError};
pub use config::BlobArgs;
pub use store::{Blobs, Limits, SignedRequest, StoredObject, Upload};

/// Why a storage operation failed.
#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The configuration names no usable store (a bad `FANLINE_BLOB_STORE`, a missing secret).
    #[error("attachment storage is misconfigured: {0}")]
    Config(String),
    /// A signed URL that is malformed, forged or expired.
    #[error("{0}")]
    BadSignature(&'static str),
    /// An upload whose bytes are not what its signed URL declared (size, SHA-256).
    #[error("{0}")]
    Mismatch(String),
    /// The object does not exist.
    #[error("no such object")]
    NotFound,
    /// The store cannot be reached or failed: retry later.
    #[error("object storage failed: {0}")]
    Unavailable(#[from] object_store::Error),
}

impl From<BlobError> for httpkit::ApiError {
    fn from(err: BlobError) -> Self {
        use axum::http::StatusCode;
        match err {
            BlobError::Config(_) => {
                tracing::error!(error = %err, "attachment storage");
                httpkit::ApiError::internal()
            }
            BlobError::BadSignature(why) => httpkit::ApiError {
                status: StatusCode::FORBIDDEN,
                message: why.into(),
                field: Some("sig".into()),
            },
            BlobError::Mismatch(why) => httpkit::ApiError::bad_field("body", why),
            BlobError::NotFound => httpkit::ApiError::new(StatusCode::NOT_FOUND, "no such file"),
            BlobError::Unavailable(source) => {
                tracing::warn!(error = %source, "object storage failed");
                httpkit::ApiError::unavailable("object storage unavailable: retry")
            }
        }
    }
}

impl From<CheckError> for httpkit::ApiError {
    fn from(err: CheckError) -> Self {
        match err {
            CheckError::Invalid(invalid) => invalid.into(),
            CheckError::Unavailable(source) => source.into(),
        }
    }
}

/// What a service's attachment routes hold: the store (none: attachments are off) and the service's
/// own public URL, which the directory store's signed URLs point at (ingest's for uploads, the
/// reader's for downloads).
#[derive(Clone)]
pub struct Attachments {
    pub blobs: Option<std::sync::Arc<Blobs>>,
    pub public_url: String,
}

impl Attachments {
    /// The store, or `501` while attachments are off.
    pub fn blobs(&self) -> Result<&Blobs, httpkit::ApiError> {
        self.blobs.as_deref().ok_or_else(attachments_off)
    }
}

/// The answer while attachments are off (`FANLINE_BLOB_STORE` unset): `501`.
pub fn attachments_off() -> httpkit::ApiError {
    httpkit::ApiError::new(
        axum::http::StatusCode::NOT_IMPLEMENTED,
        "this server takes no attachments (FANLINE_BLOB_STORE is not set)",
    )
}
