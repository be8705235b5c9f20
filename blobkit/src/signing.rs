//! The directory store's signed URLs. An S3 store hands out SigV4 presigned URLs that S3 itself
//! checks; a directory has nobody to check them, so ingest (uploads) and the reader (downloads)
//! serve them and verify an HMAC-SHA256 over everything the URL grants: the operation, the id, the
//! declared size, type and SHA-256 of an upload, and the expiry.

use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::BlobError;

/// What a signed URL grants. The query string carries these fields plus `sig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// `put` or `get`.
    pub op: String,
    pub id: String,
    /// The media type: declared by the upload, served with the download.
    pub mime: String,
    /// An upload's exact size in bytes (0 for downloads).
    pub size: u64,
    /// An upload's SHA-256 (empty for downloads).
    pub sha256: String,
    /// Unix seconds.
    pub expires: i64,
}

impl Grant {
    fn message(&self) -> String {
        format!(
            "{}\n{}\n{}\n{}\n{}\n{}",
            self.op, self.id, self.mime, self.size, self.sha256, self.expires
        )
    }

    /// The signature of this grant under `secret`, hex.
    pub fn sign(&self, secret: &[u8]) -> String {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(self.message().as_bytes());
        hex::encode(mac.finalize().into_bytes())
    }

    /// The query string of a URL granting this.
    pub fn query(&self, secret: &[u8]) -> String {
        let mut query = form_pairs(self);
        query.push(("sig", self.sign(secret)));
        query
            .iter()
            .map(|(k, v)| format!("{k}={}", percent(v)))
            .collect::<Vec<_>>()
            .join("&")
    }

    /// Checks `sig` (constant time) and the expiry; `op` and `id` must be what the URL's route says.
    pub fn verify(&self, sig: &str, secret: &[u8], now: DateTime<Utc>) -> Result<(), BlobError> {
        let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes any key length");
        mac.update(self.message().as_bytes());
        let sig = hex::decode(sig).map_err(|_| BlobError::BadSignature("sig is not hex"))?;
        mac.verify_slice(&sig)
            .map_err(|_| BlobError::BadSignature("the signature does not match this URL"))?;
        if now.timestamp() > self.expires {
            return Err(BlobError::BadSignature(
                "the URL expired: ask for a new one",
            ));
        }
        Ok(())
    }
}

fn form_pairs(grant: &Grant) -> Vec<(&'static str, String)> {
    let mut pairs = vec![("mime", grant.mime.clone())];
    if grant.op == "put" {
        pairs.push(("size", grant.size.to_string()));
        pairs.push(("sha256", grant.sha256.clone()));
    }
    pairs.push(("expires", grant.expires.to_string()));
    pairs
}

/// Percent-encoding for the few characters a media type or hex string can hold that a query may not.
fn percent(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn grant() -> Grant {
        Grant {
            op: "put".into(),
            id: "01JD8Z5V2Q3W4E5R6T7Y8V9K0M".into(),
            mime: "image/png".into(),
            size: 10,
            sha256: "ab".repeat(32),
            expires: 2_000_000_000,
        }
    }

    #[test]
    fn a_grant_verifies_only_unchanged_unexpired_and_under_its_secret() {
        let now = Utc::now();
        let sig = grant().sign(b"secret");
        assert!(grant().verify(&sig, b"secret", now).is_ok());
        assert!(grant().verify(&sig, b"other", now).is_err());
        let bigger = Grant {
            size: 11,
            ..grant()
        };
        assert!(bigger.verify(&sig, b"secret", now).is_err());
        let past = Grant {
            expires: 1,
            ..grant()
        };
        assert!(past.verify(&past.sign(b"secret"), b"secret", now).is_err());
        assert!(grant().verify("zz", b"secret", now).is_err());
        assert!(grant()
            .query(b"secret")
            .contains("mime=image%2Fpng&size=10&"));
    }
}
