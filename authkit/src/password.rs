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

    #[test]
    fn password_rules() {
        assert!(validate_password("short").is_err());
        assert!(validate_password("long enough").is_ok());
        assert!(validate_password(&"x".repeat(257)).is_err());
    }
}
