//! Search bench (issue 22), on this machine's Postgres through fanout's code and the reader over HTTP:
//! 1. a corpus of `--messages` messages (a third Chinese, a third English, a third mixed) in
//!    `--conversations` direct conversations is written straight into the tables without its
//!    searchable form (a million direct messages through fan-out take over half an hour here, about
//!    500/s: this measures search, not seeding), and fanout's reindexer indexes it: rows/s, the rate at
//!    which an existing history is made searchable;
//! 2. a user in `--user-conversations` of them searches over HTTP — two-character Chinese words and
//!    English words, common and rare, and three English words — p50/p99, against the reader's own SQL
//!    with the same parameters straight on Postgres (one connection, unnamed statements as the reader
//!    runs it), requests alternating: the ratio of the medians (target ≥ 0.7);
//! 3. `--sample` more messages go through fanout's store, in fanout's batches, into two fresh databases
//!    batch by batch in turn: with search indexing (what a replay does: its index build rate) and without
//!    search at all (no searchable form, search indexes dropped): messages/s each and the ratio, what
//!    indexing costs fan-out.
//!
//! `cargo run --release -p bench --bin fanline-search-bench`
//! Needs Postgres as `scripts/test.sh` sets it up (FANLINE_TEST_DATABASE_URL); it makes its database.
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
    /// Messages fanned out with search indexing and, into another database, without.
    #[arg(long, default_value_t = 20_000)]
    sample: usize,
    /// Keep the database afterwards (its name is printed), to look at plans.
    #[arg(long)]
    keep: bool,
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

/// Rare words: one message in a hundred carries one of these (about 500 messages each in a million).
const RARE: [&str; 20] = [
    "熊猫", "长城", "火锅", "围棋", "京剧", "茶馆", "灯笼", "饺子", "太极", "书法", "zebra",
    "quartz", "falcon", "glacier", "saffron", "tundra", "walrus", "origami", "mosaic", "lantern",
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

/// Message `n`'s body: Chinese, English or mixed by `n % 3`, now and then with a rare word.
fn body(rng: &mut Rng, n: usize) -> String {
    let text = common_body(rng, n);
    if rng.below(100) == 0 {
        format!("{text} {}", RARE[rng.below(RARE.len())])
    } else {
        text
    }
}

fn common_body(rng: &mut Rng, n: usize) -> String {
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
    let drawn = draw(n, args, start);
    Envelope::message_sent(MessageSent {
        message_id: MessageId::generate(),
        conversation: drawn.conversation,
        sender: user(&drawn.sender),
        body: drawn.body,
        content: Default::default(),
        reply_to: None,
        forwarded: false,
        mentions: Vec::new(),
        mention_all: false,
        client_msg_id: None,
        created_at: drawn.at,
    })
}

/// Message `n` as the corpus has it, whichever way it is written.
struct Drawn {
    /// Its conversation's number (`parties`) and id.
    index: usize,
    conversation: ConversationId,
    sender: String,
    body: String,
    at: DateTime<Utc>,
}

fn draw(n: usize, args: &Args, start: DateTime<Utc>) -> Drawn {
    let mut rng = Rng::seeded(n);
    let index = rng.below(args.conversations);
    let (a, b) = parties(index, args);
    let sender = if rng.below(2) == 0 {
        a.clone()
    } else {
        b.clone()
    };
    Drawn {
        index,
        conversation: conversation(&a, &b),
        sender,
        body: body(&mut rng, n),
        at: start + TimeDelta::milliseconds(n as i64 * 10),
    }
}

/// A chunk of message rows, column by column (bound as arrays).
#[derive(Default)]
struct Columns {
    conversations: Vec<String>,
    seqs: Vec<i64>,
    ids: Vec<String>,
    senders: Vec<String>,
    bodies: Vec<String>,
    times: Vec<DateTime<Utc>>,
}

/// Writes messages `0..args.messages` straight into the tables, unindexed, with their conversations
/// and both members of each.
async fn load(pool: &PgPool, args: &Args, start: DateTime<Utc>) {
    let mut last_seq = vec![0i64; args.conversations];
    let mut last_at = vec![start; args.conversations];
    const CHUNK: usize = 10_000;
    for first in (0..args.messages).step_by(CHUNK) {
        let mut rows = Columns::default();
        for n in first..(first + CHUNK).min(args.messages) {
            let drawn = draw(n, args, start);
            last_seq[drawn.index] += 1;
            last_at[drawn.index] = drawn.at;
            rows.conversations.push(drawn.conversation.to_string());
            rows.seqs.push(last_seq[drawn.index]);
            rows.ids.push(MessageId::generate().to_string());
            rows.senders.push(drawn.sender);
            rows.bodies.push(drawn.body);
            rows.times.push(drawn.at);
        }
        sqlx::query(
            "INSERT INTO messages (conversation_id, seq, message_id, sender, body, created_at)
             SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[],
                                  $6::timestamptz[])",
        )
        .bind(&rows.conversations)
        .bind(&rows.seqs)
        .bind(&rows.ids)
        .bind(&rows.senders)
        .bind(&rows.bodies)
        .bind(&rows.times)
        .execute(pool)
        .await
        .unwrap();
    }
    let (mut ids, mut users) = (Vec::new(), Vec::new());
    for i in 0..args.conversations {
        let (a, b) = parties(i, args);
        ids.push(conversation(&a, &b).to_string());
        users.push((a, b));
    }
    let (a, b): (Vec<String>, Vec<String>) = users.into_iter().unzip();
    sqlx::query(
        "WITH c AS (SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::text[],
                                         $5::text[]) AS c(id, last_seq, last_at, a, b)),
              conversations AS (
                  INSERT INTO conversations (conversation_id, kind, last_seq, last_at)
                  SELECT id, 'direct', last_seq, last_at FROM c)
         INSERT INTO conversation_members (user_id, conversation_id, delivered_seq, read_seq, last_activity)
         SELECT u, id, last_seq, last_seq, last_at FROM c, unnest(ARRAY[a, b]) u",
    )
    .bind(&ids)
    .bind(&last_seq)
    .bind(&last_at)
    .bind(&a)
    .bind(&b)
    .execute(pool)
    .await
    .unwrap();
}

fn conversation(a: &str, b: &str) -> ConversationId {
    ConversationId::direct(&user(a), &user(b)).unwrap()
}

/// Applies messages `from..from + args.sample` through fanout's store in its default batches into two
/// fresh databases, each batch to both in turn (the order alternating): one as deployed, indexing, and
/// one without search at all (no searchable form, the search indexes dropped). Messages/s of each.
async fn fan_out(args: &Args, start: DateTime<Utc>) -> (f64, f64) {
    let with = TestDb::create().await;
    let without = TestDb::create().await;
    sqlx::query("DROP INDEX messages_search, messages_search_backlog")
        .execute(&without.pool)
        .await
        .unwrap();
    let skipping = Policy {
        index_search: false,
        ..Policy::default()
    };
    let sides = [(&with.pool, Policy::default()), (&without.pool, skipping)];
    let mut spent = [Duration::ZERO; 2];
    let from = args.messages;
    for (round, first) in (from..from + args.sample)
        .step_by(BATCH_MAX_EVENTS)
        .enumerate()
    {
        let batch: Vec<SourcedEvent> = (first..(first + BATCH_MAX_EVENTS).min(from + args.sample))
            .map(|n| SourcedEvent {
                partition: 0,
                offset: n as i64,
                envelope: message(n, args, start),
            })
            .collect();
        let order = if round % 2 == 0 { [0, 1] } else { [1, 0] };
        for side in order {
            let (pool, policy) = &sides[side];
            let started = Instant::now();
            apply_batch(pool, policy, &batch).await.unwrap();
            spent[side] += started.elapsed();
        }
    }
    let rate = |side: usize| args.sample as f64 / spent[side].as_secs_f64();
    (rate(0), rate(1))
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
            .persistent(false)
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
    let start = Utc::now() - TimeDelta::milliseconds((args.messages + args.sample) as i64 * 10);
    let db = TestDb::create().await;
    eprintln!("writing {} messages", args.messages);
    load(&db.pool, &args, start).await;

    // 1. The reindexer makes the corpus searchable.
    let reindexer = Reindexer {
        pool: db.pool.clone(),
        indexed: None,
    };
    eprintln!("indexing them");
    let started = Instant::now();
    let indexed = reindexer.drain().await.unwrap();
    let index_rate = indexed as f64 / started.elapsed().as_secs_f64();
    assert_eq!(indexed as usize, args.messages, "every message indexed");

    // 2. Search over HTTP against the same SQL straight on Postgres, once autovacuum would have
    // cleared the versions the reindexer left (done here, not waited for).
    sqlx::query("VACUUM ANALYZE").execute(&db.pool).await?;
    let own = count(
        &db.pool,
        "SELECT count(*) FROM messages WHERE conversation_id LIKE '%:searcher'",
    )
    .await;
    let index_mb = count(
        &db.pool,
        "SELECT pg_relation_size('messages_search') / 1000000",
    )
    .await;
    let table_mb = count(&db.pool, "SELECT pg_table_size('messages') / 1000000").await;
    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url("")).as_user("searcher");
    println!(
        "corpus: {} messages in {} direct conversations (a third Chinese, a third English, a third mixed); the searcher is in {} of them ({own} messages); messages table {table_mb} MB, its search index {index_mb} MB",
        args.messages, args.conversations, args.user_conversations
    );
    println!();
    println!("| query | hits on the first page | HTTP p50 / p99 | Postgres p50 / p99 | ratio of p50s (target ≥ 0.7) |");
    println!("|---|---|---|---|---|");
    let queries = [
        ("two-character Chinese word, common", "会议"),
        ("two-character Chinese word, rare", "熊猫"),
        ("one English word, common", "meeting"),
        ("one English word, rare", "zebra"),
        ("three English words", "project meeting tomorrow"),
    ];
    let mut all_met = true;
    for (what, q) in queries {
        let t = measure(&api, &db.pool, q, args.requests).await;
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
    reader.stop().await;

    // 3. Fan-out with and without search.
    eprintln!("fanning out {} messages twice", args.sample);
    let (with_index, without_index) = fan_out(&args, start).await;
    println!();
    println!("| what | rate |");
    println!("|---|---|");
    println!("| the reindexer over the stored corpus | {index_rate:.0} messages/s |");
    println!(
        "| fan-out with search indexing (a replay's index build rate), batches of {BATCH_MAX_EVENTS}, fresh database | {with_index:.0} messages/s |"
    );
    println!("| fan-out without search (no searchable form, no search index), the same batches in turn | {without_index:.0} messages/s |");
    println!(
        "| ratio, with / without | {:.2} |",
        with_index / without_index
    );
    println!();
    println!(
        "search latency ratio target (≥ 0.7): {}",
        if all_met { "met" } else { "NOT met" }
    );
    if args.keep {
        println!("kept database {}", db.name);
        std::mem::forget(db);
    }
    Ok(())
}
