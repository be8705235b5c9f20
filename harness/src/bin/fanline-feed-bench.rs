//! Large-audience bench: the cost of one post for a 100-follower (push) and a 100,000-follower (pull)
//! author, and feed page latency (p50/p99 over HTTP) with 0, 10 and 100 pull sources.
//!
//! `cargo run --release -p harness --bin fanline-feed-bench`
//! Needs Postgres as `scripts/test.sh` sets it up (FANLINE_TEST_DATABASE_URL); it makes its own database.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use chrono::Utc;
use clap::Parser;
use fanout::store::{apply_batch, ApplyOutcome, Policy, SourcedEvent};
use harness::{spawn_reader, Api, TestDb};
use schemas::{Envelope, FollowChange, PostCreated, PostId, UserId};

#[derive(Parser)]
#[command(
    about = "Measures rows per post by audience size and merged-feed latency by pull sources"
)]
struct Args {
    /// Followers of the large author.
    #[arg(long, default_value_t = 100_000)]
    large_audience: usize,
    /// Feed requests per scenario.
    #[arg(long, default_value_t = 400)]
    requests: usize,
    /// Posts of each pull-mode author.
    #[arg(long, default_value_t = 200)]
    posts_per_pull_author: usize,
}

fn user(name: &str) -> UserId {
    UserId::parse("user", name).unwrap()
}

struct Seeder {
    offset: i64,
    pending: Vec<SourcedEvent>,
    policy: Policy,
}

impl Seeder {
    fn push(&mut self, envelope: Envelope) {
        self.pending.push(SourcedEvent {
            partition: 0,
            offset: self.offset,
            envelope,
        });
        self.offset += 1;
    }

    fn follow(&mut self, follower: &str, followee: &str) {
        self.push(Envelope::followed(FollowChange {
            follower: user(follower),
            followee: user(followee),
        }));
    }

    fn post(&mut self, author: &str) {
        self.push(Envelope::post_created(PostCreated {
            post_id: PostId::generate(),
            author: user(author),
            body: format!("a post by {author}"),
            message_id: None,
            created_at: Utc::now(),
        }));
    }

    async fn flush(&mut self, db: &TestDb) -> ApplyOutcome {
        let mut total = ApplyOutcome::default();
        for chunk in self.pending.chunks(5000) {
            let outcome = apply_batch(&db.pool, &self.policy, chunk).await.unwrap();
            total.posts_created += outcome.posts_created;
            total.sync_entries_pushed += outcome.sync_entries_pushed;
            total.sync_entries_own += outcome.sync_entries_own;
        }
        self.pending.clear();
        total
    }
}

async fn cost_of_one_post(db: &TestDb, seeder: &mut Seeder, author: &str, followers: usize) {
    for i in 0..followers {
        seeder.follow(&format!("{author}_fan{i}"), author);
    }
    seeder.flush(db).await;
    seeder.post(author);
    let started = Instant::now();
    let outcome = seeder.flush(db).await;
    let elapsed = started.elapsed();
    let (mode,): (String,) = sqlx::query_as("SELECT mode FROM authors WHERE author = $1")
        .bind(author)
        .fetch_one(&db.pool)
        .await
        .unwrap();
    println!(
        "cost:    author with {followers:>6} followers ({mode} mode): 1 post row + {} sync rows ({} own, {} followers) = {} rows, applied in {:.1} ms",
        outcome.sync_entries_own + outcome.sync_entries_pushed,
        outcome.sync_entries_own,
        outcome.sync_entries_pushed,
        1 + outcome.sync_entries_own + outcome.sync_entries_pushed,
        elapsed.as_secs_f64() * 1000.0
    );
}

fn percentile(sorted: &[Duration], p: f64) -> f64 {
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index].as_secs_f64() * 1000.0
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::create().await;
    let mut seeder = Seeder {
        offset: 0,
        pending: Vec::new(),
        policy: Policy::default(),
    };
    cost_of_one_post(&db, &mut seeder, "small", 100).await;
    cost_of_one_post(&db, &mut seeder, "large", args.large_audience).await;

    // Feeds: each reader follows 50 push-mode authors (20 posts each, pushed into the inbox) and N
    // pull-mode authors (their posts stay in their store timelines).
    // A low threshold from here on keeps seeding quick; pull mode behaves the same at any threshold.
    seeder.policy = Policy {
        pull_above: 50,
        push_below: 45,
        follow_backfill: 50,
        ..Policy::default()
    };
    let pull_authors = 100;
    for a in 0..pull_authors {
        let author = format!("celeb{a}");
        // Push the author over the (default) threshold with followers of their own.
        for i in 0..=seeder.policy.pull_above as usize {
            seeder.follow(&format!("{author}_crowd{i}"), &author);
        }
    }
    seeder.flush(&db).await;
    for scenario in [0usize, 10, 100] {
        let reader_user = format!("reader{scenario}");
        for a in 0..50 {
            seeder.follow(&reader_user, &format!("writer{a}"));
        }
        for a in 0..scenario {
            seeder.follow(&reader_user, &format!("celeb{a}"));
        }
    }
    seeder.flush(&db).await;
    for round in 0..args.posts_per_pull_author {
        for a in 0..pull_authors {
            seeder.post(&format!("celeb{a}"));
        }
        if round < 20 {
            for a in 0..50 {
                seeder.post(&format!("writer{a}"));
            }
        }
    }
    seeder.flush(&db).await;
    sqlx::query("ANALYZE").execute(&db.pool).await?;

    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url(""));
    for scenario in [0usize, 10, 100] {
        let reader_user = format!("reader{scenario}");
        // A cursor ten pages deep, so that half of the requests page into history.
        let mut cursor = None;
        for _ in 0..10 {
            cursor = api
                .feed_page(&reader_user, 20, cursor.as_deref())
                .await
                .next_cursor;
        }
        let mut latencies = Vec::with_capacity(args.requests);
        for i in 0..args.requests {
            let page_cursor = if i % 2 == 0 { None } else { cursor.as_deref() };
            let started = Instant::now();
            let page = api.feed_page(&reader_user, 20, page_cursor).await;
            latencies.push(started.elapsed());
            assert_eq!(page.entries.len(), 20);
        }
        latencies.sort_unstable();
        println!(
            "feed:    {scenario:>3} pull sources + 50 push authors, limit 20, {} requests (half first page, half 10 pages deep): p50 {:.2} ms, p99 {:.2} ms",
            args.requests,
            percentile(&latencies, 0.5),
            percentile(&latencies, 0.99)
        );
    }
    reader.stop().await;
    Ok(())
}
