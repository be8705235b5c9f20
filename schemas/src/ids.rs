//! Identifiers and text limits. Ingest validates requests with these rules and fanout validates events
//! with the same rules again, because events can also be produced by hand (e.g. with `kcat`).

use std::borrow::Cow;
use std::fmt;
use std::sync::{Mutex, PoisonError};

use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Deserializer, Serialize};

/// Longest user id, in characters.
pub const MAX_USER_ID_LEN: usize = 64;
/// Longest post body, in characters (Unicode scalar values).
pub const MAX_BODY_CHARS: usize = 4096;
/// Longest client message id, in characters.
pub const MAX_MESSAGE_ID_CHARS: usize = 128;
/// A user id as a regular expression, for schemas (JSON Schema of the events, OpenAPI).
pub const USER_ID_PATTERN: &str = "^[A-Za-z0-9_.-]{1,64}$";
/// A post id (canonical, upper-case ULID) as a regular expression, for schemas.
pub const POST_ID_PATTERN: &str = "^[0-7][0-9A-HJKMNP-TV-Z]{25}$";
/// The example user id of the OpenAPI documents (the OpenAPI test seeds its timelines).
pub const USER_ID_EXAMPLE: &str = "alice";
/// The example post id of the OpenAPI documents.
pub const POST_ID_EXAMPLE: &str = "01JD8Z5V2Q3W4E5R6T7Y8V9K0M";

/// A rule that an input broke; `field` names the offending field for the error body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {message}")]
pub struct ValidationError {
    pub field: Cow<'static, str>,
    pub message: String,
}

impl ValidationError {
    pub fn new(field: impl Into<Cow<'static, str>>, message: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            message: message.into(),
        }
    }

    /// The same error reported under another field name (e.g. `payload.author` inside an event).
    pub fn in_field(mut self, field: impl Into<Cow<'static, str>>) -> Self {
        self.field = field.into();
        self
    }
}

/// A user id: 1–64 characters of `[A-Za-z0-9_.-]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct UserId(String);

impl UserId {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        if raw.is_empty() || raw.len() > MAX_USER_ID_LEN {
            return Err(ValidationError::new(
                field,
                format!("must be 1 to {MAX_USER_ID_LEN} characters long"),
            ));
        }
        if !raw
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
        {
            return Err(ValidationError::new(
                field,
                "may only contain the characters A-Z a-z 0-9 _ . -",
            ));
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for UserId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        UserId::parse("user", &raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl JsonSchema for UserId {
    fn schema_name() -> Cow<'static, str> {
        "UserId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_USER_ID_LEN,
            "pattern": USER_ID_PATTERN,
            "description": "A user id: 1-64 characters of [A-Za-z0-9_.-]."
        })
    }
}

/// The OpenAPI schema of a string id: the same pattern and length as the JSON Schema of the events.
fn string_schema(
    pattern: &str,
    min_length: usize,
    max_length: usize,
    description: &str,
    example: &str,
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::{ObjectBuilder, Type};
    ObjectBuilder::new()
        .schema_type(Type::String)
        .pattern(Some(pattern))
        .min_length(Some(min_length))
        .max_length(Some(max_length))
        .description(Some(description))
        .examples([example])
        .into()
}

impl utoipa::PartialSchema for UserId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            USER_ID_PATTERN,
            1,
            MAX_USER_ID_LEN,
            "A user id: 1-64 characters of [A-Za-z0-9_.-].",
            USER_ID_EXAMPLE,
        )
    }
}

impl utoipa::ToSchema for UserId {
    fn name() -> Cow<'static, str> {
        "UserId".into()
    }
}

/// A post id: a ULID (26 characters of Crockford base32), so that ids sort by creation time.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct PostId(String);

impl PostId {
    /// A fresh id for a post created now. Ids from one process strictly increase, also within one
    /// millisecond (a plain ULID's random part would order same-millisecond posts at random).
    pub fn generate() -> Self {
        static GENERATOR: Mutex<Option<ulid::Generator>> = Mutex::new(None);
        let mut guard = GENERATOR.lock().unwrap_or_else(PoisonError::into_inner);
        let ulid = guard
            .get_or_insert_with(ulid::Generator::new)
            .generate()
            // Overflow needs 2^80 ids in one millisecond; fall back to a plain ULID all the same.
            .unwrap_or_else(|_| ulid::Ulid::new());
        Self(ulid.to_string())
    }

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        match ulid::Ulid::from_string(raw) {
            // Only the canonical (upper-case) spelling is accepted, so one post has one id string.
            Ok(ulid) if ulid.to_string() == raw => Ok(Self(raw.to_owned())),
            _ => Err(ValidationError::new(
                field,
                "must be a ULID: 26 characters of Crockford base32, upper case",
            )),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for PostId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for PostId {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(deserializer)?;
        PostId::parse("post_id", &raw).map_err(|e| serde::de::Error::custom(e.message))
    }
}

impl JsonSchema for PostId {
    fn schema_name() -> Cow<'static, str> {
        "PostId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": POST_ID_PATTERN,
            "description": "A ULID: sorts by creation time."
        })
    }
}

impl utoipa::PartialSchema for PostId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            POST_ID_PATTERN,
            26,
            26,
            "A post id: a ULID (upper case), sorts by creation time.",
            POST_ID_EXAMPLE,
        )
    }
}

impl utoipa::ToSchema for PostId {
    fn name() -> Cow<'static, str> {
        "PostId".into()
    }
}

/// Checks a post body: 1 to [`MAX_BODY_CHARS`] characters, not only white space.
pub fn validate_body(field: &'static str, body: &str) -> Result<(), ValidationError> {
    if body.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if body.chars().count() > MAX_BODY_CHARS {
        return Err(ValidationError::new(
            field,
            format!("must be at most {MAX_BODY_CHARS} characters long"),
        ));
    }
    if body.contains('\0') {
        // Postgres text cannot hold NUL; refusing it here keeps it from poisoning the pipeline later.
        return Err(ValidationError::new(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(())
}

/// Checks a client message id: 1 to [`MAX_MESSAGE_ID_CHARS`] characters without control characters.
pub fn validate_message_id(field: &'static str, id: &str) -> Result<(), ValidationError> {
    if id.is_empty() || id.chars().count() > MAX_MESSAGE_ID_CHARS {
        return Err(ValidationError::new(
            field,
            format!("must be 1 to {MAX_MESSAGE_ID_CHARS} characters long"),
        ));
    }
    if id.chars().any(char::is_control) {
        return Err(ValidationError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_ids_follow_the_documented_alphabet_and_length() {
        for ok in ["a", "Alice_1", "b.o-b", &"x".repeat(64)] {
            assert!(UserId::parse("user", ok).is_ok(), "{ok} should be valid");
        }
        for bad in ["", "a b", "ä", "a/b", "a\0", &"x".repeat(65)] {
            let err = UserId::parse("user", bad).unwrap_err();
            assert_eq!(err.field, "user", "{bad:?}");
        }
    }

    #[test]
    fn post_ids_are_canonical_ulids_that_sort_by_time() {
        let ids: Vec<PostId> = (0..1000).map(|_| PostId::generate()).collect();
        assert!(
            ids.windows(2).all(|w| w[0] < w[1]),
            "ids from one process increase"
        );
        let first = &ids[0];
        assert!(PostId::parse("post_id", first.as_str()).is_ok());
        assert!(PostId::parse("post_id", &first.as_str().to_lowercase()).is_err());
        assert!(PostId::parse("post_id", "not-a-ulid").is_err());
    }

    #[test]
    fn schema_examples_follow_the_rules() {
        assert!(UserId::parse("user", USER_ID_EXAMPLE).is_ok());
        assert!(PostId::parse("post_id", POST_ID_EXAMPLE).is_ok());
    }

    #[test]
    fn bodies_and_message_ids_are_bounded() {
        assert!(validate_body("body", "hi").is_ok());
        assert!(validate_body("body", " \n").is_err());
        assert!(validate_body("body", &"é".repeat(MAX_BODY_CHARS)).is_ok());
        assert!(validate_body("body", &"é".repeat(MAX_BODY_CHARS + 1)).is_err());
        assert!(validate_body("body", "a\0b").is_err());
        assert!(validate_message_id("message_id", "m-1").is_ok());
        assert!(validate_message_id("message_id", "").is_err());
        assert!(validate_message_id("message_id", "a\nb").is_err());
    }
}
