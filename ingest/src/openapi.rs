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
    modifiers(&Security),
    paths(
        crate::routes::register,
        crate::routes::delete_account,
        crate::routes::create_post,
        crate::routes::create_posts,
        crate::routes::delete_post,
        crate::routes::follow,
        crate::routes::unfollow,
        crate::im_routes::send_message,
        crate::im_routes::recall_message,
        crate::im_routes::mark_read,
        crate::im_routes::update_profile,
        crate::im_routes::create_group,
        crate::im_routes::add_member,
        crate::im_routes::remove_member,
        crate::safety_routes::update_group,
        crate::safety_routes::dissolve_group,
        crate::safety_routes::mute_member,
        crate::safety_routes::unmute_member,
        crate::safety_routes::block,
        crate::safety_routes::unblock,
        crate::safety_routes::mute_conversation,
        crate::safety_routes::unmute_conversation,
        crate::moderation_routes::report,
        crate::moderation_routes::resolve,
        crate::moderation_routes::disable,
        crate::moderation_routes::enable,
        crate::moderation_routes::delete_account,
        crate::moderation_routes::remove_post,
        crate::moderation_routes::remove_message,
        crate::moderation_routes::dissolve_group,
        crate::revision_routes::edit_message,
        crate::revision_routes::edit_post,
        crate::revision_routes::add_reaction,
        crate::revision_routes::remove_reaction,
        crate::attachment_routes::create_upload,
        crate::attachment_routes::upload_bytes,
    ),
    // Parameters and the shared error responses (httpkit::openapi) refer to these; utoipa collects only
    // the schemas that request and response bodies of the operations reach.
    components(schemas(
        schemas::UserId,
        schemas::PostId,
        schemas::GroupId,
        schemas::ConversationId,
        schemas::AttachmentId,
        schemas::api::ErrorBody
    )),
    tags(
        (name = "accounts", description = "Registration (log in at the reader: `POST /v1/sessions`)."),
        (name = "posts", description = "Store timelines: posting and deleting."),
        (name = "attachments", description = "Uploads: a signed request per file, then a message or post names it."),
        (name = "follows", description = "The follow graph."),
        (name = "messages", description = "1:1 and group messages, recalls and read markers."),
        (name = "users", description = "Profiles and blocks."),
        (name = "groups", description = "Groups: members, invitations and requests, settings, mutes."),
        (name = "moderation", description = "Reports, and the operators' routes (`FANLINE_OPERATORS`)."),
    )
)]
struct IngestApi;

/// Every route needs a bearer token but registration.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        httpkit::openapi::BearerSecurity {
            open: &["/v1/accounts"],
        }
        .modify(openapi);
    }
}

/// The document as pretty-printed JSON, exactly as committed.
pub fn document_json() -> String {
    httpkit::openapi::render(&IngestApi::openapi())
}

#[cfg(test)]
mod tests {
    #[test]
    fn committed_document_is_current_and_complete() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/openapi.json");
        if let Err(message) = httpkit::openapi::check_committed(path, &super::document_json()) {
            panic!("{message}");
        }
    }
}
