//! The write API's OpenAPI 3.1 document, generated from the handlers' annotations ([`crate::routes`])
//! and the body types of `schemas::api`. Served at `/openapi.json` and committed as
//! `ingest/openapi.json`; a test fails when the committed copy drifts from the code.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fanline ingest",
        description = "The write API: every write is appended to Kafka and answered 202 only after the \
                       broker acknowledged it. Errors are `{\"error\", \"field\"}` JSON."
    ),
    paths(
        crate::routes::create_post,
        crate::routes::create_posts,
        crate::routes::delete_post,
        crate::routes::follow,
        crate::routes::unfollow,
    ),
    // Path and query parameters refer to these; utoipa collects only the schemas bodies reach.
    components(schemas(schemas::UserId, schemas::PostId)),
    tags(
        (name = "posts", description = "Store timelines: posting and deleting."),
        (name = "follows", description = "The follow graph."),
    )
)]
struct IngestApi;

/// The document as pretty-printed JSON, exactly as committed.
pub fn document_json() -> String {
    let mut json = IngestApi::openapi()
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
