//! The write API: acknowledgement semantics, error bodies and broker outages.

use std::time::{Duration, Instant};

use harness::{brokers, spawn_ingest, Api, TestTopic};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};
use reqwest::{Method, StatusCode};
use serde_json::Value;

async fn read_at(topic: &str, partition: i32, offset: i64) -> (Vec<u8>, Vec<u8>) {
    let group = harness::unique("reader");
    let consumer: StreamConsumer = harness::kafka_client(
        "fanline-test-reader",
        &[("group.id", &group), ("enable.auto.commit", "false")],
    )
    .create()
    .unwrap();
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, partition, Offset::Offset(offset))
        .unwrap();
    consumer.assign(&tpl).unwrap();
    let message = tokio::time::timeout(Duration::from_secs(20), consumer.recv())
        .await
        .expect("no message at the acknowledged offset")
        .unwrap();
    assert_eq!(message.offset(), offset);
    (
        message.key().unwrap().to_vec(),
        message.payload().unwrap().to_vec(),
    )
}

#[tokio::test]
async fn an_acknowledged_post_is_in_kafka_keyed_by_its_author() {
    let topic = TestTopic::create(4).await;
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "");

    let accepted = api.post("alice", "hello", Some("m-1")).await;
    let (key, payload) = read_at(&topic.name, accepted.partition, accepted.offset).await;
    assert_eq!(key, b"alice");
    let event = schemas::events::decode(&payload).unwrap();
    assert_eq!(event.id, accepted.event_id);
    match event.event {
        schemas::Event::PostCreated(post) => {
            assert_eq!(Some(post.post_id.as_str()), accepted.post_id.as_deref());
            assert_eq!(post.body, "hello");
            assert_eq!(post.message_id.as_deref(), Some("m-1"));
        }
        other => panic!("unexpected event {other:?}"),
    }

    // A follow is keyed by the followee, so it shares a partition with the followee's posts.
    let follow = api.follow("bob", "alice").await;
    assert_eq!(follow.partition, accepted.partition);
    let (key, payload) = read_at(&topic.name, follow.partition, follow.offset).await;
    assert_eq!(key, b"alice");
    assert_eq!(
        schemas::events::decode(&payload).unwrap().event_type(),
        "followed"
    );
    let unfollow = api.unfollow("bob", "alice").await;
    assert!(unfollow.offset > follow.offset);
    assert_eq!(
        ingest.metric(
            "fanline_ingest_events_produced_total",
            &[("type", "post_created")]
        ),
        1.0
    );
    ingest.stop().await;
}

/// Method, path, body, content type, expected status, expected field.
type Case<'a> = (
    Method,
    String,
    Option<&'a [u8]>,
    Option<&'a str>,
    u16,
    Option<&'a str>,
);

#[tokio::test]
async fn bad_input_gets_a_json_error_naming_the_field() {
    let topic = TestTopic::create(1).await;
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    // Signed in: bad input is a 400 whoever sends it (tokens are tested in auth.rs).
    let api = Api::new(ingest.url(""), "").as_user("a");
    let json = Some("application/json");
    let long_body = format!(r#"{{"author":"a","body":"{}"}}"#, "x".repeat(4097));
    let huge = format!(r#"{{"author":"a","body":"{}"}}"#, "x".repeat(70_000));
    let cases: Vec<Case<'_>> = vec![
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"body":"x"}"#),
            json,
            400,
            Some("author"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"a"}"#),
            json,
            400,
            Some("body"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"a b","body":"x"}"#),
            json,
            400,
            Some("author"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":7,"body":"x"}"#),
            json,
            400,
            Some("author"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"a","body":"  "}"#),
            json,
            400,
            Some("body"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(long_body.as_bytes()),
            json,
            400,
            Some("body"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"a","body":"x","message_id":""}"#),
            json,
            400,
            Some("message_id"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"a","body":"x","message_id":5}"#),
            json,
            400,
            Some("message_id"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"#),
            json,
            400,
            Some("body"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(b"[]"),
            json,
            400,
            Some("body"),
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"a","body":"x"}"#),
            None,
            415,
            None,
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(br#"{"author":"a","body":"x"}"#),
            Some("text/plain"),
            415,
            None,
        ),
        (
            Method::POST,
            "/v1/posts".into(),
            Some(huge.as_bytes()),
            json,
            413,
            None,
        ),
        (Method::GET, "/v1/posts".into(), None, None, 405, None),
        (Method::GET, "/nope".into(), None, None, 404, None),
        (
            Method::PUT,
            "/v1/users/bad%20user/following/bob".into(),
            None,
            None,
            400,
            Some("user"),
        ),
        (
            Method::PUT,
            "/v1/users/alice/following/bad!".into(),
            None,
            None,
            400,
            Some("target"),
        ),
        (
            Method::PUT,
            "/v1/users/alice/following/alice".into(),
            None,
            None,
            400,
            Some("target"),
        ),
        (
            Method::PUT,
            "/v1/users/%FF/following/bob".into(),
            None,
            None,
            400,
            None,
        ),
        (
            Method::POST,
            "/v1/users/alice/following/bob".into(),
            None,
            None,
            405,
            None,
        ),
    ];
    let bad_requests = cases.iter().filter(|case| case.4 == 400).count() as f64;
    for (method, path, body, content_type, status, field) in cases {
        let (got, value) = api
            .raw(method.clone(), &ingest.url(&path), body, content_type)
            .await;
        assert_eq!(got.as_u16(), status, "{method} {path}: {value}");
        assert!(
            value["error"].is_string(),
            "{method} {path}: no JSON error body: {value}"
        );
        if let Some(field) = field {
            assert_eq!(
                value["field"],
                Value::from(field),
                "{method} {path}: {value}"
            );
        }
    }
    // Nothing invalid reached the topic.
    assert_eq!(
        ingest.metric("fanline_ingest_events_produced_total", &[]),
        0.0
    );
    assert_eq!(
        ingest.metric("fanline_http_requests_total", &[("status", "400")]),
        bad_requests
    );
    ingest.stop().await;
}

async fn assert_unavailable(brokers: &str, timeout_ms: u64) {
    let mut config = ingest::Config::for_brokers(brokers, "fanline.events");
    config.produce_timeout_ms = timeout_ms;
    let ingest = spawn_ingest(config).await;
    let api = Api::new(ingest.url(""), "");
    let started = Instant::now();
    let (status, value) = api.try_post("alice", "lost?", Some("m-1")).await;
    let elapsed = started.elapsed();
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{value}");
    assert!(value["error"].is_string());
    assert!(
        elapsed < Duration::from_millis(timeout_ms + 2000),
        "503 took {elapsed:?}"
    );
    let url = format!("http://127.0.0.1:{}/v1/users/a/following/b", ingest.port);
    let (status, _) = api.as_user("a").raw(Method::PUT, &url, None, None).await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = api
        .raw(Method::GET, &ingest.url("/readyz"), None, None)
        .await;
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
    let (status, _) = api
        .raw(Method::GET, &ingest.url("/healthz"), None, None)
        .await;
    assert_eq!(status, StatusCode::OK);
    assert!(ingest.metric("fanline_ingest_produce_failures_total", &[]) >= 2.0);
    ingest.stop().await;
}

#[tokio::test]
async fn a_broker_that_is_down_gets_503_within_the_produce_timeout() {
    // Nothing listens on a port we bound and released.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    assert_unavailable(&format!("127.0.0.1:{port}"), 1500).await;
}

#[tokio::test]
async fn a_broker_that_never_answers_gets_503_within_the_produce_timeout() {
    // Accepts connections and never says a word: a hung broker.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let port = listener.local_addr().unwrap().port();
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    assert_unavailable(&format!("127.0.0.1:{port}"), 1500).await;
    hold.abort();
}

#[tokio::test]
async fn a_batch_answers_per_item_like_the_single_call() {
    let topic = TestTopic::create(2).await;
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "").as_user("alice");
    let body = serde_json::json!({"posts": [
        {"author": "alice", "body": "one", "message_id": "b1"},
        {"author": "bad user", "body": "two"},
        {"author": "bob", "body": ""},
        {"author": "carol", "body": 3},
        "not an object",
        {"author": "alice", "body": "five"},
        {"author": "mallory", "body": "as someone else"},
    ]});
    let (status, value) = api
        .raw(
            Method::POST,
            &ingest.url("/v1/posts/batch"),
            Some(body.to_string().as_bytes()),
            Some("application/json"),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    let response: schemas::api::BatchResponse = serde_json::from_value(value).unwrap();
    let statuses: Vec<u16> = response.results.iter().map(|r| r.status).collect();
    assert_eq!(statuses, vec![202, 400, 400, 400, 400, 202, 403]);
    let fields: Vec<Option<&str>> = response
        .results
        .iter()
        .map(|r| r.field.as_deref())
        .collect();
    assert_eq!(
        fields,
        vec![
            None,
            Some("posts[1].author"),
            Some("posts[2].body"),
            Some("posts[3].body"),
            Some("posts[4]"),
            None,
            Some("posts[6].author"),
        ]
    );
    let first = &response.results[0];
    let (key, payload) =
        read_at(&topic.name, first.partition.unwrap(), first.offset.unwrap()).await;
    assert_eq!(key, b"alice");
    assert_eq!(
        schemas::events::decode(&payload).unwrap().id,
        first.event_id.clone().unwrap()
    );
    assert_eq!(
        ingest.metric("fanline_ingest_events_produced_total", &[]),
        2.0
    );

    let too_many =
        serde_json::json!({"posts": vec![serde_json::json!({"author": "a", "body": "x"}); 501]});
    let (status, value) = api
        .raw(
            Method::POST,
            &ingest.url("/v1/posts/batch"),
            Some(too_many.to_string().as_bytes()),
            Some("application/json"),
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(value["field"], "posts");
    let (status, value) = api
        .raw(
            Method::POST,
            &ingest.url("/v1/posts/batch"),
            Some(br#"{"posts":[]}"#),
            Some("application/json"),
        )
        .await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("posts"))
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_delete_is_keyed_by_the_author_and_validated() {
    let topic = TestTopic::create(4).await;
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "").as_user("alice");
    let created = api.post("alice", "to be deleted", None).await;
    let post_id = created.post_id.unwrap();
    let (status, value) = api
        .raw(
            Method::DELETE,
            &ingest.url(&format!("/v1/posts/{post_id}?author=alice")),
            None,
            None,
        )
        .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");
    assert_eq!(
        value["partition"].as_i64(),
        Some(i64::from(created.partition))
    );
    for (path, field) in [
        (format!("/v1/posts/{post_id}"), "author"),
        (format!("/v1/posts/{post_id}?author=a%20b"), "author"),
        ("/v1/posts/not-an-id?author=alice".to_owned(), "post_id"),
    ] {
        let (status, value) = api
            .raw(Method::DELETE, &ingest.url(&path), None, None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {value}");
        assert_eq!(value["field"], field, "{path}");
    }
    ingest.stop().await;
}
