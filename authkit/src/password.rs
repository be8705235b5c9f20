//! argon2id password hashes, as PHC strings (`$argon2id$v=19$m=19456,t=2,p=1$salt$hash`).

use argon2::password_hash::rand_core::OsRng;
use argon2::password_hash::SaltString;
use argon2::{Argon2, PasswordHash, PasswordHasher, PasswordVerifier};

/// Shortest accepted password, in characters.
pub const MIN_PASSWORD_CHARS: usize = 8;
/// Longest accepted password, in bytes: hashing cost must not be an attacker's lever.
pub const MAX_PASSWORD_BYTES: usize = 256;

#[derive(Debug, thiserror::Error)]
#[error("cannot hash the password: {0}")]
pub struct PasswordError(String);

/// Why a password is not acceptable, for a 400 naming the field.
pub fn validate_password(password: &str) -> Result<(), &'static str> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err("must be at least 8 characters long");
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err("must be at most 256 bytes long");
    }
    Ok(())
}

/// An argon2id hash with a fresh random salt and the crate's default cost (the OWASP recommendation:
/// 19 MiB, 2 passes). CPU-heavy (tens of ms): call it from a blocking thread.
pub fn hash_password(password: &str) -> Result<String, PasswordError> {
    let salt = SaltString::generate(&mut OsRng);
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| PasswordError(err.to_string()))
}

/// Whether `password` matches the stored PHC string; a malformed stored hash matches nothing.
/// CPU-heavy like [`hash_password`].
pub fn verify_password(stored_hash: &str, password: &str) -> bool {
    match PasswordHash::new(stored_hash) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => false,
    }
}

/// Why a rationed hash did not run or finish.
#[derive(Debug, thiserror::Error)]
pub enum HashingError {
    /// Every hashing slot stayed taken for the whole wait: answer 503 and let the client retry.
    #[error("every password hashing slot is busy")]
    Busy,
    #[error("password hashing failed: {0}")]
    Failed(String),
}

/// Hashes cost ~19 MiB and tens of ms of CPU each; at most this many run at once in a process, so a
/// burst queues (up to [`HASHING_WAIT`]) instead of exhausting memory or starving the event loop.
static HASHING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(2);
/// How long a hash waits for a slot before giving up with [`HashingError::Busy`].
const HASHING_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Runs a hash on a blocking thread, holding one of the [`HASHING`] slots. The permit moves into the
/// thread, so a caller that goes away (a client hanging up) cannot free the slot while the hash runs.
async fn rationed<T: Send + 'static>(
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, HashingError> {
    let permit = tokio::time::timeout(HASHING_WAIT, HASHING.acquire())
        .await
        .map_err(|_| HashingError::Busy)?
        .map_err(|_| HashingError::Busy)?;
    tokio::task::spawn_blocking(move || {
        let _permit = permit;
        work()
    })
    .await
    .map_err(|err| HashingError::Failed(err.to_string()))
}

/// [`hash_password`] off the event loop, rationed.
pub async fn hash_password_rationed(password: String) -> Result<String, HashingError> {
    rationed(move || hash_password(&password))
        .await?
        .map_err(|err| HashingError::Failed(err.to_string()))
}

/// [`verify_password`] off the event loop, rationed. Without a stored hash (no such account) a hash
/// no password matches is checked anyway, so that an unknown user takes as long as a wrong password
/// (no user enumeration by timing).
pub async fn verify_password_rationed(
    stored: Option<String>,
    password: String,
) -> Result<bool, HashingError> {
    rationed(move || match stored {
        Some(hash) => verify_password(&hash, &password),
        None => {
            verify_password(unmatchable_hash(), &password);
            false
        }
    })
    .await
}

fn unmatchable_hash() -> &'static str {
    static HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    HASH.get_or_init(|| hash_password("no account has this password").unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hash_verifies_its_password_only() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password(&hash, "correct horse"));
        assert!(!verify_password(&hash, "correct horsf"));
        assert!(!verify_password("not a hash", "correct horse"));
        // A fresh salt every time: equal passwords do not give equal hashes.
        assert_ne!(hash, hash_password("correct horse").unwrap());
    }

    #[tokio::test]
    async fn rationed_hashing_verifies_and_never_matches_a_missing_account() {
        let hash = hash_password_rationed("correct horse".into())
            .await
            .unwrap();
        assert!(
            verify_password_rationed(Some(hash.clone()), "correct horse".into())
                .await
                .unwrap()
        );
        assert!(!verify_password_rationed(Some(hash), "wrong horse".into())
            .await
            .unwrap());
        assert!(!verify_password_rationed(None, "correct horse".into())
            .await
            .unwrap());
    }

    #[test]
    fn password_rules() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"x".repeat(257)).is_err());
    }
}
