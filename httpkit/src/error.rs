//! The error every handler returns, rendered as `{"error": "...", "field": "..." | null}`.

use std::borrow::Cow;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use schemas::api::ErrorBody;

/// An HTTP error with a message a client can act on. Internal details are logged, never sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: Cow<'static, str>,
    pub field: Option<Cow<'static, str>>,
}

impl ApiError {
    pub fn new(status: StatusCode, message: impl Into<Cow<'static, str>>) -> Self {
        Self {
            status,
            message: message.into(),
            field: None,
        }
    }

    /// 400 naming the field at fault.
    pub fn bad_field(
        field: impl Into<Cow<'static, str>>,
        message: impl Into<Cow<'static, str>>,
    ) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            field: Some(field.into()),
        }
    }

    /// 503: a dependency (broker, database) is down or too slow; the client may retry.
    pub fn unavailable(message: impl Into<Cow<'static, str>>) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, message)
    }

    /// 500 for a bug; the caller logs the details before returning this.
    pub fn internal() -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal error")
    }

    /// The JSON body for a status and message, for responses built outside a handler.
    pub fn body_json(status: StatusCode, message: &str, field: Option<&str>) -> Response {
        let body = serde_json::to_vec(&ErrorBody {
            error: message.to_owned(),
            field: field.map(str::to_owned),
        })
        .unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        }
        if status == StatusCode::SERVICE_UNAVAILABLE {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}

/// `429` with `Retry-After` (whole seconds, at least 1) and the JSON error body.
pub fn too_many_requests(message: &str, wait: std::time::Duration) -> Response {
    let mut response = ApiError::body_json(StatusCode::TOO_MANY_REQUESTS, message, None);
    if let Ok(value) = HeaderValue::from_str(&wait.as_secs().max(1).to_string()) {
        response.headers_mut().insert(header::RETRY_AFTER, value);
    }
    response
}

impl From<schemas::ValidationError> for ApiError {
    fn from(err: schemas::ValidationError) -> Self {
        ApiError::bad_field(err.field, err.message)
    }
}

/// A write the broker did not acknowledge: 413 when the event itself is too large, else 503 (the
/// event may still have been stored; a retry with the same id is deduplicated).
impl From<kafkakit::ProduceError> for ApiError {
    fn from(err: kafkakit::ProduceError) -> Self {
        match err {
            kafkakit::ProduceError::TooLarge => ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "event is larger than the event log accepts",
            ),
            kafkakit::ProduceError::TimedOut | kafkakit::ProduceError::Unavailable(_) => {
                ApiError::unavailable("event log unavailable, retry with the same id")
            }
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        ApiError::body_json(self.status, &self.message, self.field.as_deref())
    }
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.field {
            Some(field) => write!(f, "{} ({field}): {}", self.status, self.message),
            None => write!(f, "{}: {}", self.status, self.message),
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;
    use kafkakit::ProduceError;

    #[test]
    fn produce_failures_map_to_retryable_statuses() {
        let status = |err| ApiError::from(err).status.as_u16();
        assert_eq!(status(ProduceError::TimedOut), 503);
        assert_eq!(status(ProduceError::TooLarge), 413);
    }
}
