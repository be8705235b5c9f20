//! [`Blobs`]: one interface over both stores. What differs is who checks a signed URL — S3 itself
//! (SigV4, with the declared type and SHA-256 bound into the signature, so S3 refuses other bytes), or our own services for the directory store ([`crate::signing`]), which then stream the
//! bytes in and out here.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use chrono::{DateTime, NaiveDate, Utc};
use futures::stream::BoxStream;
use futures::{Stream, StreamExt, TryStreamExt};
use object_store::aws::AmazonS3;
use object_store::local::LocalFileSystem;
use object_store::signer::{HeaderName, HeaderValue, Method, SignedUrlOptions, Signer};
use object_store::{ObjectStore, ObjectStoreExt, WriteMultipart};
use schemas::AttachmentId;
use sha2::{Digest, Sha256};

use crate::keys::{day_prefix, id_of, owner_path_of, path_of};
use crate::signing::Grant;
use crate::BlobError;

pub(crate) enum Backend {
    Directory {
        store: Arc<LocalFileSystem>,
        secret: Vec<u8>,
    },
    S3(Arc<AmazonS3>),
}

/// The configured attachment store.
pub struct Blobs {
    backend: Backend,
    ttl: Duration,
    pub(crate) limits: Limits,
}

/// What an attachment may be: its size, and how long an upload waits for a message.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_bytes: u64,
    pub orphan_after: chrono::Duration,
}

/// What an upload declares, and so what its signed URL allows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Upload {
    pub id: AttachmentId,
    pub mime: String,
    pub size: u64,
    pub sha256: String,
}

/// A request a client makes directly against the store (or the directory store's route).
#[derive(Debug, Clone)]
pub struct SignedRequest {
    pub method: &'static str,
    pub url: String,
    /// Headers the request must carry exactly (they are part of the signature).
    pub headers: Vec<(String, String)>,
    pub expires_at: DateTime<Utc>,
}

/// An object as the store reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredObject {
    pub size: u64,
    pub last_modified: DateTime<Utc>,
}

impl Blobs {
    pub(crate) fn new(backend: Backend, ttl: Duration, limits: Limits) -> Self {
        Self {
            backend,
            ttl,
            limits,
        }
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    /// `dir` or `s3`, for logs and metrics.
    pub fn kind(&self) -> &'static str {
        match self.backend {
            Backend::Directory { .. } => "dir",
            Backend::S3(_) => "s3",
        }
    }

    fn store(&self) -> &dyn ObjectStore {
        match &self.backend {
            Backend::Directory { store, .. } => store.as_ref(),
            Backend::S3(store) => store.as_ref(),
        }
    }

    fn expiry(&self) -> DateTime<Utc> {
        Utc::now() + chrono::Duration::from_std(self.ttl).unwrap_or_default()
    }

    /// The signed `PUT` that uploads `upload`'s bytes. `ingest_base` is ingest's public URL, where the
    /// directory store's uploads go.
    pub async fn upload_request(
        &self,
        upload: &Upload,
        ingest_base: &str,
    ) -> Result<SignedRequest, BlobError> {
        let expires_at = self.expiry();
        let content_type = ("content-type".to_owned(), upload.mime.clone());
        match &self.backend {
            Backend::Directory { secret, .. } => {
                let grant = Grant {
                    op: "put".into(),
                    id: upload.id.to_string(),
                    mime: upload.mime.clone(),
                    size: upload.size,
                    sha256: upload.sha256.clone(),
                    expires: expires_at.timestamp(),
                };
                Ok(SignedRequest {
                    method: "PUT",
                    url: format!(
                        "{}/v1/uploads/{}?{}",
                        ingest_base.trim_end_matches('/'),
                        upload.id,
                        grant.query(secret)
                    ),
                    headers: vec![content_type],
                    expires_at,
                })
            }
            Backend::S3(s3) => {
                let checksum = hex::decode(&upload.sha256)
                    .map(|raw| base64::engine::general_purpose::STANDARD.encode(raw))
                    .map_err(|_| BlobError::Mismatch("sha256 is not hex".into()))?;
                // The checksum pins the exact bytes (so their length too): S3 refuses others.
                // (`content-length` is the signer's own header and cannot be bound.)
                let headers = [
                    ("content-type", upload.mime.clone()),
                    ("x-amz-checksum-sha256", checksum),
                ];
                let mut options = SignedUrlOptions::new();
                for (name, value) in &headers {
                    let value = HeaderValue::from_str(value).map_err(|_| {
                        BlobError::Mismatch(format!("{name} is not a header value"))
                    })?;
                    options = options.with_signed_header(HeaderName::from_static(name), value);
                }
                let url = s3
                    .signed_url_opts(Method::PUT, &path_of(&upload.id), self.ttl, &options)
                    .await?;
                Ok(SignedRequest {
                    method: "PUT",
                    url: url.to_string(),
                    headers: headers
                        .into_iter()
                        .map(|(n, v)| (n.to_owned(), v))
                        .collect(),
                    expires_at,
                })
            }
        }
    }

    /// A signed URL that downloads attachment `id` (served as `mime`). `reader_base` is the reader's
    /// public URL, which serves the directory store's downloads.
    pub async fn download_url(
        &self,
        id: &AttachmentId,
        mime: &str,
        reader_base: &str,
    ) -> Result<(String, DateTime<Utc>), BlobError> {
        let expires_at = self.expiry();
        let url = match &self.backend {
            Backend::Directory { secret, .. } => {
                let grant = Grant {
                    op: "get".into(),
                    id: id.to_string(),
                    mime: mime.to_owned(),
                    size: 0,
                    sha256: String::new(),
                    expires: expires_at.timestamp(),
                };
                format!(
                    "{}/v1/files/{id}?{}",
                    reader_base.trim_end_matches('/'),
                    grant.query(secret)
                )
            }
            Backend::S3(s3) => {
                // What a browser would render (not a picture, sound or video) is a download, as the
                // directory store serves it: never a page on the bucket's origin.
                let media = ["image/", "audio/", "video/"]
                    .iter()
                    .any(|c| mime.starts_with(c));
                let mut options = SignedUrlOptions::new();
                if !media {
                    options = options.with_query([("response-content-disposition", "attachment")]);
                }
                s3.signed_url_opts(Method::GET, &path_of(id), self.ttl, &options)
                    .await?
                    .to_string()
            }
        };
        Ok((url, expires_at))
    }

    /// The stored object of attachment `id`, if it was uploaded.
    pub async fn stat(&self, id: &AttachmentId) -> Result<Option<StoredObject>, BlobError> {
        match self.store().head(&path_of(id)).await {
            Ok(meta) => Ok(Some(StoredObject {
                size: meta.size,
                last_modified: meta.last_modified,
            })),
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Deletes attachment `id`'s object (already gone is fine).
    pub async fn delete(&self, id: &AttachmentId) -> Result<(), BlobError> {
        for path in [path_of(id), owner_path_of(id)] {
            match self.store().delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => {}
                Err(err) => return Err(err.into()),
            }
        }
        Ok(())
    }

    /// Records who asked for attachment `id`'s upload (before its ticket is handed out).
    pub async fn record_owner(&self, id: &AttachmentId, owner: &str) -> Result<(), BlobError> {
        let bytes = Bytes::copy_from_slice(owner.as_bytes());
        self.store().put(&owner_path_of(id), bytes.into()).await?;
        Ok(())
    }

    /// Who asked for attachment `id`'s upload, if anyone did (and it was not swept).
    pub async fn owner(&self, id: &AttachmentId) -> Result<Option<String>, BlobError> {
        match self.store().get(&owner_path_of(id)).await {
            Ok(found) => {
                let bytes = found.bytes().await?;
                Ok(Some(String::from_utf8_lossy(&bytes).into_owned()))
            }
            Err(object_store::Error::NotFound { .. }) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// The days (UTC) that have upload tickets, in order.
    pub async fn list_days(&self) -> Result<Vec<NaiveDate>, BlobError> {
        let listed = self
            .store()
            .list_with_delimiter(Some(&object_store::path::Path::from(
                crate::keys::OWNER_PREFIX,
            )))
            .await?;
        let mut days: Vec<NaiveDate> = listed
            .common_prefixes
            .iter()
            .filter_map(|prefix| prefix.filename())
            .filter_map(|name| NaiveDate::parse_from_str(name, "%Y-%m-%d").ok())
            .collect();
        days.sort();
        Ok(days)
    }

    /// The attachments whose uploads were asked for on `day` (UTC), in id order.
    pub async fn list_day(&self, day: NaiveDate) -> Result<Vec<AttachmentId>, BlobError> {
        let mut ids: Vec<AttachmentId> = self
            .store()
            .list(Some(&day_prefix(day)))
            .map_ok(|meta| id_of(&meta.location))
            .try_collect::<Vec<_>>()
            .await?
            .into_iter()
            .flatten()
            .collect();
        ids.sort();
        Ok(ids)
    }

    fn secret(&self) -> Result<&[u8], BlobError> {
        match &self.backend {
            Backend::Directory { secret, .. } => Ok(secret),
            Backend::S3(_) => Err(BlobError::BadSignature(
                "this server's attachments live in S3: use the URL it gave",
            )),
        }
    }

    /// Checks a directory store upload URL's query for attachment `id`; returns what it allows.
    pub fn verify_upload(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<Upload, BlobError> {
        let field = |name: &str| query.get(name).cloned().unwrap_or_default();
        let grant = Grant {
            op: "put".into(),
            id: id.to_owned(),
            mime: field("mime"),
            size: field("size").parse().unwrap_or(0),
            sha256: field("sha256"),
            expires: field("expires").parse().unwrap_or(0),
        };
        grant.verify(&field("sig"), self.secret()?, Utc::now())?;
        let id = AttachmentId::parse("attachment", id)
            .map_err(|_| BlobError::BadSignature("not an attachment id"))?;
        Ok(Upload {
            id,
            mime: grant.mime,
            size: grant.size,
            sha256: grant.sha256,
        })
    }

    /// Checks a directory store download URL's query for attachment `id`; returns the media type to
    /// serve it as.
    pub fn verify_download(
        &self,
        id: &str,
        query: &HashMap<String, String>,
    ) -> Result<String, BlobError> {
        let field = |name: &str| query.get(name).cloned().unwrap_or_default();
        let grant = Grant {
            op: "get".into(),
            id: id.to_owned(),
            mime: field("mime"),
            size: 0,
            sha256: String::new(),
            expires: field("expires").parse().unwrap_or(0),
        };
        grant.verify(&field("sig"), self.secret()?, Utc::now())?;
        Ok(grant.mime)
    }

    /// Streams an upload into the directory store: stored (atomically, under its key) only if the
    /// bytes are exactly `upload.size` long and hash to `upload.sha256`.
    pub async fn write<S, E>(&self, upload: &Upload, body: S) -> Result<(), BlobError>
    where
        S: Stream<Item = Result<Bytes, E>> + Unpin,
        E: std::fmt::Display,
    {
        let store = match &self.backend {
            Backend::Directory { store, .. } => store,
            Backend::S3(_) => return Err(self.secret().err().unwrap_or(BlobError::NotFound)),
        };
        let mut writer = WriteMultipart::new(store.put_multipart(&path_of(&upload.id)).await?);
        let outcome = copy_checked(upload, body, &mut writer).await;
        match outcome {
            Ok(()) => {
                writer.finish().await?;
                Ok(())
            }
            Err(err) => {
                let _ = writer.abort().await;
                Err(err)
            }
        }
    }

    /// The bytes of attachment `id` from the directory store, and their length.
    pub async fn read(
        &self,
        id: &AttachmentId,
    ) -> Result<(u64, BoxStream<'static, Result<Bytes, object_store::Error>>), BlobError> {
        match self.store().get(&path_of(id)).await {
            Ok(found) => Ok((found.meta.size, found.into_stream())),
            Err(object_store::Error::NotFound { .. }) => Err(BlobError::NotFound),
            Err(err) => Err(err.into()),
        }
    }
}

/// Copies `body` into `writer`, counting and hashing; an error once it is longer than declared, or
/// at the end if its length or hash differ.
async fn copy_checked<S, E>(
    upload: &Upload,
    mut body: S,
    writer: &mut WriteMultipart,
) -> Result<(), BlobError>
where
    S: Stream<Item = Result<Bytes, E>> + Unpin,
    E: std::fmt::Display,
{
    let (mut length, mut hash) = (0u64, Sha256::new());
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| BlobError::Mismatch(format!("the upload broke off: {e}")))?;
        length += chunk.len() as u64;
        if length > upload.size {
            return Err(BlobError::Mismatch(format!(
                "more than the {} bytes declared",
                upload.size
            )));
        }
        hash.update(&chunk);
        writer.wait_for_capacity(4).await?;
        writer.put(chunk);
    }
    if length != upload.size {
        return Err(BlobError::Mismatch(format!(
            "{length} bytes, not the {} declared",
            upload.size
        )));
    }
    if hex::encode(hash.finalize()) != upload.sha256 {
        return Err(BlobError::Mismatch(
            "the bytes' SHA-256 is not the one declared".into(),
        ));
    }
    Ok(())
}
