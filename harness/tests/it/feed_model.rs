//! Model test of push/pull delivery: random follows, unfollows, posts and deletes, with thresholds so
//! low that authors cross them in both directions all the time. After every few operations each user's
//! feed is walked page by page (random page sizes) and compared with the ground truth: the live posts of
//! the authors they follow and their own, newest first, each exactly once.

use std::collections::{BTreeSet, HashMap};

use chrono::Utc;
use fanout::store::{apply_batch, Policy, SourcedEvent};
use harness::model::walk_feed;
use harness::TestDb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::{Envelope, FollowChange, PostCreated, PostDeleted, PostId, UserId};

const USERS: usize = 8;
const PARTITIONS: i32 = 4;

struct Model {
    follows: BTreeSet<(usize, usize)>,
    /// (post id, author, deleted)
    posts: Vec<(String, usize, bool)>,
}

impl Model {
    fn truth(&self, user: usize) -> Vec<String> {
        let mut ids: Vec<String> = self
            .posts
            .iter()
            .filter(|(_, author, deleted)| {
                !deleted && (*author == user || self.follows.contains(&(user, *author)))
            })
            .map(|(id, _, _)| id.clone())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }
}

fn name(user: usize) -> UserId {
    UserId::parse("user", &format!("u{user}")).unwrap()
}

fn partition_of(key: usize) -> i32 {
    (key as i32) % PARTITIONS
}

async fn run_model(seed: u64, operations: usize) -> (usize, u64) {
    let db = TestDb::create().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let policy = Policy {
        pull_above: 3,
        push_below: 2,
        follow_backfill: 10_000,
        ..Policy::default()
    };
    let mut model = Model {
        follows: BTreeSet::new(),
        posts: Vec::new(),
    };
    let mut offsets: HashMap<i32, i64> = HashMap::new();
    let mut pending: Vec<SourcedEvent> = Vec::new();
    let mut mode_changes = 0;
    let mut checks = 0;
    for op in 0..operations {
        let actor = rng.gen_range(0..USERS);
        let (key, envelope) = match rng.gen_range(0..10) {
            0..=2 => {
                let target = (actor + rng.gen_range(1..USERS)) % USERS;
                model.follows.insert((actor, target));
                let change = FollowChange {
                    follower: name(actor),
                    followee: name(target),
                };
                (target, Envelope::followed(change))
            }
            3..=4 => {
                let target = (actor + rng.gen_range(1..USERS)) % USERS;
                model.follows.remove(&(actor, target));
                let change = FollowChange {
                    follower: name(actor),
                    followee: name(target),
                };
                (target, Envelope::unfollowed(change))
            }
            5..=8 => {
                let post_id = PostId::generate();
                model.posts.push((post_id.to_string(), actor, false));
                let post = PostCreated {
                    post_id,
                    author: name(actor),
                    body: format!("op {op}"),
                    content: Default::default(),
                    message_id: None,
                    created_at: Utc::now(),
                };
                (actor, Envelope::post_created(post))
            }
            _ => {
                let own: Vec<usize> = (0..model.posts.len())
                    .filter(|i| model.posts[*i].1 == actor && !model.posts[*i].2)
                    .collect();
                let Some(&index) = own.get(rng.gen_range(0..own.len().max(1))) else {
                    continue;
                };
                model.posts[index].2 = true;
                let delete = PostDeleted {
                    post_id: PostId::parse("post_id", &model.posts[index].0).unwrap(),
                    author: name(actor),
                };
                (actor, Envelope::post_deleted(delete))
            }
        };
        let partition = partition_of(key);
        let offset = offsets.entry(partition).or_insert(0);
        pending.push(SourcedEvent {
            partition,
            offset: *offset,
            envelope,
        });
        *offset += 1;
        // Batches of random size, so that transitions fall inside batches as well as between them.
        if pending.len() >= rng.gen_range(1..12) {
            let outcome = apply_batch(&db.pool, &policy, &pending).await.unwrap();
            mode_changes += outcome.mode_changes;
            pending.clear();
        }
        if op % 40 == 39 {
            if !pending.is_empty() {
                mode_changes += apply_batch(&db.pool, &policy, &pending)
                    .await
                    .unwrap()
                    .mode_changes;
                pending.clear();
            }
            for user in 0..USERS {
                let feed = walk_feed(&db, &format!("u{user}"), &mut rng).await;
                assert_eq!(
                    feed,
                    model.truth(user),
                    "seed {seed}, after op {op}, feed of u{user}"
                );
                checks += 1;
            }
        }
    }
    (checks, mode_changes)
}

#[tokio::test]
async fn feeds_match_the_model_through_random_threshold_crossings() {
    let mut total_changes = 0;
    for seed in 1..=3 {
        let (checks, mode_changes) = run_model(seed, 400).await;
        assert_eq!(checks, 10 * USERS);
        total_changes += mode_changes;
    }
    println!("model test: 3 seeds x 400 operations over {USERS} users, {} feed walks, {total_changes} mode changes", 3 * 10 * USERS);
    // The test only means something if authors really crossed the thresholds, both ways.
    assert!(total_changes >= 10, "only {total_changes} mode changes");
}
