//! Search bench (issue 22), on this machine's Postgres through fanout's store and the reader over HTTP:
//! 1. a corpus of `--messages` messages (a third Chinese, a third English, a third mixed) in
//!    `--conversations` direct conversations is applied from the log into an empty database twice, in
//!    fanout's batches: with search indexing (the index build rate of a replay) and without
//!    (`FANLINE_SKIP_SEARCH_INDEX`) — messages/s each, and the ratio: what indexing costs fan-out;
//! 2. the reindexer over the database built without indexing: rows/s for data stored before search;
//! 3. a user in `--user-conversations` of them searches over HTTP — a two-character Chinese word, one
//!    English word, three English words — p50/p99, against the reader's own SQL with the same parameters
//!    straight on Postgres (one connection, prepared), requests alternating: the ratio of the medians
//!    (target ≥ 0.7).
//!
//! `cargo run --release -p bench --bin fanline-search-bench`
//! Needs Postgres as `scripts/test.sh` sets it up (FANLINE_TEST_DATABASE_URL); it makes its databases.
#![allow(clippy::unwrap_used)]

use std::time::{Duration, Instant};

use bench::measure::percentile_ms;
use bench::seed::{count, user};
use chrono::{DateTime, TimeDelta, Utc};
use clap::Parser;
use fanout::config::defaults::BATCH_MAX_EVENTS;
use fanout::reindex::Reindexer;
use fanout::store::{apply_batch, Policy, SourcedEvent};
use harness::{spawn_reader, Api, TestDb};
use reqwest::Method;
use schemas::{ConversationId, Envelope, MessageId, MessageSent};
use sqlx::PgPool;

#[derive(Parser)]
#[command(about = "Measures search over HTTP against Postgres, and what indexing costs fan-out")]
struct Args {
    /// Messages in the corpus.
    #[arg(long, default_value_t = 1_000_000)]
    messages: usize,
    /// Direct conversations they are spread over.
    #[arg(long, default_value_t = 10_000)]
    conversations: usize,
    /// Conversations of the user who searches.
    #[arg(long, default_value_t = 200)]
    user_conversations: usize,
    /// Searches per query (each over HTTP and straight on Postgres).
    #[arg(long, default_value_t = 200)]
    requests: usize,
}

/// Two-character Chinese words, the most frequent first (the corpus draws them skewed).
const ZH: [&str; 40] = [
    "会议", "明天", "我们", "今天", "项目", "时间", "问题", "工作", "客户", "下午", "已经", "需要",
    "可以", "报告", "计划", "讨论", "同事", "周末", "晚上", "早上", "预算", "文件", "邮件", "电话",
    "数据", "系统", "测试", "上线", "版本", "设计", "产品", "市场", "合同", "订单", "安排", "确认",
    "修改", "完成", "进度", "天气",
];

/// English words, the most frequent first.
const EN: [&str; 48] = [
    "the", "meeting", "we", "project", "tomorrow", "is", "report", "client", "please", "update",
    "release", "today", "budget", "review", "design", "team", "deadline", "call", "email", "data",
    "system", "test", "version", "product", "market", "contract", "order", "schedule", "confirm",
    "change", "done", "progress", "weather", "lunch", "coffee", "office", "travel", "hotel",
    "flight", "invoice", "payment", "customer", "feedback", "sprint", "ticket", "server", "deploy",
    "weekend",
];

/// A small deterministic generator (xorshift64*): the same corpus in every run and in both databases.
struct Rng(u64);

impl Rng {
    fn seeded(n: usize) -> Rng {
        Rng((n as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }

    /// A word, skewed towards the start of the list as word frequencies are.
    fn word<'a>(&mut self, words: &[&'a str]) -> &'a str {
        let u = (self.next() >> 11) as f64 / (1u64 << 53) as f64;
        words[((u * u) * words.len() as f64) as usize]
    }
}

fn chinese(rng: &mut Rng, words: usize) -> String {
    let mut text = String::new();
    for i in 0..words {
        text.push_str(rng.word(&ZH));
        if i % 4 == 3 && i + 1 < words {
            text.push('，');
        }
    }
    text
}

fn english(rng: &mut Rng, words: usize) -> String {
    (0..words)
        .map(|_| rng.word(&EN))
        .collect::<Vec<_>>()
        .join(" ")
}

/// Message `n`'s body: Chinese, English or mixed by `n % 3`.
fn body(rng: &mut Rng, n: usize) -> String {
    match n % 3 {
        0 => {
            let words = 4 + rng.below(7);
            format!("{}。", chinese(rng, words))
        }
        1 => {
            let words = 5 + rng.below(10);
            format!("{}.", english(rng, words))
        }
        _ => {
            let (a, b) = (2 + rng.below(3), 2 + rng.below(4));
            format!(
                "{} {} {}",
                chinese(rng, a),
                english(rng, b),
                chinese(rng, 1)
            )
        }
    }
}

/// Conversation `i`'s two users; the user who searches is in the first `user_conversations`.
fn parties(i: usize, args: &Args) -> (String, String) {
    if i < args.user_conversations {
        ("searcher".to_owned(), format!("peer{i}"))
    } else {
        (format!("a{i}"), format!("b{i}"))
    }
}

/// Message `n` of the log: the same in every run but for its id.
fn message(n: usize, args: &Args, start: DateTime<Utc>) -> Envelope {
    let mut rng = Rng::seeded(n);
    let (a, b) = parties(rng.below(args.conversations), args);
    let sender = if rng.below(2) == 0 { &a } else { &b };
    Envelope::message_sent(MessageSent {
        message_id: MessageId::generate(),
        conversation: ConversationId::direct(&user(&a), &user(&b)).unwrap(),
        sender: user(sender),
        body: body(&mut rng, n),
        client_msg_id: None,
        created_at: start + TimeDelta::milliseconds(n as i64 * 10),
    })
}

/// Applies the corpus in fanout's default batches; messages per second.
async fn apply(pool: &PgPool, policy: &Policy, args: &Args, start: DateTime<Utc>) -> f64 {
    let started = Instant::now();
    let mut batch = Vec::with_capacity(BATCH_MAX_EVENTS);
    for n in 0..args.messages {
        batch.push(SourcedEvent {
            partition: 0,
            offset: n as i64,
            envelope: message(n, args, start),
        });
        if batch.len() == BATCH_MAX_EVENTS || n + 1 == args.messages {
            apply_batch(pool, policy, &batch).await.unwrap();
            batch.clear();
        }
        if (n + 1) % 100_000 == 0 {
            eprintln!("  {} messages applied", n + 1);
        }
    }
    args.messages as f64 / started.elapsed().as_secs_f64()
}

/// One query's latencies over HTTP and straight on Postgres, and how many hits the first page held.
struct Timings {
    http: Vec<Duration>,
    direct: Vec<Duration>,
    hits: usize,
}

async fn measure(api: &Api, pool: &PgPool, q: &str, requests: usize) -> Timings {
    let url = reqwest::Url::parse_with_params(
        &format!("{}/v1/users/searcher/search/messages", api.reader),
        &[("q", q), ("limit", "20")],
    )
    .unwrap();
    let tsquery = schemas::search::query("q", q).unwrap();
    let mut connection = pool.acquire().await.unwrap();
    let mut timings = Timings {
        http: Vec::new(),
        direct: Vec::new(),
        hits: 0,
    };
    // A few of each first (connections, plans, caches), then both alternately.
    for round in 0..requests + 10 {
        let started = Instant::now();
        let (status, page) = api.raw(Method::GET, url.as_str(), None, None).await;
        let http = started.elapsed();
        assert_eq!(status, 200, "{page}");
        let started = Instant::now();
        let rows = sqlx::query(reader::search::SEARCH_SQL)
            .bind("searcher")
            .bind(&tsquery)
            .bind(None::<&str>)
            .bind(None::<&str>)
            .bind(None::<DateTime<Utc>>)
            .bind(None::<DateTime<Utc>>)
            .bind(None::<DateTime<Utc>>)
            .bind(None::<&str>)
            .bind(21i64)
            .fetch_all(&mut *connection)
            .await
            .unwrap();
        let direct = started.elapsed();
        timings.hits = page["hits"].as_array().map_or(0, Vec::len);
        assert_eq!(rows.len().min(20), timings.hits, "the same rows both ways");
        if round >= 10 {
            timings.http.push(http);
            timings.direct.push(direct);
        }
    }
    timings.http.sort();
    timings.direct.sort();
    timings
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let start = Utc::now() - TimeDelta::milliseconds(args.messages as i64 * 10);

    // 1. Fan-out with and without indexing.
    let indexed = TestDb::create().await;
    eprintln!("applying {} messages with search indexing", args.messages);
    let with_index = apply(&indexed.pool, &Policy::default(), &args, start).await;
    let plain = TestDb::create().await;
    let skipping = Policy {
        index_search: false,
        ..Policy::default()
    };
    eprintln!("applying them without");
    let without_index = apply(&plain.pool, &skipping, &args, start).await;

    // 2. The reindexer over what was stored without indexing.
    let reindexer = Reindexer {
        pool: plain.pool.clone(),
        indexed: None,
    };
    let started = Instant::now();
    let reindexed = reindexer.drain().await.unwrap();
    let reindex_rate = reindexed as f64 / started.elapsed().as_secs_f64();
    assert_eq!(reindexed as usize, args.messages, "every message indexed");
    drop(plain);

    // 3. Search over HTTP against the same SQL straight on Postgres.
    sqlx::query("ANALYZE").execute(&indexed.pool).await?;
    let own = count(
        &indexed.pool,
        "SELECT count(*) FROM messages WHERE conversation_id LIKE '%searcher%'",
    )
    .await;
    let index_mb = count(
        &indexed.pool,
        "SELECT pg_relation_size('messages_search') / 1000000",
    )
    .await;
    let table_mb = count(
        &indexed.pool,
        "SELECT pg_relation_size('messages') / 1000000",
    )
    .await;
    let reader = spawn_reader(&indexed.url).await;
    let api = Api::new("", reader.url("")).as_user("searcher");
    println!(
        "corpus: {} messages in {} direct conversations (a third Chinese, a third English, a third mixed); the searcher is in {} of them ({own} messages); messages table {table_mb} MB, its search index {index_mb} MB",
        args.messages, args.conversations, args.user_conversations
    );
    println!();
    println!("| query | hits on the first page | HTTP p50 / p99 | Postgres p50 / p99 | ratio of p50s (target ≥ 0.7) |");
    println!("|---|---|---|---|---|");
    let queries = [
        ("two-character Chinese word", "会议"),
        ("one English word", "meeting"),
        ("three English words", "project meeting tomorrow"),
    ];
    let mut all_met = true;
    for (what, q) in queries {
        let t = measure(&api, &indexed.pool, q, args.requests).await;
        let (http50, http99) = (percentile_ms(&t.http, 0.5), percentile_ms(&t.http, 0.99));
        let (pg50, pg99) = (
            percentile_ms(&t.direct, 0.5),
            percentile_ms(&t.direct, 0.99),
        );
        let ratio = pg50 / http50;
        all_met &= ratio >= 0.7;
        println!(
            "| {what} `{q}` | {} | {http50:.2} / {http99:.2} ms | {pg50:.2} / {pg99:.2} ms | {ratio:.2} |",
            t.hits
        );
    }
    println!();
    println!("| fan-out of the corpus (batches of {BATCH_MAX_EVENTS}) | messages/s |");
    println!("|---|---|");
    println!("| with search indexing (a replay's index build rate) | {with_index:.0} |");
    println!("| without (`FANLINE_SKIP_SEARCH_INDEX`) | {without_index:.0} |");
    println!(
        "| ratio, with / without | {:.2} |",
        with_index / without_index
    );
    println!(
        "| the reindexer over the corpus stored without indexing (rows/s) | {reindex_rate:.0} |"
    );
    println!();
    println!(
        "search latency ratio target (≥ 0.7): {}",
        if all_met { "met" } else { "NOT met" }
    );
    reader.stop().await;
    drop(indexed);
    Ok(())
}
