//! Sync timeline retention (fanout/src/retention.rs): old partitions dropped, and a device whose cursor
//! is below its user's floor told so on every transport — `/sync`, its long poll, the WebSocket and
//! server-sent events — never left with a silent gap; contact lists, unread counts, histories and feeds
//! unchanged.

use std::time::Duration;

use chrono::{TimeDelta, Utc};
use fanout::retention::{Retention, RunReport};
use harness::ws::{Received, WsClient};
use schemas::realtime::{ClientFrame, ServerFrame};
use serde_json::{json, Value};

use crate::im_api::{unread_of, Stack};

const WAIT: Duration = Duration::from_secs(10);

/// One run at `at`, waiting while the stack's own retention task holds the lock.
async fn run_at(retention: &Retention, at: chrono::DateTime<Utc>) -> RunReport {
    harness::wait_until("the retention lock", WAIT, || async {
        let report = retention.run_once(at).await.unwrap();
        report.elected.then_some(report)
    })
    .await
}

/// Every row of the sync timeline of `user`, as the database holds it.
async fn inbox_seqs(stack: &Stack, user: &str) -> Vec<i64> {
    sqlx::query_scalar("SELECT seq FROM sync_entries WHERE user_id = $1 ORDER BY seq")
        .bind(user)
        .fetch_all(&stack.db.pool)
        .await
        .unwrap()
}

/// How many of `user`'s entries the cap counts (`sync_counts`).
async fn sealed_entries(stack: &Stack, user: &str) -> i64 {
    sqlx::query_scalar("SELECT sealed_entries FROM sync_counts WHERE user_id = $1")
        .bind(user)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap()
}

/// The messages of a conversation's history, oldest first.
async fn history(stack: &Stack, conversation: &str) -> Vec<String> {
    let page = stack
        .read(&format!(
            "/v1/conversations/{conversation}/messages?limit=100"
        ))
        .await;
    let mut bodies: Vec<(i64, String)> = page["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| {
            (
                m["seq"].as_i64().unwrap(),
                m["body"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    bodies.sort();
    bodies.into_iter().map(|(_, body)| body).collect()
}

fn feed_bodies(feed: &Value) -> Vec<String> {
    feed["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn a_device_below_the_floor_is_told_on_every_transport_and_nothing_else_changes() {
    let stack = Stack::start().await;
    stack.api.follow("bob", "alice").await;
    stack.api.post("alice", "an old post", None).await;
    for i in 0..4 {
        stack.message("alice", "bob", &format!("old {i}")).await;
    }
    stack
        .send(json!({"from": "bob", "to": "alice", "body": "old reply"}))
        .await;
    stack.applied().await;
    let old = inbox_seqs(&stack, "bob").await;
    assert_eq!(old.len(), 6, "a post, four messages in and one out");
    let contacts_before = stack.contacts("bob").await;
    let feed_before = stack.read("/v1/users/bob/feed").await;

    // An hour on the partition is sealed; a month later it is dropped.
    let retention = harness::simulated_retention(&stack.db.pool);
    let now = Utc::now();
    let sealed = run_at(&retention, now + TimeDelta::hours(2)).await;
    assert_eq!((sealed.sealed, sealed.dropped), (1, 0), "{sealed:?}");
    stack.message("alice", "bob", "new").await;
    stack.applied().await;
    let dropped = run_at(&retention, now + TimeDelta::days(31)).await;
    assert!(dropped.dropped >= 1, "{dropped:?}");
    assert_eq!(
        dropped.removed_rows, 12,
        "bob's six entries and alice's six"
    );
    let kept = inbox_seqs(&stack, "bob").await;
    assert_eq!(kept.len(), 1, "only the new message is left: {kept:?}");
    let floor = *old.last().unwrap();

    // /sync from before the floor: a reset, nothing else; from the floor: the rest.
    let reset = stack.read("/v1/users/bob/sync?after=0").await;
    assert_eq!(reset["reset"], true, "{reset}");
    assert_eq!(reset["floor_seq"], floor, "{reset}");
    assert_eq!(reset["last_seq"], floor, "{reset}");
    assert_eq!(reset["entries"], json!([]), "{reset}");
    let from_floor = stack
        .read(&format!("/v1/users/bob/sync?after={floor}"))
        .await;
    assert_eq!(from_floor["reset"], false, "{from_floor}");
    let bodies: Vec<&str> = from_floor["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["new"]);
    // A cursor between two removed entries is below the floor too.
    let between = stack
        .read(&format!("/v1/users/bob/sync?after={}", old[2]))
        .await;
    assert_eq!(between["reset"], true, "{between}");
    // The long poll answers the reset at once instead of waiting.
    let polled = stack.read("/v1/users/bob/sync?after=0&wait=20").await;
    assert_eq!(polled["reset"], true, "{polled}");
    // Someone retention removed nothing from is never reset.
    let carol = stack.read("/v1/users/carol/sync?after=0").await;
    assert_eq!(carol["reset"], false, "{carol}");

    expect_socket_reset(&stack, floor).await;
    expect_event_stream_reset(&stack, floor).await;

    // What the reset tells the client to reload is whole, and the counts are as they were.
    let contacts_after = stack.contacts("bob").await;
    assert_eq!(
        unread_of(&contacts_after, "d:alice:bob"),
        unread_of(&contacts_before, "d:alice:bob") + 1,
        "one message more, whatever retention removed"
    );
    assert_eq!(
        contacts_after["conversations"].as_array().unwrap().len(),
        contacts_before["conversations"].as_array().unwrap().len()
    );
    assert_eq!(
        history(&stack, "d:alice:bob").await,
        ["old 0", "old 1", "old 2", "old 3", "old reply", "new"]
    );
    // The post's inbox entry is gone; the feed reads it from alice's store timeline.
    let feed_after = stack.read("/v1/users/bob/feed").await;
    assert_eq!(feed_bodies(&feed_after), feed_bodies(&feed_before));
    assert_eq!(feed_bodies(&feed_after), ["an old post"]);
    stack.stop().await;
}

/// A new device (cursor 0) on the WebSocket: hello, then a reset to the floor, then the entries after
/// it; its ack of the floor is taken.
async fn expect_socket_reset(stack: &Stack, floor: i64) {
    let token = stack.api.token_for("bob");
    let mut socket = WsClient::connect(&stack.reader.url(""), &token, "tablet", "")
        .await
        .unwrap();
    assert!(matches!(
        socket.next_data(WAIT).await,
        Received::Frame(ServerFrame::Hello {
            resume_after: 0,
            ..
        })
    ));
    match socket.next_data(WAIT).await {
        Received::Frame(ServerFrame::Reset { floor_seq }) => assert_eq!(floor_seq, floor),
        other => panic!("expected a reset frame, got {other:?}"),
    }
    let newest = match socket.next_data(WAIT).await {
        Received::Frame(ServerFrame::Sync { entries, .. }) => {
            let bodies: Vec<&str> = entries.iter().map(|e| e.body.as_str()).collect();
            assert_eq!(bodies, ["new"]);
            entries[0].seq
        }
        other => panic!("expected the entries after the floor, got {other:?}"),
    };
    socket.send(&ClientFrame::Ack { seq: floor }).await;
    socket.send(&ClientFrame::Ack { seq: newest }).await;
    harness::wait_until("the ack to be stored", WAIT, || async {
        let acked: Option<i64> = sqlx::query_scalar(
            "SELECT acked_seq FROM device_cursors WHERE user_id = 'bob' AND device_id = 'tablet'",
        )
        .fetch_optional(&stack.db.pool)
        .await
        .unwrap();
        (acked == Some(newest)).then_some(())
    })
    .await;
    socket.close().await;
    // Reconnected, the device resumes after its ack: no reset any more.
    let mut again = WsClient::connect(&stack.reader.url(""), &token, "tablet", "")
        .await
        .unwrap();
    match again.next_data(WAIT).await {
        Received::Frame(ServerFrame::Hello { resume_after, .. }) => {
            assert!(resume_after > floor)
        }
        other => panic!("expected hello, got {other:?}"),
    }
    match again.next_data(Duration::from_millis(500)).await {
        Received::Frame(ServerFrame::Reset { .. }) => panic!("reset after acking past the floor"),
        Received::Frame(ServerFrame::Sync { entries, .. }) => assert!(entries.is_empty()),
        _ => {}
    }
    again.close().await;
}

/// Server-sent events from the start: a `reset` event whose id is the floor, then the entry after it.
async fn expect_event_stream_reset(stack: &Stack, floor: i64) {
    let token = stack.api.token_for("bob");
    let mut response = reqwest::Client::new()
        .get(stack.reader.url("/v1/users/bob/events"))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let mut text = String::new();
    while text.matches("\n\n").count() < 2 {
        let chunk = tokio::time::timeout(WAIT, response.chunk())
            .await
            .expect("events in time")
            .unwrap()
            .expect("the stream goes on");
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let blocks: Vec<&str> = text.split("\n\n").collect();
    assert!(blocks[0].contains("event: reset"), "{text}");
    assert!(blocks[0].contains(&format!("id: {floor}")), "{text}");
    assert!(
        blocks[0].contains(&format!("\"floor_seq\":{floor}")),
        "{text}"
    );
    assert!(blocks[1].contains("event: entry"), "{text}");
    assert!(blocks[1].contains("\"body\":\"new\""), "{text}");
}

#[tokio::test]
async fn a_seq_past_every_partition_is_retried_until_the_partition_exists() {
    let stack = Stack::start().await;
    stack.message("alice", "bob", "before").await;
    stack.applied().await;
    // As if fan-outs had drawn seqs with no retention task running: past every partition there is.
    let (top,): (i64,) = sqlx::query_as("SELECT max(hi) FROM sync_partitions")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    sqlx::query("SELECT setval('sync_seq', $1)")
        .bind(top + 10)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    stack.message("alice", "bob", "past the end").await;
    // The batch fails (no partition holds the seq) and is retried, not dead-lettered...
    harness::wait_until("fanout to retry", WAIT, || async {
        (stack
            .fanout
            .metric("fanline_fanout_apply_retries_total", &[])
            > 0.0)
            .then_some(())
    })
    .await;
    // ... until the retention task creates the partition.
    let report = run_at(&harness::simulated_retention(&stack.db.pool), Utc::now()).await;
    assert!(report.created >= 1, "{report:?}");
    stack.applied().await;
    let bodies: Vec<String> = stack.read("/v1/users/bob/sync?after=0").await["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(bodies, ["before", "past the end"]);
    assert_eq!(
        stack
            .fanout
            .metric("fanline_fanout_dead_lettered_total", &[]),
        0.0
    );
    stack.stop().await;
}

#[tokio::test]
async fn a_user_over_the_entry_cap_loses_the_oldest_and_is_told() {
    let stack = Stack::start().await;
    for i in 0..5 {
        stack.message("alice", "bob", &format!("m{i}")).await;
    }
    stack.applied().await;
    let seqs = inbox_seqs(&stack, "bob").await;
    let unread_before = unread_of(&stack.contacts("bob").await, "d:alice:bob");
    let mut capped = harness::simulated_retention(&stack.db.pool);
    capped.settings.cap = Some(3);
    capped.settings.age = None;
    let now = Utc::now();

    // Sealed, counted and trimmed: bob's and alice's two oldest of five go.
    let report = run_at(&capped, now + TimeDelta::hours(2)).await;
    assert!(report.counted >= 1, "{report:?}");
    assert_eq!(report.removed_rows, 4, "{report:?}");
    assert_eq!(inbox_seqs(&stack, "bob").await, seqs[2..]);
    assert_eq!(sealed_entries(&stack, "bob").await, 3);
    let reset = stack.read("/v1/users/bob/sync?after=0").await;
    assert_eq!(
        (&reset["reset"], &reset["floor_seq"]),
        (&json!(true), &json!(seqs[1])),
        "{reset}"
    );
    let rest = stack
        .read(&format!("/v1/users/bob/sync?after={}", seqs[1]))
        .await;
    let bodies: Vec<&str> = rest["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["body"].as_str().unwrap())
        .collect();
    assert_eq!(bodies, ["m2", "m3", "m4"]);
    assert_eq!(
        unread_of(&stack.contacts("bob").await, "d:alice:bob"),
        unread_before
    );

    // Counted again only when the next partition is sealed: one over, the oldest goes.
    stack.message("alice", "bob", "m5").await;
    stack.applied().await;
    assert!(run_at(&capped, now + TimeDelta::hours(2)).await.counted == 0);
    assert_eq!(
        inbox_seqs(&stack, "bob").await.len(),
        4,
        "the open partition is not counted"
    );
    let report = run_at(&capped, now + TimeDelta::hours(4)).await;
    assert_eq!((report.counted, report.removed_rows), (1, 2), "{report:?}");
    let inbox = inbox_seqs(&stack, "bob").await;
    assert_eq!(
        (inbox.len(), &inbox[..2]),
        (3, &seqs[3..]),
        "m3, m4 and m5 are left"
    );
    assert_eq!(sealed_entries(&stack, "bob").await, 3);

    // Dropped partitions take their entries off the counts.
    let mut aged = capped;
    aged.settings.age = Some(TimeDelta::days(30));
    let report = run_at(&aged, now + TimeDelta::days(31)).await;
    assert!(report.dropped >= 2, "{report:?}");
    assert_eq!(sealed_entries(&stack, "bob").await, 0);
    assert!(inbox_seqs(&stack, "bob").await.is_empty());
    stack.stop().await;
}

#[tokio::test]
async fn a_drop_cut_short_by_a_crash_finishes_at_the_next_run_without_counting_twice() {
    let stack = Stack::start().await;
    let mut counting = harness::simulated_retention(&stack.db.pool);
    counting.settings.cap = Some(10_000);
    let now = Utc::now();
    for i in 0..3 {
        stack.message("alice", "bob", &format!("old {i}")).await;
    }
    stack.applied().await;
    let old = inbox_seqs(&stack, "bob").await;
    run_at(&counting, now + TimeDelta::hours(2)).await;
    for i in 0..2 {
        stack.message("alice", "bob", &format!("newer {i}")).await;
    }
    stack.applied().await;
    // The second partition is sealed (and counted) much later: only the first expires below.
    run_at(&counting, now + TimeDelta::days(20)).await;
    assert_eq!(sealed_entries(&stack, "bob").await, 5);

    // A run died after recording the first partition's floors and taking its entries off the counts
    // (one transaction, which marks it dropping), and after detaching it, before the drop.
    let (name,): (String,) =
        sqlx::query_as("SELECT name FROM sync_partitions WHERE lo <= $1 AND $1 < hi")
            .bind(old[0])
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    sqlx::query("UPDATE sync_partitions SET dropping = true WHERE name = $1")
        .bind(&name)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sync_counts SET sealed_entries = sealed_entries - 3 WHERE user_id = 'bob'")
        .execute(&stack.db.pool)
        .await
        .unwrap();
    sqlx::raw_sql(&format!("ALTER TABLE sync_entries DETACH PARTITION {name}"))
        .execute(&stack.db.pool)
        .await
        .unwrap();

    let report = run_at(&counting, now + TimeDelta::days(31)).await;
    assert!(report.dropped >= 1, "{report:?}");
    let left: Option<String> = sqlx::query_scalar("SELECT to_regclass($1)::text")
        .bind(&name)
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(left, None, "the detached partition is dropped");
    assert_eq!(
        sealed_entries(&stack, "bob").await,
        2,
        "its entries were not taken off twice"
    );
    let reset = stack.read("/v1/users/bob/sync?after=0").await;
    assert_eq!(reset["floor_seq"], old[2], "{reset}");
    stack.stop().await;
}

mod history {
    //! Store timelines past their retention (fanout/src/store_retention.rs): conversation histories
    //! removed from the oldest, pages that say so, unread counts that count only what is left, a group
    //! owner's shorter retention; authors' posts gone from timelines, feeds and inboxes alike.

    use chrono::{TimeDelta, Utc};
    use fanout::store_retention::{StoreRetention, TrimReport};
    use reqwest::{Method, StatusCode};
    use serde_json::{json, Value};

    use super::WAIT;
    use crate::im_api::{unread_of, Stack};

    async fn trim(stack: &Stack, age: Option<TimeDelta>) -> TrimReport {
        trim_at(stack, age, None, Utc::now()).await
    }

    async fn trim_at(
        stack: &Stack,
        age: Option<TimeDelta>,
        post_age: Option<TimeDelta>,
        now: chrono::DateTime<Utc>,
    ) -> TrimReport {
        let retention = StoreRetention {
            pool: stack.db.pool.clone(),
            age,
            post_age,
            every: WAIT,
        };
        harness::wait_until("the store retention lock", WAIT, || async {
            let report = retention.run_once(now).await.unwrap();
            report.elected.then_some(report)
        })
        .await
    }

    /// Ages the conversation's messages up to `seq` by `days`.
    async fn age(stack: &Stack, conversation: &str, seq: i64, days: i64) {
        sqlx::query(
            "UPDATE messages SET created_at = created_at - make_interval(days => $3::int)
             WHERE conversation_id = $1 AND seq <= $2",
        )
        .bind(conversation)
        .bind(seq)
        .bind(days as i32)
        .execute(&stack.db.pool)
        .await
        .unwrap();
    }

    fn seqs(page: &Value) -> Vec<i64> {
        let messages = page["messages"].as_array().unwrap();
        messages
            .iter()
            .map(|m| m["seq"].as_i64().unwrap())
            .collect()
    }

    #[tokio::test]
    async fn old_messages_go_pages_say_so_and_unread_counts_what_is_left() {
        let stack = Stack::start().await;
        stack
            .write(
                Method::POST,
                "/v1/groups",
                json!({"group": "club", "owner": "ann", "name": "Club", "join_rule": "open"}),
            )
            .await;
        for who in ["bob", "cat"] {
            stack
                .write(
                    Method::PUT,
                    &format!("/v1/groups/club/members/{who}"),
                    Value::Null,
                )
                .await;
        }
        stack.applied().await;
        let mut group_ids = Vec::new();
        for i in 1..=6 {
            stack.message("ann", "bob", &format!("direct {i}")).await;
            let sent = stack
                .send(json!({"from": "ann", "group": "club", "body": format!("club {i}")}))
                .await;
            group_ids.push(sent["message_id"].as_str().unwrap().to_owned());
        }
        stack.applied().await;
        let recall = format!("/v1/messages/{}?from=ann&conversation=g:club", group_ids[1]);
        stack.write(Method::DELETE, &recall, Value::Null).await;
        for conversation in ["d:ann:bob", "g:club"] {
            let read = format!("/v1/users/bob/conversations/{conversation}/read");
            stack.write(Method::PUT, &read, json!({"seq": 1})).await;
        }
        stack.applied().await;
        let before = stack.contacts("bob").await;
        assert_eq!(unread_of(&before, "d:ann:bob"), 5);
        assert_eq!(unread_of(&before, "g:club"), 4, "6 − read 1 − recalled 1");

        // The deployment keeps 30 days: the first three of each are 40 days old.
        age(&stack, "d:ann:bob", 3, 40).await;
        age(&stack, "g:club", 3, 40).await;
        let report = trim(&stack, Some(TimeDelta::days(30))).await;
        assert_eq!(
            (report.conversations, report.messages),
            (2, 6),
            "{report:?}"
        );
        assert_eq!(
            trim(&stack, Some(TimeDelta::days(30))).await.messages,
            0,
            "once"
        );

        let stack_ref = &stack;
        let history = |query: &str| {
            let path = format!("/v1/conversations/d:ann:bob/messages{query}");
            async move { stack_ref.read_as("bob", &path).await }
        };
        let latest = history("").await;
        assert_eq!(seqs(&latest), [4, 5, 6]);
        assert_eq!(
            (
                &latest["has_more"],
                &latest["older_removed"],
                &latest["removed_through_seq"]
            ),
            (&json!(false), &json!(true), &json!(3)),
            "{latest}"
        );
        let older = history("?before=4").await;
        assert_eq!(
            (seqs(&older), &older["older_removed"]),
            (vec![], &json!(true))
        );
        let caught_up = history("?after=1").await;
        assert_eq!(
            (seqs(&caught_up), &caught_up["older_removed"]),
            (vec![4, 5, 6], &json!(true))
        );
        let current = history("?after=3").await;
        assert_eq!(current.get("older_removed"), None, "{current}");
        // Unread counts only what can still be read; a group's recall below the floor no longer
        // counts either way.
        let after = stack.contacts("bob").await;
        assert_eq!(unread_of(&after, "d:ann:bob"), 3);
        assert_eq!(unread_of(&after, "g:club"), 3);
        // Inbox entries of removed messages say so.
        let sync = stack
            .read_as("bob", "/v1/users/bob/sync?after=0&limit=100")
            .await;
        let expired: Vec<i64> = sync["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["conversation_id"] == "d:ann:bob" && e["expired"] == true)
            .map(|e| e["conversation_seq"].as_i64().unwrap())
            .collect();
        assert_eq!(expired, [1, 2, 3], "{sync}");

        // The owner keeps the club a day; an admin may not change that; bad input names the field.
        let too_long = stack
            .api
            .as_user("ann")
            .raw(
                Method::PATCH,
                &format!("{}/v1/groups/club", stack.api.ingest),
                Some(&serde_json::to_vec(&json!({"by": "ann", "retention_days": 40000})).unwrap()),
                Some("application/json"),
            )
            .await;
        assert_eq!(
            (too_long.0, &too_long.1["field"]),
            (StatusCode::BAD_REQUEST, &json!("retention_days"))
        );
        stack
            .write(
                Method::PUT,
                "/v1/groups/club/members/cat?by=ann",
                json!({"role": "admin"}),
            )
            .await;
        stack
            .write(
                Method::PATCH,
                "/v1/groups/club",
                json!({"by": "ann", "retention_days": 1}),
            )
            .await;
        stack
            .write(
                Method::PATCH,
                "/v1/groups/club",
                json!({"by": "cat", "retention_days": 7}), // refused: an admin
            )
            .await;
        stack.applied().await;
        assert_eq!(
            stack.read_as("bob", "/v1/groups/club").await["retention_days"],
            1
        );
        age(&stack, "g:club", 4, 2).await;
        age(&stack, "d:ann:bob", 4, 2).await;
        let report = trim(&stack, None).await;
        assert_eq!(
            (report.conversations, report.messages),
            (1, 1),
            "only the club: {report:?}"
        );
        let club = stack
            .read_as("bob", "/v1/conversations/g:club/messages")
            .await;
        assert_eq!(
            (seqs(&club), &club["removed_through_seq"]),
            (vec![5, 6], &json!(4))
        );
        stack.stop().await;
    }

    #[tokio::test]
    async fn old_posts_leave_timelines_feeds_and_inboxes_and_the_timeline_says_so() {
        let stack = Stack::start().await;
        stack.api.follow("bob", "ann").await;
        stack.applied().await;
        for i in 1..=3 {
            stack.api.post("ann", &format!("old post {i}"), None).await;
        }
        stack.api.post("cat", "cat's post", None).await;
        stack.applied().await;
        // Two days from now, posts are kept one day: every post so far is past it.
        let later = Utc::now() + TimeDelta::days(2);
        let report = trim_at(&stack, None, Some(TimeDelta::days(1)), later).await;
        assert_eq!(report.posts, 4, "{report:?}");
        stack.api.post("ann", "new post", None).await;
        stack.api.post("eve", "eve's post", None).await;
        stack.applied().await;

        let bodies = |page: &Value| -> Vec<String> {
            let entries = page["entries"].as_array().unwrap();
            entries
                .iter()
                .map(|e| e["body"].as_str().unwrap().to_owned())
                .collect()
        };
        let timeline = stack.read_as("bob", "/v1/users/ann/posts").await;
        assert_eq!(bodies(&timeline), ["new post"]);
        assert_eq!(
            (&timeline["next_cursor"], &timeline["older_removed"]),
            (&Value::Null, &json!(true)),
            "{timeline}"
        );
        let feed = stack.read_as("bob", "/v1/users/bob/feed").await;
        assert_eq!(bodies(&feed), ["new post"], "{feed}");
        let sync = stack
            .read_as("bob", "/v1/users/bob/sync?after=0&limit=100")
            .await;
        let posts: Vec<&str> = sync["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "post")
            .map(|e| e["body"].as_str().unwrap())
            .collect();
        assert_eq!(posts, ["new post"], "{sync}");
        // An author none of whose posts were removed: the end of the timeline is just the end.
        let untouched = stack.read_as("bob", "/v1/users/eve/posts").await;
        assert_eq!(bodies(&untouched), ["eve's post"]);
        assert_eq!(untouched.get("older_removed"), None, "{untouched}");
        stack.stop().await;
    }

    #[tokio::test]
    async fn a_replay_does_not_bring_back_what_retention_removed() {
        use fanout::store::{apply_batch, Policy, SourcedEvent};
        use schemas::{
            ConversationId, Envelope, MessageId, MessageSent, PostCreated, PostId, UserId,
        };

        let db = harness::TestDb::create().await;
        let user = |name: &str| UserId::parse("user", name).unwrap();
        let old = Utc::now() - TimeDelta::days(40);
        let pair = ConversationId::direct(&user("ann"), &user("bob")).unwrap();
        let mut envelopes = Vec::new();
        for (i, at) in [old, old, Utc::now()].into_iter().enumerate() {
            envelopes.push(Envelope::message_sent(MessageSent {
                message_id: MessageId::generate(),
                conversation: pair.clone(),
                sender: user("ann"),
                body: format!("message {i}"),
                content: Default::default(),
                reply_to: None,
                forwarded: false,
                mentions: Vec::new(),
                mention_all: false,
                client_msg_id: None,
                created_at: at,
            }));
        }
        for (id, at) in [
            (PostId::lowest_at(old), old),
            (PostId::generate(), Utc::now()),
        ] {
            envelopes.push(Envelope::post_created(PostCreated {
                post_id: id,
                author: user("ann"),
                body: "a post".into(),
                content: Default::default(),
                message_id: None,
                created_at: at,
            }));
        }
        let events: Vec<SourcedEvent> = envelopes
            .into_iter()
            .enumerate()
            .map(|(offset, envelope)| SourcedEvent {
                partition: 0,
                offset: offset as i64,
                envelope,
            })
            .collect();
        let state = || async {
            let row: (i64, i64, i64, i64) = sqlx::query_as(
                "SELECT (SELECT count(*) FROM messages), (SELECT last_seq FROM conversations),
                        (SELECT count(*) FROM posts),
                        (SELECT count(*) FROM sync_entries WHERE kind = 'post')",
            )
            .fetch_one(&db.pool)
            .await
            .unwrap();
            row
        };
        apply_batch(&db.pool, &Policy::default(), &events)
            .await
            .unwrap();
        let retention = StoreRetention {
            pool: db.pool.clone(),
            age: Some(TimeDelta::days(30)),
            post_age: Some(TimeDelta::days(30)),
            every: WAIT,
        };
        let report = retention.run_once(Utc::now()).await.unwrap();
        assert_eq!((report.messages, report.posts), (2, 1), "{report:?}");
        let trimmed = state().await;
        // One message and one post left; both posts' own inbox entries stay (a removed one is skipped).
        assert_eq!(trimmed, (1, 3, 1, 2));
        // The whole log again, as `fanout replay` into this database would apply it.
        let replayed: Vec<SourcedEvent> = events
            .iter()
            .map(|e| SourcedEvent {
                partition: 1,
                ..e.clone()
            })
            .collect();
        apply_batch(&db.pool, &Policy::default(), &replayed)
            .await
            .unwrap();
        assert_eq!(
            state().await,
            trimmed,
            "removed messages and posts stay removed"
        );
    }
}
