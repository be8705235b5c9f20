//! Retention bench (issue 23), on this machine's Postgres through fanout's own code:
//! 1. `--entries` sync entries (default 50 million) over `--users` users (skewed: a few have many) are
//!    written straight into `sync_entries` in `--partitions` partitions, sealed by fanout's retention
//!    task on a simulated clock (an hour apart);
//! 2. for `--window` seconds, a fan-out load (direct messages through fanout's store, in its batches)
//!    and a read load (the reader's sync scan of random users, two connections) run alone: messages/s
//!    and read p50/p99 — the baseline;
//! 3. the same load again while the retention task drops the two oldest partitions (floors recorded
//!    first): rows/s removed, and fan-out rate and read p99 against the baseline;
//! 4. the same load again while the next partition's rows are removed the other way, by batched
//!    `DELETE`s of 10,000 rows (the peer the partitions were chosen over): rows/s and the same ratios.
//!
//! `cargo run --release -p bench --bin fanline-retention-bench`
//! Needs Postgres as `scripts/test.sh` sets it up (FANLINE_TEST_DATABASE_URL); it makes its database.
#![allow(clippy::unwrap_used)]

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bench::measure::percentile_ms;
use bench::seed::{count, user};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use fanout::floors::{FEED_CUT, FLOORS_ONLY_RISE};
use fanout::store::{apply_batch, Policy, SourcedEvent};
use harness::TestDb;
use schemas::{ConversationId, Envelope, MessageId, MessageSent};
use sqlx::PgPool;

#[derive(Parser)]
#[command(
    about = "Measures removing old sync entries, and what it costs fan-out and reads meanwhile"
)]
struct Args {
    /// Sync entries written before measuring.
    #[arg(long, default_value_t = 50_000_000)]
    entries: i64,
    /// Users they belong to.
    #[arg(long, default_value_t = 1_000_000)]
    users: i64,
    /// Partitions they are written in (the two oldest are dropped, the third deleted).
    #[arg(long, default_value_t = 10)]
    partitions: i64,
    /// Seconds each load runs.
    #[arg(long, default_value_t = 30)]
    window: u64,
    /// Keep the database afterwards (its name is printed).
    #[arg(long)]
    keep: bool,
}

/// Direct messages per fan-out batch (fanout's default batch is 500 events; IM events are applied one
/// by one, so a smaller batch only commits more often).
const BATCH: usize = 100;

/// Writes the entries, partition by partition, each sealed an hour after the one before (simulated).
async fn load(pool: &PgPool, args: &Args, t0: DateTime<Utc>) {
    let retention = harness::simulated_retention(pool);
    let per = args.entries / args.partitions;
    for p in 0..args.partitions {
        let started = Instant::now();
        // Skewed owners (the cube of a uniform draw): user 0 has the most entries.
        sqlx::query(
            "INSERT INTO sync_entries (user_id, seq, author, kind, conversation_id, conv_seq, message_id)
             SELECT 'u' || floor($2 * random() ^ 3)::bigint, nextval('sync_seq'), 'someone', 'message',
                    'd:someone:u', g, 'm' || g
             FROM generate_series(1, $1) AS g",
        )
        .bind(per)
        .bind(args.users as f64)
        .execute(pool)
        .await
        .unwrap();
        let report = retention
            .run_once(t0 + TimeDelta::hours(p + 2))
            .await
            .unwrap();
        assert_eq!(report.sealed, 1, "{report:?}");
        eprintln!(
            "partition {p}: {per} entries in {:.0} s",
            started.elapsed().as_secs_f64()
        );
    }
    eprintln!("analyzing");
    sqlx::query("VACUUM ANALYZE sync_entries")
        .execute(pool)
        .await
        .unwrap();
}

/// What the read load reads: users drawn like the owners, from `after`.
#[derive(Clone, Copy)]
struct Load {
    users: i64,
    after: i64,
}

/// What a load measured over its window.
struct Measured {
    messages_per_second: f64,
    read_p50_ms: f64,
    read_p99_ms: f64,
    reads: usize,
}

/// Direct messages through fanout's store until `stop`; returns how many were applied.
async fn fan_out(pool: PgPool, stop: Arc<AtomicBool>, applied: Arc<AtomicU64>, round: u64) {
    let mut offset = 0;
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        let events: Vec<SourcedEvent> = (0..BATCH)
            .map(|_| {
                n += 1;
                offset += 1;
                // A thousand conversations, each written again and again.
                let (a, b) = (
                    format!("w{round}a{}", n % 1000),
                    format!("w{round}b{}", n % 1000),
                );
                SourcedEvent {
                    partition: 0,
                    offset,
                    envelope: Envelope::message_sent(MessageSent {
                        message_id: MessageId::generate(),
                        conversation: ConversationId::direct(&user(&a), &user(&b)).unwrap(),
                        sender: user(&a),
                        body: format!("message {n}"),
                        content: Default::default(),
                        reply_to: None,
                        forwarded: false,
                        mentions: Vec::new(),
                        mention_all: false,
                        client_msg_id: None,
                        created_at: Utc::now(),
                    }),
                }
            })
            .collect();
        apply_batch(&pool, &Policy::default(), &events)
            .await
            .unwrap();
        applied.fetch_add(BATCH as u64, Ordering::Relaxed);
    }
}

/// The reader's sync scan of random users from `after` (in the newest loaded partition, which no
/// removal touches: a device that keeps up, reading the same rows in every window) until `stop`.
async fn read(pool: PgPool, load: Load, stop: Arc<AtomicBool>, seed: u64) -> Vec<Duration> {
    let mut state = seed | 1;
    let mut latencies = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        // Users drawn like the owners: the busy ones more often.
        let u = (state % 1_000_000) as f64 / 1_000_000.0;
        let who = format!("u{}", (load.users as f64 * u * u * u) as i64);
        let started = Instant::now();
        let rows = sqlx::query(reader::queries::SYNC_FLAGGED_SQL)
            .bind(&who)
            .bind(load.after)
            .bind(51i64)
            .fetch_all(&pool)
            .await
            .unwrap();
        latencies.push(started.elapsed());
        std::hint::black_box(rows);
    }
    latencies
}

/// Runs the fan-out and read loads for `window` while `during` runs (started a second in); returns the
/// measurements and what `during` returned.
async fn under_load<T, F>(
    pool: &PgPool,
    args: &Args,
    load: Load,
    round: u64,
    during: F,
) -> (Measured, T)
where
    F: std::future::Future<Output = T>,
{
    let stop = Arc::new(AtomicBool::new(false));
    let applied = Arc::new(AtomicU64::new(0));
    let writer = tokio::spawn(fan_out(pool.clone(), stop.clone(), applied.clone(), round));
    let readers: Vec<_> = (0..2)
        .map(|i| tokio::spawn(read(pool.clone(), load, stop.clone(), round * 7 + i)))
        .collect();
    let started = Instant::now();
    tokio::time::sleep(Duration::from_secs(1)).await;
    let result = during.await;
    let left = Duration::from_secs(args.window).saturating_sub(started.elapsed());
    tokio::time::sleep(left).await;
    stop.store(true, Ordering::Relaxed);
    let elapsed = started.elapsed().as_secs_f64();
    writer.await.unwrap();
    let mut latencies = Vec::new();
    for reader in readers {
        latencies.extend(reader.await.unwrap());
    }
    latencies.sort();
    let measured = Measured {
        messages_per_second: applied.load(Ordering::Relaxed) as f64 / elapsed,
        read_p50_ms: percentile_ms(&latencies, 0.5),
        read_p99_ms: percentile_ms(&latencies, 0.99),
        reads: latencies.len(),
    };
    (measured, result)
}

/// Deletes the rows of partition `name` in batches of 10,000 as a retention without partitions would
/// delete a day of a plain table — by physical position, the cheapest batch measured in
/// docs/retention-research.md — raising the floors of the rows' users as it goes (a reset needs them
/// either way); returns the rows removed.
async fn delete_in_batches(pool: &PgPool, name: &str) -> i64 {
    let mut removed = 0;
    loop {
        let (done,): (i64,) = sqlx::query_as(&format!(
            "WITH gone AS (
                 DELETE FROM {name} WHERE ctid = ANY (ARRAY (SELECT ctid FROM {name} LIMIT 10000))
                 RETURNING user_id, seq, kind, post_id
             ), raised AS (
                 INSERT INTO sync_floors (user_id, floor_seq, feed_below)
                 SELECT user_id, max(seq), {FEED_CUT} FROM gone GROUP BY user_id
                 {FLOORS_ONLY_RISE}
             )
             SELECT count(*) FROM gone"
        ))
        .fetch_one(pool)
        .await
        .unwrap();
        if done == 0 {
            return removed;
        }
        removed += done;
    }
}

fn row(what: &str, m: &Measured, base: &Measured) {
    println!(
        "| {what} | {:.0} messages/s ({:.2}) | {:.2} / {:.2} ms ({:.2}) | {} |",
        m.messages_per_second,
        m.messages_per_second / base.messages_per_second,
        m.read_p50_ms,
        m.read_p99_ms,
        m.read_p99_ms / base.read_p99_ms,
        m.reads
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    anyhow::ensure!(args.partitions >= 4, "--partitions must be at least 4");
    let db = TestDb::create().await;
    let t0 = Utc::now();
    eprintln!("writing {} entries", args.entries);
    load(&db.pool, &args, t0).await;
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(8)
        .connect(&db.url)
        .await?;

    let (after,): (i64,) =
        sqlx::query_as("SELECT max(lo) FROM sync_partitions WHERE sealed_at IS NOT NULL")
            .fetch_one(&pool)
            .await?;
    let load = Load {
        users: args.users,
        after,
    };
    eprintln!("baseline");
    let (base, ()) = under_load(&pool, &args, load, 1, async {}).await;

    eprintln!("dropping the two oldest partitions under load");
    let retention = harness::simulated_retention(&pool);
    // Partition p was sealed at t0 + p + 2 hours: at t0 + 30 days + 3.5 hours, partitions 0 and 1 (and
    // the empty first one of the migration) have expired.
    let at = t0 + TimeDelta::days(30) + TimeDelta::minutes(210);
    let (dropping, (report, took)) = under_load(&pool, &args, load, 2, async {
        let started = Instant::now();
        let report = retention.run_once(at).await.unwrap();
        (report, started.elapsed())
    })
    .await;
    let floors = count(&pool, "SELECT count(*) FROM sync_floors").await;

    eprintln!("deleting the next partition's rows in batches under load");
    let next: (String,) = sqlx::query_as(
        "SELECT name FROM sync_partitions WHERE sealed_at IS NOT NULL ORDER BY hi LIMIT 1",
    )
    .fetch_one(&pool)
    .await?;
    let (deleting, (deleted, delete_took)) = under_load(&pool, &args, load, 3, async {
        let started = Instant::now();
        let removed = delete_in_batches(&pool, &next.0).await;
        (removed, started.elapsed())
    })
    .await;

    println!(
        "{} sync entries over {} users in {} partitions; loads of {} s: direct messages through fanout's store in batches of {BATCH}, and two connections scanning random users' sync timelines (the reader's statement)",
        args.entries, args.users, args.partitions, args.window
    );
    println!();
    println!("| removal | rows | took | rows/s |");
    println!("|---|---:|---:|---:|");
    println!(
        "| retention: {} users' floors raised ({:.2} s), then DETACH CONCURRENTLY + DROP ({:.3} s), over {} partitions | {} | {:.2} s | {:.0} |",
        report.floored_users,
        report.floor_time.as_secs_f64(),
        report.drop_time.as_secs_f64(),
        report.dropped,
        report.removed_rows,
        took.as_secs_f64(),
        report.removed_rows as f64 / took.as_secs_f64()
    );
    println!(
        "| peer: batched DELETE of one partition's rows with their floors, 10,000 a statement (before VACUUM; space not returned) | {deleted} | {:.2} s | {:.0} |",
        delete_took.as_secs_f64(),
        deleted as f64 / delete_took.as_secs_f64()
    );
    println!();
    println!(
        "| load during | fan-out (ratio to alone) | sync read p50 / p99 (p99 ratio) | reads |"
    );
    println!("|---|---:|---:|---:|");
    row("nothing (baseline)", &base, &base);
    row("retention dropping partitions", &dropping, &base);
    row("batched DELETE", &deleting, &base);
    println!();
    println!("users with a floor: {floors}");
    if args.keep {
        println!("kept database {}", db.name);
        std::mem::forget(db);
    }
    Ok(())
}
