//! Signed, expiring access tokens and the extractor that checks them on every protected route.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use hmac::{Hmac, Mac};
use httpkit::ApiError;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use schemas::UserId;
use serde::{Deserialize, Serialize};
use sha2::Sha256;

/// Shortest accepted signing key, in bytes (HS256 wants at least the hash's 32 bytes).
pub const MIN_KEY_BYTES: usize = 32;

#[derive(Debug, thiserror::Error)]
#[error("the token signing key {0}; generate one with `openssl rand -base64 48`")]
pub struct KeyError(String);

/// Fewest different byte values a key may have: a random key has nearly every value its alphabet
/// offers (base64 of 32 bytes about 25, 64 hex digits almost always 16 — a bound of 16 would refuse a
/// quarter of random hex keys), a key typed as a word or a pattern ("aaaa…", "passwordpassword…": 7)
/// fewer.
pub const MIN_DISTINCT_KEY_BYTES: usize = 10;

/// Refuses keys too short, or so repetitive that they cannot be random.
fn check_key(secret: &[u8]) -> Result<(), KeyError> {
    if secret.len() < MIN_KEY_BYTES {
        return Err(KeyError(format!(
            "must be at least {MIN_KEY_BYTES} bytes long (got {})",
            secret.len()
        )));
    }
    let distinct = secret
        .iter()
        .collect::<std::collections::HashSet<_>>()
        .len();
    if distinct < MIN_DISTINCT_KEY_BYTES {
        return Err(KeyError(format!(
            "is not random: {distinct} different bytes, at least {MIN_DISTINCT_KEY_BYTES} wanted"
        )));
    }
    Ok(())
}

/// Why a token was refused; every variant is a `401`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("missing bearer token")]
    Missing,
    #[error("malformed bearer token")]
    Malformed,
    #[error("invalid token signature")]
    Forged,
    #[error("token expired")]
    Expired,
}

/// What an access token says: who, which session, until when (seconds since the epoch).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub sid: String,
    pub iat: i64,
    pub exp: i64,
}

/// The `--token-key` flag of every service that checks tokens (ingest and reader must share it).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct TokenKeyArg {
    /// The key access tokens are signed with (HS256), at least 32 bytes; ingest and reader must share it.
    /// `scripts/up.sh` generates one into `.fanline/token.key`. There is no default: a stack without
    /// a key does not start.
    #[arg(
        long = "token-key",
        env = "FANLINE_TOKEN_KEY",
        hide_env_values = true,
        default_value = "",
        hide_default_value = true
    )]
    pub secret: secrecy::SecretString,
}

impl TokenKeyArg {
    pub fn new(secret: &str) -> Self {
        TokenKeyArg {
            secret: secret.to_owned().into(),
        }
    }

    pub fn is_empty(&self) -> bool {
        use secrecy::ExposeSecret;
        self.secret.expose_secret().is_empty()
    }

    /// The key, or why this secret cannot be one.
    pub fn key(&self) -> Result<TokenKey, KeyError> {
        use secrecy::ExposeSecret;
        TokenKey::from_secret(self.secret.expose_secret().as_bytes())
    }
}

/// The stack's HMAC key: one secret shared by ingest and reader.
#[derive(Clone)]
pub struct TokenKey {
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    /// HMAC-SHA256 keyed with the same secret, for refresh-token secrets ([`TokenKey::refresh_secret`]).
    refresh: Hmac<Sha256>,
}

impl std::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TokenKey(<secret>)")
    }
}

impl TokenKey {
    pub fn from_secret(secret: &[u8]) -> Result<TokenKey, KeyError> {
        check_key(secret)?;
        let mut validation = Validation::new(Algorithm::HS256);
        validation.leeway = 0;
        validation.set_required_spec_claims(&["exp", "sub"]);
        let refresh = Hmac::<Sha256>::new_from_slice(secret)
            .map_err(|err| KeyError(format!("cannot key HMAC: {err}")))?;
        Ok(TokenKey {
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            refresh,
        })
    }

    /// The code an operator gives the owner of an id that holds data but has no account, so that
    /// they (and nobody else) can register it: HMAC-SHA256 of the id under the stack's key (`ingest
    /// --claim-code USER` prints it). Stateless, like every check ingest makes.
    pub fn claim_code(&self, user: &str) -> String {
        let mut mac = self.refresh.clone();
        mac.update(b"fanline claim code\0");
        mac.update(user.as_bytes());
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            mac.finalize().into_bytes(),
        )
    }

    /// Whether `code` is the claim code of `user`.
    pub fn is_claim_code(&self, user: &str, code: &str) -> bool {
        constant_time_eq(self.claim_code(user).as_bytes(), code.as_bytes())
    }

    /// The secret of refresh token number `generation` of `session`: HMAC-SHA256 of both under the
    /// stack's key (a prefix keeps it apart from token signatures). Only the key's holder can make
    /// one, so a well-formed old token proves it was issued — its reuse is theft, not a guess — and
    /// the database holds no secret (only the current one's SHA-256).
    pub fn refresh_secret(&self, session: &str, generation: i64) -> String {
        let mut mac = self.refresh.clone();
        mac.update(b"fanline refresh token\0");
        mac.update(session.as_bytes());
        mac.update(b"\0");
        mac.update(&generation.to_be_bytes());
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            mac.finalize().into_bytes(),
        )
    }

    /// A token for `user` in session `session`, valid for `ttl` from now.
    pub fn issue(&self, user: &str, session: &str, ttl: Duration) -> String {
        let now = chrono::Utc::now().timestamp();
        let claims = Claims {
            sub: user.to_owned(),
            sid: session.to_owned(),
            iat: now,
            exp: now + ttl.as_secs() as i64,
        };
        // HS256 over a small struct of strings and numbers cannot fail.
        jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            .unwrap_or_default()
    }

    pub fn verify(&self, token: &str) -> Result<Claims, TokenError> {
        use jsonwebtoken::errors::ErrorKind;
        jsonwebtoken::decode::<Claims>(token, &self.decoding, &self.validation)
            .map(|data| data.claims)
            .map_err(|err| match err.kind() {
                ErrorKind::ExpiredSignature => TokenError::Expired,
                ErrorKind::InvalidSignature => TokenError::Forged,
                _ => TokenError::Malformed,
            })
    }
}

fn unauthorized(err: &TokenError) -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, err.to_string())
}

/// Marks routes that may take the token as `access_token` in the query (add it with
/// `Router::layer(Extension(QueryTokenAllowed))`): only those whose clients cannot set headers.
#[derive(Debug, Clone, Copy)]
pub struct QueryTokenAllowed;

/// An authenticated caller. Extracting it needs the [`TokenKey`] as a request extension
/// (`Router::layer(Extension(Arc<TokenKey>))`).
#[derive(Debug, Clone)]
pub struct Bearer {
    pub claims: Claims,
}

impl Bearer {
    /// The caller's user id.
    pub fn user(&self) -> &str {
        &self.claims.sub
    }

    /// `403` unless the caller is `user`; `field` names where `user` came from.
    pub fn require(&self, field: &'static str, user: &str) -> Result<(), ApiError> {
        if self.claims.sub == user {
            return Ok(());
        }
        Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: format!("the token is for '{}', not for this user", self.claims.sub).into(),
            field: Some(field.into()),
        })
    }

    /// `403` unless the caller is `user`, for a parsed id.
    pub fn require_user(&self, field: &'static str, user: &UserId) -> Result<(), ApiError> {
        self.require(field, user.as_str())
    }

    /// The caller a token names, if the key made it, it has not expired and its account is neither
    /// disabled nor deleted: `401` / `403` otherwise. For tokens that come another way than a request's
    /// headers, too (a socket's first frame).
    pub fn verify(
        key: &TokenKey,
        disabled: Option<&crate::DisabledAccounts>,
        token: &str,
    ) -> Result<Bearer, ApiError> {
        let claims = key.verify(token).map_err(|err| unauthorized(&err))?;
        if let Some(disabled) = disabled {
            disabled.check(&claims.sub)?;
        }
        Ok(Bearer { claims })
    }

    /// The token of a request: the `Authorization: Bearer` header, else, on routes carrying the
    /// [`QueryTokenAllowed`] extension, the `access_token` query parameter (browsers cannot set
    /// headers on WebSocket or EventSource requests).
    pub fn token_of(parts: &Parts) -> Result<String, TokenError> {
        if let Some(value) = parts.headers.get(header::AUTHORIZATION) {
            let value = value.to_str().map_err(|_| TokenError::Malformed)?;
            let (scheme, token) = value.split_once(' ').ok_or(TokenError::Malformed)?;
            if !scheme.eq_ignore_ascii_case("bearer") || token.trim().is_empty() {
                return Err(TokenError::Malformed);
            }
            return Ok(token.trim().to_owned());
        }
        // URLs end up in proxy logs and histories: only routes that opt in take a token there.
        if parts.extensions.get::<QueryTokenAllowed>().is_none() {
            return Err(TokenError::Missing);
        }
        let query = parts.uri.query().unwrap_or("");
        form_urlencoded::parse(query.as_bytes())
            .find(|(name, _)| name == "access_token")
            .map(|(_, value)| value.into_owned())
            .ok_or(TokenError::Missing)
    }
}

impl<S: Send + Sync> FromRequestParts<S> for Bearer {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let Some(key) = parts.extensions.get::<Arc<TokenKey>>().cloned() else {
            // A router built without the key layer is a wiring bug, not the client's fault.
            tracing::error!("no TokenKey extension on a protected route");
            return Err(ApiError::internal());
        };
        let token = Bearer::token_of(parts).map_err(|err| unauthorized(&err))?;
        let disabled = parts.extensions.get::<Arc<crate::DisabledAccounts>>();
        Bearer::verify(&key, disabled.map(Arc::as_ref), &token)
    }
}

/// Compares two secrets without telling, by its time, how much of a guess was right.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(byte: u8) -> TokenKey {
        let secret: Vec<u8> = (0..32u8)
            .map(|i| i.wrapping_mul(7).wrapping_add(byte))
            .collect();
        TokenKey::from_secret(&secret).unwrap()
    }

    #[test]
    fn claim_codes_are_per_user_and_per_key() {
        let code = key(1).claim_code("carol");
        assert!(key(1).is_claim_code("carol", &code));
        assert!(!key(1).is_claim_code("dave", &code));
        assert!(!key(2).is_claim_code("carol", &code));
        assert!(!key(1).is_claim_code("carol", ""));
    }

    #[test]
    fn short_and_repetitive_keys_are_refused() {
        assert!(TokenKey::from_secret(b"too short").is_err());
        // Long enough, but typed, not drawn (issue 19, finding 8: 32 ASCII characters passed).
        for weak in [
            &b"aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"[..],
            b"passwordpasswordpasswordpassword",
        ] {
            let err = TokenKey::from_secret(weak).unwrap_err().to_string();
            assert!(err.contains("not random"), "{err}");
        }
        assert!(TokenKey::from_secret(b"hQ3v9Zr1Lx0pW8eT5yKc2NbU7mJ4sAdF").is_ok());
        // Hex, as `openssl rand -hex 32` makes it.
        assert!(TokenKey::from_secret(
            b"9f2c4e1a7b3d5086c2e4f6a8b0d1e3f57a9c2b4d6e8f0a1c3e5b7d9f1a2c4e6b"
        )
        .is_ok());
    }

    #[test]
    fn a_token_verifies_with_its_key_only_and_expires() {
        let token = key(1).issue("alice", "s1", Duration::from_secs(60));
        let claims = key(1).verify(&token).unwrap();
        assert_eq!((claims.sub.as_str(), claims.sid.as_str()), ("alice", "s1"));
        assert_eq!(key(2).verify(&token), Err(TokenError::Forged));
        assert_eq!(key(1).verify("a.b.c"), Err(TokenError::Malformed));
        assert_eq!(key(1).verify(""), Err(TokenError::Malformed));
        let expired = key(1).issue("alice", "s1", Duration::ZERO);
        std::thread::sleep(Duration::from_millis(1100));
        assert_eq!(key(1).verify(&expired), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_with_an_edited_subject_is_forged() {
        let token = key(1).issue("alice", "s1", Duration::from_secs(60));
        let parts: Vec<&str> = token.split('.').collect();
        use base64::Engine;
        let engine = base64::engine::general_purpose::URL_SAFE_NO_PAD;
        let payload = String::from_utf8(engine.decode(parts[1]).unwrap()).unwrap();
        let edited = engine.encode(payload.replace("alice", "mallory"));
        let forged = format!("{}.{}.{}", parts[0], edited, parts[2]);
        assert_eq!(key(1).verify(&forged), Err(TokenError::Forged));
    }
}
