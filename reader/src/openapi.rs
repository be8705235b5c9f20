//! The read API's OpenAPI 3.1 document, generated from the handlers' annotations ([`crate::routes`])
//! and the body types of `schemas::api`. Served at `/openapi.json` and committed as
//! `reader/openapi.json`; a test fails when the committed copy drifts from the code.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fanline reader",
        description = "The read API: feeds, sync scans and store timelines, straight from Postgres. \
                       Errors are `{\"error\", \"field\"}` JSON."
    ),
    paths(crate::routes::feed, crate::routes::sync, crate::routes::posts),
    // Path and query parameters refer to these; utoipa collects only the schemas bodies reach.
    components(schemas(schemas::UserId, schemas::PostId)),
    tags((name = "timelines", description = "Feeds, sync timelines and store timelines."))
)]
struct ReaderApi;

/// The document as pretty-printed JSON, exactly as committed.
pub fn document_json() -> String {
    let mut json = ReaderApi::openapi()
        .to_pretty_json()
        .unwrap_or_else(|err| format!("{{\"error\": \"{err}\"}}"));
    json.push('\n');
    json
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_document_matches_the_code() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        if let Err(message) = schemas::committed::check(path, &super::document_json()) {
            panic!("{message}");
        }
    }

    #[test]
    fn every_reference_resolves() {
        let unresolved = schemas::committed::unresolved_references(&super::document_json());
        assert!(unresolved.is_empty(), "unresolved: {unresolved:?}");
    }
}
