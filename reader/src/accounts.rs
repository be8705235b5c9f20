//! `PUT /v1/accounts/{user}/password`: the owner changes the password; `GET
//! /v1/accounts/{user}/availability`: whether an id is free to register.
//!
//! The reader takes it, not ingest: the current password must be checked against the stored hash (a
//! stolen access token alone must not take the account over), and ingest keeps no database. The new
//! hash goes through Kafka as a `password_changed` event like every write (fanout applies it; a replay
//! applies it again in order after the registration). Then every other session of the user is revoked
//! at once — sessions are the reader's own state, not replayed — and their sockets close.

use std::sync::Arc;
use std::time::Duration;

use authkit::Bearer;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use httpkit::openapi::{
    BadRequest, BodyRejected, Forbidden, TooManyRequests, Unauthorized, Unavailable,
};
use httpkit::{ApiError, ClientAddress, JsonBody};
use schemas::api::{Accepted, IdAvailability, IdState, PasswordChange};
use schemas::{Envelope, PasswordChanged, UserId};

use crate::failure::database_error;
use crate::sessions::{admit, is_password, revoke_notifying, Sessions};

pub fn router(sessions: Arc<Sessions>, lookups: Arc<IdLookups>) -> axum::Router {
    axum::Router::new()
        .route(
            "/v1/accounts/{user}/password",
            axum::routing::put(change_password),
        )
        .with_state(sessions)
        .merge(
            axum::Router::new()
                .route(
                    "/v1/accounts/{user}/availability",
                    axum::routing::get(availability),
                )
                .with_state(lookups),
        )
}

/// What answers "is this id free?": the account directory ingest's registration asks too, and a
/// budget per client address (anyone may ask, without a token: it is a registration form's question).
pub struct IdLookups {
    pub directory: Arc<authkit::AccountDirectory>,
    pub budget: authkit::AddressLimiter,
}

/// Id availability.
///
/// Whether a user id is `free` to register, `taken` (someone has that account: a user to chat with)
/// or `reserved` (a deleted account's, or holding data from before accounts: only an operator's claim
/// code registers it). Asked by registration forms before registering and by "new chat" forms; no
/// token needed, limited per client address. Registering right after a `free` may still lose to
/// someone else's registration of the same id in flight: the login then fails.
#[utoipa::path(
    get, path = "/v1/accounts/{user}/availability", tag = "sessions",
    params(("user" = schemas::UserId, Path, description = "The id to ask about.")),
    responses(
        (status = 200, description = "What the id is.", body = IdAvailability),
        BadRequest, TooManyRequests, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn availability(
    State(lookups): State<Arc<IdLookups>>,
    client: ClientAddress,
    Path(user): Path<String>,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &user)?;
    if let Err(wait) = lookups.budget.check(client.0) {
        return Ok(httpkit::error::too_many_requests(
            "too many id lookups from this address: wait and try again",
            wait,
        ));
    }
    let state = match lookups.directory.status(&user).await? {
        authkit::IdStatus::Free => IdState::Free,
        authkit::IdStatus::Account => IdState::Taken,
        authkit::IdStatus::Erased | authkit::IdStatus::HoldsData => IdState::Reserved,
    };
    Ok(Json(IdAvailability {
        user: user.to_string(),
        state,
    })
    .into_response())
}

fn hashing_error(err: authkit::HashingError) -> ApiError {
    match err {
        authkit::HashingError::Busy => ApiError::unavailable("too many password changes at once"),
        authkit::HashingError::Failed(_) => {
            tracing::error!(error = %err, "password hashing failed");
            ApiError::internal()
        }
    }
}

/// Polls (every 250 ms, for at most two minutes) until the account's row comes from the change's
/// position or a later one, then revokes the other sessions once more: those opened with the old
/// password meanwhile. A reader that stops before leaves them (the owner can log out everywhere).
async fn revoke_when_applied(
    sessions: Arc<Sessions>,
    user: UserId,
    keep: String,
    (partition, offset): (i32, i64),
) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    while tokio::time::Instant::now() < deadline {
        // A poll interval, not a synchronisation: fanout tells the reader nothing directly.
        tokio::time::sleep(Duration::from_millis(250)).await;
        let applied: Result<bool, sqlx::Error> = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM accounts
                            WHERE user_id = $1 AND src_partition = $2 AND src_offset >= $3)",
        )
        .bind(user.as_str())
        .bind(partition)
        .bind(offset)
        .fetch_one(&sessions.pool)
        .await;
        if matches!(applied, Ok(true)) {
            let _ = sqlx::query_scalar::<_, String>(&revoke_notifying(
                "user_id = $1 AND session_id <> $2 AND revoked_at IS NULL",
            ))
            .bind(user.as_str())
            .bind(&keep)
            .fetch_all(&sessions.pool)
            .await;
            return;
        }
    }
    tracing::warn!(user = %user, "password change not applied within two minutes");
}

/// Change password.
///
/// Checks `current_password`, appends a `password_changed` event with the new password's argon2id
/// hash and revokes every other session of the user (their refresh tokens stop working, their sockets
/// close). The new password logs in once fanout applied the event, well under a second later; the
/// session that made the change stays. Wrong current passwords count against the login budgets.
#[utoipa::path(
    put, path = "/v1/accounts/{user}/password", tag = "sessions",
    params(("user" = schemas::UserId, Path, description = "Whose password: the token's own user.")),
    request_body = PasswordChange,
    responses(
        (status = 202, description = "Appended; other sessions revoked.", body = Accepted),
        BadRequest, Unauthorized, Forbidden, BodyRejected, TooManyRequests, Unavailable,
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
pub async fn change_password(
    bearer: Bearer,
    State(sessions): State<Arc<Sessions>>,
    client: ClientAddress,
    Path(user): Path<String>,
    JsonBody(request): JsonBody<PasswordChange>,
) -> Result<Response, ApiError> {
    let user = UserId::parse("user", &user)?;
    bearer.require_user("user", &user)?;
    authkit::validate_password(&request.new_password)
        .map_err(|message| ApiError::bad_field("new_password", message))?;
    if let Err(refused) = admit(&sessions, &user, client).await? {
        return Ok(refused);
    }
    if !is_password(&sessions, &user, request.current_password).await? {
        return Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "not the account's current password".into(),
            field: Some("current_password".into()),
        });
    }
    let password_hash = authkit::hash_password_rationed(request.new_password)
        .await
        .map_err(hashing_error)?;
    // Other sessions first: if the broker then fails, they were revoked for nothing (they log in
    // again), never left open after a change that happened.
    let ended: Vec<String> = sqlx::query_scalar(&revoke_notifying(
        "user_id = $1 AND session_id <> $2 AND revoked_at IS NULL",
    ))
    .bind(user.as_str())
    .bind(&bearer.claims.sid)
    .fetch_all(&sessions.pool)
    .await
    .map_err(database_error)?;
    let envelope = Envelope::password_changed(PasswordChanged {
        user: user.clone(),
        password_hash,
    });
    let ack = sessions.producer.send(&envelope).await?;
    // Until fanout applied the change, the old password still logs in: revoke again once it has.
    tokio::spawn(revoke_when_applied(
        sessions.clone(),
        user.clone(),
        bearer.claims.sid.clone(),
        (ack.partition, ack.offset),
    ));
    tracing::info!(user = %user, revoked = ended.len(), "password changed");
    let body = Accepted::of(&envelope.id, ack.partition, ack.offset);
    Ok((StatusCode::ACCEPTED, Json(body)).into_response())
}
