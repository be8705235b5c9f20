//! The whole pipeline on the real broker and database: ingest → Kafka → fanout → Postgres → reader.

use std::collections::{BTreeSet, HashMap};
use std::net::SocketAddr;
use std::time::Duration;

use futures::StreamExt;
use harness::{
    brokers, fanout_config, group_lag, produce_raw, raw_producer, spawn_fanout, spawn_ingest,
    spawn_reader, unique, wait_until, Api, Running, TcpProxy, TestDb, TestTopic,
};
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message};
use reqwest::Method;

const WAIT: Duration = Duration::from_secs(60);

struct Pipeline {
    db: TestDb,
    topic: TestTopic,
    group: String,
    ingest: Running,
    reader: Running,
    api: Api,
}

impl Pipeline {
    async fn start(partitions: i32) -> Pipeline {
        let db = TestDb::create().await;
        let topic = TestTopic::create(partitions).await;
        let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
        let reader = spawn_reader(&db.url).await;
        let api = Api::new(ingest.url(""), reader.url(""));
        Pipeline {
            db,
            topic,
            group: unique("fanout"),
            ingest,
            reader,
            api,
        }
    }

    async fn fanout(&self) -> Running {
        spawn_fanout(fanout_config(&self.topic, &self.group, &self.db.url)).await
    }

    /// Waits until the group has committed everything in the topic.
    async fn caught_up(&self, group: &str) {
        wait_until("the consumer group to commit every event", WAIT, || async {
            let lags = group_lag(&self.topic.name, group).await;
            // An empty answer (metadata not ready) is not "caught up".
            (lags.len() == self.topic.partitions as usize && lags.iter().all(|l| l.lag == 0))
                .then_some(())
        })
        .await;
    }

    async fn count(&self, sql: &str) -> i64 {
        let (n,): (i64,) = sqlx::query_as(sql).fetch_one(&self.db.pool).await.unwrap();
        n
    }

    async fn stop(self) {
        self.ingest.stop().await;
        self.reader.stop().await;
    }
}

#[tokio::test]
async fn posts_flow_to_followers_feeds_and_sync_timelines() {
    let p = Pipeline::start(4).await;
    let fanout = p.fanout().await;
    for follower in ["bob", "carol"] {
        p.api.follow(follower, "alice").await;
    }
    p.api.follow("bob", "dave").await;
    let mut alice_posts = Vec::new();
    for i in 0..7 {
        alice_posts.push(
            p.api
                .post("alice", &format!("alice {i}"), Some(&format!("a{i}")))
                .await,
        );
        if i % 2 == 0 {
            p.api.post("dave", &format!("dave {i}"), None).await;
        }
    }
    // A client that never saw its 202 retries: still one post.
    let retry = p.api.post("alice", "alice 0", Some("a0")).await;
    assert_ne!(retry.post_id, alice_posts[0].post_id);
    p.caught_up(&p.group).await;

    let bob_feed = p.api.feed_all("bob", 3).await;
    assert_eq!(bob_feed.len(), 11, "7 from alice and 4 from dave");
    let ids: Vec<&str> = bob_feed.iter().map(|e| e.post_id.as_str()).collect();
    let mut sorted = ids.clone();
    sorted.sort_unstable_by(|a, b| b.cmp(a));
    sorted.dedup();
    assert_eq!(ids, sorted, "newest first, no repeats");
    let carol_feed = p.api.feed_all("carol", 200).await;
    let alice_ids: Vec<String> = alice_posts
        .iter()
        .rev()
        .map(|a| a.post_id.clone().unwrap())
        .collect();
    assert_eq!(
        carol_feed
            .iter()
            .map(|e| e.post_id.clone())
            .collect::<Vec<_>>(),
        alice_ids
    );
    assert_eq!(carol_feed[0].body, "alice 6");
    assert_eq!(carol_feed[0].author, "alice");

    // The store timeline pages the same way; alice's own sync timeline has her posts for her devices.
    let first = p.api.posts_page("alice", 5, None).await;
    assert_eq!(first.entries.len(), 5);
    let second = p
        .api
        .posts_page("alice", 5, first.next_cursor.as_deref())
        .await;
    assert_eq!(second.entries.len(), 2);
    assert_eq!(second.next_cursor, None);
    assert_eq!(p.api.sync_all("alice").await.len(), 7);

    // A device syncing in small steps sees bob's entries once each, in increasing seq order.
    let mut after = 0;
    let mut seen = Vec::new();
    loop {
        let page = p.api.sync("bob", after, 4).await;
        if page.entries.is_empty() {
            assert_eq!(page.last_seq, after);
            break;
        }
        assert!(page.entries.iter().all(|e| e.seq > after));
        after = page.last_seq;
        seen.extend(page.entries.into_iter().map(|e| e.post_id));
    }
    assert_eq!(seen.len(), 11);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 11);

    assert!(
        fanout.metric(
            "fanline_fanout_events_applied_total",
            &[("outcome", "duplicate")]
        ) >= 1.0
    );
    for service in [&p.ingest, &p.reader] {
        let text = reqwest::get(service.ops_url("/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(text.contains("fanline_http_requests_total"), "{text}");
        // Not on the public port (issue 19, finding 7).
        let public = reqwest::get(service.url("/metrics")).await.unwrap();
        assert_eq!(public.status(), 404);
    }
    let text = reqwest::get(fanout.url("/metrics"))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("fanline_fanout_consumer_lag{partition=\"0\""),
        "{text}"
    );
    // 3 follows, 11 posts and 1 retry.
    assert_eq!(
        fanout.metric("fanline_fanout_end_to_end_latency_seconds", &[]),
        15.0
    );
    fanout.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn reprocessing_the_topic_from_offset_zero_changes_nothing() {
    let p = Pipeline::start(4).await;
    // A pull threshold of one follower: authors cross it both ways during the run.
    let config = |group: &str| {
        let mut config = fanout_config(&p.topic, group, &p.db.url);
        config.pull_threshold = 1;
        config.push_threshold = Some(1);
        config
    };
    let fanout = spawn_fanout(config(&p.group)).await;
    for (follower, followee) in [
        ("bob", "alice"),
        ("carol", "alice"),
        ("bob", "erin"),
        ("carol", "erin"),
    ] {
        p.api.follow(follower, followee).await;
    }
    let mut posts = Vec::new();
    for i in 0..30 {
        let author = if i % 3 == 0 { "erin" } else { "alice" };
        let accepted = p
            .api
            .post(author, &format!("post {i}"), Some(&format!("m{}", i % 25)))
            .await;
        posts.push((author, accepted.post_id.unwrap()));
        if i == 10 {
            p.api.unfollow("carol", "alice").await;
            p.api.unfollow("bob", "alice").await;
        }
        if i == 20 {
            p.api.follow("carol", "alice").await;
            p.api.follow("bob", "alice").await;
        }
    }
    for (author, post_id) in &posts[3..5] {
        p.api.delete_post(author, post_id).await;
    }
    p.caught_up(&p.group).await;
    assert!(fanout.metric("fanline_fanout_delivery_mode_changes_total", &[]) >= 3.0);
    assert!(fanout.metric("fanline_fanout_posts_pulled_total", &[]) >= 1.0);
    fanout.stop().await;
    let before = p.db.snapshot().await;
    assert!(before.len() > 60);
    // 30 posts, minus 2 retries (same author and message id: i = 26 and 29), minus 2 deleted, all in
    // carol's merged feed.
    let feed = p.api.feed_all("carol", 7).await;
    assert_eq!(feed.len(), 26);
    assert!(feed
        .iter()
        .all(|e| e.post_id != posts[3].1 && e.post_id != posts[4].1));

    // A new group starts at offset 0 and applies every event a second time.
    let replay_group = unique("replay");
    let replay = spawn_fanout(config(&replay_group)).await;
    p.caught_up(&replay_group).await;
    assert_eq!(
        replay.metric("fanline_fanout_events_applied_total", &[("outcome", "new")]),
        0.0
    );
    assert!(
        replay.metric(
            "fanline_fanout_events_applied_total",
            &[("outcome", "duplicate")]
        ) >= 40.0
    );
    replay.stop().await;
    assert_eq!(
        p.db.snapshot().await,
        before,
        "replay changed rows or drew seqs"
    );
    assert_eq!(p.api.feed_all("carol", 7).await, feed);
    p.stop().await;
}

#[tokio::test]
async fn poison_events_are_dead_lettered_and_the_worker_moves_on() {
    let p = Pipeline::start(1).await;
    let fanout = p.fanout().await;
    let producer = raw_producer();
    let (_, garbage_offset) = produce_raw(&producer, &p.topic.name, "alice", b"\x00not json").await;
    let invalid = br#"{"v":1,"id":"e1","type":"post_created","key":"alice","ts":"2026-11-23T12:00:00Z","payload":{"post_id":"01J00000000000000000000000","author":"mallory","body":"x","created_at":"2026-11-23T12:00:00Z"}}"#;
    produce_raw(&producer, &p.topic.name, "alice", invalid).await;
    let newer = br#"{"v":9,"id":"e2","type":"post_created","key":"alice","ts":"2026-11-23T12:00:00Z","payload":{}}"#;
    produce_raw(&producer, &p.topic.name, "alice", newer).await;
    let unknown = br#"{"v":1,"id":"e3","type":"post_liked","key":"alice","ts":"2026-11-23T12:00:00Z","payload":{}}"#;
    produce_raw(&producer, &p.topic.name, "alice", unknown).await;
    let good = p.api.post("alice", "still flowing", None).await;
    p.caught_up(&p.group).await;

    let feed = p.api.feed_all("alice", 20).await;
    assert_eq!(feed.len(), 1);
    assert_eq!(Some(feed[0].post_id.clone()), good.post_id);
    for (reason, count) in [
        ("malformed", 1.0),
        ("invalid", 1.0),
        ("unsupported_version", 1.0),
        ("unknown_type", 1.0),
    ] {
        assert_eq!(
            fanout.metric("fanline_fanout_dead_lettered_total", &[("reason", reason)]),
            count,
            "{reason}"
        );
    }

    // The dead-letter topic holds the original bytes with where they came from and why.
    let group = unique("dlq-check");
    let consumer: StreamConsumer = harness::kafka_client(
        "fanline-test-dlq-check",
        &[("group.id", &group), ("auto.offset.reset", "earliest")],
    )
    .create()
    .unwrap();
    consumer.subscribe(&[&p.topic.dlq]).unwrap();
    let mut letters = Vec::new();
    while letters.len() < 4 {
        let message = tokio::time::timeout(WAIT, consumer.recv())
            .await
            .unwrap()
            .unwrap();
        let headers: HashMap<String, String> = message
            .headers()
            .map(|h| {
                h.iter()
                    .map(|h| {
                        (
                            h.key.to_owned(),
                            String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        letters.push((message.payload().unwrap_or_default().to_vec(), headers));
    }
    assert_eq!(letters[0].0, b"\x00not json");
    assert_eq!(letters[0].1["fanline-dlq-reason"], "malformed");
    assert_eq!(
        letters[0].1["fanline-source-offset"],
        garbage_offset.to_string()
    );
    assert_eq!(letters[0].1["fanline-source-topic"], p.topic.name);
    assert_eq!(letters[1].1["fanline-dlq-reason"], "invalid");
    assert!(letters[1].1["fanline-dlq-error"].contains("key"));
    fanout.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn a_database_outage_holds_offsets_back_and_fanout_catches_up_afterwards() {
    let p = Pipeline::start(2).await;
    let proxy = TcpProxy::start(SocketAddr::from(([127, 0, 0, 1], 5432))).await;
    let proxied_url =
        p.db.url
            .replace("127.0.0.1:5432", &format!("127.0.0.1:{}", proxy.port()));
    assert_ne!(
        proxied_url, p.db.url,
        "test database URL must point at 127.0.0.1:5432"
    );
    let fanout = spawn_fanout(fanout_config(&p.topic, &p.group, &proxied_url)).await;
    p.api.follow("bob", "alice").await;
    p.api.post("alice", "before the outage", None).await;
    p.caught_up(&p.group).await;
    let committed_before: Vec<Option<i64>> = group_lag(&p.topic.name, &p.group)
        .await
        .iter()
        .map(|l| l.committed)
        .collect();

    proxy.set_up(false);
    for i in 0..20 {
        p.api
            .post("alice", &format!("during the outage {i}"), None)
            .await;
    }
    wait_until("fanout to retry", WAIT, || async {
        (fanout.metric("fanline_fanout_apply_retries_total", &[]) >= 2.0).then_some(())
    })
    .await;
    let during = group_lag(&p.topic.name, &p.group).await;
    assert_eq!(
        during.iter().map(|l| l.committed).collect::<Vec<_>>(),
        committed_before,
        "offsets were committed while Postgres was down"
    );
    assert_eq!(during.iter().map(|l| l.lag).sum::<i64>(), 20);
    // The worker's own /metrics shows the same lag while it cannot apply anything.
    wait_until("fanout to export the lag", WAIT, || async {
        (fanout.metric("fanline_fanout_consumer_lag", &[("topic", &p.topic.name)]) == 20.0)
            .then_some(())
    })
    .await;
    let (status, _) = p
        .api
        .raw(Method::GET, &fanout.url("/readyz"), None, None)
        .await;
    assert_eq!(status.as_u16(), 503);

    proxy.set_up(true);
    p.caught_up(&p.group).await;
    assert_eq!(p.api.feed_all("bob", 200).await.len(), 21);
    assert_eq!(p.count("SELECT count(*) FROM posts").await, 21);
    fanout.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn two_workers_split_the_partitions_and_a_rebalance_loses_and_duplicates_nothing() {
    let p = Pipeline::start(4).await;
    let first = p.fanout().await;
    let second = p.fanout().await;
    wait_until("both workers to own partitions", WAIT, || async {
        let a = first.metric("fanline_fanout_assigned_partitions", &[]);
        let b = second.metric("fanline_fanout_assigned_partitions", &[]);
        (a >= 1.0 && b >= 1.0 && a + b == 4.0).then_some(())
    })
    .await;

    let authors: Vec<String> = (0..8).map(|i| format!("author{i}")).collect();
    for author in &authors {
        p.api.follow("fan", author).await;
    }
    let mut expected = BTreeSet::new();
    for round in 0..15 {
        for author in &authors {
            let accepted = p.api.post(author, &format!("{author} {round}"), None).await;
            expected.insert(accepted.post_id.unwrap());
        }
        if round == 7 {
            // One worker leaves mid-stream; its partitions move to the other.
            first.stop().await;
            break;
        }
    }
    for round in 8..15 {
        for author in &authors {
            let accepted = p.api.post(author, &format!("{author} {round}"), None).await;
            expected.insert(accepted.post_id.unwrap());
        }
    }
    p.caught_up(&p.group).await;
    assert_eq!(
        second.metric("fanline_fanout_assigned_partitions", &[]),
        4.0
    );

    let fan: Vec<String> = p
        .api
        .sync_all("fan")
        .await
        .into_iter()
        .filter_map(|e| e.post_id)
        .collect();
    assert_eq!(fan.len(), expected.len(), "lost or duplicated entries");
    assert_eq!(fan.iter().cloned().collect::<BTreeSet<_>>(), expected);
    assert_eq!(
        p.count("SELECT count(*) FROM posts").await,
        expected.len() as i64
    );
    assert_eq!(
        p.count("SELECT count(*) FROM sync_entries").await,
        2 * expected.len() as i64
    );
    second.stop().await;
    p.stop().await;
}

#[tokio::test]
async fn shutdown_commits_what_was_applied() {
    let p = Pipeline::start(2).await;
    // No periodic or on-close commits: only fanout's explicit commit at shutdown can move the offsets.
    let mut config = fanout_config(&p.topic, &p.group, &p.db.url);
    config.kafka_properties = vec!["enable.auto.commit=false".into()];
    let fanout = spawn_fanout(config).await;
    for i in 0..10 {
        p.api.post("alice", &format!("{i}"), None).await;
    }
    wait_until("all posts applied", WAIT, || async {
        (p.count("SELECT count(*) FROM posts").await == 10).then_some(())
    })
    .await;
    fanout.stop().await;
    // Right after the stop, without waiting for any periodic commit.
    let lags = group_lag(&p.topic.name, &p.group).await;
    assert_eq!(lags.iter().map(|l| l.lag).sum::<i64>(), 0, "{lags:?}");
    p.stop().await;
}

/// ingest's producer keeps one request in flight and is not idempotent (see kafkakit): a key's events
/// must still be stored, and applied, in the order they were acknowledged, while other keys' traffic
/// fills the same batches.
#[tokio::test]
async fn a_keys_events_are_stored_and_applied_in_acknowledgement_order_under_load() {
    let p = Pipeline::start(2).await;
    let fanout = spawn_fanout(fanout_config(&p.topic, &p.group, &p.db.url)).await;
    let load = {
        let api = Api::new(p.ingest.url(""), "");
        tokio::spawn(async move {
            let sends = (0..400).map(|i| {
                let api = &api;
                async move {
                    api.post(&format!("noise{}", i % 16), "load", None).await;
                }
            });
            futures::stream::iter(sends)
                .buffer_unordered(8)
                .collect::<Vec<()>>()
                .await;
        })
    };
    let mut acknowledged = Vec::new();
    for i in 0..60 {
        let accepted = p.api.post("alice", &format!("in order {i}"), None).await;
        acknowledged.push((
            accepted.partition,
            accepted.offset,
            accepted.post_id.unwrap(),
        ));
    }
    load.await.unwrap();
    let partition = acknowledged[0].0;
    assert!(acknowledged.iter().all(|(part, ..)| *part == partition));
    assert!(
        acknowledged.windows(2).all(|w| w[0].1 < w[1].1),
        "acknowledged offsets of one key must increase: {acknowledged:?}"
    );
    p.caught_up(&p.group).await;
    // Applied in the same order: alice's own sync timeline lists her posts by seq as acknowledged.
    let applied: Vec<(String,)> =
        sqlx::query_as("SELECT post_id FROM sync_entries WHERE user_id = 'alice' ORDER BY seq")
            .fetch_all(&p.db.pool)
            .await
            .unwrap();
    let applied: Vec<String> = applied.into_iter().map(|(id,)| id).collect();
    let expected: Vec<String> = acknowledged.into_iter().map(|(.., id)| id).collect();
    assert_eq!(applied, expected);
    fanout.stop().await;
    p.stop().await;
}
