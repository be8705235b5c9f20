//! Large-audience bench: the cost of one post for a 100-follower (push) and a 100,000-follower (pull)
//! author, and feed page latency (p50/p99 over HTTP) with 0, 10 and 100 pull sources.
//!
//! `cargo run --release -p bench --bin fanline-feed-bench`
//! Needs Postgres as `scripts/test.sh` sets it up (FANLINE_TEST_DATABASE_URL); it makes its own database.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use bench::measure::percentile_ms;
use bench::seed::{user, EventLog};
use chrono::Utc;
use clap::Parser;
use fanout::store::Policy;
use harness::{spawn_reader, Api, TestDb};
use schemas::{Envelope, PostCreated, PostId};

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

fn post(author: &str) -> Envelope {
    Envelope::post_created(PostCreated {
        post_id: PostId::generate(),
        author: user(author),
        body: format!("a post by {author}"),
        content: Default::default(),
        message_id: None,
        created_at: Utc::now(),
    })
}

async fn cost_of_one_post(
    db: &TestDb,
    log: &mut EventLog,
    policy: &Policy,
    author: &str,
    followers: usize,
) {
    for i in 0..followers {
        log.follow(&format!("{author}_fan{i}"), author);
    }
    log.apply(&db.pool, policy).await;
    log.push(post(author));
    let started = Instant::now();
    let outcome = log.apply(&db.pool, policy).await;
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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::create().await;
    let mut log = EventLog::default();
    let mut policy = Policy::default();
    cost_of_one_post(&db, &mut log, &policy, "small", 100).await;
    cost_of_one_post(&db, &mut log, &policy, "large", args.large_audience).await;

    // Feeds: each reader follows 50 push-mode authors (20 posts each, pushed into the inbox) and N
    // pull-mode authors (their posts stay in their store timelines).
    // A low threshold from here on keeps seeding quick; pull mode behaves the same at any threshold.
    policy = Policy {
        pull_above: 50,
        push_below: 45,
        follow_backfill: 50,
        ..Policy::default()
    };
    let pull_authors = 100;
    for a in 0..pull_authors {
        let author = format!("celeb{a}");
        // Push the author over the (default) threshold with followers of their own.
        for i in 0..=policy.pull_above as usize {
            log.follow(&format!("{author}_crowd{i}"), &author);
        }
    }
    log.apply(&db.pool, &policy).await;
    for scenario in [0usize, 10, 100] {
        let reader_user = format!("reader{scenario}");
        for a in 0..50 {
            log.follow(&reader_user, &format!("writer{a}"));
        }
        for a in 0..scenario {
            log.follow(&reader_user, &format!("celeb{a}"));
        }
    }
    log.apply(&db.pool, &policy).await;
    for round in 0..args.posts_per_pull_author {
        for a in 0..pull_authors {
            log.push(post(&format!("celeb{a}")));
        }
        if round < 20 {
            for a in 0..50 {
                log.push(post(&format!("writer{a}")));
            }
        }
    }
    log.apply(&db.pool, &policy).await;
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
            percentile_ms(&latencies, 0.5),
            percentile_ms(&latencies, 0.99)
        );
    }
    reader.stop().await;
    Ok(())
}
