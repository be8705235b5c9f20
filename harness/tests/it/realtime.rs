//! Realtime delivery on the real stack: long polls, the WebSocket protocol (resume from the acked seq
//! on a fresh reader after a SIGKILL, redelivery of what was not acked, heartbeats, slow consumers,
//! forged tokens, sends over the socket) and Server-Sent Events.

use std::collections::BTreeMap;
use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::stack::Stack;
use harness::ws::{Received, WsClient};
use harness::{free_port, seed_followed_posts, wait_until, Api};
use reqwest::Method;
use schemas::api::{SyncEntry, SyncPage};
use schemas::realtime::{close, ClientFrame, ServerFrame};
use serde_json::json;
use tokio::process::{Child, Command};

use fanout::store::{apply_batch, Policy, SourcedEvent};
use schemas::Envelope;

const WAIT: Duration = Duration::from_secs(20);

/// The next `sync` frame's entries and last seq, answering pings on the way.
async fn next_sync(client: &mut WsClient) -> (Vec<SyncEntry>, i64) {
    match client.next_data(WAIT).await {
        Received::Frame(ServerFrame::Sync {
            entries, last_seq, ..
        }) => (entries, last_seq),
        other => panic!("expected a sync frame, got {other:?}"),
    }
}

async fn hello(client: &mut WsClient) -> i64 {
    match client.next_data(WAIT).await {
        Received::Frame(ServerFrame::Hello { resume_after, .. }) => resume_after,
        other => panic!("expected hello, got {other:?}"),
    }
}

#[tokio::test]
async fn a_long_poll_answers_when_an_entry_arrives_and_empty_when_the_wait_ends() {
    let stack = Stack::start().await;
    let api = stack.api.as_user("bob");
    let started = Instant::now();
    let url = stack.reader.url("/v1/users/bob/sync?after=0&wait=1");
    let (status, page) = api.raw(Method::GET, &url, None, None).await;
    assert_eq!(status, 200, "{page}");
    assert!(page["entries"].as_array().unwrap().is_empty());
    assert!(
        started.elapsed() >= Duration::from_millis(950),
        "{:?}",
        started.elapsed()
    );

    let waiting = {
        let api = api.clone();
        let url = stack.reader.url("/v1/users/bob/sync?after=0&wait=30");
        tokio::spawn(async move {
            let started = Instant::now();
            let (status, page) = api.raw(Method::GET, &url, None, None).await;
            (status, page, started.elapsed())
        })
    };
    // The poll has subscribed (it reads after subscribing, so the send below wakes it).
    wait_until("the long poll to wait", WAIT, || async {
        (stack
            .reader
            .metric("fanline_reader_realtime_subscriptions", &[])
            == 1.0)
            .then_some(())
    })
    .await;
    let sent = Instant::now();
    stack.message("alice", "bob", "wake up").await;
    let (status, page, waited) = waiting.await.unwrap();
    let delivered = sent.elapsed();
    assert_eq!(status, 200);
    let page: SyncPage = serde_json::from_value(page).unwrap();
    assert_eq!(page.entries.len(), 1);
    assert_eq!(page.entries[0].body, "wake up");
    assert!(
        waited < Duration::from_secs(25),
        "answered only after {waited:?}"
    );
    println!("long poll: answered {delivered:?} after the send");
    let (status, value) = api
        .raw(
            Method::GET,
            &stack.reader.url("/v1/users/bob/sync?wait=61"),
            None,
            None,
        )
        .await;
    assert_eq!(
        (status.as_u16(), value["field"].as_str()),
        (400, Some("wait"))
    );
    stack.stop().await;
}

/// A reader in its own process, so that it can be killed with SIGKILL.
fn start_reader(config: &reader::Config, port: u16) -> Child {
    Command::new(env!("CARGO_BIN_EXE_fanline-reader"))
        .env("FANLINE_TOKEN_KEY", harness::TEST_TOKEN_KEY)
        .env("FANLINE_DATABASE_URL", {
            use secrecy::ExposeSecret;
            config.database_url.expose_secret().to_owned()
        })
        .env("FANLINE_KAFKA_BROKERS", &config.brokers)
        .env("FANLINE_EVENTS_TOPIC", &config.topic)
        .env("FANLINE_READER_LISTEN", format!("127.0.0.1:{port}"))
        .env("FANLINE_READER_OPS_LISTEN", "127.0.0.1:0")
        // Its users get tokens, not accounts.
        .env("FANLINE_ACCOUNTS_REQUIRED", "false")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start fanline-reader")
}

async fn connect_when_up(reader: &str, token: &str, device: &str) -> WsClient {
    wait_until("the reader accepts sockets", WAIT, || async {
        WsClient::connect(reader, token, device, "").await.ok()
    })
    .await
}

#[tokio::test]
async fn a_device_resumes_from_its_ack_on_a_fresh_reader_after_a_sigkill() {
    let stack = Stack::start().await;
    let port = free_port();
    let url = format!("http://127.0.0.1:{port}");
    let token = stack.api.token_for("bob");
    let mut first = start_reader(&stack.reader_config, port);
    let mut client = connect_when_up(&url, &token, "phone").await;
    assert_eq!(hello(&mut client).await, 0);

    // Alice writes 60 messages while bob's phone reads and acks only every other frame.
    let writer = {
        let api = stack.api.clone();
        let ingest = stack.ingest.url("/v1/messages");
        tokio::spawn(async move {
            for i in 0..60 {
                let body = json!({"from": "alice", "to": "bob", "body": format!("m{i}"), "client_msg_id": format!("c{i}")});
                let bytes = serde_json::to_vec(&body).unwrap();
                let (status, value) = api
                    .as_user("alice")
                    .raw(
                        Method::POST,
                        &ingest,
                        Some(&bytes),
                        Some("application/json"),
                    )
                    .await;
                assert_eq!(status, 202, "{value}");
                // Not a synchronisation point: a steady writer, so the reader is killed mid-stream.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
    };
    let mut received: Vec<SyncEntry> = Vec::new();
    let mut acked = 0;
    let mut frames = 0;
    while received.len() < 25 {
        let (entries, last_seq) = next_sync(&mut client).await;
        received.extend(entries);
        frames += 1;
        if frames % 2 == 1 {
            client.send(&ClientFrame::Ack { seq: last_seq }).await;
            acked = last_seq;
        }
    }
    // Let the last ack land, then kill the reader mid-stream.
    wait_until("the last ack to be stored", WAIT, || async {
        let stored: Option<(i64,)> = sqlx::query_as(
            "SELECT acked_seq FROM device_cursors WHERE user_id = 'bob' AND device_id = 'phone'",
        )
        .fetch_optional(&stack.db.pool)
        .await
        .unwrap();
        (stored == Some((acked,))).then_some(())
    })
    .await;
    first.kill().await.expect("SIGKILL the reader");
    drop(client);
    writer.await.unwrap();

    // A fresh reader process; the phone reconnects without saying where it was.
    let mut second = start_reader(&stack.reader_config, port);
    let mut client = connect_when_up(&url, &token, "phone").await;
    let resume_after = hello(&mut client).await;
    assert_eq!(resume_after, acked, "the stream resumes after the last ack");
    let mut after_restart: Vec<SyncEntry> = Vec::new();
    while after_restart.last().map(|e| e.body.as_str()) != Some("m59") {
        let (entries, last_seq) = next_sync(&mut client).await;
        after_restart.extend(entries);
        client.send(&ClientFrame::Ack { seq: last_seq }).await;
    }
    // Only unacked entries came twice; after dropping duplicates by seq, every message exactly once,
    // in order.
    assert!(after_restart.iter().all(|e| e.seq > acked));
    let mut by_seq: BTreeMap<i64, String> = BTreeMap::new();
    for entry in received.iter().chain(&after_restart) {
        by_seq.insert(entry.seq, entry.body.clone());
    }
    let bodies: Vec<String> = by_seq.into_values().collect();
    let expected: Vec<String> = (0..60).map(|i| format!("m{i}")).collect();
    assert_eq!(bodies, expected);
    let duplicates = received.len() + after_restart.len() - 60;
    println!("resume after SIGKILL: acked {acked}, {duplicates} unacked entries redelivered");
    let _ = second.kill().await;
    stack.stop().await;
}

#[tokio::test]
async fn what_is_not_acked_is_delivered_again_and_what_is_acked_is_not() {
    let stack = Stack::start().await;
    for i in 0..3 {
        stack.message("alice", "bob", &format!("m{i}")).await;
    }
    stack.applied().await;
    let token = stack.api.token_for("bob");
    let reader = stack.reader.url("");
    let mut client = WsClient::connect(&reader, &token, "tablet", "")
        .await
        .unwrap();
    assert_eq!(hello(&mut client).await, 0);
    let (entries, last_seq) = next_sync(&mut client).await;
    assert_eq!(entries.len(), 3);
    client.close().await; // no ack

    let mut client = WsClient::connect(&reader, &token, "tablet", "")
        .await
        .unwrap();
    assert_eq!(hello(&mut client).await, 0);
    let (again, _) = next_sync(&mut client).await;
    assert_eq!(again, entries, "unacked entries come again, the same");
    client.send(&ClientFrame::Ack { seq: last_seq }).await;
    // An ack beyond what was sent is refused.
    client
        .send(&ClientFrame::Ack {
            seq: last_seq + 1000,
        })
        .await;
    match client.next_data(WAIT).await {
        Received::Frame(ServerFrame::Error { status, field, .. }) => {
            assert_eq!((status, field.as_deref()), (400, Some("seq")))
        }
        other => panic!("expected an error frame, got {other:?}"),
    }
    client.close().await;

    let mut client = WsClient::connect(&reader, &token, "tablet", "")
        .await
        .unwrap();
    assert_eq!(hello(&mut client).await, last_seq);
    assert_eq!(
        client.next_data(Duration::from_millis(800)).await,
        Received::Nothing
    );
    // Another device of bob's has its own cursor.
    let mut other = WsClient::connect(&reader, &token, "laptop", "")
        .await
        .unwrap();
    assert_eq!(hello(&mut other).await, 0);
    assert_eq!(next_sync(&mut other).await.0.len(), 3);
    // New entries reach both at once.
    stack.message("alice", "bob", "m3").await;
    assert_eq!(next_sync(&mut client).await.0[0].body, "m3");
    assert_eq!(next_sync(&mut other).await.0[0].body, "m3");
    stack.stop().await;
}

/// Issue 25: a browser keeps its token out of the socket's URL and sends it as the first frame. A
/// good one streams as usual; an expired or forged one closes 4001 (refresh and reconnect), nothing or
/// another frame first closes 1008, and an auth frame later is refused without ending the socket.
#[tokio::test]
async fn the_token_may_come_in_the_first_frame_instead_of_the_url() {
    let stack = Stack::start().await;
    stack.message("alice", "bob", "first").await;
    stack.applied().await;
    let reader = stack.reader.url("");
    let auth = |token: &str| json!({"type": "auth", "access_token": token}).to_string();
    let token = stack.api.token_for("bob");
    let mut client = WsClient::connect_then(&reader, "browser", &auth(&token))
        .await
        .unwrap();
    assert_eq!(hello(&mut client).await, 0);
    assert_eq!(next_sync(&mut client).await.0[0].body, "first");
    client
        .send(&ClientFrame::Auth {
            access_token: token.clone(),
        })
        .await;
    match client.next_data(WAIT).await {
        Received::Frame(ServerFrame::Error { status, .. }) => assert_eq!(status, 400),
        other => panic!("expected an error frame, got {other:?}"),
    }
    stack.message("alice", "bob", "second").await;
    assert_eq!(next_sync(&mut client).await.0[0].body, "second");
    client.close().await;

    // A character of the signature changed (not its last, whose low bits may be padding).
    let mut forged = token.clone().into_bytes();
    let at = forged.len() - 10;
    forged[at] = if forged[at] == b'A' { b'B' } else { b'A' };
    let forged = String::from_utf8(forged).unwrap();
    for (first, code) in [
        (auth(&forged), 4001),
        (auth("not a token"), 4001),
        (json!({"type": "ping"}).to_string(), 1008),
        ("{".to_owned(), 1008),
    ] {
        let mut client = WsClient::connect_then(&reader, "browser", &first)
            .await
            .unwrap();
        assert_eq!(
            client.next(WAIT).await,
            Received::Closed(Some(code)),
            "{first}"
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_silent_client_is_closed_by_the_heartbeat_and_a_live_one_is_not() {
    let stack = Stack::start_with(|config| {
        config.ws_heartbeat_secs = 1;
        config.ws_max_missed = 2;
    })
    .await;
    let token = stack.api.token_for("bob");
    let reader = stack.reader.url("");
    let mut silent = WsClient::connect(&reader, &token, "silent", "")
        .await
        .unwrap();
    let mut live = WsClient::connect(&reader, &token, "live", "")
        .await
        .unwrap();
    hello(&mut silent).await;
    hello(&mut live).await;
    // The live client answers every ping (next_data does) until its first entries arrive.
    let live = tokio::spawn(async move { next_sync(&mut live).await });
    let started = Instant::now();
    let code = loop {
        match silent.next(Duration::from_secs(10)).await {
            Received::Frame(ServerFrame::Ping) => {} // heard, never answered
            Received::Closed(code) => break code,
            other => panic!("unexpected {other:?}"),
        }
    };
    assert_eq!(code, Some(close::HEARTBEAT_TIMEOUT));
    let silent_for = started.elapsed();
    assert!(silent_for < Duration::from_secs(6), "{silent_for:?}");
    // Well past the silent client's end, the live one is still served. Not a synchronisation point:
    // two more heartbeat periods (1 s) must pass, in which a client that did not answer would be cut.
    tokio::time::sleep(Duration::from_secs(2)).await;
    stack.message("alice", "bob", "still there?").await;
    let (entries, _) = live.await.unwrap();
    assert_eq!(entries[0].body, "still there?");
    assert_eq!(
        stack.reader.metric(
            "fanline_reader_ws_closed_total",
            &[("reason", "heartbeat_timeout")]
        ),
        1.0
    );
    stack.stop().await;
}

#[tokio::test]
async fn forged_and_foreign_tokens_are_refused_at_the_handshake() {
    let stack = Stack::start().await;
    let reader = stack.reader.url("");
    let forged = Api::with_token_key("", "", "not-the-stack-key-but-long-enough-0123456789")
        .token_for("bob");
    assert_eq!(
        WsClient::connect(&reader, &forged, "d", "").await.err(),
        Some(401)
    );
    assert_eq!(
        WsClient::connect(&reader, "", "d", "").await.err(),
        Some(401)
    );
    let token = stack.api.token_for("bob");
    assert_eq!(
        WsClient::connect(&reader, &token, "a%20b", "").await.err(),
        Some(400)
    );
    stack.stop().await;
}

#[tokio::test]
async fn messages_and_read_markers_go_over_the_same_socket() {
    let stack = Stack::start().await;
    let reader = stack.reader.url("");
    let mut bob = WsClient::connect(&reader, &stack.api.token_for("bob"), "phone", "")
        .await
        .unwrap();
    let mut alice = WsClient::connect(&reader, &stack.api.token_for("alice"), "phone", "")
        .await
        .unwrap();
    hello(&mut bob).await;
    hello(&mut alice).await;
    alice
        .send(&ClientFrame::Send {
            request_id: Some("r1".into()),
            draft: schemas::api::MessageDraft {
                to: Some("bob".into()),
                group: None,
                body: "over the socket".into(),
                client_msg_id: Some("c1".into()),
                ..schemas::api::MessageDraft::default()
            },
        })
        .await;
    let message_id = match alice.next_data(WAIT).await {
        Received::Frame(ServerFrame::Accepted {
            request_id,
            message_id,
            conversation_id,
        }) => {
            assert_eq!(request_id.as_deref(), Some("r1"));
            assert_eq!(conversation_id.as_deref(), Some("d:alice:bob"));
            message_id.unwrap()
        }
        other => panic!("expected accepted, got {other:?}"),
    };
    // The sender's own inbox gets the message too (delivered), and so does bob's.
    let (own, _) = next_sync(&mut alice).await;
    assert_eq!(own[0].message_id.as_deref(), Some(message_id.as_str()));
    let (entries, last_seq) = next_sync(&mut bob).await;
    assert_eq!(entries[0].body, "over the socket");
    bob.send(&ClientFrame::Ack { seq: last_seq }).await;
    bob.send(&ClientFrame::Read {
        request_id: Some("r2".into()),
        conversation: "d:alice:bob".into(),
        seq: entries[0].conversation_seq.unwrap(),
    })
    .await;
    assert!(matches!(
        bob.next_data(WAIT).await,
        Received::Frame(ServerFrame::Accepted { .. })
    ));
    stack.applied().await;
    let unread: i64 = sqlx::query_scalar(
        "SELECT unread FROM conversation_state WHERE user_id = 'bob' AND conversation_id = 'd:alice:bob'",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(unread, 0);
    // A bad frame gets an error frame naming the field, and the socket stays up.
    bob.send(&ClientFrame::Send {
        request_id: Some("r3".into()),
        draft: schemas::api::MessageDraft {
            to: Some("bob".into()),
            group: None,
            body: "to myself".into(),
            ..schemas::api::MessageDraft::default()
        },
    })
    .await;
    match bob.next_data(WAIT).await {
        Received::Frame(ServerFrame::Error {
            request_id,
            status,
            field,
            ..
        }) => {
            assert_eq!(
                (request_id.as_deref(), status, field.as_deref()),
                (Some("r3"), 400, Some("to"))
            )
        }
        other => panic!("expected an error, got {other:?}"),
    }
    stack.stop().await;
}

#[tokio::test]
async fn a_client_that_does_not_read_is_cut_off_and_the_reader_keeps_serving() {
    let stack = Stack::start_with(|config| {
        config.ws_buffer_frames = 2;
        config.ws_send_timeout_secs = 1;
        config.ws_window = 1_000_000;
    })
    .await;
    // A backlog of 12 MB of entries: far more than the socket buffers hold.
    let big = "x".repeat(4000);
    seed_followed_posts(&stack.db.pool, (0..3000).map(|i| format!("{i} {big}"))).await;
    let reader = stack.reader.url("");
    let token = stack.api.token_for("bob");
    let stuck = WsClient::connect(&reader, &token, "stuck", "")
        .await
        .unwrap();
    // It never reads: the server's writes stall, the connection is cut.
    wait_until("the slow consumer is cut off", WAIT, || async {
        (stack.reader.metric(
            "fanline_reader_ws_closed_total",
            &[("reason", "slow_consumer")],
        ) == 1.0)
            .then_some(())
    })
    .await;
    assert_eq!(
        stack.reader.metric("fanline_reader_ws_connections", &[]),
        0.0
    );
    drop(stuck);
    // Others are still served.
    let mut fine = WsClient::connect(&reader, &token, "fine", "")
        .await
        .unwrap();
    hello(&mut fine).await;
    assert!(!next_sync(&mut fine).await.0.is_empty());
    stack.stop().await;
}

/// A client of `/v1/users/{user}/events` (server-sent events).
struct EventStream {
    response: reqwest::Response,
    /// Received text not yet parsed into whole events.
    text: String,
}

impl EventStream {
    async fn open(url: &str, token: &str, last_event_id: Option<String>) -> EventStream {
        let mut request = reqwest::Client::new().get(url).bearer_auth(token);
        if let Some(id) = last_event_id {
            request = request.header("last-event-id", id);
        }
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(response.headers()["content-type"], "text/event-stream");
        EventStream {
            response,
            text: String::new(),
        }
    }

    /// The entries of the next events, at least `count` of them.
    async fn next(&mut self, count: usize) -> Vec<SyncEntry> {
        let mut events = Vec::new();
        while events.len() < count {
            let chunk = tokio::time::timeout(WAIT, self.response.chunk())
                .await
                .expect("an event in time")
                .unwrap()
                .expect("the stream goes on");
            self.text.push_str(&String::from_utf8_lossy(&chunk));
            while let Some(end) = self.text.find("\n\n") {
                let block: String = self.text.drain(..end + 2).collect();
                let id = block
                    .lines()
                    .find_map(|l| l.strip_prefix("id: "))
                    .map(str::to_owned);
                let data = block.lines().find_map(|l| l.strip_prefix("data: "));
                if let (Some(id), Some(data)) = (id, data) {
                    let entry: SyncEntry = serde_json::from_str(data).unwrap();
                    assert_eq!(id, entry.seq.to_string());
                    events.push(entry);
                }
            }
        }
        events
    }
}

#[tokio::test]
async fn server_sent_events_resume_from_last_event_id() {
    let stack = Stack::start().await;
    for i in 0..3 {
        stack.message("alice", "bob", &format!("m{i}")).await;
    }
    stack.applied().await;
    let token = stack.api.token_for("bob");
    let url = stack.reader.url("/v1/users/bob/events");
    let first = EventStream::open(&url, &token, None).await.next(3).await;
    assert_eq!(
        first.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
        ["m0", "m1", "m2"]
    );
    let resume = first[1].seq.to_string();
    // The stream subscribes before it answers: once it is open and has caught up, m3 comes live.
    let mut live = EventStream::open(&url, &token, Some(resume)).await;
    let mut resumed = live.next(1).await;
    stack.message("alice", "bob", "m3").await;
    resumed.extend(live.next(1).await);
    assert_eq!(
        resumed.iter().map(|e| e.body.as_str()).collect::<Vec<_>>(),
        ["m2", "m3"]
    );
    stack.stop().await;
}

#[tokio::test]
async fn pages_of_deleted_posts_never_stall_a_device_or_a_long_poll() {
    let stack = Stack::start().await;
    // 150 posts bob received and alice deleted: more than a page of entries the scan skips.
    let posts = seed_followed_posts(&stack.db.pool, (0..150).map(|i| format!("gone {i}"))).await;
    let user = |name: &str| schemas::UserId::parse("user", name).unwrap();
    let deletes: Vec<SourcedEvent> = posts
        .iter()
        .enumerate()
        .map(|(i, post_id)| SourcedEvent {
            partition: 0,
            offset: 1000 + i as i64,
            envelope: Envelope::post_deleted(schemas::PostDeleted {
                post_id: post_id.clone(),
                author: user("alice"),
            }),
        })
        .collect();
    apply_batch(&stack.db.pool, &Policy::default(), &deletes)
        .await
        .unwrap();
    stack.message("alice", "bob", "after the deletions").await;
    stack.applied().await;

    // The socket moves past the skipped entries (empty frames the client acks) to the message.
    let mut client = WsClient::connect(
        &stack.reader.url(""),
        &stack.api.token_for("bob"),
        "phone",
        "",
    )
    .await
    .unwrap();
    hello(&mut client).await;
    let message = loop {
        let (entries, last_seq) = next_sync(&mut client).await;
        client.send(&ClientFrame::Ack { seq: last_seq }).await;
        if let Some(entry) = entries.into_iter().next() {
            break entry;
        }
    };
    assert_eq!(message.body, "after the deletions");
    // A long poll from the start answers at once with progress, not after its wait.
    let started = Instant::now();
    let url = stack
        .reader
        .url("/v1/users/bob/sync?after=0&limit=10&wait=20");
    let (status, page) = stack
        .api
        .as_user("bob")
        .raw(Method::GET, &url, None, None)
        .await;
    assert_eq!(status, 200);
    assert!(page["last_seq"].as_i64().unwrap() > 0, "{page}");
    assert!(started.elapsed() < Duration::from_secs(5));
    stack.stop().await;
}

/// One sender's messages written back to back on one connection are stored in the order they were
/// sent, as they are over sequential HTTP requests (the socket hands each to the producer as its
/// frame arrives; only the wait for the broker's answer runs on its own). On a multi-threaded
/// runtime like the reader binary's: on one thread, spawned tasks would run in order anyway.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn messages_pipelined_on_one_socket_are_stored_in_send_order() {
    const MESSAGES: usize = 100;
    let stack = Stack::start().await;
    let reader = stack.reader.url("");
    let mut alice = WsClient::connect(&reader, &stack.api.token_for("alice"), "phone", "")
        .await
        .unwrap();
    hello(&mut alice).await;
    for n in 0..MESSAGES {
        alice
            .send(&ClientFrame::Send {
                request_id: Some(format!("r{n}")),
                draft: schemas::api::MessageDraft {
                    to: Some("bob".into()),
                    group: None,
                    body: format!("message {n:03}"),
                    ..schemas::api::MessageDraft::default()
                },
            })
            .await;
    }
    let mut accepted = 0;
    while accepted < MESSAGES {
        match alice.next_data(WAIT).await {
            Received::Frame(ServerFrame::Accepted { .. }) => accepted += 1,
            Received::Frame(ServerFrame::Sync { .. }) => {}
            other => panic!("expected accepted or sync, got {other:?}"),
        }
    }
    stack.applied().await;
    let stored: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM messages WHERE conversation_id = 'd:alice:bob' ORDER BY seq",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    let sent: Vec<String> = (0..MESSAGES).map(|n| format!("message {n:03}")).collect();
    assert_eq!(stored, sent, "stored in send order");
    stack.stop().await;
}

#[tokio::test]
async fn a_user_keeps_the_cursors_of_their_hundred_most_recent_devices_only() {
    let stack = Stack::start().await;
    stack.message("alice", "bob", "m0").await;
    stack.applied().await;
    let token = stack.api.token_for("bob");
    let reader = stack.reader.url("");
    // 101 made-up device ids, one after the other, each acking the one entry.
    for n in 0..101 {
        let mut client = WsClient::connect(&reader, &token, &format!("d{n}"), "")
            .await
            .unwrap();
        assert_eq!(hello(&mut client).await, 0);
        let (_, last_seq) = next_sync(&mut client).await;
        client.send(&ClientFrame::Ack { seq: last_seq }).await;
        let (db, device) = (&stack.db.pool, format!("d{n}"));
        harness::wait_until("the ack stored", Duration::from_secs(10), || async {
            let stored: Option<i64> = sqlx::query_scalar(
                "SELECT acked_seq FROM device_cursors WHERE user_id = 'bob' AND device_id = $1",
            )
            .bind(&device)
            .fetch_optional(db)
            .await
            .unwrap();
            stored.map(|_| ())
        })
        .await;
        client.close().await;
    }
    let devices: Vec<String> = sqlx::query_scalar(
        "SELECT device_id FROM device_cursors WHERE user_id = 'bob' ORDER BY updated_at",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    // Issue 19, finding 8: unbounded before. The oldest device is the one forgotten.
    assert_eq!(devices.len(), 100);
    assert!(!devices.contains(&"d0".to_owned()));
    assert!(devices.contains(&"d100".to_owned()));
    stack.stop().await;
}
