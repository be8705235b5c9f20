//! `fanout replay`: refusal while the group is live, idempotence into the live database, rebuilding into
//! an empty database, and starting from a timestamp on the real broker.

use std::time::Duration;

use fanout::replay::{replay, OffsetSource, ReplayError, StartAt};
use harness::{
    brokers, fanout_config, group_lag, spawn_fanout, spawn_ingest, spawn_reader, unique,
    wait_until, Api, TestDb, TestTopic,
};
use tokio_util::sync::CancellationToken;

const WAIT: Duration = Duration::from_secs(60);

async fn caught_up(topic: &TestTopic, group: &str) {
    wait_until("the group to commit every event", WAIT, || async {
        let lags = group_lag(&topic.name, group).await;
        (lags.len() == topic.partitions as usize && lags.iter().all(|l| l.lag == 0)).then_some(())
    })
    .await;
}

/// A replay to its end, without progress reports or cancellation.
async fn replay_all(
    config: &fanout::Config,
    group: &str,
    start: StartAt,
    assume_no_live_members: bool,
) -> Result<fanout::replay::ReplaySummary, ReplayError> {
    replay(
        config,
        group,
        start,
        assume_no_live_members,
        CancellationToken::new(),
        |_, _| {},
    )
    .await
}

/// Store timelines, follow graph and feeds of a database, without seqs or apply times (which a rebuild
/// assigns anew).
async fn timelines(db: &TestDb, users: &[&str]) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    let posts: Vec<(String,)> = sqlx::query_as(
        "SELECT post_id || '|' || author || '|' || body || '|' || coalesce(message_id, '') || '|' ||
                created_at::text || '|' || delivery_mode || '|' || (deleted_at IS NOT NULL)::text
         FROM posts ORDER BY post_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.extend(posts.into_iter().map(|(r,)| format!("post {r}")));
    let follows: Vec<(String,)> = sqlx::query_as(
        "SELECT followee || '|' || follower || '|' || active::text FROM follows ORDER BY 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.extend(follows.into_iter().map(|(r,)| format!("follow {r}")));
    for user in users {
        let feed = reader::queries::feed(&db.reads, user, None, 1000)
            .await
            .unwrap();
        rows.push(format!(
            "feed {user}: {}",
            feed.entries
                .iter()
                .map(|e| e.post_id.as_str())
                .collect::<Vec<_>>()
                .join(",")
        ));
    }
    rows
}

#[tokio::test]
async fn replay_refuses_a_live_group_changes_nothing_live_and_rebuilds_an_empty_database() {
    let db = TestDb::create().await;
    let topic = TestTopic::create(3).await;
    let group = unique("fanout");
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let reader = spawn_reader(&db.url).await;
    let api = Api::new(ingest.url(""), reader.url(""));
    let mut config = fanout_config(&topic, &group, &db.url);
    config.pull_threshold = 1;
    config.push_threshold = Some(1);
    let fanout = spawn_fanout(config.clone()).await;
    for (follower, followee) in [("bob", "alice"), ("carol", "alice"), ("carol", "erin")] {
        api.follow(follower, followee).await;
    }
    let mut ids = Vec::new();
    for i in 0..40 {
        let author = ["alice", "erin", "bob"][i % 3];
        ids.push((
            author,
            api.post(author, &format!("post {i}"), Some(&format!("m{i}")))
                .await
                .post_id
                .unwrap(),
        ));
        if i == 20 {
            api.unfollow("bob", "alice").await;
        }
    }
    let (author, post_id) = &ids[5];
    api.delete_post(author, post_id).await;
    caught_up(&topic, &group).await;

    // The live group has a member: refused, with the reason. Apache Kafka lists the member; tansu cannot
    // answer DescribeGroups, and a group that cannot be checked is refused as well.
    let refused = replay_all(&config, &group, StartAt::Beginning, false).await;
    match refused {
        Err(err @ (ReplayError::LiveMembers { .. } | ReplayError::CannotCheckMembers { .. })) => {
            assert!(err.to_string().contains("--replay-group"), "{err}")
        }
        other => panic!("expected a refusal, got {other:?}"),
    }
    fanout.stop().await;

    // Into the live database (workers stopped): every event again, nothing changes.
    let before = db.snapshot().await;
    let mut progress = Vec::new();
    let summary = replay(
        &config,
        &group,
        StartAt::Beginning,
        true,
        CancellationToken::new(),
        |done, total| progress.push((done, total)),
    )
    .await
    .unwrap();
    assert_eq!(summary.events, 45);
    assert_eq!(progress.last(), Some(&(45, 45)));
    assert!(summary
        .ranges
        .iter()
        .all(|r| r.source == OffsetSource::Beginning));
    assert_eq!(
        db.snapshot().await,
        before,
        "replay into the live database changed it"
    );
    assert!(group_lag(&topic.name, &group)
        .await
        .iter()
        .all(|l| l.lag == 0));

    // Into an empty database with a fresh group: the same timelines, follow graph and feeds.
    let rebuilt = TestDb::create().await;
    let mut rebuild_config = config.clone();
    rebuild_config.database_url = rebuilt.url.clone().into();
    let summary = replay_all(
        &rebuild_config,
        &unique("rebuild"),
        StartAt::Beginning,
        false,
    )
    .await
    .unwrap();
    assert_eq!(summary.events, 45);
    let users = ["alice", "bob", "carol", "erin"];
    let original = timelines(&db, &users).await;
    assert!(
        original.iter().any(|r| r.contains("|pull|")),
        "the run should have pulled posts"
    );
    assert_eq!(timelines(&rebuilt, &users).await, original);
    ingest.stop().await;
    reader.stop().await;
}

#[tokio::test]
async fn replay_from_a_timestamp_starts_at_the_first_later_event() {
    let db = TestDb::create().await;
    let topic = TestTopic::create(2).await;
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "");
    for i in 0..10 {
        api.post(&format!("early{}", i % 3), "early", None).await;
    }
    // Not synchronisation points: the cut must fall strictly between the early and the late records'
    // timestamps (milliseconds), so some time must pass on each side of it.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let cut = chrono::Utc::now();
    tokio::time::sleep(Duration::from_millis(50)).await;
    let mut late = Vec::new();
    for i in 0..12 {
        late.push(
            api.post(&format!("late{}", i % 4), "late", None)
                .await
                .post_id
                .unwrap(),
        );
    }
    let config = fanout_config(&topic, "unused", &db.url);
    late.sort();
    // Both ways of finding the start: the broker's time index (verified against the records, falling
    // back to the search when wrong), and the record search alone. Each into its own fresh database.
    for (start, path) in [
        (StartAt::Timestamp(cut), None),
        (
            StartAt::TimestampByRecords(cut),
            Some(OffsetSource::RecordSearch),
        ),
    ] {
        let target = TestDb::create().await;
        let mut config = config.clone();
        config.database_url = target.url.clone().into();
        let summary = replay_all(&config, &unique("from-time"), start.clone(), false)
            .await
            .unwrap();
        assert_eq!(summary.events, 12, "{start:?}: {:?}", summary.ranges);
        let mut applied: Vec<String> = sqlx::query_as::<_, (String,)>("SELECT post_id FROM posts")
            .fetch_all(&target.pool)
            .await
            .unwrap()
            .into_iter()
            .map(|(id,)| id)
            .collect();
        applied.sort();
        assert_eq!(applied, late, "{start:?}");
        for range in &summary.ranges {
            println!(
                "{start:?} partition {}: start {} end {} found by {:?}",
                range.partition, range.start, range.end, range.source
            );
            match path {
                Some(expected) => assert_eq!(range.source, expected),
                None => assert!(matches!(
                    range.source,
                    OffsetSource::BrokerTimestampIndex | OffsetSource::RecordSearch
                )),
            }
        }
    }
    drop(db);
    ingest.stop().await;
}

#[tokio::test]
async fn an_interrupted_replay_resumes_to_the_same_database_as_an_uninterrupted_one() {
    let topic = TestTopic::create(3).await;
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "");
    // Follows, an unfollow and deletes among the posts, so that applying out of order would show.
    for (follower, followee) in [
        ("bob", "alice"),
        ("carol", "alice"),
        ("dave", "alice"),
        ("carol", "erin"),
    ] {
        api.follow(follower, followee).await;
    }
    let mut posts = Vec::new();
    for i in 0..150 {
        let author = ["alice", "erin", "bob"][i % 3];
        let id = api
            .post(author, &format!("post {i}"), Some(&format!("m{i}")))
            .await
            .post_id
            .unwrap();
        posts.push((author, id));
        if i == 60 {
            api.unfollow("dave", "alice").await;
        }
    }
    for (author, post_id) in [&posts[3], &posts[70], &posts[149]] {
        api.delete_post(author, post_id).await;
    }
    let events = 4 + 150 + 1 + 3;
    let mut config = fanout_config(&topic, "unused", "");
    // Small batches, so that the replay is interrupted between many commits.
    config.batch_max_events = 10;
    let for_db = |db: &TestDb| {
        let mut config = config.clone();
        config.database_url = db.url.clone().into();
        config
    };

    let reference = TestDb::create().await;
    let whole = replay_all(
        &for_db(&reference),
        &unique("whole"),
        StartAt::Beginning,
        false,
    )
    .await
    .unwrap();
    assert_eq!(whole.events, events);

    // Killed a third of the way: the task is aborted, so no shutdown path commits anything more.
    let target = TestDb::create().await;
    let group = unique("resumed");
    let (reached, mut third) = tokio::sync::mpsc::unbounded_channel();
    let killed = tokio::spawn({
        let config = for_db(&target);
        let group = group.clone();
        async move {
            replay(
                &config,
                &group,
                StartAt::Beginning,
                false,
                CancellationToken::new(),
                move |done, total| {
                    if done * 3 >= total {
                        let _ = reached.send(done);
                    }
                },
            )
            .await
        }
    });
    third.recv().await.expect("the replay reached a third");
    killed.abort();
    assert!(killed.await.unwrap_err().is_cancelled());
    let (applied,): (i64,) = sqlx::query_as("SELECT count(*) FROM posts")
        .fetch_one(&target.pool)
        .await
        .unwrap();
    assert!(
        applied > 0 && applied < 150,
        "the kill should leave the replay part-way, {applied} posts applied"
    );

    // A replay group is never subscribed, so it has no live members; tansu cannot describe a group
    // with commits (Apache Kafka can), hence the operator's assurance, as on the command line.
    let resumed = replay_all(&for_db(&target), &group, StartAt::Committed, true)
        .await
        .unwrap();
    assert!(resumed
        .ranges
        .iter()
        .all(|r| r.source == OffsetSource::Committed));
    assert!(
        resumed.events > 0 && resumed.events < events,
        "the resumed run continues, it does not start over: {} events",
        resumed.events
    );
    let users = ["alice", "bob", "carol", "dave", "erin"];
    assert_eq!(
        timelines(&target, &users).await,
        timelines(&reference, &users).await
    );

    // A group that never replayed has nothing to resume.
    let never = replay_all(
        &for_db(&target),
        &unique("never"),
        StartAt::Committed,
        false,
    )
    .await;
    assert!(
        matches!(never, Err(ReplayError::NothingToResume { .. })),
        "{never:?}"
    );
    ingest.stop().await;
}

#[tokio::test]
async fn a_replay_never_moves_a_group_past_events_it_has_not_applied() {
    let db = TestDb::create().await;
    let topic = TestTopic::create(2).await;
    let group = unique("fanout");
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "");
    let config = fanout_config(&topic, &group, &db.url);
    let fanout = spawn_fanout(config.clone()).await;
    for i in 0..10 {
        api.post(&format!("early{}", i % 4), "applied", None).await;
    }
    caught_up(&topic, &group).await;
    fanout.stop().await;
    // A backlog the (stopped) workers have not applied yet.
    let mut cut = chrono::Utc::now();
    for i in 0..10 {
        if i == 5 {
            // Not synchronisation points: the cut falls strictly between two records' timestamps.
            tokio::time::sleep(Duration::from_millis(50)).await;
            cut = chrono::Utc::now();
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        api.post(&format!("late{}", i % 4), "backlog", None).await;
    }
    let backlog = |lags: Vec<fanout::lag::PartitionLag>| lags.iter().map(|l| l.lag).sum::<i64>();
    assert_eq!(backlog(group_lag(&topic.name, &group).await), 10);

    // Offsets for no partition: nothing replayed, and the group's commits are left alone.
    let summary = replay_all(&config, &group, StartAt::Offsets(Vec::new()), true)
        .await
        .unwrap();
    assert_eq!(summary.events, 0);
    assert_eq!(
        backlog(group_lag(&topic.name, &group).await),
        10,
        "the replay moved the group past its backlog"
    );

    // From a time inside the backlog: the group is behind that point, so the replay starts at its
    // commit and applies the whole backlog instead of skipping its first half.
    let summary = replay_all(&config, &group, StartAt::TimestampByRecords(cut), true)
        .await
        .unwrap();
    assert_eq!(summary.events, 10, "{:?}", summary.ranges);
    assert!(summary
        .ranges
        .iter()
        .any(|r| r.source == OffsetSource::GroupBehind));
    let (posts,): (i64,) = sqlx::query_as("SELECT count(*) FROM posts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(posts, 20);
    assert_eq!(backlog(group_lag(&topic.name, &group).await), 0);
    ingest.stop().await;
}
