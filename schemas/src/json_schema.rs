//! The JSON Schema of [`Envelope`](crate::Envelope), generated from the Rust types.
//!
//! The committed copy lives at `schemas/event.schema.json`; a test fails when it drifts from the
//! types. Regenerate it with `FANLINE_BLESS=1 cargo test -p schemas` ([`crate::committed`]).

/// The schema as pretty-printed JSON, exactly as committed.
pub fn event_schema_json() -> String {
    let schema = schemars::schema_for!(crate::Envelope);
    let mut text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    text.push('\n');
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    const COMMITTED_PATH: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/event.schema.json");

    #[test]
    fn committed_schema_matches_the_types() {
        if let Err(message) = crate::committed::check(COMMITTED_PATH, &event_schema_json()) {
            panic!("{message}");
        }
    }

    #[test]
    fn schema_describes_the_envelope_and_every_event_type() {
        let text = event_schema_json();
        for needle in [
            "\"post_created\"",
            "\"post_deleted\"",
            "\"followed\"",
            "\"unfollowed\"",
            "\"payload\"",
            "\"key\"",
        ] {
            assert!(text.contains(needle), "schema lacks {needle}");
        }
    }
}
