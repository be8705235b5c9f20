//! A user's data export (`GET /v1/users/{user}/export`, reader/src/export.rs): exactly their records —
//! profile, conversations, groups, follows, blocks, live posts, the messages they sent — and nobody
//! else's; counts first, `end` last.

use std::collections::{BTreeMap, BTreeSet};

use reqwest::{Method, StatusCode};
use schemas::export::ExportRecord;
use serde_json::{json, Value};

use crate::im_api::Stack;

/// The export's lines, parsed (panics on a line that is not a record).
async fn export(stack: &Stack, user: &str, as_user: &str) -> (StatusCode, Vec<ExportRecord>) {
    let response = reqwest::Client::new()
        .get(stack.reader.url(&format!("/v1/users/{user}/export")))
        .bearer_auth(stack.api.token_for(as_user))
        .send()
        .await
        .unwrap();
    let status = response.status();
    if status != StatusCode::OK {
        return (status, Vec::new());
    }
    assert_eq!(response.headers()["content-type"], "application/x-ndjson");
    let text = response.text().await.unwrap();
    let records = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{line}: {e}")))
        .collect();
    (status, records)
}

#[tokio::test]
async fn an_export_holds_exactly_the_users_data() {
    let stack = Stack::start().await;
    stack
        .write(
            Method::PUT,
            "/v1/users/alice",
            json!({"display_name": "Alice A.", "age": 30}),
        )
        .await;
    stack
        .write(
            Method::POST,
            "/v1/groups",
            json!({"group": "team", "owner": "alice", "name": "The team", "join_rule": "open"}),
        )
        .await;
    stack
        .write(Method::PUT, "/v1/groups/team/members/bob", Value::Null)
        .await;
    let kept = stack.api.post("alice", "kept post", None).await;
    let gone = stack.api.post("alice", "deleted post", None).await;
    stack.api.post("bob", "bob's post", None).await;
    stack.api.follow("alice", "bob").await;
    stack.api.follow("bob", "alice").await;
    stack
        .write(Method::PUT, "/v1/users/alice/blocks/carol", Value::Null)
        .await;
    let hello = stack.message("alice", "bob", "hello bob").await;
    let oops = stack.message("alice", "bob", "oops").await;
    stack.message("bob", "alice", "hi alice").await;
    let team = stack
        .send(json!({"from": "alice", "group": "team", "body": "hello team"}))
        .await;
    stack
        .send(json!({"from": "bob", "group": "team", "body": "bob to the team"}))
        .await;
    stack.applied().await;
    stack
        .api
        .delete_post("alice", gone.post_id.as_deref().unwrap())
        .await;
    let oops_id = oops["message_id"].as_str().unwrap();
    stack
        .write(
            Method::DELETE,
            &format!("/v1/messages/{oops_id}?from=alice&conversation=d:alice:bob"),
            Value::Null,
        )
        .await;
    stack.applied().await;

    let (status, records) = export(&stack, "alice", "alice").await;
    assert_eq!(status, StatusCode::OK);
    let Some(ExportRecord::Export { user, counts, .. }) = records.first() else {
        panic!("no header line: {records:?}");
    };
    assert_eq!(user, "alice");
    assert_eq!(
        records.last(),
        Some(&ExportRecord::End {
            records: records.len() as i64 - 1
        })
    );
    // The header's counts are what follows.
    let mut kinds: BTreeMap<&str, i64> = BTreeMap::new();
    for record in &records[1..records.len() - 1] {
        let kind = match record {
            ExportRecord::Profile { .. } => "profile",
            ExportRecord::Conversation { .. } => "conversations",
            ExportRecord::Group { .. } => "groups",
            ExportRecord::Follow { .. } => "follows",
            ExportRecord::Block { .. } => "blocks",
            ExportRecord::Post { .. } => "posts",
            ExportRecord::Message { .. } => "messages",
            other => panic!("unexpected record {other:?}"),
        };
        *kinds.entry(kind).or_default() += 1;
    }
    let expected: BTreeMap<&str, i64> = [
        ("profile", 1),
        ("conversations", counts.conversations),
        ("groups", counts.groups),
        ("follows", counts.follows),
        ("blocks", counts.blocks),
        ("posts", counts.posts),
        ("messages", counts.messages),
    ]
    .into_iter()
    .filter(|(_, n)| *n > 0)
    .collect();
    assert_eq!(kinds, expected);
    assert_eq!(counts.total(), records.len() as i64 - 2);

    // And it is exactly alice's.
    let mut seen = Seen::default();
    for record in &records {
        seen.add(record);
    }
    assert_eq!(seen.profile, Some(("Alice A.".to_owned(), Some(30))));
    assert_eq!(seen.conversations, set(&["d:alice:bob", "g:team"]));
    assert_eq!(seen.groups, set(&["team owner"]));
    assert_eq!(seen.follows, set(&["bob"]));
    assert_eq!(seen.blocks, set(&["carol"]));
    assert_eq!(seen.posts, set(&[kept.post_id.as_deref().unwrap()]));
    let hello_id = hello["message_id"].as_str().unwrap();
    let team_id = team["message_id"].as_str().unwrap();
    assert_eq!(
        seen.messages,
        set(&[
            &format!("{hello_id} hello bob"),
            &format!("{oops_id} (recalled)"),
            &format!("{team_id} hello team"),
        ])
    );

    // Someone else's export is not theirs to take.
    let (status, _) = export(&stack, "alice", "bob").await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A user with nothing has a header, a profile line and the end.
    let (_, empty) = export(&stack, "nobody", "nobody").await;
    assert_eq!(empty.len(), 3, "{empty:?}");
    stack.stop().await;
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// What an export's records say, in comparable form.
#[derive(Default)]
struct Seen {
    profile: Option<(String, Option<i16>)>,
    conversations: BTreeSet<String>,
    groups: BTreeSet<String>,
    follows: BTreeSet<String>,
    blocks: BTreeSet<String>,
    posts: BTreeSet<String>,
    messages: BTreeSet<String>,
}

impl Seen {
    fn add(&mut self, record: &ExportRecord) {
        match record {
            ExportRecord::Profile {
                display_name, age, ..
            } => self.profile = Some((display_name.clone().unwrap_or_default(), *age)),
            ExportRecord::Conversation {
                conversation_id, ..
            } => {
                self.conversations.insert(conversation_id.clone());
            }
            ExportRecord::Group { group_id, role, .. } => {
                self.groups.insert(format!("{group_id} {role}"));
            }
            ExportRecord::Follow { followee, .. } => {
                self.follows.insert(followee.clone());
            }
            ExportRecord::Block { target, .. } => {
                self.blocks.insert(target.clone());
            }
            ExportRecord::Post { post_id, .. } => {
                self.posts.insert(post_id.clone());
            }
            ExportRecord::Message {
                message_id, body, ..
            } => {
                let body = body.as_deref().unwrap_or("(recalled)");
                self.messages.insert(format!("{message_id} {body}"));
            }
            ExportRecord::Export { .. } | ExportRecord::End { .. } => {}
        }
    }
}
