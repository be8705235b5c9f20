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

/// `501`: attachments are off on this server (`FANLINE_BLOB_STORE` unset).
#[derive(IntoResponses)]
pub enum AttachmentsOff {
    /// This server takes no attachments.
    #[response(status = 501)]
    NotImplemented(ErrorBody),
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

/// `401`: no bearer token, or a malformed, forged or expired one.
#[derive(IntoResponses)]
pub enum Unauthorized {
    /// No valid access token (`Authorization: Bearer …`): missing, malformed, forged or expired.
    #[response(
        status = 401,
        headers(("WWW-Authenticate" = String, description = "`Bearer`."))
    )]
    Unauthorized(ErrorBody),
}

/// `403`: a valid token, but for another user than the one the request acts for or reads.
#[derive(IntoResponses)]
pub enum Forbidden {
    /// The token's user may not act for or read the user (or conversation) `field` names.
    #[response(status = 403)]
    Forbidden(ErrorBody),
}

/// `429` with `Retry-After`: too many attempts.
#[derive(IntoResponses)]
pub enum TooManyRequests {
    /// Too many attempts for this account or from this address; wait `Retry-After` seconds.
    #[response(
        status = 429,
        headers(("Retry-After" = u32, description = "Seconds to wait before trying again."))
    )]
    TooManyRequests(ErrorBody),
}

/// Declares the `bearer` security scheme (HS256 JWT) and requires it on every operation but `open`.
pub struct BearerSecurity {
    pub open: &'static [&'static str],
}

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .build(),
            ),
        );
        for (path, item) in openapi.paths.paths.iter_mut() {
            if self.open.contains(&path.as_str()) {
                continue;
            }
            for operation in [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ]
            .into_iter()
            .flatten()
            {
                operation.security = Some(vec![SecurityRequirement::new(
                    "bearer",
                    Vec::<String>::new(),
                )]);
            }
        }
    }
}
