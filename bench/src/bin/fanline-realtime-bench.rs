//! Realtime bench on this machine, against the real broker and Postgres:
//! 1. **idle sockets**: one reader process (`fanline-reader`) holds `--idle` WebSocket connections (one
//!    user each, answering heartbeats); its resident memory before and after gives the memory per
//!    connection;
//! 2. **max fan-out rate**: `--followers` devices connected over WebSocket follow one author, who posts
//!    `--burst` posts as fast as ingest takes them; posts/s until the last device got the last post;
//! 3. **latency**: the author posts at half that rate for `--seconds`; for every post and device, the
//!    time from sending the post to ingest until the entry arrived on the device's socket: p50, p99.
//!
//! Ingest and fanout run in this process; the reader in its own (so its memory is its own). The idle
//! sockets stay open during 2 and 3. Load generator: this process (tokio-tungstenite clients, reqwest).
//!
//! `cargo build --release -p bench -p harness --bins && target/release/fanline-realtime-bench`
//! (the reader process is harness's `fanline-reader`, found beside this binary).
//! Needs the broker and Postgres of `scripts/test.sh` (FANLINE_TEST_BROKERS, FANLINE_TEST_DATABASE_URL).
#![allow(clippy::unwrap_used)]

use std::collections::HashMap;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use clap::Parser;
use futures::StreamExt;
use harness::ws::{Received, WsClient};
use harness::{
    fanout_config, free_port, group_lag, spawn_fanout, spawn_ingest, unique, Api, TestDb, TestTopic,
};
use schemas::realtime::{ClientFrame, ServerFrame};
use tokio::process::Command;

#[derive(Parser)]
#[command(about = "Measures idle WebSocket memory and post → socket latency on this machine")]
struct Args {
    /// Idle WebSocket connections held by the reader.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Followers of the posting author, each with a connected device.
    #[arg(long, default_value_t = 200)]
    followers: usize,
    /// Posts of the max-rate burst.
    #[arg(long, default_value_t = 300)]
    burst: usize,
    /// Duration of the latency run at half the max rate, in seconds.
    #[arg(long, default_value_t = 20)]
    seconds: u64,
    /// Postgres connections of the reader.
    #[arg(long, default_value_t = reader::config::defaults::DB_CONNECTIONS)]
    reader_db_connections: u32,
    /// The latency run's rate as a fraction of the measured max rate.
    #[arg(long, default_value_t = 0.5)]
    rate_fraction: f64,
    /// Extra librdkafka properties of the fanout consumer (key=value, repeatable).
    #[arg(long)]
    fanout_kafka_property: Vec<String>,
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.split_whitespace().next())
        .and_then(|kib| kib.parse().ok())
        .unwrap_or(0)
}

/// Arrival instants per post index, per device.
type Arrivals = Arc<Mutex<Vec<HashMap<usize, Instant>>>>;

/// A follower's device: records when each post arrives, acks every frame, answers pings.
async fn device(mut client: WsClient, index: usize, arrivals: Arrivals) {
    loop {
        match client.next(Duration::from_secs(600)).await {
            Received::Frame(ServerFrame::Sync {
                entries, last_seq, ..
            }) => {
                let now = Instant::now();
                {
                    let mut arrivals = arrivals.lock().unwrap();
                    for entry in &entries {
                        if let Some(post) =
                            entry.body.strip_prefix("p ").and_then(|n| n.parse().ok())
                        {
                            arrivals[index].entry(post).or_insert(now);
                        }
                    }
                }
                client.send(&ClientFrame::Ack { seq: last_seq }).await;
            }
            Received::Frame(ServerFrame::Ping) => client.send(&ClientFrame::Pong).await,
            Received::Frame(_) => {}
            Received::Closed(_) | Received::Nothing => return,
        }
    }
}

/// An idle device: only answers heartbeats.
async fn idle(mut client: WsClient) {
    loop {
        match client.next_data(Duration::from_secs(600)).await {
            Received::Closed(_) | Received::Nothing => return,
            Received::Frame(_) => {}
        }
    }
}

async fn connect(reader: &str, api: &Api, user: &str) -> WsClient {
    let token = api.token_for(user);
    for _ in 0..50 {
        if let Ok(mut client) = WsClient::connect(reader, &token, "bench", "").await {
            if let Received::Frame(ServerFrame::Hello { .. }) =
                client.next(Duration::from_secs(30)).await
            {
                return client;
            }
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    panic!("cannot connect {user}");
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::create().await;
    let topic = TestTopic::create(8).await;
    let group = unique("fanout");
    let ingest = spawn_ingest(ingest::Config::for_brokers(
        &harness::brokers(),
        &topic.name,
    ))
    .await;
    let mut fanout_settings = fanout_config(&topic, &group, &db.url);
    fanout_settings.kafka_properties = args.fanout_kafka_property.clone();
    let fanout = spawn_fanout(fanout_settings).await;
    let port = free_port();
    let reader_url = format!("http://127.0.0.1:{port}");
    let reader_exe = std::env::current_exe()?.with_file_name("fanline-reader");
    let mut reader = Command::new(&reader_exe)
        .env("FANLINE_TOKEN_KEY", harness::TEST_TOKEN_KEY)
        .env("FANLINE_DATABASE_URL", &db.url)
        .env("FANLINE_KAFKA_BROKERS", harness::brokers())
        .env("FANLINE_EVENTS_TOPIC", &topic.name)
        .env("FANLINE_READER_LISTEN", format!("127.0.0.1:{port}"))
        .env("FANLINE_READER_OPS_LISTEN", "127.0.0.1:0")
        // Its users get tokens, not accounts.
        .env("FANLINE_ACCOUNTS_REQUIRED", "false")
        .env("RUST_LOG", "warn")
        .env(
            "FANLINE_READER_DB_CONNECTIONS",
            args.reader_db_connections.to_string(),
        )
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .map_err(|err| {
            anyhow::anyhow!(
                "{}: {err} (build it: cargo build --release -p harness --bin fanline-reader)",
                reader_exe.display()
            )
        })?;
    let pid = reader.id().unwrap();
    let api = Api::new(ingest.url(""), reader_url.clone());

    // The author's followers, applied before anything is measured.
    let star = "star";
    futures::stream::iter(0..args.followers)
        .for_each_concurrent(32, |f| {
            let api = api.clone();
            async move {
                api.follow(&format!("f{f}"), star).await;
            }
        })
        .await;
    let drained = || async {
        loop {
            let lags = group_lag(&topic.name, &group).await;
            if lags.len() == 8 && lags.iter().all(|l| l.lag == 0) {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    drained().await;

    // 1. Idle sockets.
    let warm = connect(&reader_url, &api, "warm").await;
    tokio::spawn(idle(warm));
    tokio::time::sleep(Duration::from_secs(1)).await;
    let rss_before = rss_kib(pid);
    let started = Instant::now();
    let clients: Vec<WsClient> = futures::stream::iter(0..args.idle)
        .map(|i| {
            let api = api.clone();
            let reader_url = reader_url.clone();
            async move { connect(&reader_url, &api, &format!("idle{i}")).await }
        })
        .buffer_unordered(64)
        .collect()
        .await;
    let opened_in = started.elapsed();
    for client in clients {
        tokio::spawn(idle(client));
    }
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rss_after = rss_kib(pid);
    let per_connection = (rss_after.saturating_sub(rss_before)) as f64 * 1024.0 / args.idle as f64;

    // The followers' devices.
    let arrivals: Arrivals = Arc::new(Mutex::new(vec![HashMap::new(); args.followers]));
    for f in 0..args.followers {
        let client = connect(&reader_url, &api, &format!("f{f}")).await;
        tokio::spawn(device(client, f, arrivals.clone()));
    }
    let post = |i: usize| {
        let api = api.clone();
        async move {
            let sent = Instant::now();
            api.post(star, &format!("p {i}"), Some(&format!("m{i}")))
                .await;
            (i, sent, sent.elapsed())
        }
    };
    let delivered_all = |upto: usize| {
        let arrivals = arrivals.clone();
        async move {
            loop {
                let done = arrivals
                    .lock()
                    .unwrap()
                    .iter()
                    .all(|a| (0..upto).all(|i| a.contains_key(&i)));
                if done {
                    return;
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };

    // 2. Max fan-out rate: a burst, timed until the last device has the last post.
    let started = Instant::now();
    futures::stream::iter(0..args.burst)
        .map(post)
        .buffer_unordered(64)
        .collect::<Vec<_>>()
        .await;
    delivered_all(args.burst).await;
    let burst_time = started.elapsed();
    let max_rate = args.burst as f64 / burst_time.as_secs_f64();

    // 3. Latency at half that rate.
    let rate = max_rate * args.rate_fraction;
    let count = (rate * args.seconds as f64) as usize;
    let interval = Duration::from_secs_f64(1.0 / rate);
    let first = args.burst;
    let started = Instant::now();
    let mut sends = Vec::new();
    for n in 0..count {
        let due = started + interval * n as u32;
        tokio::time::sleep_until(due.into()).await;
        sends.push(tokio::spawn(post(first + n)));
    }
    let mut sent_at = HashMap::new();
    let mut acknowledged: Vec<Duration> = Vec::new();
    for send in sends {
        let (i, at, took) = send.await?;
        sent_at.insert(i, at);
        acknowledged.push(took);
    }
    acknowledged.sort_unstable();
    delivered_all(first + count).await;
    let mut latencies: Vec<Duration> = Vec::new();
    for device in arrivals.lock().unwrap().iter() {
        for (post, at) in device {
            if let Some(sent) = sent_at.get(post) {
                latencies.push(at.saturating_duration_since(*sent));
            }
        }
    }
    latencies.sort_unstable();
    let connections = rss_kib(pid);

    println!("| measure | value |");
    println!("|---|---|");
    println!(
        "| idle WebSocket connections held by one reader | {} (opened in {:.1} s) |",
        args.idle,
        opened_in.as_secs_f64()
    );
    println!(
        "| reader RSS before → after | {:.1} MiB → {:.1} MiB ({:.1} MiB with the load below) |",
        rss_before as f64 / 1024.0,
        rss_after as f64 / 1024.0,
        connections as f64 / 1024.0
    );
    println!(
        "| memory per idle connection | {:.1} KiB |",
        per_connection / 1024.0
    );
    println!("| max fan-out rate ({} devices, {}-post burst) | {:.0} posts/s = {:.0} socket deliveries/s |", args.followers, args.burst, max_rate, max_rate * args.followers as f64);
    println!(
        "| latency run | {:.0} posts/s ({:.0}% of the max) for {} s: {} deliveries |",
        rate,
        args.rate_fraction * 100.0,
        args.seconds,
        latencies.len()
    );
    println!(
        "| post → delivered on the socket | p50 {:.1} ms, p99 {:.1} ms, max {:.1} ms |",
        percentile(&latencies, 0.5).as_secs_f64() * 1000.0,
        percentile(&latencies, 0.99).as_secs_f64() * 1000.0,
        latencies.last().copied().unwrap_or_default().as_secs_f64() * 1000.0
    );
    println!(
        "| post → 202 from ingest (broker acknowledged) | p50 {:.1} ms, p99 {:.1} ms |",
        percentile(&acknowledged, 0.5).as_secs_f64() * 1000.0,
        percentile(&acknowledged, 0.99).as_secs_f64() * 1000.0
    );
    let _ = reader.kill().await;
    fanout.stop().await;
    ingest.stop().await;
    Ok(())
}
