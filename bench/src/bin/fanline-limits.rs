//! Fanline against the machine's own limits, side by side in one run (`scripts/bench.sh`):
//!
//! | workload | Fanline | limit |
//! |---|---|---|
//! | fan-out | posts × followers end to end: Kafka → fanout → `sync_entries` rows/s | the same rows into the same table and indexes by one in-server `INSERT … SELECT` |
//! | ingest | `POST /v1/posts` acknowledged/s (wrk) | the same events produced straight to the same broker with the same producer settings |
//! | feed, sync, contact list, history | pages/s over HTTP (wrk, same concurrency) | pgbench running the same statements (`-M prepared`) on the same data |
//!
//! Then p50/p99 of each page at half its measured rate (open loop), and the rows a post of a
//! 1M-follower author and a message to a 100k-member group write.
//!
//! Needs the broker and Postgres of `scripts/test.sh` (FANLINE_TEST_BROKERS, FANLINE_TEST_DATABASE_URL),
//! wrk and pgbench on the PATH. Every database and topic is its own, dropped at the end.
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::ensure;
use bench::measure::{self, Comparison, Latency, Rate, WrkRequest};
use bench::seed::{count, seed_group, user, EventLog};
use chrono::Utc;
use clap::Parser;
use fanout::store::{apply_batch, Policy};
use futures::StreamExt;
use harness::{spawn_fanout, spawn_ingest, unique, Api, TestDb, TestTopic};
use rdkafka::producer::{FutureProducer, FutureRecord};
use schemas::{
    ConversationId, Envelope, GroupCreated, GroupId, MembershipChange, MessageSent, PostCreated,
    PostId,
};

#[derive(Parser)]
#[command(
    about = "Prints Fanline's rates next to the machine's own limits, measured in the same run"
)]
struct Args {
    /// Posts of the fan-out comparison.
    #[arg(long, default_value_t = 1_000)]
    posts: usize,
    /// Followers of each author in the fan-out comparison.
    #[arg(long, default_value_t = 1_000)]
    followers: usize,
    /// Seconds each closed-loop side runs in all (after a 2 s warm-up that is not counted), split into
    /// `--rounds` alternating slices.
    #[arg(long, default_value_t = 12)]
    seconds: u64,
    /// Alternating rounds of the two sides of a closed-loop comparison (Fanline, limit, Fanline, …):
    /// whatever else the machine does meanwhile weighs on both sides alike.
    #[arg(long, default_value_t = 4)]
    rounds: u64,
    /// HTTP connections (wrk) and producer requests in flight for the ingest comparison.
    #[arg(long, default_value_t = 256)]
    ingest_connections: usize,
    /// Concurrent clients of the page comparisons (wrk connections, pgbench clients).
    #[arg(long, default_value_t = 32)]
    page_clients: usize,
    /// The reader's database connections (its `--db-connections`); the reader's default when not given.
    #[arg(long)]
    reader_connections: Option<u32>,
    /// Users of the page comparisons.
    #[arg(long, default_value_t = 1_000)]
    users: usize,
    /// Followers of the large author (O(1) check).
    #[arg(long, default_value_t = 1_000_000)]
    large_followers: i64,
    /// Members of the large group (O(1) check).
    #[arg(long, default_value_t = 100_000)]
    large_members: i64,
    /// Only these comparisons (fanout, ingest, feed, sync, conversations, history, large); all when empty.
    #[arg(long, value_delimiter = ',')]
    only: Vec<String>,
}

impl Args {
    /// The length of one round's slice of a closed-loop side.
    fn slice(&self) -> Duration {
        Duration::from_secs((self.seconds / self.rounds.max(1)).max(1))
    }

    /// The warm-up before a round: only the first.
    fn warm_up(round: u64) -> Duration {
        if round == 0 {
            Duration::from_secs(2)
        } else {
            Duration::ZERO
        }
    }

    fn runs(&self, name: &str) -> bool {
        self.only.is_empty() || self.only.iter().any(|o| o == name)
    }
}

/// The body of every bench post: the same size on both sides of the ingest comparison.
fn post_body(n: usize) -> String {
    format!("benchmark post number {n:>6}, about as long as a short status update")
}

fn post(author: &str, n: usize) -> PostCreated {
    PostCreated {
        post_id: PostId::generate(),
        author: user(author),
        body: post_body(n),
        content: Default::default(),
        message_id: None,
        created_at: Utc::now(),
    }
}

fn post_event(author: &str, n: usize) -> Envelope {
    Envelope::post_created(post(author, n))
}

// ---------------------------------------------------------------------------------------------------
// Fan-out

async fn seed_followers(db: &TestDb, authors: usize, followers: usize) {
    let mut log = EventLog::default();
    for a in 0..authors {
        for f in 0..followers {
            log.follow(&format!("fan{a}_{f}"), &format!("author{a}"));
        }
    }
    log.apply(&db.pool, &Policy::default()).await;
    sqlx::query("ANALYZE").execute(&db.pool).await.unwrap();
}

async fn fanout_comparison(args: &Args) -> anyhow::Result<Comparison> {
    let authors = 10;
    let posts: Vec<PostCreated> = (0..args.posts)
        .map(|n| post(&format!("author{}", n % authors), n))
        .collect();
    let rows = (args.posts * (args.followers + 1)) as f64;

    // The limit: the same rows, one statement, inside the server, on a table with the same indexes
    // (the realtime trigger is Fanline's own work, so it is off here).
    let limit_db = TestDb::create().await;
    seed_followers(&limit_db, authors, args.followers).await;
    sqlx::query("ALTER TABLE sync_entries DISABLE TRIGGER sync_entries_wake_readers")
        .execute(&limit_db.pool)
        .await?;
    let (ids, post_authors): (Vec<String>, Vec<String>) = posts
        .iter()
        .map(|p| (p.post_id.to_string(), p.author.to_string()))
        .unzip();
    let started = Instant::now();
    let inserted = sqlx::query(
        "INSERT INTO sync_entries (user_id, seq, post_id, author)
         SELECT a.user_id, nextval('sync_seq'), p.post_id, p.author
         FROM UNNEST($1::text[], $2::text[]) AS p(post_id, author)
         CROSS JOIN LATERAL (
             SELECT p.author AS user_id
             UNION ALL
             SELECT f.follower FROM follows f WHERE f.followee = p.author AND f.active
         ) AS a",
    )
    .bind(&ids)
    .bind(&post_authors)
    .execute(&limit_db.pool)
    .await?
    .rows_affected();
    let limit_seconds = measure::seconds_since(started);
    ensure!(
        inserted as f64 == rows,
        "the limit inserted {inserted} rows, not {rows}"
    );
    drop(limit_db);

    // Fanline: the posts wait in Kafka, then one fanout worker drains them.
    let db = TestDb::create().await;
    seed_followers(&db, authors, args.followers).await;
    let topic = TestTopic::create(8).await;
    let producer = harness::raw_producer();
    futures::stream::iter(&posts)
        .map(|post| {
            let producer = &producer;
            let topic = &topic.name;
            let event = Envelope::post_created(post.clone());
            async move {
                harness::produce_raw(producer, topic, event.key.as_str(), &event.to_json()).await
            }
        })
        .buffer_unordered(256)
        .collect::<Vec<_>>()
        .await;
    let seq_drawn = || async {
        let (value, called): (i64, bool) =
            sqlx::query_as("SELECT last_value, is_called FROM sync_seq")
                .fetch_one(&db.pool)
                .await
                .unwrap();
        if called {
            value
        } else {
            0
        }
    };
    let drawn_before = seq_drawn().await;
    let fanout = spawn_fanout(harness::fanout_config(&topic, &unique("limits"), &db.url)).await;
    // Timed from the first seq drawn (the worker has joined and holds a batch) to the last post committed:
    // group join and consumer start are not fan-out.
    let mut first_drawn = None;
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        if first_drawn.is_none() && seq_drawn().await > drawn_before {
            first_drawn = Some(Instant::now());
        }
        if first_drawn.is_some()
            && count(&db.pool, "SELECT count(*) FROM posts").await == args.posts as i64
        {
            break;
        }
        ensure!(Instant::now() < deadline, "fanout did not drain the posts");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let fanline_seconds = measure::seconds_since(first_drawn.unwrap());
    fanout.stop().await;
    let written = count(&db.pool, "SELECT count(*) FROM sync_entries").await;
    ensure!(
        written as f64 == rows,
        "fanout wrote {written} rows, not {rows}"
    );
    Ok(Comparison {
        workload: format!(
            "fan-out: {} posts × {} followers, Kafka → fanout → Postgres",
            args.posts, args.followers
        ),
        unit: "rows/s",
        fanline: Rate {
            per_second: rows / fanline_seconds,
        },
        limit: Rate {
            per_second: rows / limit_seconds,
        },
        limit_name: "one in-server `INSERT … SELECT` of the same rows".to_owned(),
        target: 0.75,
        latency: None,
    })
}

// ---------------------------------------------------------------------------------------------------
// Ingest

const INGEST_AUTHORS: usize = 100;

async fn ingest_comparison(
    args: &Args,
    dir: &std::path::Path,
) -> anyhow::Result<(Comparison, f64)> {
    let topic = TestTopic::create(8).await;
    let ingest_config = ingest::Config::for_brokers(&harness::brokers(), &topic.name);
    let ingest = spawn_ingest(ingest_config.clone()).await;
    let api = Api::new(ingest.url(""), "");
    let requests: Vec<WrkRequest> = (0..INGEST_AUTHORS)
        .map(|n| {
            let author = format!("writer{n}");
            WrkRequest {
                method: "POST",
                path: "/v1/posts".to_owned(),
                token: api.token_for(&author),
                body: Some(
                    serde_json::json!({ "author": author, "body": post_body(n) }).to_string(),
                ),
            }
        })
        .collect();
    let script = measure::wrk_script(dir, "ingest", &requests)?;

    // The limit: the same events (as ingest serialises them), straight from one producer configured
    // exactly as ingest's, `ingest_connections` sends in flight like the HTTP clients.
    let producer: FutureProducer = ingest_config
        .producer()
        .client_config(&ingest_config.kafka()?)
        .create()?;
    let payloads: Vec<(String, Vec<u8>)> = (0..INGEST_AUTHORS)
        .map(|n| {
            let author = format!("writer{n}");
            let event = post_event(&author, n);
            (author, event.to_json())
        })
        .collect();
    let produce_for = |seconds: u64| {
        let producer = producer.clone();
        let payloads = payloads.clone();
        let topic = topic.name.clone();
        let connections = args.ingest_connections;
        async move {
            let deadline = Instant::now() + Duration::from_secs(seconds);
            let started = Instant::now();
            let acknowledged = futures::stream::iter(0..)
                .take_while(|_| futures::future::ready(Instant::now() < deadline))
                .map(|n: usize| {
                    let producer = &producer;
                    let topic = &topic;
                    let (key, payload) = &payloads[n % payloads.len()];
                    async move {
                        let record = FutureRecord::to(topic).key(key).payload(payload);
                        producer.send(record, Duration::from_secs(30)).await.is_ok()
                    }
                })
                .buffer_unordered(connections)
                .filter(|ok| futures::future::ready(*ok))
                .count()
                .await;
            acknowledged as f64 / measure::seconds_since(started)
        }
    };
    // Alternating rounds; the raw producer's topic is the same one ingest writes to.
    let (mut fanline, mut limit) = (0.0, 0.0);
    for round in 0..args.rounds.max(1) {
        fanline += measure::wrk(
            &ingest.url(""),
            &script,
            args.ingest_connections,
            Args::warm_up(round),
            args.slice(),
        )
        .await?
        .per_second;
        if round == 0 {
            produce_for(2).await;
        }
        limit += produce_for(args.slice().as_secs()).await;
    }
    let http_alone = http_alone(args, &ingest.url(""), dir, args.ingest_connections).await?;
    ingest.stop().await;
    let rounds = args.rounds.max(1) as f64;
    let (fanline, limit) = (
        Rate {
            per_second: fanline / rounds,
        },
        limit / rounds,
    );
    Ok((
        Comparison {
            workload: format!(
                "ingest: `POST /v1/posts`, {} connections (wrk)",
                args.ingest_connections
            ),
            unit: "posts/s",
            fanline,
            limit: Rate { per_second: limit },
            limit_name: format!(
                "rdkafka produce of the same events, same settings, {} in flight",
                args.ingest_connections
            ),
            target: 0.8,
            latency: None,
        },
        http_alone,
    ))
}

// ---------------------------------------------------------------------------------------------------
// Pages

/// User `n`'s id: numbers, so that pgbench can draw them (`random(1, users)`).
fn uid(n: usize) -> String {
    n.to_string()
}

const PAGE_AUTHORS: usize = 100;
const FOLLOWS_PER_USER: usize = 20;
const POSTS_PER_AUTHOR: usize = 30;
const DIRECT_PEERS: usize = 10;
const HISTORY_MESSAGES: usize = 25;
const GROUP_SIZE: usize = 10;

fn author_uid(users: usize, a: usize) -> String {
    uid(users + 1 + a)
}

/// The direct conversation whose history the history pages read: user `n` with user `n + 1`.
fn history_conversation(users: usize, n: usize) -> ConversationId {
    ConversationId::direct(&user(&uid(n)), &user(&uid(n % users + 1))).expect("two different users")
}

/// Users 1..=users, each following 20 of 100 authors (30 posts each, pushed), each in 20 direct
/// conversations (with the 10 users after and the 10 before: 25 messages with the next one, 2 with
/// the others) and one 10-member group with 5 messages. All applied through fanout's store.
async fn seed_pages(db: &TestDb, users: usize) {
    let policy = Policy::default();
    let mut log = EventLog::default();
    for n in 1..=users {
        for k in 0..FOLLOWS_PER_USER {
            log.follow(&uid(n), &author_uid(users, (n + k * 5) % PAGE_AUTHORS));
        }
    }
    log.apply(&db.pool, &policy).await;
    for round in 0..POSTS_PER_AUTHOR {
        for a in 0..PAGE_AUTHORS {
            log.push(post_event(&author_uid(users, a), round));
        }
    }
    log.apply(&db.pool, &policy).await;
    let message = |from: usize, to: usize, n: usize| {
        Envelope::message_sent(MessageSent {
            message_id: schemas::MessageId::generate(),
            conversation: ConversationId::direct(&user(&uid(from)), &user(&uid(to)))
                .expect("two different users"),
            sender: user(&uid(from)),
            body: format!("message {n} from {from} to {to}, a line of chat of ordinary length"),
            content: Default::default(),
            reply_to: None,
            forwarded: false,
            mentions: Vec::new(),
            mention_all: false,
            client_msg_id: None,
            created_at: Utc::now(),
        })
    };
    for n in 1..=users {
        for k in 1..=DIRECT_PEERS {
            let peer = (n + k - 1) % users + 1;
            let count = if k == 1 { HISTORY_MESSAGES } else { 2 };
            for m in 0..count {
                let (from, to) = if m % 2 == 0 { (n, peer) } else { (peer, n) };
                log.push(message(from, to, m));
            }
        }
        if log.pending() > 5000 {
            log.apply(&db.pool, &policy).await;
        }
    }
    for g in 0..users / GROUP_SIZE {
        let group = GroupId::parse("group", &format!("team{g}")).unwrap();
        let owner = user(&uid(g * GROUP_SIZE + 1));
        log.push(Envelope::group_created(GroupCreated {
            group: group.clone(),
            owner: owner.clone(),
            name: format!("Team {g}"),
            group_type: None,
            description: None,
            join_rule: None,
            history: None,
            created_at: Utc::now(),
        }));
        for m in 2..=GROUP_SIZE {
            log.push(Envelope::member_added(MembershipChange {
                group: group.clone(),
                user: user(&uid(g * GROUP_SIZE + m)),
                by: owner.clone(),
                role: None,
            }));
        }
        for m in 0..5 {
            log.push(Envelope::message_sent(MessageSent {
                message_id: schemas::MessageId::generate(),
                conversation: ConversationId::group(&group),
                sender: user(&uid(g * GROUP_SIZE + 1 + m)),
                body: format!("group message {m}"),
                content: Default::default(),
                reply_to: None,
                forwarded: false,
                mentions: Vec::new(),
                mention_all: false,
                client_msg_id: None,
                created_at: Utc::now(),
            }));
        }
    }
    log.apply(&db.pool, &policy).await;
    sqlx::query("VACUUM ANALYZE")
        .execute(&db.pool)
        .await
        .unwrap();
}

/// One page workload: the HTTP requests (path, user) and the pgbench script running the same SQL.
struct PageWorkload {
    name: &'static str,
    requests: Vec<(String, String)>,
    /// pgbench script files (one per conversation for history, whose ids pgbench cannot draw).
    scripts: Vec<PathBuf>,
}

fn write_script(dir: &std::path::Path, name: &str, text: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(format!("{name}.sql"));
    std::fs::write(&path, text)?;
    Ok(path)
}

/// A page every user reads for themselves: `GET /v1/users/{n}/{page}?{query}` with user n's token, and
/// pgbench drawing the user (`:u`) for `statement`, whose parameters are `parameters`.
fn per_user_workload(
    dir: &std::path::Path,
    users: usize,
    name: &'static str,
    query: &str,
    variables: &str,
    statement: &str,
    parameters: &[&str],
) -> anyhow::Result<PageWorkload> {
    Ok(PageWorkload {
        name,
        requests: (1..=users)
            .map(|n| (format!("/v1/users/{n}/{name}?{query}"), uid(n)))
            .collect(),
        scripts: vec![write_script(
            dir,
            name,
            &format!(
                "\\set u random(1, {users})\n\\set rows 21\n{variables}{}",
                measure::pgbench_statement(statement, parameters)
            ),
        )?],
    })
}

fn page_workloads(users: usize, dir: &std::path::Path) -> anyhow::Result<Vec<PageWorkload>> {
    let feed = per_user_workload(
        dir,
        users,
        "feed",
        "limit=20",
        "",
        reader::queries::FEED_SQL,
        &[":u", "NULL", ":rows"],
    )?;
    let sync = per_user_workload(
        dir,
        users,
        "sync",
        "after=0&limit=20",
        "\\set after 0\n",
        reader::queries::SYNC_FLAGGED_SQL,
        &[":u", ":after", ":rows"],
    )?;
    let conversations = per_user_workload(
        dir,
        users,
        "conversations",
        "limit=20",
        &format!("\\set preview {}\n", schemas::api::PREVIEW_CHARS),
        reader::im::CONVERSATIONS_SQL,
        &[":u", "NULL", "NULL", ":rows", ":preview"],
    )?;
    let conversations_read = 20.min(users);
    let mut history_scripts = Vec::new();
    for n in 1..=conversations_read {
        let conversation = history_conversation(users, n);
        history_scripts.push(write_script(
            dir,
            &format!("history{n}"),
            &format!(
                "\\set before {}\n\\set rows 21\n\\set floor 0\n{}",
                i64::MAX,
                measure::pgbench_statement(
                    reader::history::HISTORY_BEFORE_SQL,
                    &[":conversation", ":before", ":rows", ":floor", "'nobody'"]
                )
                // A literal with its colons escaped: pgbench would take `:1` for a variable.
                .replace(
                    ":conversation",
                    &format!("E'{}'", conversation.to_string().replace(':', "\\x3a"))
                )
            ),
        )?);
    }
    let history = PageWorkload {
        name: "history",
        requests: (1..=conversations_read)
            .map(|n| {
                (
                    format!(
                        "/v1/conversations/{}/messages?limit=20",
                        history_conversation(users, n)
                    ),
                    uid(n),
                )
            })
            .collect(),
        scripts: history_scripts,
    };
    Ok(vec![feed, sync, conversations, history])
}

async fn page_comparison(
    args: &Args,
    page_connections: usize,
    db: &TestDb,
    reader_url: &str,
    api: &Api,
    dir: &std::path::Path,
    workload: &PageWorkload,
) -> anyhow::Result<Comparison> {
    let requests: Vec<WrkRequest> = workload
        .requests
        .iter()
        .map(|(path, who)| WrkRequest {
            method: "GET",
            path: path.clone(),
            token: api.token_for(who),
            body: None,
        })
        .collect();
    let script = measure::wrk_script(dir, workload.name, &requests)?;
    // Alternating rounds of wrk and pgbench. pgbench runs with the clients' concurrency and with the
    // reader's own number of page connections (fewer backends can be faster on two cores: the reader's
    // pool would otherwise have an edge pgbench was not given); the faster is the limit.
    let levels = if page_connections == args.page_clients {
        vec![args.page_clients]
    } else {
        vec![args.page_clients, page_connections]
    };
    let mut fanline = 0.0;
    let mut limits = vec![0.0; levels.len()];
    for round in 0..args.rounds.max(1) {
        let warm_up = Args::warm_up(round);
        fanline += measure::wrk(
            reader_url,
            &script,
            args.page_clients,
            warm_up,
            args.slice(),
        )
        .await?
        .per_second;
        for (clients, limit) in levels.iter().zip(limits.iter_mut()) {
            *limit += measure::pgbench(&db.url, &workload.scripts, *clients, warm_up, args.slice())
                .await?
                .per_second;
        }
    }
    let rounds = args.rounds.max(1) as f64;
    let (best, limit) = levels
        .iter()
        .zip(&limits)
        .max_by(|a, b| a.1.total_cmp(b.1))
        .map(|(clients, limit)| (*clients, limit / rounds))
        .unwrap_or_default();
    let measured: Vec<String> = levels
        .iter()
        .zip(&limits)
        .map(|(clients, limit)| format!("-c {clients}: {:.0}/s", limit / rounds))
        .collect();
    let (fanline, limit) = (
        Rate {
            per_second: fanline / rounds,
        },
        Rate { per_second: limit },
    );
    let absolute: Vec<(String, String)> = workload
        .requests
        .iter()
        .map(|(path, who)| (format!("{reader_url}{path}"), api.token_for(who)))
        .collect();
    let latency: Latency =
        measure::open_loop(&absolute, fanline.per_second / 2.0, Duration::from_secs(5)).await?;
    Ok(Comparison {
        workload: format!(
            "{} page (limit 20), {} clients",
            workload.name, args.page_clients
        ),
        unit: "pages/s",
        fanline,
        limit,
        limit_name: format!(
            "pgbench -M prepared, same SQL, the faster of {} (-c {best})",
            measured.join(", ")
        ),
        target: 0.7,
        latency: Some(latency),
    })
}

/// The HTTP round trip alone, on the same server with the same concurrency: wrk on `GET /healthz`, which
/// touches neither database nor broker. On cores shared by everything, a request that costs one such
/// round trip plus one limit-side operation can reach at most `http · limit / (http + limit)`.
async fn http_alone(
    args: &Args,
    base_url: &str,
    dir: &std::path::Path,
    connections: usize,
) -> anyhow::Result<f64> {
    let script = measure::wrk_script(
        dir,
        "healthz",
        &[WrkRequest {
            method: "GET",
            path: "/healthz".to_owned(),
            token: String::new(),
            body: None,
        }],
    )?;
    let rate = measure::wrk(
        base_url,
        &script,
        connections,
        Args::warm_up(0),
        args.slice(),
    )
    .await?;
    Ok(rate.per_second)
}

/// `http · limit / (http + limit)` as a ratio of `limit`: the ceiling when costs add up.
fn ceiling(http: f64, limit: f64) -> f64 {
    http / (http + limit)
}

// ---------------------------------------------------------------------------------------------------
// O(1) rows for huge audiences

async fn large_audiences(args: &Args) -> anyhow::Result<Vec<(&'static str, String)>> {
    let db = TestDb::create().await;
    let policy = Policy::default();
    // 1M follow events would measure follows, not the post: the edges and the author's state (what
    // those events leave behind: pull mode above the threshold) are written straight into the tables.
    sqlx::query(
        "INSERT INTO follows (followee, follower, active, src_partition, src_offset)
         SELECT 'star', 'fan' || i, true, -1, -1 FROM generate_series(1, $1) i",
    )
    .bind(args.large_followers)
    .execute(&db.pool)
    .await?;
    sqlx::query("INSERT INTO authors (author, follower_count, mode) VALUES ('star', $1, 'pull')")
        .bind(args.large_followers)
        .execute(&db.pool)
        .await?;
    let rows = "SELECT (SELECT count(*) FROM sync_entries) + (SELECT count(*) FROM posts)
                     + (SELECT count(*) FROM messages)";
    let before = count(&db.pool, rows).await;
    let started = Instant::now();
    let mut log = EventLog::default();
    apply_batch(&db.pool, &policy, &[log.at(post_event("star", 1))]).await?;
    let post_ms = started.elapsed().as_secs_f64() * 1000.0;
    let post_rows = count(&db.pool, rows).await - before;

    // The same for 100k joins: a group created through fanout, its members written straight into the
    // tables.
    let group = seed_group(&db.pool, &mut log, &policy, "crowd", args.large_members).await;
    ensure!(
        args.large_members > policy.group_pull_above,
        "a {}-member group is below the pull threshold ({})",
        args.large_members,
        policy.group_pull_above
    );
    let before = count(&db.pool, rows).await;
    let started = Instant::now();
    apply_batch(
        &db.pool,
        &policy,
        &[log.at(Envelope::message_sent(MessageSent {
            message_id: schemas::MessageId::generate(),
            conversation: ConversationId::group(&group),
            sender: user("crowd_owner"),
            body: "hello crowd".to_owned(),
            content: Default::default(),
            reply_to: None,
            forwarded: false,
            mentions: Vec::new(),
            mention_all: false,
            client_msg_id: None,
            created_at: Utc::now(),
        }))],
    )
    .await?;
    let message_ms = started.elapsed().as_secs_f64() * 1000.0;
    let message_rows = count(&db.pool, rows).await - before;
    Ok(vec![
        (
            "post by a 1M-follower author",
            format!(
                "{post_rows} rows written (post + author's own inbox entry), {post_ms:.1} ms; {} followers",
                args.large_followers
            ),
        ),
        (
            "message to a 100k-member group",
            format!(
                "{message_rows} rows written (message + sender's own inbox entry), {message_ms:.1} ms; {} members",
                args.large_members
            ),
        ),
    ])
}

/// Progress on stderr as each comparison finishes (the table comes at the end, on stdout).
fn report(row: Comparison) -> Comparison {
    eprintln!(
        "  {:.0} vs {:.0} {} = {:.2}{}",
        row.fanline.per_second,
        row.limit.per_second,
        row.unit,
        row.ratio(),
        row.latency
            .map(|l| format!(
                ", p50 {:.1} ms, p99 {:.1} ms at {:.0}/s",
                l.p50_ms, l.p99_ms, l.rate
            ))
            .unwrap_or_default()
    );
    row
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // Logs go to stderr (the harness's test writer would mix them into the table on stdout).
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn")),
        )
        .with_writer(std::io::stderr)
        .try_init();
    let dir = std::env::temp_dir().join(unique("fanline-limits"));
    std::fs::create_dir_all(&dir)?;
    let mut rows = Vec::new();
    let mut facts = Vec::new();
    let mut ceilings: Vec<(&str, String)> = Vec::new();
    if args.runs("fanout") {
        eprintln!(
            "fan-out: {} posts × {} followers",
            args.posts, args.followers
        );
        rows.push(report(fanout_comparison(&args).await?));
    }
    if args.runs("ingest") {
        eprintln!("ingest: {} connections", args.ingest_connections);
        let (row, http) = ingest_comparison(&args, &dir).await?;
        ceilings.push((
            "HTTP alone: ingest `GET /healthz` (no broker), same connections (wrk)",
            format!(
                "{http:.0} req/s; ceiling of the ingest ratio if HTTP and produce costs add up: {:.2}",
                ceiling(http, row.limit.per_second)
            ),
        ));
        rows.push(report(row));
    }
    let pages: Vec<&str> = ["feed", "sync", "conversations", "history"]
        .into_iter()
        .filter(|name| args.runs(name))
        .collect();
    if !pages.is_empty() {
        eprintln!("pages: seeding {} users", args.users);
        let db = TestDb::create().await;
        let seeding = Instant::now();
        seed_pages(&db, args.users).await;
        eprintln!("pages: seeded in {:.1} s", measure::seconds_since(seeding));
        let mut config = reader::Config::for_database(&db.url);
        if let Some(connections) = args.reader_connections {
            config.db_connections = connections;
        }
        let page_connections = config.page_connections() as usize;
        let reader = harness::spawn_reader_with(config).await;
        let api = Api::new("", reader.url(""));
        for workload in page_workloads(args.users, &dir)? {
            if pages.contains(&workload.name) {
                eprintln!("pages: {}", workload.name);
                rows.push(report(
                    page_comparison(
                        &args,
                        page_connections,
                        &db,
                        &reader.url(""),
                        &api,
                        &dir,
                        &workload,
                    )
                    .await?,
                ));
            }
        }
        let http = http_alone(&args, &reader.url(""), &dir, args.page_clients).await?;
        let page_ceilings: Vec<String> = rows
            .iter()
            .filter(|row| row.unit == "pages/s")
            .map(|row| {
                let name = row.workload.split(' ').next().unwrap_or_default();
                format!("{name} {:.2}", ceiling(http, row.limit.per_second))
            })
            .collect();
        ceilings.push((
            "HTTP alone: reader `GET /healthz` (no database), same clients (wrk)",
            format!(
                "{http:.0} req/s; ceilings of the page ratios if HTTP and SQL costs add up: {}",
                page_ceilings.join(", ")
            ),
        ));
        reader.stop().await;
    }
    if args.runs("large") {
        eprintln!("large audiences");
        facts = large_audiences(&args).await?;
    }
    let facts: Vec<(&str, String)> = ceilings.into_iter().chain(facts).collect();
    measure::print_table(&rows, &facts);
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
