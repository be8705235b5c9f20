//! IM end to end over HTTP: ingest → Kafka → fanout → Postgres → reader, as a client uses it.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

/// The whole pipeline, with requests made as the user they act for (see [`actor_of`]).
pub(crate) struct Stack(pub(crate) harness::stack::Stack);

impl std::ops::Deref for Stack {
    type Target = harness::stack::Stack;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// Who a test request acts as: the body's actor (`by`), sender, owner or author, the `by` parameter, the user the path
/// names, the first user of a direct conversation; anyone signed in for public reads.
fn actor_of(path: &str, body: &Value) -> String {
    for field in ["by", "from", "owner", "author"] {
        if let Some(user) = body[field].as_str() {
            return user.to_owned();
        }
    }
    let (path, query) = path.split_once('?').unwrap_or((path, ""));
    for parameter in ["by=", "from="] {
        if let Some(user) = query
            .split('&')
            .find_map(|pair| pair.strip_prefix(parameter))
        {
            return user.to_owned();
        }
    }
    let segments: Vec<&str> = path.split('/').collect();
    for (i, segment) in segments.iter().enumerate() {
        match (*segment, segments.get(i + 1)) {
            ("users" | "members", Some(user)) => return (*user).to_owned(),
            ("conversations", Some(conversation)) if conversation.starts_with("d:") => {
                return conversation
                    .split(':')
                    .nth(1)
                    .unwrap_or_default()
                    .to_owned()
            }
            _ => {}
        }
    }
    "someone".to_owned()
}

impl Stack {
    pub(crate) async fn start() -> Stack {
        Stack::with_group_thresholds(None).await
    }

    /// With `Some((pull_above, push_below))` groups switch to read diffusion at tiny sizes.
    pub(crate) async fn with_group_thresholds(thresholds: Option<(i64, i64)>) -> Stack {
        Stack(
            harness::stack::Stack::start_configured(
                |_| {},
                |config| {
                    if let Some((pull_above, push_below)) = thresholds {
                        config.group_pull_threshold = pull_above;
                        config.group_push_threshold = Some(push_below);
                        // Pure read diffusion (M = 0; M itself:
                        // `activity::a_large_group_message_reaches_its_first_awake_members`).
                        config.active_audience_max = 0;
                    }
                },
            )
            .await,
        )
    }

    pub(crate) async fn write(&self, method: Method, path: &str, body: Value) -> Value {
        let url = format!("{}{path}", self.api.ingest);
        let bytes = serde_json::to_vec(&body).unwrap();
        let (status, value) = self
            .api
            .as_user(&actor_of(path, &body))
            .raw(method, &url, Some(&bytes), Some("application/json"))
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{path}: {value}");
        value
    }

    pub(crate) async fn send(&self, body: Value) -> Value {
        self.write(Method::POST, "/v1/messages", body).await
    }

    pub(crate) async fn read(&self, path: &str) -> Value {
        self.read_as(&actor_of(path, &Value::Null), path).await
    }

    pub(crate) async fn read_as(&self, user: &str, path: &str) -> Value {
        let url = format!("{}{path}", self.api.reader);
        let (status, value) = self
            .api
            .as_user(user)
            .raw(Method::GET, &url, None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{path}: {value}");
        value
    }

    pub(crate) async fn contacts(&self, user: &str) -> Value {
        self.read(&format!("/v1/users/{user}/conversations")).await
    }

    pub(crate) async fn stop(self) {
        self.0.stop().await;
    }
}

pub(crate) fn unread_of(contacts: &Value, conversation: &str) -> i64 {
    contacts["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["conversation_id"] == conversation)
        .map(|c| c["unread"].as_i64().unwrap())
        .unwrap_or_else(|| panic!("{conversation} not in {contacts}"))
}

/// Message entries (kind, conversation seq, body) of a sync timeline from the start.
pub(crate) async fn message_entries(stack: &Stack, user: &str) -> Vec<(String, i64, String)> {
    let page = stack
        .read(&format!("/v1/users/{user}/sync?after=0&limit=200"))
        .await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] != "post" && e["kind"] != "invitation")
        .map(|e| {
            (
                e["kind"].as_str().unwrap().to_owned(),
                e["conversation_seq"].as_i64().unwrap_or(0),
                e["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

#[tokio::test]
async fn a_direct_conversation_has_one_id_gap_free_seqs_and_exact_unread_counts() {
    let stack = Stack::start().await;
    let first = stack
        .send(json!({"from": "bob", "to": "alice", "body": "hi alice", "client_msg_id": "b1"}))
        .await;
    assert_eq!(first["conversation_id"], "d:alice:bob");
    // A retry with the same client_msg_id is the same message.
    let retry = stack
        .send(json!({"from": "bob", "to": "alice", "body": "hi alice", "client_msg_id": "b1"}))
        .await;
    assert_ne!(retry["message_id"], first["message_id"]);
    stack
        .send(json!({"from": "bob", "to": "alice", "body": "are you there?"}))
        .await;
    let reply = stack
        .send(json!({"from": "alice", "to": "bob", "body": "yes"}))
        .await;
    assert_eq!(reply["conversation_id"], "d:alice:bob");
    stack
        .send(json!({"from": "bob", "to": "alice", "body": "great"}))
        .await;
    stack.applied().await;

    let history = stack.read("/v1/conversations/d:alice:bob/messages").await;
    let seqs: Vec<i64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4],
        "one message per client_msg_id, no holes"
    );
    // Both inboxes carry every message of the conversation, the sender's own too.
    for user in ["alice", "bob"] {
        let entries = message_entries(&stack, user).await;
        let seqs: Vec<i64> = entries.iter().map(|e| e.1).collect();
        assert_eq!(seqs, vec![1, 2, 3, 4], "{user}'s inbox");
        assert!(entries.iter().all(|e| e.0 == "message"));
    }
    // alice replied after bob's first two (sending marks read): only "great" is unread for her.
    let alice = stack.contacts("alice").await;
    assert_eq!(unread_of(&alice, "d:alice:bob"), 1);
    assert_eq!(alice["total_unread"], 1);
    let conversation = &alice["conversations"][0];
    assert_eq!(conversation["peer"], "bob");
    assert_eq!(conversation["last_message"]["preview"], "great");
    assert_eq!(conversation["last_seq"], 4);
    assert_eq!(unread_of(&stack.contacts("bob").await, "d:alice:bob"), 0);

    // A too-large marker is clamped; a stale one changes nothing.
    stack
        .write(
            Method::PUT,
            "/v1/users/alice/conversations/d:alice:bob/read",
            json!({"seq": 99}),
        )
        .await;
    stack
        .write(
            Method::PUT,
            "/v1/users/alice/conversations/d:alice:bob/read",
            json!({"seq": 1}),
        )
        .await;
    stack.applied().await;
    let alice = stack.contacts("alice").await;
    assert_eq!(unread_of(&alice, "d:alice:bob"), 0);
    assert_eq!(alice["conversations"][0]["read_seq"], 4);

    // Recall: the message becomes a tombstone, a recall entry follows, unread drops where unread.
    let oops = stack
        .send(json!({"from": "bob", "to": "alice", "body": "oops"}))
        .await;
    stack.applied().await;
    assert_eq!(unread_of(&stack.contacts("alice").await, "d:alice:bob"), 1);
    let message_id = oops["message_id"].as_str().unwrap();
    stack
        .write(
            Method::DELETE,
            &format!("/v1/messages/{message_id}?from=bob&conversation=d:alice:bob"),
            Value::Null,
        )
        .await;
    stack.applied().await;
    assert_eq!(unread_of(&stack.contacts("alice").await, "d:alice:bob"), 0);
    let entries = message_entries(&stack, "alice").await;
    assert_eq!(entries.last().unwrap().0, "recall");
    assert_eq!(entries.last().unwrap().1, 5);
    let history = stack
        .read("/v1/conversations/d:alice:bob/messages?after=4")
        .await;
    assert_eq!(history["messages"][0]["recalled"], true);
    assert_eq!(history["messages"][0]["body"], "");
    let older = stack
        .read("/v1/conversations/d:alice:bob/messages?before=3&limit=1")
        .await;
    assert_eq!(older["messages"][0]["seq"], 2);
    assert_eq!(older["has_more"], true);
    stack.stop().await;
}

#[tokio::test]
async fn group_messages_reach_exactly_the_members_of_their_moment() {
    let stack = Stack::start().await;
    stack
        .write(
            Method::POST,
            "/v1/groups",
            json!({"group": "team", "owner": "olga", "name": "The team", "type": "work",
                   "join_rule": "open"}),
        )
        .await;
    stack
        .write(
            Method::PUT,
            "/v1/groups/team/members/pat?by=olga",
            Value::Null,
        )
        .await;
    stack
        .write(Method::PUT, "/v1/groups/team/members/quinn", Value::Null)
        .await;
    stack
        .send(json!({"from": "olga", "group": "team", "body": "welcome"}))
        .await;
    // Not a member: refused by fanout, reported to the sender only.
    stack
        .send(json!({"from": "mallory", "group": "team", "body": "spam"}))
        .await;
    stack
        .write(Method::DELETE, "/v1/groups/team/members/quinn", Value::Null)
        .await;
    stack
        .send(json!({"from": "pat", "group": "team", "body": "after quinn left"}))
        .await;
    stack
        .write(Method::PUT, "/v1/groups/team/members/ruth", Value::Null)
        .await;
    stack
        .send(json!({"from": "olga", "group": "team", "body": "hello ruth"}))
        .await;
    stack
        .write(
            Method::PUT,
            "/v1/users/ruth",
            json!({"display_name": "Ruth R.", "age": 33}),
        )
        .await;
    stack.applied().await;

    let bodies = |entries: Vec<(String, i64, String)>| -> Vec<String> {
        entries.into_iter().map(|e| e.2).collect()
    };
    assert_eq!(
        bodies(message_entries(&stack, "pat").await),
        vec!["welcome", "after quinn left", "hello ruth"]
    );
    assert_eq!(
        bodies(message_entries(&stack, "quinn").await),
        vec!["welcome"]
    );
    assert_eq!(
        bodies(message_entries(&stack, "ruth").await),
        vec!["hello ruth"]
    );
    let mallory = message_entries(&stack, "mallory").await;
    assert_eq!(mallory.len(), 1);
    assert_eq!(mallory[0].0, "refused");
    let refused = stack.read("/v1/users/mallory/sync").await;
    assert_eq!(refused["entries"][0]["reason"], "not_member");
    assert_eq!(
        stack.fanout.metric(
            "fanline_fanout_im_refused_total",
            &[("reason", "not_member")]
        ),
        1.0
    );

    // Unread: pat read up to his own message (seq 2), then got olga's third; quinn left (0); ruth
    // joined before the third.
    let pat = stack.contacts("pat").await;
    assert_eq!(unread_of(&pat, "g:team"), 1);
    assert_eq!(pat["conversations"][0]["name"], "The team");
    assert_eq!(unread_of(&stack.contacts("quinn").await, "g:team"), 0);
    assert_eq!(
        stack.contacts("quinn").await["conversations"][0]["active"],
        false
    );
    assert_eq!(unread_of(&stack.contacts("ruth").await, "g:team"), 1);

    let group = stack.read("/v1/groups/team").await;
    assert_eq!(group["member_count"], 3);
    assert_eq!(group["owner"], "olga");
    assert_eq!(group["type"], "work");
    let members = stack.read("/v1/groups/team/members?limit=2").await;
    assert_eq!(members["members"][0]["user"], "olga");
    assert_eq!(members["members"][0]["role"], "owner");
    let rest = stack
        .read(&format!(
            "/v1/groups/team/members?limit=2&cursor={}",
            members["next_cursor"].as_str().unwrap()
        ))
        .await;
    assert_eq!(rest["members"][0]["user"], "ruth");
    assert_eq!(rest["next_cursor"], Value::Null);
    let profile = stack.read("/v1/users/ruth").await;
    assert_eq!(profile["display_name"], "Ruth R.");
    assert_eq!(profile["age"], 33);
    stack.stop().await;
}

#[tokio::test]
async fn bad_im_input_gets_a_json_error_naming_the_field() {
    let stack = Stack::start().await;
    let cases: Vec<(Method, &str, Option<Value>, &str)> = vec![
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"from": "alice", "to": "alice", "body": "me"})),
            "to",
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"from": "alice", "body": "nobody"})),
            "to",
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"from": "alice", "group": "a b", "body": "x"})),
            "group",
        ),
        (
            Method::POST,
            "/v1/messages",
            Some(json!({"from": "alice", "to": "bob", "body": ""})),
            "body",
        ),
        (
            Method::PUT,
            "/v1/users/alice/conversations/d:bob:alice/read",
            Some(json!({"seq": 1})),
            "conversation",
        ),
        (
            Method::PUT,
            "/v1/users/alice/conversations/d:alice:bob/read",
            Some(json!({"seq": -1})),
            "seq",
        ),
        (
            Method::PUT,
            "/v1/users/alice",
            Some(json!({"display_name": "", "age": 3})),
            "display_name",
        ),
        (
            Method::POST,
            "/v1/groups",
            Some(json!({"group": "g", "owner": "alice", "name": " "})),
            "name",
        ),
        (
            Method::PUT,
            "/v1/groups/team/members/bob?role=owner",
            None,
            "role",
        ),
        (
            Method::DELETE,
            "/v1/messages/01JD8Z5V2Q3W4E5R6T7Y8V9K0M?from=alice",
            None,
            "conversation",
        ),
    ];
    for (method, path, body, field) in cases {
        let bytes = body.map(|b| serde_json::to_vec(&b).unwrap());
        let (status, value) = stack
            .api
            .as_user("alice")
            .raw(
                method,
                &format!("{}{path}", stack.api.ingest),
                bytes.as_deref(),
                Some("application/json"),
            )
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {value}");
        assert_eq!(value["field"], field, "{path}: {value}");
    }
    let (status, value) = stack
        .api
        .as_user("alice")
        .raw(
            Method::GET,
            &format!("{}/v1/users/nobody", stack.api.reader),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{value}");
    stack.stop().await;
}

#[tokio::test]
async fn a_large_group_costs_constant_rows_per_message_and_stays_exact_across_its_thresholds() {
    // Pull (read diffusion) above 3 members, push again below 3.
    let stack = Stack::with_group_thresholds(Some((3, 3))).await;
    stack
        .write(
            Method::POST,
            "/v1/groups",
            json!({"group": "big", "owner": "olga", "name": "Big", "join_rule": "open"}),
        )
        .await;
    for member in ["ann", "ben", "cat"] {
        stack
            .write(
                Method::PUT,
                &format!("/v1/groups/big/members/{member}"),
                Value::Null,
            )
            .await;
    }
    stack
        .send(json!({"from": "olga", "group": "big", "body": "m1"}))
        .await;
    stack
        .send(json!({"from": "ben", "group": "big", "body": "m2"}))
        .await;
    stack.applied().await;
    let (mode,): (String,) =
        sqlx::query_as("SELECT mode FROM conversations WHERE conversation_id = 'g:big'")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(mode, "pull");
    // Two messages to four members: one inbox entry each (the sender's own), nothing per member.
    let (entries,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM sync_entries WHERE conversation_id = 'g:big'")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(entries, 2);
    let ann = stack.contacts("ann").await;
    assert_eq!(unread_of(&ann, "g:big"), 2);
    assert_eq!(ann["total_unread"], 2);
    assert_eq!(ann["conversations"][0]["last_message"]["preview"], "m2");
    assert_eq!(unread_of(&stack.contacts("ben").await, "g:big"), 0);
    assert_eq!(unread_of(&stack.contacts("olga").await, "g:big"), 1);
    // One sync poll tells ann's device the big group advanced; its cursor moves past it.
    let sync = stack.read("/v1/users/ann/sync?after=0").await;
    assert_eq!(sync["entries"].as_array().unwrap().len(), 0);
    assert_eq!(sync["conversations"][0]["conversation_id"], "g:big");
    assert_eq!(sync["conversations"][0]["last_seq"], 2);
    let cursor = sync["last_seq"].as_i64().unwrap();
    assert_eq!(
        cursor,
        sync["conversations"][0]["position"].as_i64().unwrap()
    );
    let again = stack
        .read(&format!("/v1/users/ann/sync?after={cursor}"))
        .await;
    assert!(again.get("conversations").is_none(), "nothing new: {again}");

    // Read markers and recalls stay exact in pull mode.
    stack
        .write(
            Method::PUT,
            "/v1/users/ann/conversations/g:big/read",
            json!({"seq": 1}),
        )
        .await;
    let m3 = stack
        .send(json!({"from": "cat", "group": "big", "body": "m3"}))
        .await;
    stack.applied().await;
    assert_eq!(unread_of(&stack.contacts("ann").await, "g:big"), 2);
    let id = m3["message_id"].as_str().unwrap();
    stack
        .write(
            Method::DELETE,
            &format!("/v1/messages/{id}?from=cat&conversation=g:big"),
            Value::Null,
        )
        .await;
    stack.applied().await;
    assert_eq!(unread_of(&stack.contacts("ann").await, "g:big"), 1);
    let recalled = stack
        .read(&format!("/v1/users/ann/sync?after={cursor}"))
        .await;
    assert_eq!(recalled["conversations"][0]["conversation_id"], "g:big");
    // The recalled seq comes with it: the message never reached ann's inbox, so no recall entry does.
    assert_eq!(recalled["conversations"][0]["recalled"], json!([3]));

    // Down to two members: back to push, with the derived counts stored; new messages are pushed again.
    for member in ["ben", "cat"] {
        stack
            .write(
                Method::DELETE,
                &format!("/v1/groups/big/members/{member}"),
                Value::Null,
            )
            .await;
    }
    stack
        .send(json!({"from": "olga", "group": "big", "body": "m4"}))
        .await;
    stack.applied().await;
    let (mode,): (String,) =
        sqlx::query_as("SELECT mode FROM conversations WHERE conversation_id = 'g:big'")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(mode, "push");
    assert_eq!(unread_of(&stack.contacts("ann").await, "g:big"), 2);
    let pushed = message_entries(&stack, "ann").await;
    assert_eq!(pushed, vec![("message".to_owned(), 4, "m4".to_owned())]);
    let history = stack
        .read_as("olga", "/v1/conversations/g:big/messages")
        .await;
    let seqs: Vec<i64> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["seq"].as_i64().unwrap())
        .collect();
    assert_eq!(
        seqs,
        vec![1, 2, 3, 4],
        "nothing hidden or duplicated across the switches"
    );
    // A device that has not synced since the start still learns of the pull-era messages.
    let late = stack.read("/v1/users/ann/sync?after=0").await;
    assert_eq!(late["conversations"][0]["conversation_id"], "g:big");
    stack.stop().await;
}

/// Read receipts (reader/src/receipts.rs): a direct conversation's ticks from the peer's read marker and
/// a device's acknowledgement, a small group's readers — shown to the sender only.
#[tokio::test]
async fn read_receipts_tick_in_direct_chats_and_name_readers_in_small_groups() {
    use harness::ws::WsClient;
    use schemas::realtime::ClientFrame;

    let stack = Stack::start().await;
    for body in ["one", "two", "three"] {
        stack.message("alice", "bob", body).await;
    }
    stack.applied().await;
    let history = |who: &'static str, conversation: &'static str| {
        let stack = &stack;
        async move {
            let path = format!("/v1/conversations/{conversation}/messages");
            stack.read_as(who, &path).await
        }
    };
    let page = history("alice", "d:alice:bob").await;
    assert_eq!(
        (&page["peer_read_seq"], &page["peer_delivered_seq"]),
        (&json!(0), &json!(0)),
        "{page}"
    );
    // Bob's phone acknowledges everything it received; he reads up to the second.
    let sync = stack.read_as("bob", "/v1/users/bob/sync?after=0").await;
    let last = sync["last_seq"].as_i64().unwrap();
    let token = stack.api.token_for("bob");
    let mut phone = WsClient::connect(&stack.reader.url(""), &token, "phone", "")
        .await
        .unwrap();
    phone.send(&ClientFrame::Ack { seq: last }).await;
    stack
        .write(
            Method::PUT,
            "/v1/users/bob/conversations/d:alice:bob/read",
            json!({"seq": 2}),
        )
        .await;
    stack.applied().await;
    let page = harness::wait_until("bob's ack", std::time::Duration::from_secs(10), || async {
        let page = history("alice", "d:alice:bob").await;
        (page["peer_delivered_seq"] == 3).then_some(page)
    })
    .await;
    assert_eq!(page["peer_read_seq"], 2, "{page}");
    let bobs = history("bob", "d:alice:bob").await;
    // Her read position covers what she sent herself.
    assert_eq!(bobs["peer_read_seq"], 3, "{bobs}");

    // A group of three: read_by on alice's own messages, readers listed to her alone.
    stack
        .write(
            Method::POST,
            "/v1/groups",
            json!({"group": "trio", "owner": "alice", "name": "Trio", "join_rule": "open"}),
        )
        .await;
    for who in ["bob", "cat"] {
        let path = format!("/v1/groups/trio/members/{who}");
        stack.write(Method::PUT, &path, Value::Null).await;
    }
    stack.applied().await;
    for body in ["g1", "g2"] {
        stack
            .send(json!({"from": "alice", "group": "trio", "body": body}))
            .await;
    }
    stack
        .send(json!({"from": "bob", "group": "trio", "body": "bob's"}))
        .await;
    stack.applied().await;
    for (who, seq) in [("bob", 2), ("cat", 1)] {
        let path = format!("/v1/users/{who}/conversations/g:trio/read");
        stack.write(Method::PUT, &path, json!({"seq": seq})).await;
    }
    stack.applied().await;
    let page = history("alice", "g:trio").await;
    let read_by: Vec<Value> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["read_by"].clone())
        .collect();
    assert_eq!(read_by, [json!(2), json!(1), Value::Null], "{page}");
    let readers = stack
        .read_as("alice", "/v1/conversations/g:trio/messages/2/readers")
        .await;
    assert_eq!(
        (&readers["count"], &readers["readers"]),
        (&json!(1), &json!(["bob"]))
    );
    let first = stack
        .read_as(
            "alice",
            "/v1/conversations/g:trio/messages/1/readers?limit=1",
        )
        .await;
    assert_eq!(
        (&first["count"], &first["readers"], &first["next_cursor"]),
        (&json!(2), &json!(["bob"]), &json!("bob"))
    );
    let next = stack
        .read_as(
            "alice",
            "/v1/conversations/g:trio/messages/1/readers?limit=1&cursor=bob",
        )
        .await;
    assert_eq!(next["readers"], json!(["cat"]));
    // Others' messages: no counts, no readers; bad input names its field; a big group has none.
    let url = |path: &str| format!("{}{path}", stack.api.reader);
    let refusals = [
        (
            "bob",
            "/v1/conversations/g:trio/messages/1/readers",
            403,
            "seq",
        ),
        (
            "alice",
            "/v1/conversations/g:trio/messages/99/readers",
            404,
            "seq",
        ),
        (
            "alice",
            "/v1/conversations/g:trio/messages/x/readers",
            400,
            "seq",
        ),
        (
            "dan",
            "/v1/conversations/g:trio/messages/1/readers",
            403,
            "conversation",
        ),
    ];
    for (who, path, status, field) in refusals {
        let (got, body) = stack
            .api
            .as_user(who)
            .raw(Method::GET, &url(path), None, None)
            .await;
        assert_eq!(
            (got.as_u16(), &body["field"]),
            (status, &json!(field)),
            "{path}"
        );
    }
    sqlx::query("UPDATE groups SET member_count = 501 WHERE group_id = 'trio'")
        .execute(&stack.db.pool)
        .await
        .unwrap();
    let page = history("alice", "g:trio").await;
    assert!(page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m.get("read_by").is_none()));
    let (got, body) = stack
        .api
        .as_user("alice")
        .raw(
            Method::GET,
            &url("/v1/conversations/g:trio/messages/1/readers"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (got.as_u16(), &body["field"]),
        (409, &json!("conversation"))
    );
    phone.close().await;
    stack.stop().await;
}
