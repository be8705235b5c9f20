//! Generated contract files that are committed (the events' JSON Schema, the services' OpenAPI
//! documents): a test compares each with what the code generates now, so a change to the types shows up
//! in review as a change to the contract.

/// Fails when `committed_path` differs from `generated`; with `FANLINE_BLESS` set it first rewrites the
/// file. Returns the error message instead of panicking, so the caller's test names the file.
pub fn check(committed_path: &str, generated: &str) -> Result<(), String> {
    if std::env::var_os("FANLINE_BLESS").is_some() {
        std::fs::write(committed_path, generated)
            .map_err(|err| format!("cannot write {committed_path}: {err}"))?;
    }
    let committed = std::fs::read_to_string(committed_path).unwrap_or_default();
    if committed == generated {
        Ok(())
    } else {
        Err(format!(
            "{committed_path} is out of date; regenerate it with FANLINE_BLESS=1 cargo test --workspace"
        ))
    }
}

/// The local `$ref`s (`#/a/b`) of a JSON document that point at nothing; all of them when the text is
/// not JSON.
pub fn unresolved_references(json: &str) -> Vec<String> {
    fn collect(value: &serde_json::Value, refs: &mut Vec<String>) {
        match value {
            serde_json::Value::Object(map) => {
                if let Some(serde_json::Value::String(target)) = map.get("$ref") {
                    refs.push(target.clone());
                }
                map.values().for_each(|v| collect(v, refs));
            }
            serde_json::Value::Array(items) => items.iter().for_each(|v| collect(v, refs)),
            _ => {}
        }
    }
    let Ok(document) = serde_json::from_str::<serde_json::Value>(json) else {
        return vec![format!("not JSON: {json:.40}")];
    };
    let mut refs = Vec::new();
    collect(&document, &mut refs);
    refs.retain(|target| {
        let pointer = target.strip_prefix('#').unwrap_or(target);
        document.pointer(pointer).is_none()
    });
    refs
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_are_resolved_against_the_document() {
        let json =
            r##"{"a": {"$ref": "#/defs/x"}, "defs": {"x": {}}, "b": [{"$ref": "#/defs/y"}]}"##;
        assert_eq!(unresolved_references(json), vec!["#/defs/y".to_owned()]);
    }
}
