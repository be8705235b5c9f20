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

    /// The schema's event types are exactly [`KNOWN_EVENT_TYPES`](crate::events::KNOWN_EVENT_TYPES),
    /// each with a payload, and the envelope's own fields are required.
    #[test]
    fn schema_describes_the_envelope_and_every_event_type() {
        let schema: serde_json::Value = serde_json::from_str(&event_schema_json()).unwrap();
        let variants = schema["oneOf"]
            .as_array()
            .expect("one schema per event type");
        let mut documented: Vec<&str> = variants
            .iter()
            .map(|variant| {
                assert!(
                    variant["properties"]["payload"]["$ref"].is_string(),
                    "{variant} has no payload"
                );
                variant["properties"]["type"]["const"]
                    .as_str()
                    .expect("each variant names its type")
            })
            .collect();
        documented.sort_unstable();
        let mut known = crate::events::KNOWN_EVENT_TYPES.to_vec();
        known.sort_unstable();
        assert_eq!(documented, known, "schema event types vs KNOWN_EVENT_TYPES");
        let required = schema["required"].as_array().expect("required fields");
        for field in ["v", "id", "key", "ts"] {
            assert!(
                required.iter().any(|r| r == field),
                "envelope field {field} not required"
            );
        }
    }
}
