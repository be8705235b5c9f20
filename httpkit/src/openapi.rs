//! What every service does with its OpenAPI document, and the error answers its routes share.
//!
//! A service derives its document with utoipa from its handlers' annotations and serves
//! [`render`]'s text at `/openapi.json` ([`crate::json_document`]); the same text is committed next to
//! the crate, and the service's test calls [`check_committed`].

use schemas::api::ErrorBody;
use utoipa::IntoResponses;

/// The document as pretty-printed JSON with a final newline, exactly as committed.
pub fn render(document: &utoipa::openapi::OpenApi) -> String {
    let mut json = document
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"));
    json.push('\n');
    json
}

/// The committed copy at `path` is the document the code generates (rewritten first with
/// `FANLINE_BLESS` set), and every `$ref` in it resolves.
pub fn check_committed(path: &str, json: &str) -> Result<(), String> {
    schemas::committed::check(path, json)?;
    let unresolved = schemas::committed::unresolved_references(json);
    if unresolved.is_empty() {
        Ok(())
    } else {
        Err(format!("{path}: unresolved references {unresolved:?}"))
    }
}

/// `400`: a field, path segment or query parameter is invalid.
#[derive(IntoResponses)]
pub enum BadRequest {
    /// A field, path segment or query parameter is invalid, or the body is not a JSON object;
    /// `field` names it.
    #[response(status = 400)]
    BadRequest(ErrorBody),
}

/// `404` for a route with path parameters: an empty segment matches no route.
#[derive(IntoResponses)]
pub enum NoSuchRoute {
    /// No such route (an empty path segment).
    #[response(status = 404)]
    NotFound(ErrorBody),
}

/// `413` and `415` of a route with a JSON body.
#[derive(IntoResponses)]
pub enum BodyRejected {
    /// The body is over the limit.
    #[response(status = 413)]
    TooLarge(ErrorBody),
    /// The body is not `application/json`.
    #[response(status = 415)]
    NotJson(ErrorBody),
}

/// `500`: a bug on our side (e.g. a query the schema does not fit), logged with its cause. Never an
/// outage: that is a `503`.
#[derive(IntoResponses)]
pub enum InternalError {
    /// A bug on our side, logged with its cause; retrying will not help.
    #[response(status = 500)]
    Internal(ErrorBody),
}

/// `503` with `Retry-After`: the broker or the database is down or too slow.
#[derive(IntoResponses)]
pub enum Unavailable {
    /// The broker or the database did not answer in time: retry (writes with the same `message_id`).
    #[response(
        status = 503,
        headers(("Retry-After" = u32, description = "Seconds to wait before retrying."))
    )]
    Unavailable(ErrorBody),
}
