//! 1 + M bench (docs/design.md "1 + M"), on this machine's Postgres and broker, ratios against the
//! alternatives measured in the same run:
//! - a post by an author with 1,000,000 followers of whom 1% are active: rows written and apply time with
//!   M = 10,000 against pull without M (2 rows) and push to everyone (1,000,002 rows); then, through the
//!   whole pipeline, the time from ingest's `202` to the socket of the active follower with the greatest id;
//! - a day of synthetic traffic on a follow graph where 10% of the users are active: fan-out rows and the
//!   size of `sync_entries` against all-push;
//! - returning users following 500 authors after 30 dormant days: time from their first feed request to
//!   the complete first page (the reader waits for fanout's return), p50/p99, against a feed page of an
//!   active user.
//!
//! `cargo run --release -p bench --bin fanline-activity-bench` (about 5 minutes at the defaults).
//! Needs the broker and Postgres of `scripts/test.sh` (FANLINE_TEST_BROKERS, FANLINE_TEST_DATABASE_URL).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bench::measure::percentile_ms;
use bench::seed::{count, user, EventLog};
use chrono::{TimeDelta, Utc};
use clap::Parser;
use fanout::store::{apply_batch, Policy};
use harness::stack::Stack;
use harness::ws::{Received, WsClient};
use harness::TestDb;
use schemas::realtime::ServerFrame;
use schemas::{Envelope, PostCreated, PostId};
use sqlx::PgPool;

#[derive(Parser)]
#[command(about = "Measures 1 + M delivery: big audiences, a day of traffic, returning users")]
struct Args {
    /// Followers of the big author.
    #[arg(long, default_value_t = 1_000_000)]
    followers: i64,
    /// Users of the synthetic day.
    #[arg(long, default_value_t = 10_000)]
    users: i64,
    /// Follows per user in the synthetic day.
    #[arg(long, default_value_t = 50)]
    follows_per_user: i64,
    /// Posts in the synthetic day.
    #[arg(long, default_value_t = 10_000)]
    posts: usize,
    /// Returning users measured.
    #[arg(long, default_value_t = 40)]
    returning: usize,
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

/// Rows one post writes (its row and its inbox entries) and the time to apply it.
async fn one_post(pool: &PgPool, policy: &Policy, log: &mut EventLog, author: &str) -> (u64, f64) {
    let event = log.at(post(author));
    let started = Instant::now();
    let outcome = apply_batch(pool, policy, &[event]).await.unwrap();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    (
        1 + outcome.sync_entries_own + outcome.sync_entries_pushed,
        ms,
    )
}

/// `followers` follow `author`, every hundredth active, written straight into the tables.
async fn seed_audience(pool: &PgPool, author: &str, followers: i64) {
    sqlx::query(
        "INSERT INTO follows (followee, follower, active, src_partition, src_offset, follower_active)
         SELECT $1, 'fan' || lpad(i::text, 7, '0'), true, 0, i, i % 100 = 99
         FROM generate_series(0, $2 - 1) AS i",
    )
    .bind(author)
    .bind(followers)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("INSERT INTO authors (author, follower_count, mode) VALUES ($1, $2, 'pull')")
        .bind(author)
        .bind(followers)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("ANALYZE follows").execute(pool).await.unwrap();
}

async fn big_audience(args: &Args) {
    let stack = Stack::start().await;
    let pool = &stack.db.pool;
    seed_audience(pool, "celeb", args.followers).await;
    let mut log = EventLog::default();
    let m = Policy::default();
    let no_m = Policy {
        active_audience_max: 0,
        ..Policy::default()
    };
    let (pull_rows, pull_ms) = one_post(pool, &no_m, &mut log, "celeb").await;
    let (m_rows, m_ms) = one_post(pool, &m, &mut log, "celeb").await;
    // Through the pipeline: the active follower with the greatest id.
    let last = format!("fan{:07}", args.followers - 1);
    let token = stack.api.token_for(&last);
    let mut socket = WsClient::connect(&stack.reader.url(""), &token, "phone", "")
        .await
        .unwrap();
    let mut to_socket = Vec::new();
    for _ in 0..5 {
        let sent = Instant::now();
        let posted = stack
            .api
            .post("celeb", "hello", None)
            .await
            .post_id
            .unwrap();
        loop {
            match socket.next_data(Duration::from_secs(30)).await {
                Received::Frame(ServerFrame::Sync {
                    entries, last_seq, ..
                }) => {
                    socket
                        .send(&schemas::realtime::ClientFrame::Ack { seq: last_seq })
                        .await;
                    if entries
                        .iter()
                        .any(|e| e.post_id.as_deref() == Some(posted.as_str()))
                    {
                        break;
                    }
                }
                Received::Frame(_) => {}
                other => panic!("no entry on the socket: {other:?}"),
            }
        }
        to_socket.push(sent.elapsed());
    }
    to_socket.sort_unstable();
    // Everyone, as push would: every follower active, the author in push mode.
    sqlx::query("UPDATE follows SET follower_active = true WHERE followee = 'celeb'")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE authors SET mode = 'push' WHERE author = 'celeb'")
        .execute(pool)
        .await
        .unwrap();
    let (push_rows, push_ms) = one_post(pool, &m, &mut log, "celeb").await;
    println!(
        "| one post, {} followers, 1% active | rows | apply time |",
        args.followers
    );
    println!("|---|---|---|");
    println!("| pull, no M | {pull_rows} | {pull_ms:.1} ms |");
    println!(
        "| pull + M = {} active | {m_rows} ({:.2}% of push) | {m_ms:.1} ms ({:.3}× push) |",
        m.active_audience_max,
        100.0 * m_rows as f64 / push_rows as f64,
        m_ms / push_ms
    );
    println!("| push to everyone | {push_rows} | {push_ms:.1} ms |");
    println!(
        "| ingest 202 → the last active follower's socket (pipeline, 5 posts) | p50 {:.1} ms, max {:.1} ms | |",
        percentile_ms(&to_socket, 0.5),
        percentile_ms(&to_socket, 1.0)
    );
    socket.close().await;
    stack.stop().await;
}

/// A follow graph of `users` users with skewed popularity (a follow picks author rank ~ 1/rank) and a
/// day of posts, every user posting as often; `active_percent` of every 100 users are active. `policy`
/// decides push and pull. Returns (fan-out rows, sync_entries bytes).
async fn synthetic_day(args: &Args, active_percent: i64, policy: &Policy) -> (i64, i64) {
    let db = TestDb::create().await;
    let pool = &db.pool;
    sqlx::query(
        "INSERT INTO follows (followee, follower, active, src_partition, src_offset, follower_active)
         SELECT DISTINCT ON (a, u) 'w' || a, 'w' || u, true, 0, 0, u % 100 < $3
         FROM (SELECT u, floor(power($1::float8, random()))::bigint - 1 AS a
               FROM generate_series(0, $1 - 1) AS u, generate_series(1, $2)) AS f
         WHERE a <> u",
    )
    .bind(args.users)
    .bind(args.follows_per_user)
    .bind(active_percent)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO authors (author, follower_count, mode)
         SELECT followee, count(*), CASE WHEN count(*) > $1 THEN 'pull' ELSE 'push' END
         FROM follows GROUP BY followee",
    )
    .bind(policy.pull_above)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
    let mut log = EventLog::default();
    for i in 0..args.posts {
        log.push(post(&format!("w{}", i as i64 % args.users)));
    }
    let outcome = log.apply(pool, policy).await;
    // A partitioned table has no storage of its own: sum its partitions.
    let bytes = count(
        pool,
        "SELECT coalesce(sum(pg_total_relation_size(inhrelid)), 0)::bigint FROM pg_inherits
         WHERE inhparent = 'sync_entries'::regclass",
    )
    .await;
    (
        (outcome.posts_created + outcome.sync_entries_own + outcome.sync_entries_pushed) as i64,
        bytes,
    )
}

async fn day_of_traffic(args: &Args) {
    // Everyone active, no author in pull mode: every post into every follower's inbox.
    let all_push = Policy {
        pull_above: i64::MAX,
        push_below: 0,
        ..Policy::default()
    };
    let (all_rows, all_bytes) = synthetic_day(args, 100, &all_push).await;
    let (rows, bytes) = synthetic_day(args, 10, &Policy::default()).await;
    println!();
    println!(
        "| a day: {} users × {} follows, {} posts | fan-out rows | sync_entries |",
        args.users, args.follows_per_user, args.posts
    );
    println!("|---|---|---|");
    println!(
        "| all push (everyone active) | {all_rows} | {:.1} MB |",
        all_bytes as f64 / 1e6
    );
    println!(
        "| 1 + M: 10% active, default thresholds | {rows} ({:.3}×) | {:.1} MB ({:.3}×) |",
        rows as f64 / all_rows as f64,
        bytes as f64 / 1e6,
        bytes as f64 / all_bytes as f64
    );
}

/// 500 authors with two posts a day for 60 days; `returning` users following all of them, silent for
/// 31 days and dormant.
async fn seed_returning(pool: &PgPool, returning: usize) {
    let now = Utc::now();
    let (mut ids, mut authors, mut times) = (Vec::new(), Vec::new(), Vec::new());
    for k in 0..60_000i64 {
        // A distinct millisecond each, so ids from the time are distinct.
        let at = now - TimeDelta::days(60) + TimeDelta::milliseconds(k * 86_400);
        ids.push(PostId::lowest_at(at).to_string());
        authors.push(format!("a{:03}", k % 500));
        times.push(at);
    }
    sqlx::query(
        "INSERT INTO posts (post_id, author, body, created_at, delivery_mode)
         SELECT id, author, 'a post', at, 'push'
         FROM UNNEST($1::text[], $2::text[], $3::timestamptz[]) AS t(id, author, at)",
    )
    .bind(&ids)
    .bind(&authors)
    .bind(&times)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO follows (followee, follower, active, src_partition, src_offset, follower_active)
         SELECT 'a' || lpad(a::text, 3, '0'), 'back' || r, true, 0, 0, false
         FROM generate_series(0, 499) AS a, generate_series(0, $1 - 1) AS r",
    )
    .bind(returning as i64)
    .execute(pool)
    .await
    .unwrap();
    sqlx::query(
        "INSERT INTO user_activity (user_id, last_active_at, active)
         SELECT 'back' || r, now() - interval '31 days', false FROM generate_series(0, $1 - 1) AS r",
    )
    .bind(returning as i64)
    .execute(pool)
    .await
    .unwrap();
    // One active reader of the same authors, for a peer.
    sqlx::raw_sql(
        "INSERT INTO follows (followee, follower, active, src_partition, src_offset)
         SELECT 'a' || lpad(a::text, 3, '0'), 'steady', true, 0, 0 FROM generate_series(0, 499) AS a;
         INSERT INTO sync_entries (user_id, seq, post_id, author)
         SELECT 'steady', nextval('sync_seq'), post_id, author FROM posts ORDER BY post_id",
    )
    .execute(pool)
    .await
    .unwrap();
    sqlx::query("ANALYZE").execute(pool).await.unwrap();
}

async fn returning_users(args: &Args) {
    let stack = Stack::start().await;
    seed_returning(&stack.db.pool, args.returning).await;
    let newest: Vec<(String,)> =
        sqlx::query_as("SELECT post_id FROM posts ORDER BY post_id DESC LIMIT 20")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    let newest: Vec<String> = newest.into_iter().map(|(id,)| id).collect();
    let mut first = Vec::new();
    for r in 0..args.returning {
        let started = Instant::now();
        let page = stack.api.feed_page(&format!("back{r}"), 20, None).await;
        first.push(started.elapsed());
        let got: Vec<String> = page.entries.into_iter().map(|e| e.post_id).collect();
        assert_eq!(
            got, newest,
            "back{r}'s first page is not the newest 20 posts"
        );
    }
    let mut steady = Vec::new();
    for _ in 0..args.returning {
        let started = Instant::now();
        stack.api.feed_page("steady", 20, None).await;
        steady.push(started.elapsed());
    }
    first.sort_unstable();
    steady.sort_unstable();
    let copied = count(
        &stack.db.pool,
        "SELECT count(*) FROM sync_entries WHERE user_id = 'back0'",
    )
    .await;
    println!();
    println!("| returning after 31 days, 500 authors, 60,000 posts | p50 | p99 |");
    println!("|---|---|---|");
    println!(
        "| first feed page (return applied: {copied} entries copied each) | {:.1} ms | {:.1} ms |",
        percentile_ms(&first, 0.5),
        percentile_ms(&first, 0.99)
    );
    println!(
        "| feed page of an active reader of the same authors | {:.2} ms | {:.2} ms |",
        percentile_ms(&steady, 0.5),
        percentile_ms(&steady, 0.99)
    );
    println!(
        "| ratio (p50) | {:.0}× | |",
        percentile_ms(&first, 0.5) / percentile_ms(&steady, 0.5).max(0.001)
    );
    stack.stop().await;
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    big_audience(&args).await;
    day_of_traffic(&args).await;
    returning_users(&args).await;
    Ok(())
}
