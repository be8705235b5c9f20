//! The Postgres side of fanout, driven directly: ordering, idempotence and the sync-scan invariant
//! under concurrent writers.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use chrono::Utc;
use fanout::store::{apply_batch, Policy, SourcedEvent};
use harness::TestDb;
use schemas::{Envelope, FollowChange, PostCreated, PostDeleted, PostId, UserId};

fn user(name: &str) -> UserId {
    UserId::parse("user", name).unwrap()
}

fn post(author: &str, message_id: Option<&str>) -> Envelope {
    Envelope::post_created(PostCreated {
        post_id: PostId::generate(),
        author: user(author),
        body: format!("by {author}"),
        content: Default::default(),
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
    // Without backfill, only the order of events decides who gets a post.
    let policy = Policy {
        follow_backfill: 0,
        ..Policy::default()
    };
    let before = post("alice", None);
    let after = post("alice", None);
    let events = vec![
        at(0, 0, before.clone()),
        at(0, 1, follow("bob", "alice")),
        at(0, 2, after.clone()),
        at(0, 3, post("carol", None)),
    ];
    let outcome = apply_batch(&db.pool, &policy, &events).await.unwrap();
    assert_eq!(outcome.posts_created, 3);
    assert_eq!(outcome.sync_entries_own, 3, "every author's own devices");
    assert_eq!(
        outcome.sync_entries_pushed, 1,
        "bob only gets the post written while he followed"
    );
    let bob: Vec<String> = inbox(&db, "bob").await.into_iter().map(|e| e.1).collect();
    assert_eq!(bob, vec![post_id(&after)]);
    let alice = inbox(&db, "alice").await;
    assert_eq!(alice.len(), 2);
    assert!(
        alice.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 < w[1].1),
        "seq follows post order"
    );
}

fn post_id(envelope: &Envelope) -> String {
    match &envelope.event {
        schemas::Event::PostCreated(p) => p.post_id.to_string(),
        _ => unreachable!(),
    }
}

#[tokio::test]
async fn a_follow_backfills_recent_posts_and_an_unfollow_removes_them() {
    let db = TestDb::create().await;
    let policy = Policy {
        follow_backfill: 3,
        ..Policy::default()
    };
    let posts: Vec<Envelope> = (0..5).map(|_| post("alice", None)).collect();
    let mut events: Vec<SourcedEvent> = posts
        .iter()
        .cloned()
        .enumerate()
        .map(|(i, p)| at(0, i as i64, p))
        .collect();
    events.push(at(0, 5, follow("bob", "alice")));
    let outcome = apply_batch(&db.pool, &policy, &events).await.unwrap();
    assert_eq!(outcome.sync_entries_backfilled, 3);
    let bob: Vec<String> = inbox(&db, "bob").await.into_iter().map(|e| e.1).collect();
    let newest: Vec<String> = posts[2..].iter().map(post_id).collect();
    assert_eq!(bob, newest, "the 3 most recent, oldest first in seq order");
    // Replayed: nothing more.
    let again = apply_batch(&db.pool, &policy, &events).await.unwrap();
    assert_eq!(again.sync_entries_backfilled, 0);

    let outcome = apply_batch(&db.pool, &policy, &[at(0, 6, unfollow("bob", "alice"))])
        .await
        .unwrap();
    assert_eq!(outcome.sync_entries_removed, 3);
    assert!(inbox(&db, "bob").await.is_empty());
    let replayed = apply_batch(&db.pool, &policy, &[at(0, 5, follow("bob", "alice"))])
        .await
        .unwrap();
    assert_eq!(replayed.follow_changes_stale, 1);
    assert!(
        inbox(&db, "bob").await.is_empty(),
        "a replayed follow does not backfill again"
    );
}

#[tokio::test]
async fn an_author_above_the_threshold_costs_constant_writes_per_post() {
    let db = TestDb::create().await;
    let policy = Policy {
        pull_above: 20,
        push_below: 15,
        follow_backfill: 0,
        // No active audience: a pull-mode post is its two rows (the bound: the next test).
        active_audience_max: 0,
        ..Policy::default()
    };
    let followers: Vec<SourcedEvent> = (0..25)
        .map(|i| at(0, i, follow(&format!("fan{i}"), "star")))
        .collect();
    let outcome = apply_batch(&db.pool, &policy, &followers).await.unwrap();
    assert_eq!(outcome.mode_changes, 1);
    let outcome = apply_batch(&db.pool, &policy, &[at(0, 25, post("star", None))])
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.posts_pulled,
            outcome.sync_entries_own,
            outcome.sync_entries_pushed
        ),
        (1, 1, 0)
    );
    let (mode,): (String,) = sqlx::query_as("SELECT delivery_mode FROM posts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    assert_eq!(mode, "pull");
    // Every follower still sees it, merged in from the store timeline.
    for fan in ["fan0", "fan24"] {
        let feed = reader::queries::feed(&db.reads, fan, None, 10)
            .await
            .unwrap()
            .entries;
        assert_eq!(feed.len(), 1, "{fan}");
    }
    // Down to 16 followers (between the thresholds): still pull. Down to 14: push again.
    let unfollows: Vec<SourcedEvent> = (0..9)
        .map(|i| at(0, 26 + i, unfollow(&format!("fan{i}"), "star")))
        .collect();
    assert_eq!(
        apply_batch(&db.pool, &policy, &unfollows)
            .await
            .unwrap()
            .mode_changes,
        0
    );
    let more: Vec<SourcedEvent> = (9..11)
        .map(|i| at(0, 26 + i, unfollow(&format!("fan{i}"), "star")))
        .collect();
    assert_eq!(
        apply_batch(&db.pool, &policy, &more)
            .await
            .unwrap()
            .mode_changes,
        1
    );
    let outcome = apply_batch(&db.pool, &policy, &[at(0, 40, post("star", None))])
        .await
        .unwrap();
    assert_eq!((outcome.posts_pulled, outcome.sync_entries_pushed), (0, 14));
    // fan24 kept following throughout: both posts, once each.
    assert_eq!(
        reader::queries::feed(&db.reads, "fan24", None, 10)
            .await
            .unwrap()
            .entries
            .len(),
        2
    );
}

#[tokio::test]
async fn a_pull_mode_post_reaches_its_first_active_followers() {
    let db = TestDb::create().await;
    let policy = Policy {
        pull_above: 20,
        push_below: 15,
        follow_backfill: 0,
        active_audience_max: 10,
        ..Policy::default()
    };
    let then = Utc::now() - chrono::TimeDelta::days(30);
    let mut events: Vec<SourcedEvent> = (0..25)
        .map(|i| at(0, i, follow(&format!("fan{i:02}"), "star")))
        .collect();
    // fan00, fan02, …, fan08 were active a month ago and went dormant.
    for (n, i) in (0..10).step_by(2).enumerate() {
        let fan = user(&format!("fan{i:02}"));
        let active = schemas::UserActive {
            user: fan.clone(),
            at: then,
        };
        let dormant = schemas::UserDormant {
            user: fan,
            last_active_at: then,
        };
        events.push(at(1, 2 * n as i64, Envelope::user_active(active)));
        events.push(at(1, 2 * n as i64 + 1, Envelope::user_dormant(dormant)));
    }
    apply_batch(&db.pool, &policy, &events).await.unwrap();
    let outcome = apply_batch(&db.pool, &policy, &[at(0, 25, post("star", None))])
        .await
        .unwrap();
    assert_eq!(
        (
            outcome.posts_pulled,
            outcome.sync_entries_own,
            outcome.sync_entries_pushed
        ),
        (1, 1, 10),
        "the author's own entry and M = 10 followers'"
    );
    let got: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM sync_entries WHERE user_id <> 'star' ORDER BY user_id")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    let got: Vec<String> = got.into_iter().map(|(u,)| u).collect();
    // The first ten by id among the active: the dormant ones are skipped.
    let expected: Vec<String> = [1, 3, 5, 7, 9, 10, 11, 12, 13, 14]
        .iter()
        .map(|i| format!("fan{i:02}"))
        .collect();
    assert_eq!(got, expected);
    // Everyone has it in their feed, dormant or beyond the bound.
    for fan in ["fan00", "fan24"] {
        let feed = reader::queries::feed(&db.reads, fan, None, 10)
            .await
            .unwrap();
        assert_eq!(feed.entries.len(), 1, "{fan}");
    }
}

#[tokio::test]
async fn another_authors_delete_before_the_create_suppresses_nothing() {
    // Issue 19's attack: mallory deletes ids she guesses for alice's posts before fanout applies
    // them (her delete is on her own partition, so it can come first). The post must appear, and
    // mallory's own post of that id, were she to send one, stays hers to delete.
    let db = TestDb::create().await;
    let policy = Policy::default();
    let victim = post("alice", Some("v1"));
    let guessed = PostId::parse("post_id", &post_id(&victim)).unwrap();
    let attack = Envelope::post_deleted(PostDeleted {
        post_id: guessed,
        author: user("mallory"),
    });
    apply_batch(
        &db.pool,
        &policy,
        &[at(0, 0, follow("bob", "alice")), at(1, 0, attack)],
    )
    .await
    .unwrap();
    let outcome = apply_batch(&db.pool, &policy, &[at(0, 1, victim)])
        .await
        .unwrap();
    assert_eq!(outcome.posts_created, 1);
    let feed = reader::queries::feed(&db.reads, "bob", None, 10)
        .await
        .unwrap();
    assert_eq!(feed.entries.len(), 1, "alice's post reached bob");
    let (tombstones,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM post_tombstones WHERE author = 'mallory'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(tombstones, 1, "the tombstone is mallory's");
}

#[tokio::test]
async fn a_delete_removes_the_post_everywhere_and_survives_a_late_create() {
    let db = TestDb::create().await;
    let policy = Policy::default();
    let created = post("alice", Some("m1"));
    let retried = post("alice", Some("m1"));
    apply_batch(
        &db.pool,
        &policy,
        &[
            at(0, 0, follow("bob", "alice")),
            at(0, 1, created.clone()),
            at(0, 2, retried.clone()),
        ],
    )
    .await
    .unwrap();
    // Deleting by the retried duplicate's id deletes the post that was kept.
    let delete = Envelope::post_deleted(PostDeleted {
        post_id: PostId::parse("post_id", &post_id(&retried)).unwrap(),
        author: user("alice"),
    });
    let outcome = apply_batch(&db.pool, &policy, &[at(0, 3, delete)])
        .await
        .unwrap();
    assert_eq!(outcome.posts_deleted, 1);
    for who in ["alice", "bob"] {
        assert!(reader::queries::feed(&db.reads, who, None, 10)
            .await
            .unwrap()
            .entries
            .is_empty());
        let scan = reader::queries::sync(&db.pool, who, 0, 10).await.unwrap();
        assert!(scan.entries.is_empty());
        assert!(
            scan.last_scanned_seq.is_some(),
            "the device still moves past the deleted entry"
        );
    }
    assert!(
        reader::queries::store_timeline(&db.reads, "alice", None, 10)
            .await
            .unwrap()
            .entries
            .is_empty()
    );
    // A late redelivery of the create does not bring it back.
    apply_batch(&db.pool, &policy, &[at(0, 1, created.clone())])
        .await
        .unwrap();
    assert!(reader::queries::feed(&db.reads, "bob", None, 10)
        .await
        .unwrap()
        .entries
        .is_empty());

    // A delete consumed before its create leaves a tombstone that wins.
    let orphan = post("alice", None);
    let early_delete = Envelope::post_deleted(PostDeleted {
        post_id: PostId::parse("post_id", &post_id(&orphan)).unwrap(),
        author: user("alice"),
    });
    apply_batch(
        &db.pool,
        &policy,
        &[at(1, 0, early_delete), at(1, 1, orphan)],
    )
    .await
    .unwrap();
    assert!(reader::queries::feed(&db.reads, "bob", None, 10)
        .await
        .unwrap()
        .entries
        .is_empty());
    // Someone else's delete is ignored.
    let mine = post("alice", None);
    let theirs = Envelope::post_deleted(PostDeleted {
        post_id: PostId::parse("post_id", &post_id(&mine)).unwrap(),
        author: user("mallory"),
    });
    apply_batch(&db.pool, &policy, &[at(0, 4, mine), at(2, 0, theirs)])
        .await
        .unwrap();
    assert_eq!(
        reader::queries::feed(&db.reads, "bob", None, 10)
            .await
            .unwrap()
            .entries
            .len(),
        1
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
    apply_batch(&db.pool, &Policy::default(), &events)
        .await
        .unwrap();
    let first = db.snapshot().await;
    // Redelivered whole, in pieces, and in a different batching: no row and no seq changes.
    let again = apply_batch(&db.pool, &Policy::default(), &events)
        .await
        .unwrap();
    assert_eq!(again.posts_created, 0);
    assert_eq!(again.sync_entries_pushed, 0);
    assert_eq!(again.follow_changes_applied, 0);
    for event in &events {
        apply_batch(&db.pool, &Policy::default(), std::slice::from_ref(event))
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
        &Policy::default(),
        &[
            at(2, 10, follow("bob", "alice")),
            at(2, 11, unfollow("bob", "alice")),
        ],
    )
    .await
    .unwrap();
    let stale = apply_batch(
        &db.pool,
        &Policy::default(),
        &[at(2, 10, follow("bob", "alice"))],
    )
    .await
    .unwrap();
    assert_eq!(stale.follow_changes_stale, 1);
    apply_batch(
        &db.pool,
        &Policy::default(),
        &[at(2, 12, post("alice", None))],
    )
    .await
    .unwrap();
    assert!(inbox(&db, "bob").await.is_empty());
    // A newer follow does apply.
    apply_batch(
        &db.pool,
        &Policy::default(),
        &[
            at(2, 13, follow("bob", "alice")),
            at(2, 14, post("alice", None)),
        ],
    )
    .await
    .unwrap();
    // The new follow backfills the post written while bob did not follow; the new one is pushed.
    assert_eq!(inbox(&db, "bob").await.len(), 2);
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
        &Policy::default(),
        &[
            at(0, 0, follow("bob", "alice")),
            at(0, 1, first.clone()),
            at(0, 2, retry.clone()),
        ],
    )
    .await
    .unwrap();
    assert_eq!((outcome.posts_created, outcome.posts_duplicate), (1, 1));
    apply_batch(
        &db.pool,
        &Policy::default(),
        &[at(0, 3, later_retry.clone())],
    )
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
    assert_eq!(
        posts[0].0,
        post_id(&first),
        "the first copy in Kafka order is kept"
    );
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
    apply_batch(&db.pool, &Policy::default(), &follows)
        .await
        .unwrap();

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
                for entry in &page.entries {
                    assert!(entry.seq > last_seq, "seq went backwards for {reader}");
                    last_seq = entry.seq;
                    seen.push((entry.seq, entry.post_id.clone().unwrap_or_default()));
                }
                if finished && page.entries.is_empty() && !page.has_more {
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
                apply_batch(&pool, &Policy::default(), &batch)
                    .await
                    .unwrap();
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

/// What a user can observe of a database: posts, follow graph, authors' modes, each user's inbox in
/// seq order (seq values themselves aside), and how many seqs were drawn.
async fn observable(db: &TestDb, users: &[&str]) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for query in [
        "SELECT post_id || '|' || author || '|' || body || '|' || delivery_mode || '|' || (deleted_at IS NULL)::text FROM posts ORDER BY post_id",
        "SELECT alias_post_id || '>' || post_id FROM post_aliases ORDER BY 1",
        "SELECT followee || '<' || follower || '|' || active::text FROM follows ORDER BY 1",
        "SELECT author || '|' || follower_count || '|' || mode FROM authors ORDER BY 1",
        "SELECT count(*)::text FROM sync_entries",
    ] {
        let part: Vec<(String,)> = sqlx::query_as(query).fetch_all(&db.pool).await.unwrap();
        rows.extend(part.into_iter().map(|(row,)| row));
    }
    for user in users {
        let entries: Vec<String> = inbox(db, user)
            .await
            .into_iter()
            .map(|(_, post_id, _)| post_id)
            .collect();
        rows.push(format!("inbox {user}: {}", entries.join(",")));
    }
    rows
}

/// ingest's producer is not idempotent (see kafkakit): a retried send may store an event twice, right
/// after itself. Every such duplicate must change nothing a user can see.
#[tokio::test]
async fn a_record_stored_twice_right_after_itself_changes_nothing() {
    let original = post("alice", Some("m1"));
    // The client retried after a 503: same message id, a new post id from stateless ingest.
    let retried_copy = post("alice", Some("m1"));
    let deleted = post("alice", None);
    let delete = Envelope::post_deleted(PostDeleted {
        post_id: match &deleted.event {
            schemas::Event::PostCreated(p) => p.post_id.clone(),
            _ => unreachable!(),
        },
        author: user("alice"),
    });
    let history = vec![
        follow("bob", "alice"),
        follow("carol", "alice"),
        original,
        post("bob", None),
        deleted,
        retried_copy,
        unfollow("carol", "alice"),
        delete,
        post("alice", None),
        follow("carol", "alice"),
        post("alice", None),
    ];
    let users = ["alice", "bob", "carol"];
    let policy = Policy {
        pull_above: 1,
        push_below: 1,
        ..Policy::default()
    };
    let once = TestDb::create().await;
    let events: Vec<SourcedEvent> = history
        .iter()
        .enumerate()
        .map(|(i, e)| at(0, i as i64, e.clone()))
        .collect();
    for event in &events {
        apply_batch(&once.pool, &policy, std::slice::from_ref(event))
            .await
            .unwrap();
    }
    // Every record twice, at consecutive offsets, in batches that split some pairs and not others.
    let twice = TestDb::create().await;
    let doubled: Vec<SourcedEvent> = history
        .iter()
        .flat_map(|e| [e.clone(), e.clone()])
        .enumerate()
        .map(|(i, e)| at(0, i as i64, e))
        .collect();
    for batch in doubled.chunks(3) {
        apply_batch(&twice.pool, &policy, batch).await.unwrap();
    }
    assert_eq!(
        observable(&twice, &users).await,
        observable(&once, &users).await
    );
}
