//! Extractors whose failures are [`ApiError`]s naming the field, instead of axum's plain-text rejections.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use serde::de::DeserializeOwned;

use crate::ApiError;

/// A JSON request body. Errors: 415 without a JSON content type, 413 over the body limit, 400 for JSON
/// that does not parse or does not fit the type (with the path of the field at fault).
#[derive(Debug)]
pub struct JsonBody<T>(pub T);

impl<S, T> FromRequest<S> for JsonBody<T>
where
    S: Send + Sync,
    T: DeserializeOwned,
{
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let is_json = req
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .is_some_and(|mime| {
                let mime = mime.trim();
                mime.eq_ignore_ascii_case("application/json")
                    || (mime.starts_with("application/") && mime.ends_with("+json"))
            });
        if !is_json {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "expected a body with content-type application/json",
            ));
        }
        let bytes = Bytes::from_request(req, state).await.map_err(|rejection| {
            let status = rejection.status();
            if status == StatusCode::PAYLOAD_TOO_LARGE {
                ApiError::new(status, "request body is too large")
            } else if caused_by_body_timeout(&rejection) {
                ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "the request body was not received in time",
                )
            } else {
                ApiError::new(status, "could not read the request body")
            }
        })?;
        parse_json(&bytes).map(JsonBody)
    }
}

fn caused_by_body_timeout(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause = Some(error);
    while let Some(error) = cause {
        if error.is::<crate::server::BodyTimeout>() {
            return true;
        }
        cause = error.source();
    }
    false
}

/// Parses a JSON object into `T`, naming the path of the first field that does not fit.
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let value: serde_json::Value = serde_json::from_slice(bytes)
        .map_err(|e| ApiError::bad_field("body", format!("invalid JSON: {e}")))?;
    // serde would also read a struct from an array; the API takes objects only.
    if !value.is_object() {
        return Err(ApiError::bad_field("body", "must be a JSON object"));
    }
    parse_value(value, "")
}

/// Converts a JSON value into `T`; error fields are prefixed with `prefix` (e.g. `posts[3].`).
pub fn parse_value<T: DeserializeOwned>(
    value: serde_json::Value,
    prefix: &str,
) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value).map_err(|err| {
        let path = err.path().to_string();
        let message = err.into_inner().to_string();
        // serde reports a missing field at the parent's path; name the field itself.
        let field = match message.strip_prefix("missing field `") {
            Some(rest) => {
                let name = rest.split('`').next().unwrap_or_default();
                if path == "." {
                    name.to_owned()
                } else {
                    format!("{path}.{name}")
                }
            }
            None if path == "." && prefix.is_empty() => "body".to_owned(),
            None if path == "." => String::new(),
            None => path,
        };
        // The item itself (path ".") is named by the prefix without its trailing dot.
        let field = format!("{prefix}{field}");
        ApiError::bad_field(field.trim_end_matches('.').to_owned(), message)
    })
}

/// The query string as a map, with typed accessors whose errors name the parameter.
#[derive(Debug, Default)]
pub struct QueryParams(pub HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for QueryParams {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _state: &S) -> Result<Self, Self::Rejection> {
        let query = parts.uri.query().unwrap_or_default();
        let mut map = HashMap::new();
        for (key, value) in form_pairs(query) {
            if map.insert(key.clone(), value).is_some() {
                return Err(ApiError::bad_field(key, "given more than once"));
            }
        }
        Ok(QueryParams(map))
    }
}

fn form_pairs(query: &str) -> Vec<(String, String)> {
    form_urlencoded::parse(query.as_bytes())
        .map(|(key, value)| (key.into_owned(), value.into_owned()))
        .collect()
}

impl QueryParams {
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0.get(name).map(String::as_str)
    }

    /// An optional integer in `min..=max`.
    pub fn int_in(&self, name: &'static str, min: i64, max: i64) -> Result<Option<i64>, ApiError> {
        let Some(raw) = self.get(name) else {
            return Ok(None);
        };
        let value: i64 = raw
            .parse()
            .map_err(|_| ApiError::bad_field(name, "must be an integer"))?;
        if !(min..=max).contains(&value) {
            return Err(ApiError::bad_field(
                name,
                format!("must be between {min} and {max}"),
            ));
        }
        Ok(Some(value))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[allow(dead_code)]
    struct Post {
        author: String,
        body: String,
        message_id: Option<String>,
    }

    #[test]
    fn json_errors_name_the_field() {
        let missing = parse_json::<Post>(br#"{"author":"a"}"#).unwrap_err();
        assert_eq!(missing.field.as_deref(), Some("body"));
        let wrong_type = parse_json::<Post>(br#"{"author":1,"body":"x"}"#).unwrap_err();
        assert_eq!(wrong_type.field.as_deref(), Some("author"));
        assert!(!wrong_type.message.contains("line"));
        let syntax = parse_json::<Post>(br#"{"author":"#).unwrap_err();
        assert_eq!(syntax.field.as_deref(), Some("body"));
        let not_object = parse_json::<Post>(b"[1]").unwrap_err();
        assert_eq!(not_object.field.as_deref(), Some("body"));
        let trailing = parse_json::<Post>(br#"{"author":"a","body":"b"} x"#).unwrap_err();
        assert_eq!(trailing.status, StatusCode::BAD_REQUEST);
        assert!(parse_json::<Post>(br#"{"author":"a","body":"b"}"#).is_ok());
    }

    #[test]
    fn query_strings_are_percent_decoded() {
        let pairs = form_pairs("cursor=a%2Bb%3D&limit=5&flag&x=%zz");
        assert_eq!(
            pairs,
            vec![
                ("cursor".into(), "a+b=".into()),
                ("limit".into(), "5".into()),
                ("flag".into(), "".into()),
                ("x".into(), "%zz".into()),
            ]
        );
    }

    #[test]
    fn integers_are_range_checked() {
        let params = QueryParams(HashMap::from([
            ("limit".to_owned(), "500".to_owned()),
            ("after".to_owned(), "x".to_owned()),
        ]));
        assert_eq!(
            params.int_in("limit", 1, 200).unwrap_err().field.as_deref(),
            Some("limit")
        );
        assert_eq!(
            params
                .int_in("after", 0, i64::MAX)
                .unwrap_err()
                .field
                .as_deref(),
            Some("after")
        );
        assert_eq!(params.int_in("missing", 0, 1).unwrap(), None);
    }
}
