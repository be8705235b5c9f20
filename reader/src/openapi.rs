//! The read API's OpenAPI 3.1 document, generated from the handlers' annotations ([`crate::routes`])
//! and the body types of `schemas::api`. Served at `/openapi.json` and committed as
//! `reader/openapi.json`; a test fails when the committed copy drifts from the code.

use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Fanline reader",
        description = "The read API: feeds, sync scans, store timelines, contact lists and conversations, straight from Postgres. \
                       Errors are `{\"error\", \"field\"}` JSON."
    ),
    modifiers(&Security),
    paths(
        crate::sessions::login,
        crate::sessions::refresh,
        crate::sessions::logout,
        crate::sessions::logout_everywhere,
        crate::accounts::change_password,
        crate::accounts::availability,
        crate::routes::feed,
        crate::routes::sync,
        crate::routes::posts,
        crate::im::conversations,
        crate::im::messages,
        crate::receipts::readers,
        crate::attachments::download_link,
        crate::attachments::file,
        crate::im::profile,
        crate::groups::group,
        crate::groups::members,
        crate::groups::pending,
        crate::groups::invitations,
        crate::blocks::blocks,
        crate::search::messages,
        crate::search::posts,
        crate::export::export,
        crate::directory::users,
        crate::directory::groups,
        crate::moderation::reports,
        crate::socket::connect,
        crate::events::stream,
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
        (name = "sessions", description = "Log in, refresh, log out (register at ingest: `POST /v1/accounts`)."),
        (name = "timelines", description = "Feeds, sync timelines and store timelines."),
        (name = "messages", description = "Contact lists with unread counts, conversation histories."),
        (name = "attachments", description = "Downloads: a signed URL for those who may read a message or post holding the file."),
        (name = "search", description = "Search: people, groups, and the messages and posts the caller may read."),
        (name = "users", description = "Profiles and blocks."),
        (name = "groups", description = "Groups, their members, invitations and join requests."),
        (name = "moderation", description = "The operators' queue of reports (`FANLINE_OPERATORS`)."),
        (name = "realtime", description = "The sync timeline pushed: WebSocket (with acks and heartbeats) and Server-Sent Events."),
    )
)]
struct ReaderApi;

/// Every route needs a bearer token but logging in and refreshing.
struct Security;

impl utoipa::Modify for Security {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        httpkit::openapi::BearerSecurity {
            open: &[
                "/v1/sessions",
                "/v1/sessions/refresh",
                "/v1/accounts/{user}/availability",
            ],
        }
        .modify(openapi);
    }
}

/// The document as pretty-printed JSON, exactly as committed.
pub fn document_json() -> String {
    httpkit::openapi::render(&ReaderApi::openapi())
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
