//! Object keys: `att/{YYYY-MM-DD}/{ULID}` (and its owner record, `own/…`). The day comes from the id itself (a ULID holds its
//! upload time), so the key follows from the id alone, and the orphan sweep lists one day's prefix
//! at a time instead of the whole store.

use chrono::{DateTime, NaiveDate, Utc};
use object_store::path::Path;
use schemas::AttachmentId;

/// The prefix every attachment lives under.
pub const PREFIX: &str = "att";

/// The upload time an attachment id holds.
pub fn uploaded_at(id: &AttachmentId) -> DateTime<Utc> {
    ulid::Ulid::from_string(id.as_str())
        .ok()
        .and_then(|u| DateTime::from_timestamp_millis(u.timestamp_ms() as i64))
        .unwrap_or_default()
}

/// The object key of an attachment.
pub fn path_of(id: &AttachmentId) -> Path {
    Path::from(format!(
        "{PREFIX}/{}/{}",
        uploaded_at(id).format("%Y-%m-%d"),
        id.as_str()
    ))
}

/// The key of the small object naming who asked for attachment `id`'s upload (`own/{day}/{id}`): a
/// message may name only its sender's own uploads.
pub fn owner_path_of(id: &AttachmentId) -> Path {
    Path::from(format!(
        "{OWNER_PREFIX}/{}/{}",
        uploaded_at(id).format("%Y-%m-%d"),
        id.as_str()
    ))
}

/// The prefix of the owner records.
pub const OWNER_PREFIX: &str = "own";

/// The prefix of one day's upload tickets (their owner records: every upload has one, also one whose
/// bytes never came), which the sweep lists.
pub fn day_prefix(day: NaiveDate) -> Path {
    Path::from(format!("{OWNER_PREFIX}/{}", day.format("%Y-%m-%d")))
}

/// The attachment id an object key names, if it names one.
pub fn id_of(path: &Path) -> Option<AttachmentId> {
    let name = path.filename()?;
    AttachmentId::parse("attachment", name).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_follows_from_the_id_and_back() {
        let id = AttachmentId::lowest_at(
            DateTime::parse_from_rfc3339("2026-12-07T10:00:00Z")
                .unwrap()
                .with_timezone(&Utc),
        );
        let path = path_of(&id);
        assert_eq!(path.as_ref(), format!("att/2026-12-07/{id}"));
        assert_eq!(id_of(&path), Some(id));
        assert_eq!(id_of(&Path::from("att/2026-12-07/notes.txt")), None);
    }
}
