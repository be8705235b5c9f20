//! Log in, refresh, log out.
//!
//! An access token is a short-lived signed token (default 15 minutes) that ingest and reader check
//! without a database. A login also creates a *session*: a row holding the SHA-256 of a refresh token
//! (default lifetime 30 days). `POST /v1/sessions/refresh` trades a refresh token for a new access token
//! and a new refresh token (the old one stops working). A refresh token used a second time means two
//! parties hold the session (one stole it): the session is revoked for both.
//! Logout revokes the session: its refresh token stops working at once, and its access tokens end with
//! their short lifetime — that window is the price of checking tokens without a database, and why
//! access tokens are short.
//!
//! The session table is the reader's own state, not a timeline: it is never replayed from Kafka
//! (replaying would resurrect revoked sessions), so the reader writes it directly.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{ConnectInfo, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, post};
use axum::{Json, Router};
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use httpkit::openapi::{BadRequest, BodyRejected, TooManyRequests, Unauthorized, Unavailable};
use httpkit::{ApiError, JsonBody};
use rand::RngCore;
use schemas::api::{Credentials, RefreshRequest, SessionTokens};
use schemas::UserId;
use sha2::{Digest, Sha256};
use sqlx::PgPool;

use authkit::{Bearer, LoginLimiter, TokenKey};

use crate::failure::database_error;

/// Lifetimes and limits of sessions.
#[derive(Debug, Clone, Copy)]
pub struct SessionPolicy {
    pub access_ttl: Duration,
    pub refresh_ttl: Duration,
}

pub struct Sessions {
    pub pool: PgPool,
    pub key: Arc<TokenKey>,
    pub limiter: LoginLimiter,
    pub policy: SessionPolicy,
}

pub fn router(sessions: Arc<Sessions>) -> Router {
    Router::new()
        .route("/v1/sessions", post(login))
        .route("/v1/sessions/refresh", post(refresh))
        .route("/v1/sessions/current", delete(logout))
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

/// The refresh token is `SESSION.SECRET`; the session row keeps SHA-256(SECRET).
fn new_refresh_secret() -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::thread_rng().fill_bytes(&mut bytes);
    let secret = URL_SAFE_NO_PAD.encode(bytes);
    let hash = Sha256::digest(secret.as_bytes()).to_vec();
    (secret, hash)
}

fn tokens(sessions: &Sessions, user: &str, session_id: &str, secret: &str) -> SessionTokens {
    SessionTokens {
        user: user.to_owned(),
        session_id: session_id.to_owned(),
        access_token: sessions
            .key
            .issue(user, session_id, sessions.policy.access_ttl),
        expires_in: sessions.policy.access_ttl.as_secs(),
        refresh_token: format!("{session_id}.{secret}"),
        refresh_expires_in: sessions.policy.refresh_ttl.as_secs(),
    }
}

/// Log in.
///
/// Checks the password and opens a session: a short-lived access token for `Authorization: Bearer`
/// (ingest and reader) and a refresh token. Attempts are limited per account and per client address
/// (`429` with `Retry-After`). An account registered a moment ago logs in once fanout applied it.
#[utoipa::path(
    post, path = "/v1/sessions", tag = "sessions",
    request_body = Credentials,
    responses(
        (status = 200, description = "Logged in.", body = SessionTokens),
        BadRequest, Unauthorized, BodyRejected, TooManyRequests, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn login(
    State(sessions): State<Arc<Sessions>>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    JsonBody(request): JsonBody<Credentials>,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &request.user)?;
    if let Err(wait) = sessions.limiter.check(user.as_str(), peer.ip()) {
        tracing::warn!(user = %user, address = %peer.ip(), "login rate-limited");
        return Ok(httpkit::error::too_many_requests(
            "too many login attempts: wait and try again",
            wait,
        ));
    }
    let stored: Option<String> =
        sqlx::query_scalar("SELECT password_hash FROM accounts WHERE user_id = $1")
            .bind(user.as_str())
            .fetch_optional(&sessions.pool)
            .await
            .map_err(database_error)?;
    if !password_matches(stored, request.password).await? {
        tracing::info!(user = %user, "login refused");
        return Err(wrong_credentials());
    }
    let session_id = ulid::Ulid::new().to_string();
    let (secret, hash) = new_refresh_secret();
    sqlx::query(
        "INSERT INTO sessions (session_id, user_id, refresh_hash, expires_at)
         VALUES ($1, $2, $3, now() + make_interval(secs => $4))",
    )
    .bind(&session_id)
    .bind(user.as_str())
    .bind(hash)
    .bind(sessions.policy.refresh_ttl.as_secs_f64())
    .execute(&sessions.pool)
    .await
    .map_err(database_error)?;
    tracing::info!(user = %user, session = %session_id, "logged in");
    Ok(Json(tokens(&sessions, user.as_str(), &session_id, &secret)).into_response())
}

/// Refresh.
///
/// Trades a refresh token for a new access token and a new refresh token; the one sent stops working.
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
    let (session_id, secret) = request
        .refresh_token
        .split_once('.')
        .ok_or_else(bad_refresh_token)?;
    let old_hash = Sha256::digest(secret.as_bytes()).to_vec();
    let (new_secret, new_hash) = new_refresh_secret();
    // Compare-and-swap: of two concurrent refreshes with one token, one wins.
    let user: Option<String> = sqlx::query_scalar(
        "UPDATE sessions SET previous_hash = refresh_hash, refresh_hash = $3, refreshed_at = now()
         WHERE session_id = $1 AND refresh_hash = $2 AND revoked_at IS NULL AND expires_at > now()
         RETURNING user_id",
    )
    .bind(session_id)
    .bind(&old_hash)
    .bind(new_hash)
    .fetch_optional(&sessions.pool)
    .await
    .map_err(database_error)?;
    let Some(user) = user else {
        // The token before the current one, used again: whoever refreshed first and whoever holds
        // this copy are two parties, one of them a thief. End the session for both.
        let reused: Option<String> = sqlx::query_scalar(
            "UPDATE sessions SET revoked_at = now()
             WHERE session_id = $1 AND previous_hash = $2 AND revoked_at IS NULL
             RETURNING user_id",
        )
        .bind(session_id)
        .bind(&old_hash)
        .fetch_optional(&sessions.pool)
        .await
        .map_err(database_error)?;
        if let Some(user) = reused {
            tracing::warn!(user = %user, session = %session_id, "refresh token used twice: session revoked");
        }
        return Err(bad_refresh_token());
    };
    Ok(Json(tokens(&sessions, &user, session_id, &new_secret)))
}

/// Log out.
///
/// Revokes the token's session: its refresh token stops working now; access tokens already issued
/// end with their lifetime (at most `expires_in` of the login, 15 minutes by default).
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
    sqlx::query(
        "UPDATE sessions SET revoked_at = now()
         WHERE session_id = $1 AND user_id = $2 AND revoked_at IS NULL",
    )
    .bind(&bearer.claims.sid)
    .bind(bearer.user())
    .execute(&sessions.pool)
    .await
    .map_err(database_error)?;
    tracing::info!(user = %bearer.user(), session = %bearer.claims.sid, "logged out");
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
