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
/// A conversation id as a regular expression (the byte order of a direct one's users is not expressed).
pub const CONVERSATION_ID_PATTERN: &str =
    "^(d:[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}|g:[A-Za-z0-9_.-]{1,64})$";
/// An event key as a regular expression: a user id or a conversation id.
pub const TIMELINE_KEY_PATTERN: &str =
    "^([A-Za-z0-9_.-]{1,64}|d:[A-Za-z0-9_.-]{1,64}:[A-Za-z0-9_.-]{1,64}|g:[A-Za-z0-9_.-]{1,64})$";
/// The example group id of the OpenAPI documents.
pub const GROUP_ID_EXAMPLE: &str = "team";
/// The example conversation id of the OpenAPI documents.
pub const CONVERSATION_ID_EXAMPLE: &str = "d:alice:bob";
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

/// What every string id type shares: `as_str`, `Display`, and deserializing through its own `parse`
/// (so an id read from JSON obeys the same rules as one from a path), reporting errors under `field`.
macro_rules! string_id {
    ($type:ident, $field:literal) => {
        impl $type {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $type {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl<'de> Deserialize<'de> for $type {
            fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                let raw = String::deserialize(deserializer)?;
                $type::parse($field, &raw).map_err(|e| serde::de::Error::custom(e.message))
            }
        }
    };
}

string_id!(UserId, "user");
string_id!(GroupId, "group");
string_id!(ConversationId, "conversation");
string_id!(TimelineKey, "key");
string_id!(PostId, "post_id");
string_id!(MessageId, "message_id");
string_id!(AttachmentId, "attachment");
string_id!(DeviceId, "device");

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

    /// The rule for ids that get a new account: lowercase only, as Matrix requires of new user ids.
    /// Ids are compared byte for byte everywhere; without this, `Alice` could register beside `alice`
    /// and pass for her. Only ASCII is allowed at all, so there are no Unicode look-alikes; ids that
    /// existed before the rule keep their case (issue 19, finding 8).
    pub fn check_registrable(&self, field: &'static str) -> Result<(), ValidationError> {
        if self.0.bytes().any(|b| b.is_ascii_uppercase()) {
            return Err(ValidationError::new(
                field,
                "must be lowercase for a new account (ids that differ only by case would be two users)",
            ));
        }
        Ok(())
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

/// A group id: the same alphabet and length as a user id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct GroupId(String);

impl GroupId {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        UserId::parse(field, raw).map(|id| Self(id.0))
    }
}

impl JsonSchema for GroupId {
    fn schema_name() -> Cow<'static, str> {
        "GroupId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_USER_ID_LEN,
            "pattern": USER_ID_PATTERN,
            "description": "A group id: 1-64 characters of [A-Za-z0-9_.-]."
        })
    }
}

impl utoipa::PartialSchema for GroupId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            USER_ID_PATTERN,
            1,
            MAX_USER_ID_LEN,
            "A group id: 1-64 characters of [A-Za-z0-9_.-].",
            GROUP_ID_EXAMPLE,
        )
    }
}

impl utoipa::ToSchema for GroupId {
    fn name() -> Cow<'static, str> {
        "GroupId".into()
    }
}

/// A conversation id. A direct (1:1) conversation is `d:` + the two user ids in byte order joined by
/// `:` — the same id whoever writes first; a group conversation is `g:` + the group id. `:` is not in
/// the id alphabet, so the parts are unambiguous and no conversation id is a user id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct ConversationId(String);

/// What a conversation id names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConversationKind {
    Direct(UserId, UserId),
    Group(GroupId),
}

impl ConversationId {
    /// The direct conversation of two different users; `None` for a user and themself (no such
    /// conversation: [`ConversationId::parse`] refuses `d:a:a`).
    pub fn direct(a: &UserId, b: &UserId) -> Option<Self> {
        let (low, high) = match a.as_str().cmp(b.as_str()) {
            std::cmp::Ordering::Less => (a, b),
            std::cmp::Ordering::Greater => (b, a),
            std::cmp::Ordering::Equal => return None,
        };
        Some(Self(format!("d:{low}:{high}")))
    }

    pub fn group(group: &GroupId) -> Self {
        Self(format!("g:{group}"))
    }

    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        let invalid = || {
            ValidationError::new(
                field,
                "must be d:USER:USER (the two users in byte order, different) or g:GROUP",
            )
        };
        let id = Self(raw.to_owned());
        match raw.split(':').collect::<Vec<_>>().as_slice() {
            ["d", a, b] => {
                let (a, b) = (
                    UserId::parse(field, a).map_err(|_| invalid())?,
                    UserId::parse(field, b).map_err(|_| invalid())?,
                );
                if a.as_str() >= b.as_str() {
                    return Err(invalid());
                }
                Ok(id)
            }
            ["g", group] => GroupId::parse(field, group)
                .map(|_| id)
                .map_err(|_| invalid()),
            _ => Err(invalid()),
        }
    }

    /// In a 1:1 conversation, the user who is not `me` (`None` for groups).
    pub fn other_party(&self, me: &UserId) -> Option<UserId> {
        match self.kind() {
            ConversationKind::Direct(a, b) => Some(if &a == me { b } else { a }),
            ConversationKind::Group(_) => None,
        }
    }

    pub fn kind(&self) -> ConversationKind {
        let parts: Vec<&str> = self.0.split(':').collect();
        match parts.as_slice() {
            ["d", a, b] => ConversationKind::Direct(UserId(a.to_string()), UserId(b.to_string())),
            _ => ConversationKind::Group(GroupId(
                parts.get(1).copied().unwrap_or_default().to_owned(),
            )),
        }
    }

    /// Whether `user` is one of the two people of a direct conversation.
    pub fn is_direct_between(&self, user: &UserId) -> bool {
        matches!(self.kind(), ConversationKind::Direct(a, b) if &a == user || &b == user)
    }
}

impl JsonSchema for ConversationId {
    fn schema_name() -> Cow<'static, str> {
        "ConversationId".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": CONVERSATION_ID_PATTERN,
            "description": "d:USER:USER (the two user ids in byte order) or g:GROUP."
        })
    }
}

impl utoipa::PartialSchema for ConversationId {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        string_schema(
            CONVERSATION_ID_PATTERN,
            3,
            2 * MAX_USER_ID_LEN + 4,
            "A conversation id: d:USER:USER (the two user ids in byte order) or g:GROUP.",
            CONVERSATION_ID_EXAMPLE,
        )
    }
}

impl utoipa::ToSchema for ConversationId {
    fn name() -> Cow<'static, str> {
        "ConversationId".into()
    }
}

/// The Kafka key of an event: the timeline it belongs to, a user id (posts, follows, profiles) or a
/// conversation id (messages, read markers, group membership: all of one group on one partition).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct TimelineKey(String);

impl TimelineKey {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        if UserId::parse(field, raw).is_ok() || ConversationId::parse(field, raw).is_ok() {
            return Ok(Self(raw.to_owned()));
        }
        Err(ValidationError::new(
            field,
            "must be a user id or a conversation id (d:USER:USER or g:GROUP)",
        ))
    }
}

impl From<&UserId> for TimelineKey {
    fn from(user: &UserId) -> Self {
        Self(user.0.clone())
    }
}

impl From<&ConversationId> for TimelineKey {
    fn from(conversation: &ConversationId) -> Self {
        Self(conversation.0.clone())
    }
}

impl JsonSchema for TimelineKey {
    fn schema_name() -> Cow<'static, str> {
        "TimelineKey".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "pattern": TIMELINE_KEY_PATTERN,
            "description": "The timeline of the event and its Kafka key: a user id, or a conversation id (d:USER:USER or g:GROUP)."
        })
    }
}

/// A ULID that strictly increases within this process, also within one millisecond (a plain ULID's
/// random part would order same-millisecond ids at random), and that nobody can guess from an id
/// they were given: within a millisecond the random part grows by a fresh random step of up to 2^40,
/// not by one (issue 19: with +1 steps, an attacker who posted learned the ids of the next posts).
fn next_ulid() -> String {
    /// (millisecond, random part) of the last id.
    static LAST: Mutex<Option<(u64, u128)>> = Mutex::new(None);
    const RANDOM_BITS: u32 = 80;
    const STEP_BITS: u32 = 40;
    let fresh = ulid::Ulid::new();
    let mut last = LAST.lock().unwrap_or_else(PoisonError::into_inner);
    let (ms, random) = match *last {
        // The same millisecond, or a clock that stepped back: stay above the last id.
        Some((last_ms, last_random)) if fresh.timestamp_ms() <= last_ms => {
            let step = 1 + (fresh.random() & ((1u128 << STEP_BITS) - 1));
            match last_random.checked_add(step) {
                Some(random) if random < 1u128 << RANDOM_BITS => (last_ms, random),
                // 2^40 ids in one millisecond: borrow the next millisecond.
                _ => (last_ms + 1, fresh.random()),
            }
        }
        _ => (fresh.timestamp_ms(), fresh.random()),
    };
    *last = Some((ms, random));
    ulid::Ulid::from_parts(ms, random).to_string()
}

/// An id that is a canonical (upper-case) ULID, so that ids sort by creation time; with its JSON
/// Schema and OpenAPI schema under `$name`.
macro_rules! ulid_id {
    ($type:ident, $name:literal, $description:literal) => {
        #[doc = $description]
        #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
        #[serde(transparent)]
        pub struct $type(String);

        impl $type {
            /// A fresh id, greater than every id this process generated before.
            pub fn generate() -> Self {
                Self(next_ulid())
            }

            /// The lowest id of the millisecond `at` (ids before it sort below): a bound of a time range
            /// of ids.
            pub fn lowest_at(at: chrono::DateTime<chrono::Utc>) -> Self {
                let ms = u64::try_from(at.timestamp_millis()).unwrap_or(0);
                Self(ulid::Ulid::from_parts(ms, 0).to_string())
            }

            pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
                match ulid::Ulid::from_string(raw) {
                    // Only the canonical spelling is accepted, so one thing has one id string.
                    Ok(ulid) if ulid.to_string() == raw => Ok(Self(raw.to_owned())),
                    _ => Err(ValidationError::new(
                        field,
                        "must be a ULID: 26 characters of Crockford base32, upper case",
                    )),
                }
            }
        }

        impl JsonSchema for $type {
            fn schema_name() -> Cow<'static, str> {
                $name.into()
            }

            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                json_schema!({
                    "type": "string",
                    "pattern": POST_ID_PATTERN,
                    "description": $description
                })
            }
        }

        impl utoipa::PartialSchema for $type {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                string_schema(POST_ID_PATTERN, 26, 26, $description, POST_ID_EXAMPLE)
            }
        }

        impl utoipa::ToSchema for $type {
            fn name() -> Cow<'static, str> {
                $name.into()
            }
        }
    };
}

ulid_id!(
    PostId,
    "PostId",
    "A post id: a ULID (upper case), sorts by creation time."
);
ulid_id!(
    MessageId,
    "MessageId",
    "A message id: a ULID (upper case) the server gave the message, sorts by creation time."
);

ulid_id!(
    AttachmentId,
    "AttachmentId",
    "An attachment id: a ULID (upper case) the server gave the upload, sorts by upload time."
);

/// A device's id (its acks are kept per device): the same alphabet and length as a user id.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(transparent)]
pub struct DeviceId(String);

impl DeviceId {
    pub fn parse(field: &'static str, raw: &str) -> Result<Self, ValidationError> {
        UserId::parse(field, raw).map(|id| Self(id.0))
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

/// Longest display name, group name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Longest profile signature or group description, in characters.
pub const MAX_TEXT_CHARS: usize = 1000;
/// Longest gender or group type, in characters.
pub const MAX_TAG_CHARS: usize = 32;
/// Oldest accepted age.
pub const MAX_AGE: u16 = 150;

/// Checks free text: `min`..=`max` characters, no NUL, not only white space when required.
pub fn validate_text(
    field: &'static str,
    text: &str,
    required: bool,
    max: usize,
) -> Result<(), ValidationError> {
    if required && text.trim().is_empty() {
        return Err(ValidationError::new(field, "must not be empty"));
    }
    if text.chars().count() > max {
        return Err(ValidationError::new(
            field,
            format!("must be at most {max} characters long"),
        ));
    }
    if text.contains('\0') {
        return Err(ValidationError::new(
            field,
            "must not contain NUL characters",
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn new_accounts_need_lowercase_ids() {
        let upper = UserId::parse("user", "Alice").unwrap();
        assert_eq!(upper.check_registrable("user").unwrap_err().field, "user");
        assert!(UserId::parse("user", "alice_1.x-y")
            .unwrap()
            .check_registrable("user")
            .is_ok());
    }

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
        // Consecutive ids are not neighbours: knowing one tells nothing about the next (issue 19).
        let steps: Vec<u128> = ids
            .windows(2)
            .map(|w| {
                let value = |id: &PostId| ulid::Ulid::from_string(id.as_str()).unwrap().0;
                value(&w[1]) - value(&w[0])
            })
            .collect();
        let small = steps.iter().filter(|&&step| step < 1 << 20).count();
        assert!(small < 5, "{small} of 999 steps were below 2^20");
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
    fn conversation_ids_are_canonical() {
        let (alice, bob) = (
            UserId::parse("u", "alice").unwrap(),
            UserId::parse("u", "bob").unwrap(),
        );
        assert_eq!(
            ConversationId::direct(&alice, &bob),
            ConversationId::direct(&bob, &alice)
        );
        assert_eq!(
            ConversationId::direct(&bob, &alice).unwrap().as_str(),
            "d:alice:bob"
        );
        assert_eq!(ConversationId::direct(&bob, &bob), None);
        assert!(ConversationId::parse("c", "d:alice:bob").is_ok());
        assert!(ConversationId::parse("c", CONVERSATION_ID_EXAMPLE).is_ok());
        assert!(ConversationId::parse("c", "g:team").is_ok());
        for bad in [
            "d:bob:alice",
            "d:alice:alice",
            "d:alice",
            "g:",
            "x:a",
            "alice",
            "d:a:b:c",
            "g:a b",
        ] {
            assert_eq!(
                ConversationId::parse("c", bad).unwrap_err().field,
                "c",
                "{bad}"
            );
        }
        assert_eq!(
            ConversationId::parse("c", "d:alice:bob").unwrap().kind(),
            ConversationKind::Direct(alice.clone(), bob.clone())
        );
        assert!(ConversationId::parse("c", "d:alice:bob")
            .unwrap()
            .is_direct_between(&bob));
        for ok in ["alice", "d:alice:bob", "g:team"] {
            assert!(TimelineKey::parse("key", ok).is_ok(), "{ok}");
        }
        assert!(TimelineKey::parse("key", "d:bob:alice").is_err());
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
