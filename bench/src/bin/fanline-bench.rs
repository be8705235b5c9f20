//! Throughput bench for the core pipeline on this machine, against the real broker and Postgres.
//!
//! It starts ingest and reader in-process on a fresh database and topic, then:
//! 1. ingest: sends `--posts` posts over HTTP with `--concurrency` requests in flight, fanout stopped,
//!    and reports posts/s acknowledged (202 only after the broker acknowledged);
//! 2. fanout: starts one fanout worker on that backlog and reports how fast it drains it: events/s and
//!    sync entries/s written (each post goes to `--followers` followers plus its author).
//!
//! `cargo run --release -p bench --bin fanline-bench -- --posts 20000 --followers 100`
//! Needs the broker and Postgres of `scripts/test.sh` (FANLINE_TEST_BROKERS, FANLINE_TEST_DATABASE_URL).
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use harness::{
    fanout_config, group_lag, spawn_fanout, spawn_ingest, spawn_reader, unique, Api, TestDb,
    TestTopic,
};

#[derive(Parser)]
#[command(about = "Measures ingest posts/s and fanout sync entries/s on this machine")]
struct Args {
    /// Posts to send.
    #[arg(long, default_value_t = 20_000)]
    posts: usize,
    /// Authors the posts are spread over.
    #[arg(long, default_value_t = 50)]
    authors: usize,
    /// Followers of every author.
    #[arg(long, default_value_t = 100)]
    followers: usize,
    /// HTTP requests in flight.
    #[arg(long, default_value_t = 64)]
    concurrency: usize,
    /// Partitions of the bench topic.
    #[arg(long, default_value_t = 8)]
    partitions: i32,
    /// Afterwards, time `fanout replay` of the whole topic: into the live database (every event a
    /// duplicate) and into an empty one (a rebuild).
    #[arg(long)]
    replay: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::create().await;
    let topic = TestTopic::create(args.partitions).await;
    let ingest = spawn_ingest(ingest::Config::for_brokers(
        &harness::brokers(),
        &topic.name,
    ))
    .await;
    let reader = spawn_reader(&db.url).await;
    let api = Api::new(ingest.url(""), reader.url(""));

    let follows: Vec<(String, String)> = (0..args.authors)
        .flat_map(|a| (0..args.followers).map(move |f| (format!("f{a}_{f}"), format!("author{a}"))))
        .collect();
    let follow_count = follows.len();
    futures::stream::iter(follows)
        .map(|(follower, author)| {
            let api = api.clone();
            async move {
                api.follow(&follower, &author).await;
            }
        })
        .buffer_unordered(args.concurrency)
        .collect::<Vec<_>>()
        .await;

    let started = Instant::now();
    let statuses: Vec<u16> = futures::stream::iter(0..args.posts)
        .map(|i| {
            let api = api.clone();
            let author = format!("author{}", i % args.authors);
            async move {
                let (status, _) = api
                    .try_post(&author, &format!("bench post {i}"), Some(&format!("b{i}")))
                    .await;
                status.as_u16()
            }
        })
        .buffer_unordered(args.concurrency)
        .collect()
        .await;
    let ingest_seconds = started.elapsed().as_secs_f64();
    let accepted = statuses.iter().filter(|s| **s == 202).count();

    let group = unique("bench");
    let mut config = fanout_config(&topic, &group, &db.url);
    config.lag_interval_ms = 1000;
    let started = Instant::now();
    let fanout = spawn_fanout(config).await;
    loop {
        let lags = group_lag(&topic.name, &group).await;
        if lags.iter().all(|l| l.lag == 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let fanout_seconds = started.elapsed().as_secs_f64();
    let (entries,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_entries")
        .fetch_one(&db.pool)
        .await?;
    let events = follow_count + args.posts;

    println!(
        "fanline-bench: {} posts over {} authors x {} followers, {} partitions, {} in flight",
        args.posts, args.authors, args.followers, args.partitions, args.concurrency
    );
    println!(
        "ingest:  {accepted}/{} posts acknowledged in {ingest_seconds:.2} s = {:.0} posts/s",
        args.posts,
        accepted as f64 / ingest_seconds
    );
    println!("fanout:  {events} events ({follow_count} follows + {} posts) applied in {fanout_seconds:.2} s = {:.0} events/s",
        args.posts, events as f64 / fanout_seconds);
    println!("fanout:  {entries} sync entries written = {:.0} sync entries/s (incl. consumer start and group join)",
        entries as f64 / fanout_seconds);
    fanout.stop().await;
    if args.replay {
        let mut config = fanout_config(&topic, &group, &db.url);
        let live = fanout::replay::replay(
            &config,
            &unique("bench-replay"),
            fanout::replay::StartAt::Beginning,
            true,
            Default::default(),
            |_, _| {},
        )
        .await?;
        println!(
            "replay:  {} events into the live database (no changes) in {:.2} s = {:.0} events/s",
            live.events,
            live.seconds,
            live.events_per_second()
        );
        let empty = TestDb::create().await;
        config.database_url = empty.url.clone().into();
        config.skip_setup = true;
        let rebuild = fanout::replay::replay(
            &config,
            &unique("bench-rebuild"),
            fanout::replay::StartAt::Beginning,
            true,
            Default::default(),
            |_, _| {},
        )
        .await?;
        let (rebuilt,): (i64,) = sqlx::query_as("SELECT count(*) FROM sync_entries")
            .fetch_one(&empty.pool)
            .await?;
        println!("replay:  {} events rebuilt into an empty database ({rebuilt} sync entries) in {:.2} s = {:.0} events/s",
            rebuild.events, rebuild.seconds, rebuild.events_per_second());
    }
    ingest.stop().await;
    reader.stop().await;
    Ok(())
}
