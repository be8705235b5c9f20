//! The storage settings every service that touches attachments shares (ingest, fanout, reader), as
//! flags with environment variables, and opening the store they name.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use clap::Args;
use object_store::aws::AmazonS3Builder;
use object_store::local::LocalFileSystem;

use crate::store::{Backend, Blobs, Limits};
use crate::BlobError;

#[derive(Debug, Clone, Args)]
pub struct BlobArgs {
    /// Where attachments live: `dir:PATH` (a local directory: one machine, or a volume every
    /// service mounts) or `s3://BUCKET` (credentials from `AWS_ACCESS_KEY_ID` and
    /// `AWS_SECRET_ACCESS_KEY`). Unset: attachments are off (`POST /v1/attachments` answers 501).
    #[arg(long, env = "FANLINE_BLOB_STORE")]
    pub blob_store: Option<String>,
    /// Key of the directory store's signed URLs (at least 32 characters); the same for ingest and
    /// the reader. Not used with S3.
    #[arg(long, env = "FANLINE_BLOB_SECRET", hide_env_values = true)]
    pub blob_secret: Option<String>,
    /// An S3-compatible endpoint other than AWS (MinIO, Garage, Ceph): `http://minio:9000`.
    #[arg(long, env = "FANLINE_S3_ENDPOINT")]
    pub s3_endpoint: Option<String>,
    #[arg(long, env = "FANLINE_S3_REGION", default_value = "us-east-1")]
    pub s3_region: String,
    /// How long a signed upload or download URL stays valid, in seconds.
    #[arg(long, env = "FANLINE_BLOB_URL_TTL_SECS", default_value_t = 900)]
    pub blob_url_ttl_secs: u64,
    /// Largest attachment, in bytes (default 25 MiB).
    #[arg(long, env = "FANLINE_ATTACHMENT_MAX_BYTES", default_value_t = 25 << 20)]
    pub attachment_max_bytes: u64,
    /// An upload no message or post references this many hours after it was made is deleted; a
    /// message must use an upload within this time less an hour (the sweep's margin).
    #[arg(long, env = "FANLINE_ATTACHMENT_ORPHAN_HOURS", default_value_t = 24)]
    pub attachment_orphan_hours: u32,
}

impl BlobArgs {
    /// Attachments off (tests and embedding that do not use them).
    pub fn off() -> Self {
        Self {
            blob_store: None,
            blob_secret: None,
            s3_endpoint: None,
            s3_region: "us-east-1".into(),
            blob_url_ttl_secs: 900,
            attachment_max_bytes: 25 << 20,
            attachment_orphan_hours: 24,
        }
    }

    /// A directory store at `dir` signed with `secret`.
    pub fn directory(dir: &std::path::Path, secret: &str) -> Self {
        Self {
            blob_store: Some(format!("dir:{}", dir.display())),
            blob_secret: Some(secret.to_owned()),
            ..Self::off()
        }
    }

    /// The origin browsers fetch attachments from when it is not a Fanline service's (S3 path-style
    /// URLs: the endpoint, or AWS's regional one), for the web client's Content-Security-Policy.
    pub fn browser_origin(&self) -> Option<String> {
        self.blob_store
            .as_deref()
            .filter(|s| s.starts_with("s3://"))?;
        Some(match &self.s3_endpoint {
            Some(endpoint) => endpoint.trim_end_matches('/').to_owned(),
            None => format!("https://s3.{}.amazonaws.com", self.s3_region),
        })
    }

    /// Checks the settings without touching the store (a binary's configuration check).
    pub fn check(&self) -> Result<(), BlobError> {
        match self.blob_store.as_deref().filter(|s| !s.is_empty()) {
            None => Ok(()),
            Some(spec) if spec.starts_with("dir:") => match &self.blob_secret {
                Some(secret) if secret.len() >= 32 => Ok(()),
                _ => Err(BlobError::Config(
                    "a dir: store needs FANLINE_BLOB_SECRET (at least 32 characters)".into(),
                )),
            },
            Some(spec) if spec.starts_with("s3://") => Ok(()),
            Some(spec) => Err(BlobError::Config(format!(
                "FANLINE_BLOB_STORE={spec}: expected dir:PATH or s3://BUCKET"
            ))),
        }
    }

    /// The configured store, or `None` when attachments are off.
    pub fn open(&self) -> Result<Option<Blobs>, BlobError> {
        let Some(spec) = self.blob_store.as_deref().filter(|s| !s.is_empty()) else {
            return Ok(None);
        };
        let ttl = Duration::from_secs(self.blob_url_ttl_secs.clamp(10, 7 * 24 * 3600));
        let backend = if let Some(dir) = spec.strip_prefix("dir:") {
            self.open_directory(PathBuf::from(dir))?
        } else if let Some(bucket) = spec.strip_prefix("s3://") {
            self.open_s3(bucket.trim_end_matches('/'))?
        } else {
            return Err(BlobError::Config(format!(
                "FANLINE_BLOB_STORE={spec}: expected dir:PATH or s3://BUCKET"
            )));
        };
        let limits = Limits {
            max_bytes: self
                .attachment_max_bytes
                .clamp(1, schemas::content::MAX_ATTACHMENT_BYTES),
            orphan_after: chrono::Duration::hours(i64::from(self.attachment_orphan_hours.max(2))),
        };
        Ok(Some(Blobs::new(backend, ttl, limits)))
    }

    fn open_directory(&self, dir: PathBuf) -> Result<Backend, BlobError> {
        let secret = self
            .blob_secret
            .as_deref()
            .filter(|s| s.len() >= 32)
            .ok_or_else(|| {
                BlobError::Config(
                    "a dir: store needs FANLINE_BLOB_SECRET (at least 32 characters)".into(),
                )
            })?;
        std::fs::create_dir_all(&dir)
            .map_err(|e| BlobError::Config(format!("cannot create {}: {e}", dir.display())))?;
        let store = LocalFileSystem::new_with_prefix(&dir)?.with_automatic_cleanup(true);
        Ok(Backend::Directory {
            store: Arc::new(store),
            secret: secret.as_bytes().to_vec(),
        })
    }

    fn open_s3(&self, bucket: &str) -> Result<Backend, BlobError> {
        if bucket.is_empty() || bucket.contains('/') {
            return Err(BlobError::Config(format!(
                "s3://{bucket}: name a bucket, nothing after it"
            )));
        }
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(bucket)
            .with_region(&self.s3_region);
        if let Some(endpoint) = &self.s3_endpoint {
            builder = builder
                .with_endpoint(endpoint)
                .with_allow_http(endpoint.starts_with("http://"));
        }
        Ok(Backend::S3(Arc::new(builder.build()?)))
    }
}
