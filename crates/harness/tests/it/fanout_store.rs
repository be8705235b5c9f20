//! The Postgres side of fanout, driven directly: ordering, idempotence and the sync-scan invariant
//! under concurrent writers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;
use fanout::store::{apply_batch, SourcedEvent};
use harness::TestDb;
use schemas::{Envelope, FollowChange, PostCreated, PostId, UserId};

fn user(name: &str) -> UserId {
    UserId::parse("user", name).unwrap()
}

fn post(author: &str, message_id: Option<&str>) -> Envelope {
    Envelope::post_created(PostCreated {
        post_id: PostId::generate(),
        author: user(author),
        body: format!("by {author}"),
        message_id: message_id.map(str::to_owned),
        created_at: Utc::now(),
    })
}

fn follow(follower: &str, followee: &str) -> Envelope {
    Envelope::followed(FollowChange {
        follower: user(follower),
        followee: user(followee),
    })
}

fn unfollow(follower: &str, followee: &str) -> Envelope {
    Envelope::unfollowed(FollowChange {
        follower: user(follower),
        followee: user(followee),
    })
}

fn at(partition: i32, offset: i64, envelope: Envelope) -> SourcedEvent {
    SourcedEvent {
        partition,
        offset,
        envelope,
    }
}

async fn inbox(db: &TestDb, user: &str) -> Vec<(i64, String, String)> {
    sqlx::query_as("SELECT seq, post_id, author FROM sync_entries WHERE user_id = $1 ORDER BY seq")
        .bind(user)
        .fetch_all(&db.pool)
        .await
        .unwrap()
}

#[tokio::test]
async fn a_post_reaches_the_followers_its_author_had_when_it_was_written() {
    let db = TestDb::create().await;
    let before = post("alice", None);
    let after = post("alice", None);
    let events = vec![
        at(0, 0, before.clone()),
        at(0, 1, follow("bob", "alice")),
        at(0, 2, after.clone()),
        at(0, 3, unfollow("bob", "alice")),
        at(0, 4, post("alice", None)),
    ];
    let outcome = apply_batch(&db.pool, &events).await.unwrap();
    assert_eq!(outcome.posts_created, 3);
    // alice's own devices get all three; bob only the one written while he followed.
    assert_eq!(outcome.sync_entries_pushed, 4);
    let bob: Vec<String> = inbox(&db, "bob").await.into_iter().map(|e| e.1).collect();
    let after_id = match &after.event {
        schemas::Event::PostCreated(p) => p.post_id.to_string(),
        _ => unreachable!(),
    };
    assert_eq!(bob, vec![after_id]);
    let alice = inbox(&db, "alice").await;
    assert_eq!(alice.len(), 3);
    assert!(
        alice.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "seq follows post order"
    );
}

#[tokio::test]
async fn applying_a_batch_again_changes_nothing() {
    let db = TestDb::create().await;
    let events = vec![
        at(0, 0, follow("bob", "alice")),
        at(0, 1, follow("carol", "alice")),
        at(0, 2, post("alice", Some("m1"))),
        at(0, 3, post("alice", None)),
        at(0, 4, unfollow("carol", "alice")),
        at(0, 5, post("alice", None)),
    ];
    apply_batch(&db.pool, &events).await.unwrap();
    let first = db.snapshot().await;
    // Redelivered whole, in pieces, and in a different batching: no row and no seq changes.
    let again = apply_batch(&db.pool, &events).await.unwrap();
    assert_eq!(again.posts_created, 0);
    assert_eq!(again.sync_entries_pushed, 0);
    assert_eq!(again.follow_changes_applied, 0);
    for event in &events {
        apply_batch(&db.pool, std::slice::from_ref(event))
            .await
            .unwrap();
    }
    assert_eq!(db.snapshot().await, first);
}

#[tokio::test]
async fn an_old_follow_replayed_after_an_unfollow_does_not_revive_the_edge() {
    let db = TestDb::create().await;
    apply_batch(
        &db.pool,
        &[
            at(2, 10, follow("bob", "alice")),
            at(2, 11, unfollow("bob", "alice")),
        ],
    )
    .await
    .unwrap();
    let stale = apply_batch(&db.pool, &[at(2, 10, follow("bob", "alice"))])
        .await
        .unwrap();
    assert_eq!(stale.follow_changes_stale, 1);
    apply_batch(&db.pool, &[at(2, 12, post("alice", None))])
        .await
        .unwrap();
    assert!(inbox(&db, "bob").await.is_empty());
    // A newer follow does apply.
    apply_batch(
        &db.pool,
        &[
            at(2, 13, follow("bob", "alice")),
            at(2, 14, post("alice", None)),
        ],
    )
    .await
    .unwrap();
    assert_eq!(inbox(&db, "bob").await.len(), 1);
}

#[tokio::test]
async fn a_retried_request_is_one_post_and_its_other_id_resolves_to_it() {
    let db = TestDb::create().await;
    let first = post("alice", Some("client-42"));
    let retry = post("alice", Some("client-42"));
    let later_retry = post("alice", Some("client-42"));
    // The first two land in one batch, the third in another.
    let outcome = apply_batch(
        &db.pool,
        &[
            at(0, 0, follow("bob", "alice")),
            at(0, 1, first.clone()),
            at(0, 2, retry.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!((outcome.posts_created, outcome.posts_duplicate), (1, 1));
    apply_batch(&db.pool, &[at(0, 3, later_retry.clone())])
        .await
        .unwrap();
    let posts: Vec<(String,)> = sqlx::query_as("SELECT post_id FROM posts")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    assert_eq!(posts.len(), 1);
    assert_eq!(inbox(&db, "bob").await.len(), 1);
    let aliases: Vec<(String, String)> =
        sqlx::query_as("SELECT alias_post_id, post_id FROM post_aliases ORDER BY 1")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    assert_eq!(aliases.len(), 2);
    assert!(aliases.iter().all(|(_, kept)| *kept == posts[0].0));
}

/// The sync invariant: a device polling `after=last_seq` while many writers commit concurrently receives
/// every entry of its user exactly once, in increasing seq order. A design that assigned seqs outside
/// commit order would let a poller jump past a seq that commits later, and this test would see the gap.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_polling_device_misses_nothing_while_writers_commit_concurrently() {
    let db = TestDb::create().await;
    let readers: Vec<String> = (0..6).map(|i| format!("reader{i}")).collect();
    let authors: Vec<String> = (0..12).map(|i| format!("author{i}")).collect();
    // Overlapping audiences: every reader follows half of the authors.
    let mut follows = Vec::new();
    for (r, reader) in readers.iter().enumerate() {
        for (a, author) in authors.iter().enumerate() {
            if (r + a) % 2 == 0 {
                follows.push(at(0, follows.len() as i64, follow(reader, author)));
            }
        }
    }
    apply_batch(&db.pool, &follows).await.unwrap();

    let writers_done = Arc::new(AtomicBool::new(false));
    let mut pollers = Vec::new();
    for reader in readers.clone() {
        let pool = db.pool.clone();
        let done = writers_done.clone();
        pollers.push(tokio::spawn(async move {
            let mut seen: Vec<(i64, String)> = Vec::new();
            let mut last_seq = 0;
            loop {
                // Read the flag before polling: a poll that starts after the writers finished sees all.
                let finished = done.load(Ordering::Acquire);
                let page = reader::queries::sync(&pool, &reader, last_seq, 50)
                    .await
                    .unwrap();
                for entry in &page {
                    assert!(entry.seq > last_seq, "seq went backwards for {reader}");
                    last_seq = entry.seq;
                    seen.push((entry.seq, entry.post_id.clone()));
                }
                if finished && page.is_empty() {
                    return (reader, seen);
                }
            }
        }));
    }

    let mut writers = Vec::new();
    for w in 0..4usize {
        let pool = db.pool.clone();
        let authors = authors.clone();
        writers.push(tokio::spawn(async move {
            for round in 0..40usize {
                let batch: Vec<SourcedEvent> = (0..5)
                    .map(|i| {
                        let author = &authors[(w * 3 + round + i) % authors.len()];
                        at(w as i32 + 1, (round * 5 + i) as i64, post(author, None))
                    })
                    .collect();
                apply_batch(&pool, &batch).await.unwrap();
            }
        }));
    }
    for writer in writers {
        writer.await.unwrap();
    }
    writers_done.store(true, Ordering::Release);

    let mut expected: HashMap<String, BTreeMap<i64, String>> = HashMap::new();
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT user_id, seq, post_id FROM sync_entries")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    for (user, seq, post_id) in rows {
        expected.entry(user).or_default().insert(seq, post_id);
    }
    for poller in pollers {
        let (reader, seen) = poller.await.unwrap();
        let want: Vec<(i64, String)> = expected
            .remove(&reader)
            .unwrap_or_default()
            .into_iter()
            .collect();
        assert_eq!(
            seen.len(),
            want.len(),
            "{reader} saw a different number of entries"
        );
        assert_eq!(seen, want, "{reader} missed or repeated entries");
        let distinct: BTreeSet<&String> = seen.iter().map(|(_, id)| id).collect();
        assert_eq!(distinct.len(), seen.len());
        // Every reader follows 6 authors; 800 posts over 12 authors evenly: 400 posts reach each reader.
        assert!(
            seen.len() >= 300,
            "{reader} saw only {} entries",
            seen.len()
        );
    }
}
