//! IM bench, on this machine's Postgres through fanout's store and the reader over HTTP:
//! 1. a 500-member group (push): sync rows/s for messages, against feed fan-out measured in the same run
//!    (posts of an author with 500 followers) — the ratio is the claim;
//! 2. a 100,000-member group (pull, read diffusion): rows written per message and time per message;
//! 3. the contact list of a user with 1,000 conversations: p50/p99 over HTTP (first pages and deep
//!    pages), `total_unread` included in every answer.
//!
//! `cargo run --release -p bench --bin fanline-im-bench`
//! Needs Postgres as `scripts/test.sh` sets it up (FANLINE_TEST_DATABASE_URL); it makes its own database.
#![allow(clippy::unwrap_used)]

use std::time::Instant;

use bench::measure::percentile_ms;
use bench::seed::{count, seed_group, user, EventLog};
use chrono::Utc;
use clap::Parser;
use fanout::store::{apply_batch, Policy, SourcedEvent};
use harness::{spawn_reader, Api, TestDb};
use schemas::{ConversationId, Envelope, FollowChange, GroupId, MessageSent, PostCreated, PostId};

#[derive(Parser)]
#[command(
    about = "Measures group fan-out against feed fan-out, large-group cost and contact lists"
)]
struct Args {
    /// Members of the push-mode group (and followers of the comparison author).
    #[arg(long, default_value_t = 500)]
    members: usize,
    /// Messages to the group (and posts by the author) timed.
    #[arg(long, default_value_t = 200)]
    messages: usize,
    /// Members of the large (pull-mode) group.
    #[arg(long, default_value_t = 100_000)]
    large_members: i64,
    /// Conversations of the contact-list user.
    #[arg(long, default_value_t = 1_000)]
    conversations: i64,
    /// Contact-list requests.
    #[arg(long, default_value_t = 400)]
    requests: usize,
}

fn message(group: &GroupId, sender: &str, n: usize) -> Envelope {
    Envelope::message_sent(MessageSent {
        message_id: schemas::MessageId::generate(),
        conversation: ConversationId::group(group),
        sender: user(sender),
        body: format!("message {n}"),
        content: Default::default(),
        reply_to: None,
        forwarded: false,
        mentions: Vec::new(),
        mention_all: false,
        client_msg_id: None,
        created_at: Utc::now(),
    })
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let db = TestDb::create().await;
    let policy = Policy::default();
    let mut log = EventLog::default();

    // 1. Feed fan-out and group fan-out to the same audience size, one event per transaction each.
    let follows: Vec<SourcedEvent> = (0..args.members)
        .map(|i| {
            log.at(Envelope::followed(FollowChange {
                follower: user(&format!("fan{i}")),
                followee: user("author"),
            }))
        })
        .collect();
    for chunk in follows.chunks(5000) {
        apply_batch(&db.pool, &policy, chunk).await.unwrap();
    }
    let group = seed_group(&db.pool, &mut log, &policy, "team", args.members as i64).await;
    let before = count(&db.pool, "SELECT count(*) FROM sync_entries").await;
    let started = Instant::now();
    for n in 0..args.messages {
        let post = log.at(Envelope::post_created(PostCreated {
            post_id: PostId::generate(),
            author: user("author"),
            body: format!("post {n}"),
            content: Default::default(),
            message_id: None,
            created_at: Utc::now(),
        }));
        apply_batch(&db.pool, &policy, &[post]).await.unwrap();
    }
    let feed_seconds = started.elapsed().as_secs_f64();
    let feed_rows = count(&db.pool, "SELECT count(*) FROM sync_entries").await - before;
    let before = count(&db.pool, "SELECT count(*) FROM sync_entries").await;
    let started = Instant::now();
    for n in 0..args.messages {
        let sent = log.at(message(&group, "team_owner", n));
        apply_batch(&db.pool, &policy, &[sent]).await.unwrap();
    }
    let group_seconds = started.elapsed().as_secs_f64();
    let group_rows = count(&db.pool, "SELECT count(*) FROM sync_entries").await - before;
    let feed_rate = feed_rows as f64 / feed_seconds;
    let group_rate = group_rows as f64 / group_seconds;
    println!(
        "fan-out: {} posts to {} followers: {feed_rows} sync rows in {feed_seconds:.2} s = {feed_rate:.0} rows/s",
        args.messages, args.members
    );
    println!(
        "fan-out: {} messages to a {}-member group: {group_rows} sync rows in {group_seconds:.2} s = {group_rate:.0} rows/s ({:.2}× feed fan-out)",
        args.messages,
        args.members,
        group_rate / feed_rate,
    );

    // 2. A large group: rows written per message.
    let large = seed_group(&db.pool, &mut log, &policy, "crowd", args.large_members).await;
    let rows = "SELECT (SELECT count(*) FROM sync_entries) + (SELECT count(*) FROM messages)";
    let before = count(&db.pool, rows).await;
    let started = Instant::now();
    let sent = 20;
    for n in 0..sent {
        let event = log.at(message(&large, "crowd_owner", n));
        apply_batch(&db.pool, &policy, &[event]).await.unwrap();
    }
    let elapsed = started.elapsed().as_secs_f64();
    let written = count(&db.pool, rows).await - before;
    println!(
        "large:   {sent} messages to a {}-member group (pull mode above {}): {} rows written per message (message + sender's own inbox entry), {:.1} ms per message",
        args.large_members,
        policy.group_pull_above,
        written / sent as i64,
        elapsed * 1000.0 / sent as f64
    );

    // 3. A contact list of `conversations` direct conversations with unread messages each.
    sqlx::query(
        "INSERT INTO conversations (conversation_id, kind, last_seq, last_at)
         SELECT 'd:busy:peer' || lpad(i::text, 5, '0'), 'direct', 3, now() - i * interval '1 second'
         FROM generate_series(1, $1) i",
    )
    .bind(args.conversations)
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO messages (conversation_id, seq, message_id, sender, body, created_at)
         SELECT 'd:busy:peer' || lpad(i::text, 5, '0'), s,
                'M' || lpad(i::text, 10, '0') || s, 'peer' || lpad(i::text, 5, '0'),
                'hello number ' || s, now() - i * interval '1 second'
         FROM generate_series(1, $1) i, generate_series(1, 3) s",
    )
    .bind(args.conversations)
    .execute(&db.pool)
    .await?;
    sqlx::query(
        "INSERT INTO conversation_members
             (user_id, conversation_id, delivered_seq, read_seq, unread, last_activity)
         SELECT u, 'd:busy:peer' || lpad(i::text, 5, '0'), 3, CASE WHEN u = 'busy' THEN 1 ELSE 3 END,
                CASE WHEN u = 'busy' THEN 2 ELSE 0 END, now() - i * interval '1 second'
         FROM generate_series(1, $1) i, unnest(ARRAY['busy', 'peer' || lpad(i::text, 5, '0')]) u",
    )
    .bind(args.conversations)
    .execute(&db.pool)
    .await?;
    // The user is also in both groups above (one push, one pull).
    for conversation in ["g:team", "g:crowd"] {
        sqlx::query(
            "INSERT INTO conversation_members
                 (user_id, conversation_id, from_seq, delivered_seq, read_seq, last_activity, derived)
             SELECT 'busy', conversation_id, last_seq, last_seq, last_seq, now(), true
             FROM conversations WHERE conversation_id = $1",
        )
        .bind(conversation)
        .execute(&db.pool)
        .await?;
    }
    sqlx::query("ANALYZE").execute(&db.pool).await?;
    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url("")).as_user("busy");
    let url = |cursor: Option<&str>| {
        let cursor = cursor.map(|c| format!("&cursor={c}")).unwrap_or_default();
        format!(
            "{}/v1/users/busy/conversations?limit=20{cursor}",
            api.reader
        )
    };
    let (_, page) = api.raw(reqwest::Method::GET, &url(None), None, None).await;
    let expected_total = 2 * args.conversations;
    assert_eq!(page["total_unread"], expected_total, "{page}");
    // A cursor 25 pages deep, so that half of the requests page into the list.
    let mut cursor: Option<String> = None;
    for _ in 0..25 {
        let (_, page) = api
            .raw(reqwest::Method::GET, &url(cursor.as_deref()), None, None)
            .await;
        cursor = page["next_cursor"].as_str().map(str::to_owned);
    }
    let mut latencies = Vec::with_capacity(args.requests);
    for i in 0..args.requests {
        let page_cursor = if i % 2 == 0 { None } else { cursor.as_deref() };
        let started = Instant::now();
        let (status, page) = api
            .raw(reqwest::Method::GET, &url(page_cursor), None, None)
            .await;
        latencies.push(started.elapsed());
        assert!(status.is_success(), "{page}");
        assert_eq!(page["conversations"].as_array().unwrap().len(), 20);
    }
    latencies.sort_unstable();
    println!(
        "contacts: {} conversations (+ a push and a pull group), limit 20, total_unread {} in every answer, {} requests (half first page, half 25 pages deep): p50 {:.2} ms, p99 {:.2} ms",
        args.conversations,
        expected_total,
        args.requests,
        percentile_ms(&latencies, 0.5),
        percentile_ms(&latencies, 0.99)
    );
    reader.stop().await;
    Ok(())
}
