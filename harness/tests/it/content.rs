//! Rich messages (issue 24): content types and attachments through both stores (a directory, and a
//! real S3 server), replies, forwarding and mentions — over HTTP as a client uses them, and through
//! fanout's store live, on a replay and in another interleaving.

use std::net::SocketAddr;
use std::sync::Arc;

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};
use sha2::{Digest, Sha256};

use crate::im_api::Stack;

/// A free local address and the URL clients reach it at.
fn public_address() -> (SocketAddr, String) {
    let port = harness::free_port();
    (
        SocketAddr::from(([127, 0, 0, 1], port)),
        format!("http://127.0.0.1:{port}"),
    )
}

/// The stack with attachments in `blobs` (a 1 MiB limit), every service sharing the settings.
async fn stack_with(blobs: &blobkit::BlobArgs) -> Stack {
    let mut blobs = blobs.clone();
    blobs.attachment_max_bytes = 1 << 20;
    let (reader_listen, reader_url) = public_address();
    let (ingest_listen, ingest_url) = public_address();
    let (for_reader, for_ingest, for_fanout) = (blobs.clone(), blobs.clone(), blobs);
    Stack(
        harness::stack::Stack::start_all(
            |config| {
                config.blobs = for_reader;
                config.listen = reader_listen;
                config.public_url = reader_url;
            },
            |config| {
                config.blobs = for_ingest;
                config.listen = ingest_listen;
                config.public_url = ingest_url;
            },
            |config| config.blobs = for_fanout,
        )
        .await,
    )
}

fn sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

impl Stack {
    /// `user`'s call to `path` (ingest's or the reader's URL) with a JSON body: status and answer.
    async fn call(
        &self,
        user: &str,
        method: Method,
        url: String,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let kind = bytes.as_ref().map(|_| "application/json");
        self.api
            .as_user(user)
            .raw(method, &url, bytes.as_deref(), kind)
            .await
    }

    /// Asks for an upload of `bytes` as `user`; returns the ticket.
    async fn ticket(&self, user: &str, bytes: &[u8], mime: &str) -> Value {
        let body = json!({"mime": mime, "size": bytes.len(), "sha256": sha256(bytes)});
        let url = format!("{}/v1/attachments", self.api.ingest);
        let (status, ticket) = self.call(user, Method::POST, url, Some(body)).await;
        assert_eq!(status, StatusCode::CREATED, "{ticket}");
        ticket
    }

    /// Uploads `bytes` as `user`; returns the attachment as a message names it.
    async fn upload(&self, user: &str, bytes: &[u8], mime: &str) -> Value {
        let ticket = self.ticket(user, bytes, mime).await;
        let status = put(&ticket, &ticket["url"], bytes.to_vec()).await;
        assert!(status.is_success(), "upload: {status}");
        json!({"id": ticket["attachment"], "mime": mime, "size": bytes.len(),
               "sha256": sha256(bytes), "name": "beach.png", "width": 2, "height": 1})
    }

    /// `user` sends `body` (with `from`); returns the status and answer (not asserted).
    async fn try_send(&self, user: &str, body: Value) -> (StatusCode, Value) {
        let url = format!("{}/v1/messages", self.api.ingest);
        self.call(user, Method::POST, url, Some(body)).await
    }

    /// `user`'s download link of attachment `id`: status and answer.
    async fn link(&self, user: &str, id: &Value) -> (StatusCode, Value) {
        let url = format!(
            "{}/v1/attachments/{}",
            self.api.reader,
            id.as_str().unwrap()
        );
        self.call(user, Method::GET, url, None).await
    }
}

/// Puts `bytes` to `url` with the ticket's headers; the status.
async fn put(ticket: &Value, url: &Value, bytes: Vec<u8>) -> StatusCode {
    let mut request = reqwest::Client::new()
        .put(url.as_str().unwrap())
        .body(bytes);
    for (name, value) in ticket["headers"].as_object().unwrap() {
        request = request.header(name, value.as_str().unwrap());
    }
    request.send().await.unwrap().status()
}

fn field(answer: &Value) -> &str {
    answer["field"].as_str().unwrap_or_default()
}

const PICTURE: &[u8] = b"\x89PNG\r\n\x1a\n a very small picture";

/// The whole life of an attachment, for either store: refused uploads and sends name the field; the
/// bytes come back to the two people of the chat and to nobody else; an upload never sent, and one
/// whose message was recalled, are deleted by the sweep, a sent one is kept.
async fn an_attachment_goes_up_comes_back_to_readers_only_and_is_swept(
    blobs: blobkit::BlobArgs,
    verifies_bytes: bool,
) {
    let stack = stack_with(&blobs).await;
    let ingest = |path: &str| format!("{}{path}", stack.api.ingest);
    for (body, at_fault) in [
        (
            json!({"mime": "text/html", "size": 3, "sha256": sha256(b"abc")}),
            "mime",
        ),
        (
            json!({"mime": "image/png", "size": 2 << 20, "sha256": sha256(b"abc")}),
            "size",
        ),
        (
            json!({"mime": "image/png", "size": 3, "sha256": "abc"}),
            "sha256",
        ),
    ] {
        let (status, answer) = stack
            .call("alice", Method::POST, ingest("/v1/attachments"), Some(body))
            .await;
        assert_eq!(
            (status, field(&answer)),
            (StatusCode::BAD_REQUEST, at_fault),
            "{answer}"
        );
    }
    // Other bytes than declared: the directory store refuses them as they stream in; S3 checks the
    // signed SHA-256 (moto does not, so here the message naming them is refused: their size differs).
    let ticket = stack.ticket("alice", PICTURE, "image/png").await;
    let status = put(
        &ticket,
        &ticket["url"],
        b"something else entirely, longer".to_vec(),
    )
    .await;
    let landed = status.is_success();
    assert!(
        landed != verifies_bytes && (landed || status.is_client_error()),
        "other bytes: {status}"
    );
    let picture = stack.upload("alice", PICTURE, "image/png").await;

    let image = |attachment: &Value| {
        json!({"from": "alice", "to": "bob", "body": "at the beach",
                                           "content_type": "image", "attachments": [attachment]})
    };
    let mut refused = picture.clone();
    refused["id"] = json!(ticket["attachment"]);
    let mut unknown = picture.clone();
    unknown["id"] = json!(schemas::AttachmentId::generate());
    let mut wrong_size = picture.clone();
    wrong_size["size"] = json!(PICTURE.len() + 1);
    let at_fault = if landed {
        "attachments[0].size"
    } else {
        "attachments[0].id"
    };
    for (attachment, at_fault) in [
        (&refused, at_fault),
        (&unknown, "attachments[0].id"),
        (&wrong_size, "attachments[0].size"),
    ] {
        let (status, answer) = stack.try_send("alice", image(attachment)).await;
        assert_eq!(
            (status, field(&answer)),
            (StatusCode::BAD_REQUEST, at_fault),
            "{answer}"
        );
    }
    // Knowing an id grants nothing: carol cannot send (or "forward") alice's upload.
    let mut theirs = image(&picture);
    theirs["from"] = json!("carol");
    theirs["forwarded"] = json!(true);
    let (status, answer) = stack.try_send("carol", theirs).await;
    assert_eq!(
        (status, field(&answer)),
        (StatusCode::BAD_REQUEST, "attachments[0].id"),
        "{answer}"
    );
    let (status, answer) = stack.try_send("alice", image(&picture)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{answer}");
    let orphan = stack.upload("alice", b"never sent", "text/plain").await;
    stack.applied().await;

    let history = stack
        .read_as("bob", "/v1/conversations/d:alice:bob/messages")
        .await;
    let message = &history["messages"][0];
    assert_eq!(
        (&message["content_type"], &message["attachments"][0]),
        (&json!("image"), &picture)
    );
    let contacts = stack.contacts("bob").await;
    assert_eq!(
        contacts["conversations"][0]["last_message"]["preview"],
        "[image] at the beach"
    );
    let sync = stack.read_as("bob", "/v1/users/bob/sync?after=0").await;
    assert_eq!(
        sync["entries"][0]["attachments"][0]["id"], picture["id"],
        "{sync}"
    );

    for who in ["alice", "bob"] {
        let (status, link) = stack.link(who, &picture["id"]).await;
        assert_eq!(status, StatusCode::OK, "{who}: {link}");
        let got = reqwest::get(link["url"].as_str().unwrap()).await.unwrap();
        assert_eq!(got.headers()["content-type"], "image/png");
        assert_eq!(got.bytes().await.unwrap().as_ref(), PICTURE, "{who}");
    }
    let (status, refused) = stack.link("carol", &picture["id"]).await;
    assert_eq!(
        (status, field(&refused)),
        (StatusCode::FORBIDDEN, "attachment"),
        "{refused}"
    );
    let (status, _) = stack.link("alice", &orphan["id"]).await;
    assert_eq!(
        status,
        StatusCode::NOT_FOUND,
        "an upload nobody sent has no readers"
    );
    let (status, answer) = stack.link("bob", &json!("not-an-id")).await;
    assert_eq!(
        (status, field(&answer)),
        (StatusCode::BAD_REQUEST, "attachment")
    );

    // The sweep: nothing is old enough now; a day and more later the orphan goes, the sent stays.
    let store = Arc::new(blobs.open().unwrap().unwrap());
    let sweep = fanout::attachment_sweep::AttachmentSweep {
        pool: stack.db.pool.clone(),
        blobs: store.clone(),
        every: std::time::Duration::from_secs(60),
    };
    let id = |attachment: &Value| {
        schemas::AttachmentId::parse("id", attachment["id"].as_str().unwrap()).unwrap()
    };
    let now = chrono::Utc::now();
    let report = sweep.run_once(now).await.unwrap();
    assert_eq!((report.orphans, report.released), (0, 0), "{report:?}");
    // Judged: every ticket — the picture, the orphan, the one whose bytes were refused (or landed).
    let report = sweep
        .run_once(now + chrono::Duration::hours(25))
        .await
        .unwrap();
    assert_eq!((report.judged, report.orphans), (3, 2), "{report:?}");
    assert!(
        store.stat(&id(&orphan)).await.unwrap().is_none(),
        "the orphan is gone"
    );
    assert!(
        store.stat(&id(&picture)).await.unwrap().is_some(),
        "the sent picture stays"
    );
    let again = sweep
        .run_once(now + chrono::Duration::hours(25))
        .await
        .unwrap();
    assert_eq!(again.judged, 0, "a round starts where the last stopped");

    // Recalled: nobody may fetch it, and the sweep deletes it.
    let message_id = message["message_id"].as_str().unwrap();
    let path = format!("/v1/messages/{message_id}?from=alice&conversation=d:alice:bob");
    stack.write(Method::DELETE, &path, Value::Null).await;
    stack.applied().await;
    let (status, _) = stack.link("bob", &picture["id"]).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let report = sweep.run_once(now).await.unwrap();
    assert_eq!(report.released, 1, "{report:?}");
    assert!(
        store.stat(&id(&picture)).await.unwrap().is_none(),
        "the recalled picture is gone"
    );
    stack.stop().await;
}

#[tokio::test]
async fn an_attachment_in_a_directory_store_goes_up_comes_back_to_readers_only_and_is_swept() {
    let dir = std::env::temp_dir().join(harness::unique("fanline-blobs"));
    let blobs = blobkit::BlobArgs::directory(&dir, "a test secret of thirty-two chars!");
    an_attachment_goes_up_comes_back_to_readers_only_and_is_swept(blobs, true).await;
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test]
async fn an_attachment_in_s3_goes_up_comes_back_to_readers_only_and_is_swept() {
    let s3 = harness::s3::S3Server::start("fanline-test").await;
    // moto stores what it gets; real S3 refuses bytes whose SHA-256 is not the signed one.
    an_attachment_goes_up_comes_back_to_readers_only_and_is_swept(s3.blob_args(), false).await;
}

/// A directory store's signed URLs grant exactly what they say: another size, another id, a later
/// expiry or no signature are refused, as is the download URL used for an upload.
#[tokio::test]
async fn a_signed_url_grants_nothing_but_what_it_was_signed_for() {
    let dir = std::env::temp_dir().join(harness::unique("fanline-blobs"));
    let stack = stack_with(&blobkit::BlobArgs::directory(
        &dir,
        "a test secret of thirty-two chars!",
    ))
    .await;
    let ticket = stack.ticket("alice", PICTURE, "image/png").await;
    let url = ticket["url"].as_str().unwrap();
    let size = format!("size={}", PICTURE.len());
    let bigger = format!("size={}", PICTURE.len() + 1);
    let other = schemas::AttachmentId::generate();
    for tampered in [
        url.replace(&size, &bigger),
        url.replace(ticket["attachment"].as_str().unwrap(), other.as_str()),
        url.replace("expires=", "expires=9"),
        url.split("&sig=").next().unwrap().to_owned(),
    ] {
        let status = put(&ticket, &json!(tampered), PICTURE.to_vec()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{tampered}");
    }
    assert_eq!(
        put(&ticket, &ticket["url"], PICTURE.to_vec()).await,
        StatusCode::NO_CONTENT
    );
    stack.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}

/// Replies quote their original as the reader may see it; mentions count in the contact list until
/// read, muted or not; `@all` is an owner's or admin's; attachments are off without a store.
#[tokio::test]
async fn replies_quote_their_original_and_mentions_count_until_read() {
    let stack = Stack::start().await;
    stack
        .write(
            Method::POST,
            "/v1/groups",
            json!({"group": "trip", "owner": "alice", "name": "Trip", "join_rule": "open"}),
        )
        .await;
    for who in ["bob", "carol"] {
        stack
            .write(
                Method::PUT,
                &format!("/v1/groups/trip/members/{who}"),
                Value::Null,
            )
            .await;
    }
    stack.applied().await;
    let first = stack
        .send(json!({"from": "bob", "group": "trip", "body": "where do we meet?"}))
        .await;
    stack.applied().await;
    stack
        .send(
            json!({"from": "alice", "group": "trip", "body": "at the station, @carol?",
                      "reply_to": 1, "mentions": ["carol"]}),
        )
        .await;
    stack.send(json!({"from": "alice", "group": "trip", "body": "everyone: 9 sharp", "mention_all": true})).await;
    // Refused by fanout (the sender's devices hear why): @all from a member, a reply to nothing.
    stack
        .send(json!({"from": "bob", "group": "trip", "body": "me too", "mention_all": true}))
        .await;
    stack
        .send(json!({"from": "bob", "group": "trip", "body": "what?", "reply_to": 99}))
        .await;
    stack
        .write(
            Method::PUT,
            "/v1/users/carol/conversations/g:trip/mute",
            Value::Null,
        )
        .await;
    stack.applied().await;

    let mentions = |contacts: &Value| contacts["conversations"][0]["mentions"].as_i64().unwrap();
    let carol = stack.contacts("carol").await;
    assert_eq!(
        (mentions(&carol), carol["total_unread"].as_i64()),
        (2, Some(0)),
        "muted, still mentioned: {carol}"
    );
    assert_eq!(mentions(&stack.contacts("bob").await), 1, "bob: @all only");
    assert_eq!(
        mentions(&stack.contacts("alice").await),
        0,
        "her own @all is not for her"
    );
    let sync = stack.read_as("bob", "/v1/users/bob/sync?after=0").await;
    let reasons: Vec<&Value> = sync["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "refused")
        .map(|e| &e["reason"])
        .collect();
    assert_eq!(
        reasons,
        [&json!("not_allowed"), &json!("no_such_message")],
        "{sync}"
    );

    let history = stack
        .read_as("carol", "/v1/conversations/g:trip/messages")
        .await;
    let reply = &history["messages"][1];
    assert_eq!(
        reply["reply_to"],
        json!({"seq": 1, "sender": "bob", "snippet": "where do we meet?"})
    );
    assert_eq!(
        (&reply["mentions"], &history["messages"][2]["mention_all"]),
        (&json!(["carol"]), &json!(true))
    );
    stack
        .write(
            Method::PUT,
            "/v1/users/carol/conversations/g:trip/read",
            json!({"seq": 3}),
        )
        .await;
    // Bob recalls what alice replied to: the quote says so.
    let recall = format!(
        "/v1/messages/{}?from=bob&conversation=g:trip",
        first["message_id"].as_str().unwrap()
    );
    stack.write(Method::DELETE, &recall, Value::Null).await;
    stack.applied().await;
    assert_eq!(
        mentions(&stack.contacts("carol").await),
        0,
        "read: no mentions left"
    );
    let history = stack
        .read_as("carol", "/v1/conversations/g:trip/messages")
        .await;
    assert_eq!(
        history["messages"][1]["reply_to"],
        json!({"seq": 1, "sender": "bob", "snippet": "", "recalled": true})
    );

    // Forwarded content is marked; bad input names its field; attachments are off here.
    stack
        .send(json!({"from": "carol", "to": "dave", "body": "at the station", "forwarded": true}))
        .await;
    for (body, at_fault) in [
        (
            json!({"from": "alice", "group": "trip", "content_type": "location", "payload": {"lat": 91, "lon": 0}}),
            "payload.lat",
        ),
        (
            json!({"from": "alice", "group": "trip", "body": "x", "mentions": ["bob", "bob"]}),
            "mentions[1]",
        ),
        (
            json!({"from": "alice", "to": "bob", "body": "x", "mention_all": true}),
            "mention_all",
        ),
        (
            json!({"from": "alice", "group": "trip", "body": "x", "reply_to": 0}),
            "reply_to",
        ),
        (
            json!({"from": "alice", "group": "trip", "content_type": "image"}),
            "attachments",
        ),
        (
            json!({"from": "alice", "group": "trip", "content_type": "file", "attachments": [{
            "id": schemas::AttachmentId::generate(), "mime": "application/pdf", "size": 3,
            "sha256": sha256(b"abc")}]}),
            "attachments",
        ),
    ] {
        let (status, answer) = stack.try_send("alice", body).await;
        assert_eq!(
            (status, field(&answer)),
            (StatusCode::BAD_REQUEST, at_fault),
            "{answer}"
        );
    }
    let (status, answer) = stack
        .call(
            "alice",
            Method::POST,
            format!("{}/v1/attachments", stack.api.ingest),
            Some(json!({"mime": "image/png", "size": 3, "sha256": sha256(b"abc")})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_IMPLEMENTED, "{answer}");
    stack.applied().await;
    let dave = stack
        .read_as("dave", "/v1/conversations/d:carol:dave/messages")
        .await;
    assert_eq!(dave["messages"][0]["forwarded"], true, "{dave}");
    stack.stop().await;
}

/// Edits replace the text everywhere and count versions; a stale version changes nothing; reactions
/// are one per user and key, counted from the rows, for those who may read the message only.
#[tokio::test]
async fn edits_and_reactions_reach_everyone_and_counts_are_derived() {
    let stack = Stack::start().await;
    let sent = stack
        .send(json!({"from": "alice", "to": "bob", "body": "helo"}))
        .await;
    stack.applied().await;
    let id = sent["message_id"].as_str().unwrap();
    let edit = |from: &str, body: &str, version: Option<i32>| json!({"from": from, "conversation": "d:alice:bob", "body": body, "version": version});
    let path = format!("/v1/messages/{id}");
    stack
        .write(Method::PATCH, &path, edit("alice", "hello", Some(1)))
        .await;
    // A retry of that edit, a stale one, someone else's: none changes the text.
    stack
        .write(Method::PATCH, &path, edit("alice", "hello", Some(1)))
        .await;
    stack
        .write(Method::PATCH, &path, edit("alice", "hullo", Some(1)))
        .await;
    stack
        .write(Method::PATCH, &path, edit("bob", "bob was here", None))
        .await;
    stack.applied().await;
    let history = stack
        .read_as("bob", "/v1/conversations/d:alice:bob/messages")
        .await;
    let message = &history["messages"][0];
    assert_eq!(
        (&message["body"], &message["version"]),
        (&json!("hello"), &json!(2)),
        "{history}"
    );
    assert!(message["edited_at"].is_string(), "{message}");
    let sync = stack.read_as("bob", "/v1/users/bob/sync?after=0").await;
    let edits: Vec<&Value> = sync["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "edit")
        .collect();
    assert_eq!(edits.len(), 1, "one edit applied: {sync}");
    assert_eq!(
        (&edits[0]["body"], &edits[0]["conversation_seq"]),
        (&json!("hello"), &json!(1))
    );

    let react = |user: &str, key: &str| {
        format!("/v1/users/{user}/conversations/d:alice:bob/messages/1/reactions/{key}")
    };
    let thumbs = "%F0%9F%91%8D"; // 👍
    for user in ["bob", "bob", "alice"] {
        stack
            .write(Method::PUT, &react(user, thumbs), Value::Null)
            .await;
    }
    stack
        .write(Method::PUT, &react("bob", ":party:"), Value::Null)
        .await;
    stack
        .write(Method::DELETE, &react("bob", ":party:"), Value::Null)
        .await;
    stack
        .write(Method::DELETE, &react("alice", ":party:"), Value::Null)
        .await;
    // Not hers to read: refused by fanout.
    let (status, _) = stack
        .call(
            "carol",
            Method::PUT,
            format!("{}{}", stack.api.ingest, react("carol", thumbs)),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED);
    stack.applied().await;
    let counts = |page: &Value| page["messages"][0]["reactions"].clone();
    let bobs = stack
        .read_as("bob", "/v1/conversations/d:alice:bob/messages")
        .await;
    assert_eq!(
        counts(&bobs),
        json!([{"key": "👍", "count": 2, "me": true}]),
        "{bobs}"
    );
    let sync = stack.read_as("alice", "/v1/users/alice/sync?after=0").await;
    let reactions = sync["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "reaction")
        .count();
    assert_eq!(
        reactions, 4,
        "bob's 👍, alice's 👍, bob's :party: and its removal: {sync}"
    );
    for (path, at_fault) in [
        (react("bob", "ok"), "key"),
        (react("bob", "%F0%9F%91%8D%F0%9F%91%8D"), "key"),
        (
            "/v1/users/bob/conversations/d:alice:bob/messages/x/reactions/:a:".to_owned(),
            "seq",
        ),
    ] {
        let (status, answer) = stack
            .call(
                "bob",
                Method::PUT,
                format!("{}{path}", stack.api.ingest),
                None,
            )
            .await;
        assert_eq!(
            (status, field(&answer)),
            (StatusCode::BAD_REQUEST, at_fault),
            "{answer}"
        );
    }
    // A post, edited by its author (not by anyone else): feeds and timelines show the new text.
    let post = stack
        .write(
            Method::POST,
            "/v1/posts",
            json!({"author": "alice", "body": "helo world"}),
        )
        .await;
    let post_path = format!("/v1/posts/{}", post["post_id"].as_str().unwrap());
    stack
        .write(
            Method::PATCH,
            &post_path,
            json!({"author": "alice", "body": "hello world"}),
        )
        .await;
    stack
        .write(
            Method::PATCH,
            &post_path,
            json!({"author": "bob", "body": "bob was here"}),
        )
        .await;
    stack.applied().await;
    let timeline = stack.read_as("bob", "/v1/users/alice/posts").await;
    assert_eq!(timeline["entries"][0]["body"], "hello world", "{timeline}");
    assert!(
        timeline["entries"][0]["edited_at"].is_string(),
        "{timeline}"
    );
    let (status, answer) = stack
        .call(
            "alice",
            Method::PATCH,
            format!("{}{path}", stack.api.ingest),
            Some(edit("alice", "", Some(0))),
        )
        .await;
    assert_eq!(
        (status, field(&answer)),
        (StatusCode::BAD_REQUEST, "body"),
        "{answer}"
    );
    stack.stop().await;
}

pub(crate) mod store {
    //! Content, references and mentions through fanout's store: live, again, and rebuilt in other
    //! orders of the partitions — the same rows.

    use fanout::store::SourcedEvent;
    use harness::TestDb;
    use schemas::{
        Attachment, AttachmentId, Content, ContentType, ConversationId, Envelope, MessageEdited,
        MessageRecalled, Reaction,
    };

    use crate::erasure::store::{append, group, join};
    use crate::safety::store::{apply_each, message, user};

    fn with(mut envelope: Envelope, change: impl FnOnce(&mut schemas::MessageSent)) -> Envelope {
        if let schemas::Event::MessageSent(message) = &mut envelope.event {
            change(message);
        }
        envelope
    }

    fn picture() -> Content {
        Content {
            content_type: ContentType::Image,
            attachments: vec![Attachment {
                id: AttachmentId::generate(),
                mime: "image/png".into(),
                size: 10,
                sha256: "ab".repeat(32),
                name: Some("beach.png".into()),
                width: None,
                height: None,
                duration_ms: None,
            }],
            payload: None,
        }
    }

    fn script() -> Vec<Envelope> {
        let (trip, created) = group("trip", "ann");
        let chat = ConversationId::group(&trip);
        let direct = ConversationId::direct(&user("ann"), &user("bob")).unwrap();
        let shared = picture();
        let first = message(&chat, "bob", "where?");
        let schemas::Event::MessageSent(sent) = &first.event else {
            unreachable!()
        };
        let recall = Envelope::message_recalled(MessageRecalled {
            message_id: sent.message_id.clone(),
            conversation: chat.clone(),
            sender: user("bob"),
            recalled_at: sent.created_at,
        });
        let shared_again = shared.clone();
        vec![
            created,
            join(&trip, "bob", "bob", None),
            join(&trip, "cat", "cat", None),
            first,
            with(message(&chat, "ann", "station"), |m| {
                m.reply_to = Some(1);
                m.mentions = vec![user("cat")];
            }),
            with(message(&chat, "ann", ""), |m| m.content = shared),
            with(message(&chat, "ann", "all of you"), |m| {
                m.mention_all = true
            }),
            with(message(&chat, "bob", "me too"), |m| m.mention_all = true),
            with(message(&chat, "bob", "huh"), |m| m.reply_to = Some(40)),
            with(message(&direct, "bob", ""), |m| {
                m.content = shared_again;
                m.forwarded = true;
            }),
            recall,
        ]
    }

    /// The rows `queries` read after applying `envelopes` live — checked to be the same when applied
    /// again (a replay) and when rebuilt into fresh databases in two other orders of the partitions.
    async fn same_live_again_and_rebuilt(
        envelopes: Vec<Envelope>,
        queries: &[&str],
    ) -> Vec<String> {
        let mut log: Vec<SourcedEvent> = Vec::new();
        append(&mut log, envelopes);
        let live = TestDb::create().await;
        apply_each(&live, &log).await;
        let expected = rows_of(&live, queries).await;
        apply_each(&live, &log).await;
        assert_eq!(
            rows_of(&live, queries).await,
            expected,
            "a replay changes nothing"
        );
        for descending in [false, true] {
            let mut by_partition = log.clone();
            by_partition.sort_by_key(|e| {
                (
                    if descending {
                        -e.partition
                    } else {
                        e.partition
                    },
                    e.offset,
                )
            });
            let rebuilt = TestDb::create().await;
            apply_each(&rebuilt, &by_partition).await;
            let rows = rows_of(&rebuilt, queries).await;
            assert_eq!(rows, expected, "rebuilt, descending {descending}");
        }
        expected
    }

    /// Every row `queries` read, sorted.
    async fn rows_of(db: &TestDb, queries: &[&str]) -> Vec<String> {
        let mut rows = Vec::new();
        for query in queries {
            let part: Vec<(String,)> = sqlx::query_as(query).fetch_all(&db.pool).await.unwrap();
            rows.extend(part.into_iter().map(|(row,)| row));
        }
        rows.sort();
        rows
    }

    /// What the references test compares: messages, holders, mentions, refusals, garbage.
    const REFERENCES: &[&str] = &[
            "SELECT 'message ' || conversation_id || ' ' || seq || ' ' || content_type || ' '
                    || coalesce(reply_to::text, '-') || ' ' || forwarded || ' '
                    || coalesce(jsonb_array_length(attachments), 0) FROM messages",
            "SELECT 'holds ' || conversation_id || ' ' || seq FROM message_attachments",
            "SELECT 'mention ' || conversation_id || ' ' || seq || ' ' || user_id FROM message_mentions",
            "SELECT 'refused ' || reason FROM refused_messages",
            "SELECT 'garbage' FROM attachment_garbage",
    ];

    #[tokio::test]
    async fn references_come_out_the_same_live_on_a_replay_and_in_other_interleavings() {
        let expected = same_live_again_and_rebuilt(script(), REFERENCES).await;
        assert_eq!(
            expected,
            [
                "holds d:ann:bob 1",
                "holds g:trip 3",
                "mention g:trip 2 cat",
                "mention g:trip 4 *",
                "message d:ann:bob 1 image - true 1",
                "message g:trip 1 text - false 0",
                "message g:trip 2 text 1 false 0",
                "message g:trip 3 image - false 1",
                "message g:trip 4 text - false 0",
                "refused no_such_message",
                "refused not_allowed",
            ],
        );
    }

    fn edit(
        message: &Envelope,
        body: &str,
        version: Option<i32>,
        at: chrono::DateTime<chrono::Utc>,
    ) -> Envelope {
        let schemas::Event::MessageSent(sent) = &message.event else {
            unreachable!()
        };
        Envelope::message_edited(MessageEdited {
            message_id: sent.message_id.clone(),
            conversation: sent.conversation.clone(),
            sender: sent.sender.clone(),
            body: body.into(),
            content: Content::default(),
            mentions: Vec::new(),
            mention_all: false,
            version,
            edited_at: at,
        })
    }

    fn react(who: &str, key: &str, added: bool) -> Envelope {
        let conversation =
            ConversationId::group(&schemas::GroupId::parse("group", "trip").unwrap());
        Envelope::reaction(
            Reaction {
                conversation,
                seq: 1,
                user: user(who),
                key: key.into(),
                at: chrono::Utc::now(),
            },
            added,
        )
    }

    /// A message edited four times — once, a retry of that, a stale edit, a last-writer edit — and
    /// an old message edited past the window; reactions added twice, removed before they were added,
    /// from a non-member: the same versions, texts and counts live, again and rebuilt.
    fn revisions() -> Vec<Envelope> {
        let (trip, created) = group("trip", "ann");
        let chat = ConversationId::group(&trip);
        let now = chrono::Utc::now();
        let post = Envelope::post_created(schemas::PostCreated {
            post_id: schemas::PostId::generate(),
            author: user("ann"),
            body: "a post".into(),
            content: Content::default(),
            message_id: None,
            created_at: now,
        });
        let schemas::Event::PostCreated(created_post) = &post.event else {
            unreachable!()
        };
        let post_edit = |body: &str, author: &str| {
            Envelope::post_edited(schemas::PostEdited {
                post_id: created_post.post_id.clone(),
                author: user(author),
                body: body.into(),
                content: Content::default(),
                edited_at: now,
            })
        };
        let first = message(&chat, "ann", "helo");
        let bobs = message(&chat, "bob", "bob here");
        let old = with(message(&chat, "ann", "last week"), |m| {
            m.created_at = now - chrono::Duration::days(2)
        });
        vec![
            post.clone(),
            post_edit("a better post", "ann"),
            post_edit("the best post", "ann"),
            post_edit("bob's post", "bob"),
            created.clone(),
            join(&trip, "bob", "bob", None),
            join(&trip, "cat", "cat", None),
            first.clone(),
            old.clone(),
            edit(&first, "hello", Some(1), now),
            edit(&first, "hello", Some(1), now),
            edit(&first, "hullo", Some(1), now),
            edit(&first, "hello, all", None, now),
            edit(&old, "too late", None, now),
            react("bob", "👍", true),
            react("bob", "👍", true),
            react("cat", "👍", true),
            react("cat", "❤️", false),
            react("cat", "❤️", true),
            react("dan", "👍", true),
            react("bob", ":party:", true),
            react("bob", ":party:", false),
            bobs.clone(),
            Envelope::member_removed(schemas::MembershipChange {
                group: trip.clone(),
                user: user("bob"),
                by: user("bob"),
                role: None,
            }),
            // He left: his message is no longer his to change.
            edit(&bobs, "edited after leaving", None, now),
        ]
    }

    /// What the revisions test compares: versions, reaction counts, refusals, posts.
    const REVISIONS: &[&str] = &[
            "SELECT 'message ' || seq || ' ' || body || ' v' || version || ' ' || (edited_at IS NOT NULL)
             FROM messages",
            "SELECT 'reactions ' || seq || ' ' || key || ' ' || count(*) FROM message_reactions
             GROUP BY seq, key",
            "SELECT 'refused ' || reason FROM refused_messages",
            "SELECT 'post ' || body || ' v' || version FROM posts",
            // Refused edits and reactions are told to their actor, once (issue 25).
            "SELECT 'told ' || w.user_id || ' ' || w.action || ' ' || w.reason FROM refused_writes w
             JOIN sync_entries s ON s.message_id = w.event_id AND s.kind = 'refused'",
    ];

    #[tokio::test]
    async fn edits_and_reactions_come_out_the_same_live_on_a_replay_and_in_other_interleavings() {
        let expected = same_live_again_and_rebuilt(revisions(), REVISIONS).await;
        assert_eq!(
            expected,
            [
                "message 1 hello, all v3 true",
                "message 2 last week v1 false",
                "message 3 bob here v1 false",
                "post the best post v3",
                "reactions 1 ❤️ 1",
                "reactions 1 👍 2",
                "told ann edit edit_window",
                "told ann edit stale_version",
                "told bob edit not_member",
                "told dan reaction_add not_member",
            ],
        );
    }
}
