//! What a message or a post holds besides its text: a content type, attachments (files in object
//! storage, described here: the bytes never travel through Kafka) and an app-defined payload — with
//! the rules each type has and the preview a contact list or a notification shows for it.
//!
//! Shapes follow Tinode's message `head` (mime, attachments) and Matrix's `msgtype` (m.image,
//! m.file, m.location): one `content_type`, metadata per attachment, a bounded JSON payload for
//! what only the app understands (stickers, cards).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use crate::ids::{
    validate_body, AttachmentId, ConversationId, UserId, ValidationError, MAX_BODY_CHARS,
};

/// At most this many users mentioned in one message.
pub const MAX_MENTIONS: usize = 50;
/// At most this many attachments per message or post.
pub const MAX_ATTACHMENTS: usize = 10;
/// An app-defined payload's size, serialized, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 4096;
/// A file name's length, in characters.
pub const MAX_FILE_NAME_CHARS: usize = 255;
/// The largest attachment any deployment may allow (ingest's own limit is usually lower).
pub const MAX_ATTACHMENT_BYTES: u64 = 4 << 30;
/// Media types a browser would run or render as a page: refused, so that a download served from
/// one of our origins can never become script (stored XSS through an upload).
pub const ACTIVE_MIME_TYPES: [&str; 12] = [
    "text/html",
    "application/xhtml+xml",
    "image/svg+xml",
    "application/javascript",
    "text/javascript",
    "application/xml",
    "text/xml",
    "text/xsl",
    "application/xslt+xml",
    "application/rss+xml",
    "application/atom+xml",
    "application/mathml+xml",
];

/// What kind of thing a message or post is; clients render by it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize, JsonSchema, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ContentType {
    /// Plain text (the body).
    #[default]
    Text,
    /// Text with light markup (`*bold*`, `_italic_`, `` `code` ``, links) the client renders.
    Markdown,
    /// One or more images (the body is an optional caption).
    Image,
    /// One or more files.
    File,
    /// A voice note or audio file.
    Audio,
    Video,
    /// A place: `payload` = `{"lat": …, "lon": …, "name"?: …}`.
    Location,
    /// A sticker: `payload` = `{"pack"?: …, "id": …}` (the app's own catalogue).
    Sticker,
    /// Anything else the app defines: `payload` is a JSON object of at most 4,096 bytes.
    Custom,
}

impl ContentType {
    pub fn is_text(&self) -> bool {
        *self == ContentType::Text
    }

    pub fn label(self) -> &'static str {
        match self {
            ContentType::Text => "text",
            ContentType::Markdown => "markdown",
            ContentType::Image => "image",
            ContentType::File => "file",
            ContentType::Audio => "audio",
            ContentType::Video => "video",
            ContentType::Location => "location",
            ContentType::Sticker => "sticker",
            ContentType::Custom => "custom",
        }
    }

    /// The type a stored label names (unknown labels read as text: a newer writer's type).
    pub fn from_label(label: &str) -> Self {
        match label {
            "markdown" => ContentType::Markdown,
            "image" => ContentType::Image,
            "file" => ContentType::File,
            "audio" => ContentType::Audio,
            "video" => ContentType::Video,
            "location" => ContentType::Location,
            "sticker" => ContentType::Sticker,
            "custom" => ContentType::Custom,
            _ => ContentType::Text,
        }
    }

    /// The media class the first attachment must have (`image/…`), for the media types.
    fn media_class(self) -> Option<&'static str> {
        match self {
            ContentType::Image => Some("image/"),
            ContentType::Audio => Some("audio/"),
            ContentType::Video => Some("video/"),
            _ => None,
        }
    }
}

/// A file in object storage, as a message or post describes it. Uploaded first (`POST
/// /v1/attachments` gives a signed upload URL), then referenced by `id`; where the message enters,
/// the upload must be the sender's own and have this `size`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct Attachment {
    #[schema(value_type = String, example = "01JD8Z5V2Q3W4E5R6T7Y8V9K0M")]
    pub id: AttachmentId,
    /// Media type, lower case: `image/png`, `application/pdf`.
    pub mime: String,
    /// Bytes.
    pub size: u64,
    /// SHA-256 of the bytes, 64 lower-case hex digits.
    pub sha256: String,
    /// The file's name as the sender had it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub name: Option<String>,
    /// Pixels (images, video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub width: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub height: Option<u32>,
    /// Milliseconds (audio, video).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(nullable = false)]
    pub duration_ms: Option<u64>,
}

/// The content fields a message or post has besides its body (flattened into both, so a plain text
/// message reads as before: no `content_type`, no `attachments`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema, ToSchema)]
pub struct Content {
    #[serde(default, skip_serializing_if = "ContentType::is_text")]
    pub content_type: ContentType,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attachments: Vec<Attachment>,
    /// Location, sticker and custom content's app-defined JSON object (at most 4,096 bytes).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Object>, nullable = false)]
    pub payload: Option<Value>,
}

impl Content {
    /// The rules of the content and the body that goes with it: text needs a body, media needs
    /// attachments of its class, location/sticker/custom need their payload; every field named.
    pub fn validate(&self, body: &str) -> Result<(), ValidationError> {
        match self.content_type {
            ContentType::Text | ContentType::Markdown => validate_body("body", body)?,
            _ if !body.is_empty() => validate_body("body", body)?,
            _ => {}
        }
        self.validate_attachments()?;
        self.validate_payload()
    }

    fn validate_attachments(&self) -> Result<(), ValidationError> {
        if self.attachments.len() > MAX_ATTACHMENTS {
            return Err(ValidationError::new(
                "attachments",
                format!("at most {MAX_ATTACHMENTS} attachments"),
            ));
        }
        for (i, attachment) in self.attachments.iter().enumerate() {
            attachment.validate(i)?;
            if self.attachments[..i].iter().any(|a| a.id == attachment.id) {
                return Err(ValidationError::new(
                    format!("attachments[{i}].id"),
                    "the same attachment twice",
                ));
            }
        }
        let needs_media = matches!(
            self.content_type,
            ContentType::Image | ContentType::Audio | ContentType::Video | ContentType::File
        );
        match self.attachments.first() {
            None if needs_media => Err(ValidationError::new(
                "attachments",
                format!("{} messages need an attachment", self.content_type.label()),
            )),
            Some(first) => match self.content_type.media_class() {
                Some(class) if !first.mime.starts_with(class) => Err(ValidationError::new(
                    "attachments[0].mime",
                    format!(
                        "{} messages start with an attachment of type {class}…",
                        self.content_type.label()
                    ),
                )),
                _ => Ok(()),
            },
            None => Ok(()),
        }
    }

    fn validate_payload(&self) -> Result<(), ValidationError> {
        let wants = matches!(
            self.content_type,
            ContentType::Location | ContentType::Sticker | ContentType::Custom
        );
        let Some(payload) = &self.payload else {
            return match wants {
                true => Err(ValidationError::new(
                    "payload",
                    format!("{} messages need a payload", self.content_type.label()),
                )),
                false => Ok(()),
            };
        };
        if !wants {
            return Err(ValidationError::new(
                "payload",
                "only location, sticker and custom content carries a payload",
            ));
        }
        let Value::Object(fields) = payload else {
            return Err(ValidationError::new("payload", "must be a JSON object"));
        };
        if payload.to_string().len() > MAX_PAYLOAD_BYTES {
            return Err(ValidationError::new(
                "payload",
                format!("must be at most {MAX_PAYLOAD_BYTES} bytes of JSON"),
            ));
        }
        match self.content_type {
            ContentType::Location => validate_location(fields),
            ContentType::Sticker => match fields.get("id") {
                Some(Value::String(id)) if !id.is_empty() => Ok(()),
                _ => Err(ValidationError::new(
                    "payload.id",
                    "a sticker names its id (a non-empty string)",
                )),
            },
            _ => Ok(()),
        }
    }

    /// The content as a row stores it: the type's label and the attachments and payload as JSON text
    /// (unreadable stored JSON reads as none: it was written by this crate's own serializer).
    pub fn from_stored(label: &str, attachments: Option<&str>, payload: Option<&str>) -> Self {
        Content {
            content_type: ContentType::from_label(label),
            attachments: attachments
                .and_then(|json| serde_json::from_str(json).ok())
                .unwrap_or_default(),
            payload: payload.and_then(|json| serde_json::from_str(json).ok()),
        }
    }

    /// What a contact list, a notification or a search hit shows for this content: the body for
    /// text, else a bracketed kind and the most telling detail ("[image] at the beach", "[file]
    /// report.pdf"), at most `max` characters.
    pub fn preview(&self, body: &str, max: usize) -> String {
        let text = match self.content_type {
            ContentType::Text | ContentType::Markdown => body.to_owned(),
            kind => {
                let detail = match kind {
                    ContentType::File => self.attachments.first().and_then(|a| a.name.clone()),
                    ContentType::Location => self
                        .payload
                        .as_ref()
                        .and_then(|p| p.get("name"))
                        .and_then(Value::as_str)
                        .map(str::to_owned),
                    _ => None,
                };
                let detail = detail.unwrap_or_else(|| body.to_owned());
                let label = match kind {
                    ContentType::Audio => "voice message",
                    ContentType::Custom => "message",
                    other => other.label(),
                };
                match detail.is_empty() {
                    true => format!("[{label}]"),
                    false => format!("[{label}] {detail}"),
                }
            }
        };
        text.chars().take(max).collect()
    }
}

impl Attachment {
    fn validate(&self, i: usize) -> Result<(), ValidationError> {
        let field = |name: &str| format!("attachments[{i}].{name}");
        validate_mime(&self.mime).map_err(|e| e.in_field(field("mime")))?;
        if self.size == 0 || self.size > MAX_ATTACHMENT_BYTES {
            return Err(ValidationError::new(
                field("size"),
                format!("must be 1 to {MAX_ATTACHMENT_BYTES} bytes"),
            ));
        }
        if !is_sha256_hex(&self.sha256) {
            return Err(ValidationError::new(
                field("sha256"),
                "must be 64 lower-case hex digits",
            ));
        }
        if let Some(name) = &self.name {
            validate_file_name(name).map_err(|e| e.in_field(field("name")))?;
        }
        for (name, value) in [("width", self.width), ("height", self.height)] {
            if value.is_some_and(|v| v == 0 || v > 65_535) {
                return Err(ValidationError::new(field(name), "must be 1 to 65535"));
            }
        }
        if self.duration_ms.is_some_and(|d| d > 24 * 3_600_000) {
            return Err(ValidationError::new(
                field("duration_ms"),
                "must be at most a day",
            ));
        }
        Ok(())
    }
}

/// The mention rules of a message or an edit: at most [`MAX_MENTIONS`] users, none twice, `@all` in
/// groups only.
pub(crate) fn validate_mentions(
    conversation: &ConversationId,
    mentions: &[UserId],
    mention_all: bool,
) -> Result<(), ValidationError> {
    if mentions.len() > MAX_MENTIONS {
        return Err(ValidationError::new(
            "mentions",
            format!("at most {MAX_MENTIONS} users"),
        ));
    }
    for (i, user) in mentions.iter().enumerate() {
        if mentions[..i].contains(user) {
            return Err(ValidationError::new(
                format!("mentions[{i}]"),
                "the same user twice",
            ));
        }
    }
    let direct = matches!(
        conversation.kind(),
        crate::ids::ConversationKind::Direct(..)
    );
    if mention_all && direct {
        return Err(ValidationError::new(
            "mention_all",
            "only a group's messages mention everyone",
        ));
    }
    Ok(())
}

/// A media type as an upload declares it: `type/subtype`, lower case, at most 127 characters, not
/// one a browser would run ([`ACTIVE_MIME_TYPES`]).
pub fn validate_mime(mime: &str) -> Result<(), ValidationError> {
    let token = |s: &str| {
        !s.is_empty()
            && s.bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"!#$&^_.+-".contains(&b))
    };
    let valid = mime.len() <= 127
        && mime
            .split_once('/')
            .is_some_and(|(kind, sub)| token(kind) && token(sub));
    if !valid {
        return Err(ValidationError::new(
            "mime",
            "must be a lower-case media type such as image/png",
        ));
    }
    if ACTIVE_MIME_TYPES.contains(&mime) {
        return Err(ValidationError::new(
            "mime",
            format!("{mime} is not accepted (a browser would run it)"),
        ));
    }
    Ok(())
}

/// A file name: 1 to 255 characters, no path separators or control characters.
pub fn validate_file_name(name: &str) -> Result<(), ValidationError> {
    let count = name.chars().count();
    if count == 0 || count > MAX_FILE_NAME_CHARS {
        return Err(ValidationError::new(
            "name",
            format!("must be 1 to {MAX_FILE_NAME_CHARS} characters long"),
        ));
    }
    if name
        .chars()
        .any(|c| c.is_control() || c == '/' || c == '\\')
    {
        return Err(ValidationError::new(
            "name",
            "must not contain slashes or control characters",
        ));
    }
    Ok(())
}

pub fn is_sha256_hex(value: &str) -> bool {
    value.len() == 64
        && value
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

fn validate_location(fields: &serde_json::Map<String, Value>) -> Result<(), ValidationError> {
    for (name, bound) in [("lat", 90.0), ("lon", 180.0)] {
        match fields.get(name).and_then(Value::as_f64) {
            Some(v) if v.abs() <= bound => {}
            _ => {
                return Err(ValidationError::new(
                    format!("payload.{name}"),
                    format!("a location needs {name} between -{bound} and {bound}"),
                ))
            }
        }
    }
    match fields.get("name") {
        None => Ok(()),
        Some(Value::String(name)) if name.chars().count() <= MAX_BODY_CHARS => Ok(()),
        Some(_) => Err(ValidationError::new(
            "payload.name",
            "must be a string of at most 4096 characters",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn image(mime: &str) -> Attachment {
        Attachment {
            id: AttachmentId::generate(),
            mime: mime.into(),
            size: 1000,
            sha256: "a".repeat(64),
            name: Some("beach.png".into()),
            width: Some(640),
            height: Some(480),
            duration_ms: None,
        }
    }

    fn content(kind: ContentType, attachments: Vec<Attachment>, payload: Option<Value>) -> Content {
        Content {
            content_type: kind,
            attachments,
            payload,
        }
    }

    fn field(result: Result<(), ValidationError>) -> String {
        result.unwrap_err().field.into_owned()
    }

    #[test]
    fn each_type_has_its_rules_and_names_the_field() {
        let text = Content::default();
        assert!(text.validate("hi").is_ok());
        assert_eq!(field(text.validate("")), "body");
        let picture = content(ContentType::Image, vec![image("image/png")], None);
        assert!(picture.validate("").is_ok());
        assert!(picture.validate("at the beach").is_ok());
        assert_eq!(
            field(content(ContentType::Image, vec![], None).validate("")),
            "attachments"
        );
        assert_eq!(
            field(content(ContentType::Image, vec![image("application/pdf")], None).validate("")),
            "attachments[0].mime"
        );
        let mut bad = image("image/png");
        bad.sha256 = "XYZ".into();
        assert_eq!(
            field(content(ContentType::File, vec![image("image/png"), bad], None).validate("")),
            "attachments[1].sha256"
        );
        assert_eq!(
            field(content(ContentType::File, vec![image("image/svg+xml")], None).validate("")),
            "attachments[0].mime"
        );
        let twice = image("image/png");
        assert_eq!(
            field(content(ContentType::File, vec![twice.clone(), twice], None).validate("")),
            "attachments[1].id"
        );
        let place = json!({"lat": 52.5, "lon": 13.4, "name": "Berlin"});
        assert!(content(ContentType::Location, vec![], Some(place))
            .validate("")
            .is_ok());
        assert_eq!(
            field(
                content(
                    ContentType::Location,
                    vec![],
                    Some(json!({"lat": 91, "lon": 0}))
                )
                .validate("")
            ),
            "payload.lat"
        );
        assert_eq!(
            field(
                content(ContentType::Sticker, vec![], Some(json!({"pack": "cats"}))).validate("")
            ),
            "payload.id"
        );
        assert_eq!(
            field(content(ContentType::Custom, vec![], Some(json!([1, 2]))).validate("")),
            "payload"
        );
        let huge = json!({"blob": "x".repeat(MAX_PAYLOAD_BYTES)});
        assert_eq!(
            field(content(ContentType::Custom, vec![], Some(huge)).validate("")),
            "payload"
        );
        assert_eq!(
            field(content(ContentType::Text, vec![], Some(json!({}))).validate("hi")),
            "payload"
        );
    }

    #[test]
    fn previews_say_what_a_message_is() {
        assert_eq!(Content::default().preview("hello there", 5), "hello");
        let picture = content(ContentType::Image, vec![image("image/png")], None);
        assert_eq!(picture.preview("", 80), "[image]");
        assert_eq!(picture.preview("at the beach", 80), "[image] at the beach");
        let file = content(ContentType::File, vec![image("image/png")], None);
        assert_eq!(file.preview("", 80), "[file] beach.png");
        let place = json!({"lat": 1, "lon": 2, "name": "Home"});
        assert_eq!(
            content(ContentType::Location, vec![], Some(place)).preview("", 80),
            "[location] Home"
        );
        assert_eq!(
            content(ContentType::Audio, vec![image("audio/ogg")], None).preview("", 80),
            "[voice message]"
        );
    }

    #[test]
    fn a_plain_text_message_serializes_as_before() {
        assert_eq!(serde_json::to_value(Content::default()).unwrap(), json!({}));
        let back: Content = serde_json::from_value(json!({})).unwrap();
        assert_eq!(back, Content::default());
    }
}
