//! Accounts and tokens, shared by ingest (registration, token checks) and reader (login, token checks).
//!
//! - **Passwords** are stored as argon2id PHC strings ([`hash_password`], [`verify_password`]); ingest
//!   hashes before the registration event is produced, so a plain password never reaches Kafka.
//! - **Access tokens** are HS256 JWTs (`sub` = user, `sid` = session, `exp`), signed with the stack's
//!   key ([`TokenKey`]) and verified by ingest and reader without a database: ingest stays stateless and a
//!   read costs no extra query. They are short-lived; logout and revocation act on the session's
//!   *refresh* token, which lives in the reader's database (see the reader's `sessions` module).
//! - [`Bearer`] is the axum extractor: `Authorization: Bearer …`, or `access_token` in the query on
//!   the routes marked [`QueryTokenAllowed`] (browsers' WebSocket and EventSource cannot set headers). Missing, malformed, forged or
//!   expired → `401` JSON; a valid token acting for someone else → `403` JSON ([`Bearer::require`]).
//! - [`LoginLimiter`]: login attempts per account and per address (the `governor` crate).
//!
//! # Layout
//! - [`password`]: argon2id hashing and verification, rationed so logins cannot starve the runtime.
//! - [`token`]: the signing key, access tokens and the [`Bearer`] extractor.
//! - [`limiter`]: login and registration rate limits, per-user write budgets.
//! - [`directory`]: which ids have accounts (writes to ids nobody owns are refused at the edge).
//! - [`moderation`]: the deployment's operators, and the accounts they disabled (polled).

mod directory;
mod limiter;
mod moderation;
mod password;
mod token;

pub use directory::{AccountDirectory, IdStatus};
pub use limiter::{
    AddressLimiter, Limited, LoginLimiter, LoginQuota, Refusal, WriteKind, WriteLimiter,
    WriteQuota, WriteQuotaArgs,
};
pub use moderation::{DisabledAccounts, ModerationArgs, Operators, DISABLED_POLL_MS};
pub use password::{
    hash_password, hash_password_rationed, validate_password, verify_password,
    verify_password_rationed, HashingError, PasswordError, MAX_PASSWORD_BYTES, MIN_PASSWORD_CHARS,
};
pub use token::{
    constant_time_eq, Bearer, Claims, KeyError, QueryTokenAllowed, TokenError, TokenKey,
    TokenKeyArg, MIN_DISTINCT_KEY_BYTES, MIN_KEY_BYTES,
};
