//! Log in, refresh, log out.
//!
//! An access token is a short-lived signed token (default 15 minutes) that ingest and reader check
//! without a database. A login also creates a *session*: a row holding the SHA-256 of a refresh token
//! (default lifetime 30 days) and its generation. `POST /v1/sessions/refresh` trades a refresh token
//! for a new access token and a new refresh token of the next generation (the old one stops working).
//! A refresh token of an older generation used again means two parties hold the session (one stole
//! it): the session is revoked for both.
//! Logout (`DELETE /v1/sessions/current`) revokes the session, "log out everywhere"
//! (`DELETE /v1/sessions`) every session of the user: refresh tokens stop working at once, the
//! sessions' WebSockets and event streams close ([`crate::session_ends`]), and access tokens end
//! with their short lifetime — that window (for plain HTTP requests) is the price of checking tokens
//! without a database, and why access tokens are short.
//!
//! The session table is the reader's own state, not a timeline: it is never replayed from Kafka
//! (replaying would resurrect revoked sessions), so the reader writes it directly.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Extension, Json, Router};
use httpkit::openapi::{BadRequest, BodyRejected, TooManyRequests, Unauthorized, Unavailable};
use httpkit::{ApiError, ClientAddress, JsonBody};
use schemas::api::{Credentials, RefreshRequest, SessionTokens};
use schemas::UserId;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use authkit::{Bearer, LoginLimiter, Refusal, TokenKey};

use crate::failure::database_error;
use crate::presence::Presence;

/// Lifetimes and limits of sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

pub struct Sessions {
    pub pool: PgPool,
    /// Password changes are appended to the topic like every write.
    pub producer: kafkakit::EventProducer,
    pub key: Arc<TokenKey>,
    pub limiter: LoginLimiter,
    pub policy: SessionPolicy,
}

pub fn router(sessions: Arc<Sessions>) -> Router {
    Router::new()
        .route("/v1/sessions", post(login))
        .route("/v1/sessions/refresh", post(refresh))
        .route("/v1/sessions/current", delete(logout))
        .route("/v1/sessions", delete(logout_everywhere))
        .with_state(sessions)
}

fn wrong_credentials() -> ApiError {
    ApiError::new(StatusCode::UNAUTHORIZED, "unknown user or wrong password")
}

fn bad_refresh_token() -> ApiError {
    ApiError::new(
        StatusCode::UNAUTHORIZED,
        "refresh token unknown, used, revoked or expired: log in again",
    )
}

/// Whether `password` is the account's (an unknown account takes as long and says no); a wrong one
/// counts against the account's failure budget.
pub(crate) async fn is_password(
    sessions: &Sessions,
    user: &UserId,
    password: String,
) -> Result<bool, ApiError> {
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM accounts WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(&sessions.pool)
            .await
            .map_err(database_error)?;
    let matches = password_matches(stored, password).await?;
    if !matches {
        sessions.limiter.failed(user.as_str());
    }
    Ok(matches)
}

async fn password_matches(stored: Option<String>, password: String) -> Result<bool, ApiError> {
    authkit::verify_password_rationed(stored, password)
        .await
        .map_err(|err| match err {
            authkit::HashingError::Busy => ApiError::unavailable("too many logins at once"),
            authkit::HashingError::Failed(_) => {
                tracing::error!(error = %err, "password check failed");
                ApiError::internal()
            }
        })
}

/// A refresh token as sent: `SESSION.GENERATION.SECRET`, or `SESSION.SECRET` from before
/// generations (a random secret; generation 0).
struct RefreshToken<'a> {
    session: &'a str,
    /// `None` for a two-part token.
    generation: Option<i64>,
    secret: &'a str,
}

impl<'a> RefreshToken<'a> {
    fn parse(token: &'a str) -> Option<Self> {
        let mut parts = token.split('.');
        let (session, second, third) = (parts.next()?, parts.next()?, parts.next());
        if parts.next().is_some() {
            return None;
        }
        Some(match third {
            None => RefreshToken {
                session,
                generation: None,
                secret: second,
            },
            Some(secret) => RefreshToken {
                session,
                generation: Some(second.parse().ok().filter(|g: &i64| *g >= 0)?),
                secret,
            },
        })
    }

    fn hash(&self) -> Vec<u8> {
        Sha256::digest(self.secret.as_bytes()).to_vec()
    }

    /// Whether the key made this token (a genuine one of its generation, current or not).
    fn is_genuine(&self, key: &TokenKey) -> bool {
        let Some(generation) = self.generation else {
            return false;
        };
        let expected = key.refresh_secret(self.session, generation);
        authkit::constant_time_eq(expected.as_bytes(), self.secret.as_bytes())
    }
}

/// Refresh token `generation` of a session and the SHA-256 its row keeps.
fn refresh_secret(key: &TokenKey, session_id: &str, generation: i64) -> (String, Vec<u8>) {
    let secret = key.refresh_secret(session_id, generation);
    let hash = Sha256::digest(secret.as_bytes()).to_vec();
    (secret, hash)
}

fn tokens(sessions: &Sessions, user: &str, session_id: &str, generation: i64) -> SessionTokens {
    let (secret, _) = refresh_secret(&sessions.key, session_id, generation);
    SessionTokens {
        user: user.to_owned(),
        session_id: session_id.to_owned(),
        access_token: sessions
            .key
            .issue(user, session_id, sessions.policy.access_ttl),
        expires_in: sessions.policy.access_ttl.as_secs(),
        refresh_token: format!("{session_id}.{generation}.{secret}"),
        refresh_expires_in: sessions.policy.refresh_ttl.as_secs(),
    }
}

/// Log in.
///
/// Checks the password and opens a session: a short-lived access token for `Authorization: Bearer`
/// (ingest and reader) and a refresh token. Attempts are limited per client address, per account and
/// address, and — failures only — per account (`429` with `Retry-After`; see README "Accounts and
/// tokens"). An account registered a moment ago logs in once fanout applied it.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in.", body = SessionTokens),
        (status = 403, description = "An operator disabled the account.", body = schemas::api::ErrorBody),
        BadRequest, Unauthorized, BodyRejected, TooManyRequests, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn login(
    State(sessions): State<Arc<Sessions>>,
    Extension(presence): Extension<Arc<Presence>>,
    client: ClientAddress,
    JsonBody(request): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &request.user)?;
    if let Err(refused) = admit(&sessions, &user, client).await? {
        return Ok(refused);
    }
    if !is_password(&sessions, &user, request.password).await? {
        tracing::info!(user = %user, address = %client.0, "login refused");
        return Err(wrong_credentials());
    }
    if is_disabled(&sessions.pool, &user).await? {
        tracing::info!(user = %user, "login refused: the account is disabled");
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "this account is disabled".into(),
            field: Some("user".into()),
        });
    }
    let session_id = ulid::Ulid::new().to_string();
    let (_, hash) = refresh_secret(&sessions.key, &session_id, 0);
    sqlx::query(
        "INSERT INTO sessions (session_id, user_id, refresh_hash, expires_at, login_address)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4), $5::inet)",
    )
    .bind(&session_id)
    .bind(user.as_str())
    .bind(hash)
    .bind(sessions.policy.refresh_ttl.as_secs_f64())
    .bind(client.limit_key().to_string())
    .execute(&sessions.pool)
    .await
    .map_err(database_error)?;
    tracing::info!(user = %user, session = %session_id, "logged in");
    presence.touch(&user).await;
    Ok(Json(tokens(&sessions, user.as_str(), &session_id, 0)).into_response())
}

/// Whether this login attempt may check a password: `Ok(Err(429))` when a budget is spent.
pub(crate) async fn admit(
    sessions: &Sessions,
    user: &UserId,
    client: ClientAddress,
) -> Result<Result<(), Response>, ApiError> {
    let refused = |message: &str, wait| Ok(Err(httpkit::error::too_many_requests(message, wait)));
    match sessions.limiter.check(user.as_str(), client.0) {
        Err(Refusal::Address(wait)) => {
            tracing::warn!(user = %user, address = %client.0, "login rate-limited");
            refused(
                "too many login attempts from this address: wait and try again",
                wait,
            )
        }
        Err(Refusal::Account(wait)) => refused("too many failed logins for this account", wait),
        Ok(false) => Ok(Ok(())),
        // Guessed at from many addresses: only the account's known devices may go on.
        Ok(true) if known_address(sessions, user, client).await? => Ok(Ok(())),
        Ok(true) => {
            let wait = sessions
                .limiter
                .account_spent(user.as_str())
                .unwrap_or(Duration::from_secs(60));
            tracing::warn!(user = %user, address = %client.0, "login refused: account's failure budget spent");
            refused(
                "too many failed logins for this account: wait, or log in from a device that has logged in before",
                wait,
            )
        }
    }
}

/// Whether the account has a live session opened from this client address.
async fn known_address(
    sessions: &Sessions,
    user: &UserId,
    client: ClientAddress,
) -> Result<bool, ApiError> {
    sqlx::query_scalar(
        "SELECT EXISTS (SELECT 1 FROM sessions WHERE user_id = $1 AND login_address = $2::inet
                        AND revoked_at IS NULL AND expires_at > now())",
    )
    .bind(user.as_str())
    .bind(client.limit_key().to_string())
    .fetch_one(&sessions.pool)
    .await
    .map_err(database_error)
}

/// Refresh.
///
/// Trades a refresh token for a new access token and a refresh token of the next generation; the one
/// sent stops working. Sending an older generation again revokes the session (it was copied).
#[utoipa::path(
    post, path = "/v1/sessions/refresh", tag = "sessions",
    request_body = RefreshRequest,
    responses(
        (status = 200, description = "New tokens.", body = SessionTokens),
        BadRequest, Unauthorized, BodyRejected, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn refresh(
    State(sessions): State<Arc<Sessions>>,
    JsonBody(request): JsonBody<RefreshRequest>,
) -> Result<Json<SessionTokens>, ApiError> {
    let token = RefreshToken::parse(&request.refresh_token).ok_or_else(bad_refresh_token)?;
    let generation = token.generation.unwrap_or(0);
    let next = generation.checked_add(1).ok_or_else(bad_refresh_token)?;
    let (_, new_hash) = refresh_secret(&sessions.key, token.session, next);
    // Compare-and-swap: of two concurrent refreshes with one token, one wins — and the other is a
    // reuse, which revokes the session: clients refresh one at a time (across tabs too). A grace
    // interval (Auth0's "reuse interval") would let a thief racing the owner pass; not taken.
    let user: Option<String> = sqlx::query_scalar(
        "UPDATE sessions SET previous_hash = refresh_hash, refresh_hash = $3, generation = $5,
                             refreshed_at = now()
         WHERE session_id = $1 AND refresh_hash = $2 AND generation = $4
           AND revoked_at IS NULL AND expires_at > now()
           AND NOT EXISTS (SELECT 1 FROM disabled_accounts d WHERE d.user_id = sessions.user_id)
         RETURNING user_id",
    )
    .bind(token.session)
    .bind(token.hash())
    .bind(new_hash)
    .bind(generation)
    .bind(next)
    .fetch_optional(&sessions.pool)
    .await
    .map_err(database_error)?;
    if let Some(user) = user {
        return Ok(Json(tokens(&sessions, &user, token.session, next)));
    }
    revoke_if_reused(&sessions, &token).await?;
    Err(bad_refresh_token())
}

/// Whether an operator disabled the account (asked at login, which is rare, rather than of the
/// polled set: exact, whatever the poll interval).
async fn is_disabled(pool: &PgPool, user: &UserId) -> Result<bool, ApiError> {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM disabled_accounts WHERE user_id = $1)")
        .bind(user.as_str())
        .fetch_one(pool)
        .await
        .map_err(database_error)
}

/// Ends every session of accounts an operator disabled (their sockets and streams close on every
/// reader); called by the poller of disabled accounts.
pub(crate) async fn end_sessions_of(pool: &PgPool, users: Vec<String>) {
    let ended: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(&revoke_notifying(
        "user_id = ANY($1) AND revoked_at IS NULL",
    ))
    .bind(&users)
    .fetch_all(pool)
    .await;
    match ended {
        Ok(ended) => {
            tracing::info!(sessions = ended.len(), accounts = ?users, "sessions of disabled accounts ended")
        }
        Err(err) => tracing::warn!(error = %err, "cannot end the sessions of disabled accounts"),
    }
}

/// A refresh token that is not the current one: if it is a genuine older one (or, for two-part
/// tokens, the one just before the current), two parties hold the session — end it for both.
async fn revoke_if_reused(sessions: &Sessions, token: &RefreshToken<'_>) -> Result<(), ApiError> {
    let reused: Option<String> = if token.is_genuine(&sessions.key) {
        sqlx::query_scalar(&revoke_notifying(
            "session_id = $1 AND generation > $2 AND revoked_at IS NULL",
        ))
        .bind(token.session)
        .bind(token.generation.unwrap_or(0))
        .fetch_optional(&sessions.pool)
        .await
    } else if token.generation.is_none() {
        sqlx::query_scalar(&revoke_notifying(
            "session_id = $1 AND previous_hash = $2 AND revoked_at IS NULL",
        ))
        .bind(token.session)
        .bind(token.hash())
        .fetch_optional(&sessions.pool)
        .await
    } else {
        return Ok(());
    }
    .map_err(database_error)?;
    if let Some(user) = reused {
        tracing::warn!(user = %user, session = %token.session, "an old refresh token was used again: session revoked");
    }
    Ok(())
}

/// `UPDATE sessions SET revoked_at = now() WHERE <condition>`, notifying each revoked session's end
/// (`s:<id>` on the hub's channel, delivered at commit to every reader) and returning its user.
pub(crate) fn revoke_notifying(condition: &str) -> String {
    format!(
        "WITH ended AS (
             UPDATE sessions SET revoked_at = now() WHERE {condition}
             RETURNING session_id, user_id)
         SELECT user_id FROM ended, LATERAL pg_notify('{channel}', '{prefix}' || session_id)",
        channel = crate::hub::CHANNEL,
        prefix = schemas::db::SESSION_ENDED_PREFIX,
    )
}

/// Log out.
///
/// Revokes the token's session: its refresh token stops working and its WebSockets and event streams
/// close now; access tokens already issued end with their lifetime (at most `expires_in` of the
/// login, 15 minutes by default).
#[utoipa::path(
    delete, path = "/v1/sessions/current", tag = "sessions",
    responses(
        (status = 204, description = "The session is revoked."),
        Unauthorized, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn logout(
    bearer: Bearer,
    State(sessions): State<Arc<Sessions>>,
) -> Result<StatusCode, ApiError> {
    let _: Vec<String> = sqlx::query_scalar(&revoke_notifying(
        "session_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    ))
    .bind(&bearer.claims.sid)
    .bind(bearer.user())
    .fetch_all(&sessions.pool)
    .await
    .map_err(database_error)?;
    tracing::info!(user = %bearer.user(), session = %bearer.claims.sid, "logged out");
    Ok(StatusCode::NO_CONTENT)
}

/// Log out everywhere.
///
/// Revokes every session of the token's user, this one included: refresh tokens stop working and
/// WebSockets and event streams close now, on every device.
#[utoipa::path(
    delete, path = "/v1/sessions", tag = "sessions",
    responses(
        (status = 204, description = "Every session of the user is revoked."),
        Unauthorized, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn logout_everywhere(
    bearer: Bearer,
    State(sessions): State<Arc<Sessions>>,
) -> Result<StatusCode, ApiError> {
    let ended: Vec<String> =
        sqlx::query_scalar(&revoke_notifying("user_id = $1 AND revoked_at IS NULL"))
            .bind(bearer.user())
            .fetch_all(&sessions.pool)
            .await
            .map_err(database_error)?;
    tracing::info!(user = %bearer.user(), sessions = ended.len(), "logged out everywhere");
    Ok(StatusCode::NO_CONTENT)
}

/// Forgets what can never be used again, hourly: sessions expired or revoked more than a day ago, and
/// the cursors of devices not seen for 90 days (such a device resumes from the start, or from `after`).
pub async fn clean_up_periodically(pool: PgPool) {
    let mut hourly = tokio::time::interval(Duration::from_secs(3600));
    loop {
        hourly.tick().await;
        let sessions = sqlx::query(
            "DELETE FROM sessions
             WHERE expires_at < now() - interval '1 day' OR revoked_at < now() - interval '1 day'",
        )
        .execute(&pool)
        .await;
        let cursors =
            sqlx::query("DELETE FROM device_cursors WHERE updated_at < now() - interval '90 days'")
                .execute(&pool)
                .await;
        match (sessions, cursors) {
            (Ok(sessions), Ok(cursors)) => tracing::info!(
                sessions = sessions.rows_affected(),
                device_cursors = cursors.rows_affected(),
                "removed expired sessions and stale device cursors"
            ),
            (Err(err), _) | (_, Err(err)) => {
                tracing::warn!(error = %err, "cleaning up sessions failed; trying again in an hour")
            }
        }
    }
}
