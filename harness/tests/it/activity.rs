//! Model test of 1 + M delivery (docs/design.md "1 + M"): random follows, unfollows, posts, deletes,
//! group joins, leaves and messages, activity and dormancy (the sweeper's events) and returns, on a
//! simulated clock that moves hours per step, with thresholds so low that authors and groups cross them
//! both ways, and a return window so small that returns are cut short. After every few steps, for every
//! user who is active: the feed is every live post of the authors they follow and their own, exactly
//! once; their inbox holds every post addressed to them from their feed's cut on and every message of
//! their groups delivered while they were awake or missed within their return's window, each once; their
//! unread counts are exact. At the end the log is applied again (nothing changes) and, in another
//! interleaving of the partitions, into a fresh database: feeds and unread counts are the same, and the
//! inboxes of the users who were never dormant too.

use std::collections::{BTreeMap, BTreeSet};

use chrono::{DateTime, TimeDelta, Utc};
use fanout::policy::ReturnWindow;
use fanout::store::{apply_batch, Policy, SourcedEvent};
use harness::model::{walk_feed, KeyedLog};
use harness::TestDb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::{
    ConversationId, Envelope, FollowChange, GroupCreated, GroupId, MembershipChange, MessageId,
    MessageSent, PostCreated, PostDeleted, PostId, UserActive, UserDormant, UserId,
};

const USERS: usize = 8;
const GROUPS: usize = 2;
const PARTITIONS: i32 = 4;
/// The sweeper's active window, in the simulated clock.
const WINDOW_HOURS: i64 = 14 * 24;

fn user(index: usize) -> UserId {
    UserId::parse("user", &format!("u{index}")).unwrap()
}

fn group(index: usize) -> GroupId {
    GroupId::parse("group", &format!("g{index}")).unwrap()
}

fn policy() -> Policy {
    Policy {
        pull_above: 3,
        push_below: 2,
        follow_backfill: 10_000,
        group_pull_above: 3,
        group_push_below: 2,
        // Above the number of users: a pull-mode audience's active members all get the entry here
        // (the bound itself: `fanout_store::a_pull_mode_post_reaches_its_first_active_followers`).
        active_audience_max: USERS as i64,
        return_window: ReturnWindow {
            span: TimeDelta::days(3),
            max_posts: 4,
            max_messages_per_group: 10_000,
        },
        ..Policy::default()
    }
}

struct Post {
    id: String,
    author: usize,
    deleted: bool,
    step: usize,
}

struct Message {
    id: String,
    group: usize,
    seq: i64,
    sender: usize,
    at: DateTime<Utc>,
}

#[derive(Default)]
struct Model {
    /// (follower, followee) → the step of the latest follow.
    follows: BTreeMap<(usize, usize), usize>,
    posts: Vec<Post>,
    /// group → member → the group's seq when they joined.
    members: BTreeMap<usize, BTreeMap<usize, i64>>,
    seqs: BTreeMap<usize, i64>,
    messages: Vec<Message>,
    /// user → their last reported activity (absent: never reported, never dormant).
    last_active: BTreeMap<usize, DateTime<Utc>>,
    dormant: BTreeSet<usize>,
    ever_dormant: BTreeSet<usize>,
    returns: usize,
    /// user → message ids their inbox must hold.
    owed: BTreeMap<usize, BTreeSet<String>>,
    /// user → messages (index) written while they were dormant, not yet settled by a return.
    missed: BTreeMap<usize, Vec<usize>>,
}

impl Model {
    fn feed(&self, user: usize) -> Vec<String> {
        let mut ids: Vec<String> = self
            .posts
            .iter()
            .filter(|p| {
                !p.deleted && (p.author == user || self.follows.contains_key(&(user, p.author)))
            })
            .map(|p| p.id.clone())
            .collect();
        ids.sort_unstable_by(|a, b| b.cmp(a));
        ids
    }

    /// The live posts the inbox of an active `user` must hold from `cut` on: their own, and those of
    /// the authors they follow written after they followed.
    fn owed_posts(&self, user: usize, cut: &str) -> BTreeSet<String> {
        self.posts
            .iter()
            .filter(|p| !p.deleted && p.id.as_str() >= cut)
            .filter(|p| {
                p.author == user
                    || self
                        .follows
                        .get(&(user, p.author))
                        .is_some_and(|followed| p.step > *followed)
            })
            .map(|p| p.id.clone())
            .collect()
    }

    fn unread(&self, user: usize, group: usize) -> i64 {
        let Some(joined) = self.members.get(&group).and_then(|m| m.get(&user)) else {
            return 0;
        };
        // Sending reads everything up to one's own message.
        let read = self
            .messages
            .iter()
            .filter(|m| m.group == group && m.sender == user)
            .map(|m| m.seq)
            .fold(*joined, i64::max);
        self.messages
            .iter()
            .filter(|m| m.group == group && m.seq > read && m.sender != user)
            .count() as i64
    }

    /// A return at `at`: what was missed within the window is owed now.
    fn come_back(&mut self, user: usize, at: DateTime<Utc>, span: TimeDelta) {
        self.dormant.remove(&user);
        self.returns += 1;
        for index in self.missed.remove(&user).unwrap_or_default() {
            let message = &self.messages[index];
            let still_member = self
                .members
                .get(&message.group)
                .and_then(|m| m.get(&user))
                .is_some_and(|joined| message.seq > *joined);
            if still_member && message.at >= at - span {
                self.owed
                    .entry(user)
                    .or_default()
                    .insert(message.id.clone());
            }
        }
    }
}

/// One random step: the event it writes (none: nothing to do) after updating the model.
fn step(model: &mut Model, rng: &mut StdRng, step: usize, now: DateTime<Utc>) -> Vec<Envelope> {
    let actor = rng.gen_range(0..USERS);
    let other = (actor + rng.gen_range(1..USERS)) % USERS;
    let change = FollowChange {
        follower: user(actor),
        followee: user(other),
    };
    match rng.gen_range(0..16) {
        0..=1 => {
            model.follows.insert((actor, other), step);
            vec![Envelope::followed(change)]
        }
        2 => {
            model.follows.remove(&(actor, other));
            vec![Envelope::unfollowed(change)]
        }
        3..=5 => {
            // Ids from the simulated clock: they sort by it, as ids from ingest sort by real time.
            let post_id = PostId::lowest_at(now);
            model.posts.push(Post {
                id: post_id.to_string(),
                author: actor,
                deleted: false,
                step,
            });
            vec![Envelope::post_created(PostCreated {
                post_id,
                author: user(actor),
                body: format!("step {step}"),
                content: Default::default(),
                message_id: None,
                created_at: now,
            })]
        }
        6 => {
            let own: Vec<usize> = (0..model.posts.len())
                .filter(|i| model.posts[*i].author == actor && !model.posts[*i].deleted)
                .collect();
            let Some(&index) = own.get(rng.gen_range(0..own.len().max(1))) else {
                return Vec::new();
            };
            model.posts[index].deleted = true;
            vec![Envelope::post_deleted(PostDeleted {
                post_id: PostId::parse("post_id", &model.posts[index].id).unwrap(),
                author: user(actor),
            })]
        }
        7..=10 => group_step(model, rng, actor, now),
        11..=13 => {
            // Half the users come often, the others seldom.
            let user_index = if rng.gen_bool(0.8) {
                rng.gen_range(0..USERS / 2)
            } else {
                rng.gen_range(USERS / 2..USERS)
            };
            if model.dormant.contains(&user_index) {
                model.come_back(user_index, now, policy().return_window.span);
            }
            model.last_active.insert(user_index, now);
            vec![Envelope::user_active(UserActive {
                user: user(user_index),
                at: now,
            })]
        }
        _ => sweep(model, now),
    }
}

/// The sweeper: a `user_dormant` for everyone silent for the window.
fn sweep(model: &mut Model, now: DateTime<Utc>) -> Vec<Envelope> {
    let mut events = Vec::new();
    for (&u, &last) in &model.last_active {
        if !model.dormant.contains(&u) && now - last > TimeDelta::hours(WINDOW_HOURS) {
            events.push(Envelope::user_dormant(UserDormant {
                user: user(u),
                last_active_at: last,
            }));
        }
    }
    for event in &events {
        if let schemas::Event::UserDormant(d) = &event.event {
            let index: usize = d.user.as_str()[1..].parse().unwrap();
            model.dormant.insert(index);
            model.ever_dormant.insert(index);
        }
    }
    events
}

/// A join, a leave or a message of a group.
fn group_step(
    model: &mut Model,
    rng: &mut StdRng,
    actor: usize,
    now: DateTime<Utc>,
) -> Vec<Envelope> {
    let g = rng.gen_range(0..GROUPS);
    let change = MembershipChange {
        group: group(g),
        user: user(actor),
        by: user(actor),
        role: None,
    };
    let members = model.members.entry(g).or_default();
    match rng.gen_range(0..4) {
        0 if !members.contains_key(&actor) => {
            members.insert(actor, model.seqs[&g]);
            vec![Envelope::member_added(change)]
        }
        // The owner (u0) stays.
        1 if actor != 0 && members.contains_key(&actor) => {
            members.remove(&actor);
            vec![Envelope::member_removed(change)]
        }
        _ if members.contains_key(&actor) => {
            let seq = model.seqs[&g] + 1;
            model.seqs.insert(g, seq);
            let id = MessageId::generate();
            let index = model.messages.len();
            model.messages.push(Message {
                id: id.to_string(),
                group: g,
                seq,
                sender: actor,
                at: now,
            });
            for &member in model.members[&g].keys() {
                if model.dormant.contains(&member) {
                    model.missed.entry(member).or_default().push(index);
                } else {
                    model.owed.entry(member).or_default().insert(id.to_string());
                }
            }
            vec![Envelope::message_sent(MessageSent {
                message_id: id,
                conversation: ConversationId::group(&group(g)),
                sender: user(actor),
                body: "hi".into(),
                content: Default::default(),
                reply_to: None,
                forwarded: false,
                mentions: Vec::new(),
                mention_all: false,
                client_msg_id: None,
                created_at: now,
            })]
        }
        _ => Vec::new(),
    }
}

/// A user's inbox: (post ids, message ids), each listed as often as it occurs.
async fn inbox(db: &TestDb, user: usize) -> (Vec<String>, Vec<String>) {
    let rows: Vec<(Option<String>, Option<String>, String)> = sqlx::query_as(
        "SELECT post_id, message_id, kind FROM sync_entries WHERE user_id = $1 ORDER BY seq",
    )
    .bind(format!("u{user}"))
    .fetch_all(&db.pool)
    .await
    .unwrap();
    let posts = rows.iter().filter_map(|r| r.0.clone()).collect();
    let messages = rows
        .iter()
        .filter(|r| r.2 == "message")
        .filter_map(|r| r.1.clone())
        .collect();
    (posts, messages)
}

async fn cut(db: &TestDb, user: usize) -> String {
    let cut: Option<(Option<String>,)> =
        sqlx::query_as("SELECT feed_pull_below FROM user_activity WHERE user_id = $1")
            .bind(format!("u{user}"))
            .fetch_optional(&db.pool)
            .await
            .unwrap();
    cut.and_then(|(cut,)| cut).unwrap_or_default()
}

async fn unread(db: &TestDb) -> BTreeMap<(String, String), i64> {
    let rows: Vec<(String, String, i64)> = sqlx::query_as(
        "SELECT user_id, conversation_id, unread FROM conversation_state WHERE active",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter().map(|(u, c, n)| ((u, c), n)).collect()
}

/// Every check on every active user.
async fn check(db: &TestDb, model: &Model, rng: &mut StdRng, context: &str) -> usize {
    let mut checked = 0;
    for u in (0..USERS).filter(|u| !model.dormant.contains(u)) {
        assert_eq!(
            walk_feed(db, &format!("u{u}"), rng).await,
            model.feed(u),
            "{context}: feed of u{u}"
        );
        let (posts, messages) = inbox(db, u).await;
        let posts_held: BTreeSet<String> = posts.iter().cloned().collect();
        assert_eq!(
            posts_held.len(),
            posts.len(),
            "{context}: a post twice in u{u}'s inbox"
        );
        let owed_posts = model.owed_posts(u, &cut(db, u).await);
        let missing: Vec<&String> = owed_posts
            .iter()
            .filter(|id| !posts_held.contains(*id))
            .collect();
        assert!(
            missing.is_empty(),
            "{context}: u{u}'s inbox lacks posts {missing:?}"
        );
        let messages_held: BTreeSet<String> = messages.iter().cloned().collect();
        assert_eq!(
            messages_held.len(),
            messages.len(),
            "{context}: a message twice for u{u}"
        );
        let owed = model.owed.get(&u).cloned().unwrap_or_default();
        let lacking: Vec<&String> = owed.difference(&messages_held).collect();
        assert!(
            lacking.is_empty(),
            "{context}: u{u}'s inbox lacks messages {lacking:?}"
        );
        checked += 1;
    }
    let counts = unread(db).await;
    for (g, members) in &model.members {
        for &u in members.keys() {
            let key = (format!("u{u}"), format!("g:g{g}"));
            assert_eq!(
                counts.get(&key).copied().unwrap_or(0),
                model.unread(u, *g),
                "{context}: unread of u{u} in g{g}"
            );
        }
    }
    checked
}

/// Applies `events` in batches of random sizes.
async fn apply_all(db: &TestDb, events: &[SourcedEvent], rng: &mut StdRng) {
    let mut rest = events;
    while !rest.is_empty() {
        let take = rng.gen_range(1..=12).min(rest.len());
        apply_batch(&db.pool, &policy(), &rest[..take])
            .await
            .unwrap();
        rest = &rest[take..];
    }
}

/// What a rebuild must reproduce: feeds of the active, inboxes of the never dormant, unread counts.
async fn outcome(
    db: &TestDb,
    model: &Model,
    rng: &mut StdRng,
) -> (
    BTreeMap<usize, Vec<String>>,
    BTreeMap<usize, (BTreeSet<String>, BTreeSet<String>)>,
) {
    let mut feeds = BTreeMap::new();
    let mut inboxes = BTreeMap::new();
    for u in 0..USERS {
        if !model.dormant.contains(&u) {
            feeds.insert(u, walk_feed(db, &format!("u{u}"), rng).await);
        }
        if !model.ever_dormant.contains(&u) {
            let (posts, messages) = inbox(db, u).await;
            inboxes.insert(
                u,
                (posts.into_iter().collect(), messages.into_iter().collect()),
            );
        }
    }
    (feeds, inboxes)
}

async fn run_model(seed: u64, steps: usize) -> (usize, usize, usize) {
    let db = TestDb::create().await;
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut log = KeyedLog::new(PARTITIONS as usize);
    let mut now = Utc::now() - TimeDelta::days(400);
    for g in 0..GROUPS {
        model.members.entry(g).or_default().insert(0, 0);
        model.seqs.insert(g, 0);
        log.append(Envelope::group_created(GroupCreated {
            group: group(g),
            owner: user(0),
            name: format!("group {g}"),
            group_type: None,
            description: None,
            join_rule: None,
            history: None,
            created_at: now,
        }));
    }
    let mut applied = 0;
    let mut checks = 0;
    for n in 0..steps {
        now += TimeDelta::minutes(rng.gen_range(1..=36 * 60));
        for envelope in step(&mut model, &mut rng, n, now) {
            log.append(envelope);
        }
        if n % 30 == 29 {
            apply_all(&db, &log.events[applied..], &mut rng).await;
            applied = log.events.len();
            checks += check(&db, &model, &mut rng, &format!("seed {seed}, step {n}")).await;
        }
    }
    apply_all(&db, &log.events[applied..], &mut rng).await;
    checks += check(&db, &model, &mut rng, &format!("seed {seed}, end")).await;
    let before = outcome(&db, &model, &mut rng).await;
    let counts = unread(&db).await;

    // The whole log again: nothing changes.
    apply_all(&db, &log.events, &mut rng).await;
    assert_eq!(
        outcome(&db, &model, &mut rng).await,
        before,
        "seed {seed}: a replay changed something"
    );
    assert_eq!(
        unread(&db).await,
        counts,
        "seed {seed}: a replay changed unread counts"
    );

    // Another interleaving into a fresh database: one partition after the other.
    let fresh = TestDb::create().await;
    let mut by_partition = log.events.clone();
    by_partition.sort_by_key(|e| (e.partition, e.offset));
    apply_all(&fresh, &by_partition, &mut rng).await;
    assert_eq!(
        outcome(&fresh, &model, &mut rng).await,
        before,
        "seed {seed}: the rebuild differs"
    );
    assert_eq!(
        unread(&fresh).await,
        counts,
        "seed {seed}: the rebuild's unread counts differ"
    );
    (checks, model.returns, model.posts.len())
}

#[tokio::test]
async fn feeds_inboxes_and_unread_counts_stay_exact_through_dormancy_and_return() {
    let mut returns = 0;
    let mut checks = 0;
    for seed in 1..=3 {
        let (c, r, posts) = run_model(seed, 600).await;
        println!("seed {seed}: {c} user checks, {r} returns from dormancy, {posts} posts");
        checks += c;
        returns += r;
    }
    // The test only means something if users really went dormant and came back.
    assert!(returns >= 6, "only {returns} returns");
    assert!(checks >= 100, "only {checks} checks");
}

/// A user who returned follows a prolific author: the follow copies only the newest posts, and the feed
/// still shows every post of theirs, without a hole between the copies and the return's cut.
#[tokio::test]
async fn a_follow_after_a_return_leaves_no_hole_in_the_feed() {
    let db = TestDb::create().await;
    let policy = Policy {
        follow_backfill: 3,
        return_window: ReturnWindow {
            span: TimeDelta::days(3),
            ..ReturnWindow::default()
        },
        ..Policy::default()
    };
    let mut log = KeyedLog::new(PARTITIONS as usize);
    let now = Utc::now();
    let mut posted = Vec::new();
    for day in (0..20).rev() {
        let at = now - TimeDelta::hours(12 * day + 1);
        let post_id = PostId::lowest_at(at);
        posted.push(post_id.to_string());
        log.append(Envelope::post_created(PostCreated {
            post_id,
            author: user(1),
            body: "daily".into(),
            content: Default::default(),
            message_id: None,
            created_at: at,
        }));
    }
    let then = now - TimeDelta::days(40);
    log.append(Envelope::user_active(UserActive {
        user: user(0),
        at: then,
    }));
    log.append(Envelope::user_dormant(UserDormant {
        user: user(0),
        last_active_at: then,
    }));
    log.append(Envelope::user_active(UserActive {
        user: user(0),
        at: now,
    }));
    log.append(Envelope::followed(FollowChange {
        follower: user(0),
        followee: user(1),
    }));
    apply_batch(&db.pool, &policy, &log.events).await.unwrap();
    let (copied,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM sync_entries WHERE user_id = 'u0'")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(copied, 3, "the follow copies its three newest");
    posted.reverse();
    let mut rng = StdRng::seed_from_u64(1);
    assert_eq!(
        walk_feed(&db, "u0", &mut rng).await,
        posted,
        "every post, newest first, once"
    );
}

/// A read-diffused group message is copied into the inboxes of its sender and the first M awake members
/// by id; dormant members are skipped, and get it when they return.
#[tokio::test]
async fn a_large_group_message_reaches_its_first_awake_members() {
    let db = TestDb::create().await;
    let policy = Policy {
        group_pull_above: 3,
        group_push_below: 2,
        active_audience_max: 2,
        ..Policy::default()
    };
    let mut log = KeyedLog::new(PARTITIONS as usize);
    let then = Utc::now() - TimeDelta::days(30);
    log.append(Envelope::group_created(GroupCreated {
        group: group(0),
        owner: user(9),
        name: "big".into(),
        group_type: None,
        description: None,
        join_rule: None,
        history: None,
        created_at: then,
    }));
    for u in 0..5 {
        log.append(Envelope::member_added(MembershipChange {
            group: group(0),
            user: user(u),
            by: user(u),
            role: None,
        }));
    }
    // u0 and u2 went dormant.
    for u in [0, 2] {
        log.append(Envelope::user_active(UserActive {
            user: user(u),
            at: then,
        }));
        log.append(Envelope::user_dormant(UserDormant {
            user: user(u),
            last_active_at: then,
        }));
    }
    let message = MessageId::generate();
    log.append(Envelope::message_sent(MessageSent {
        message_id: message.clone(),
        conversation: ConversationId::group(&group(0)),
        sender: user(4),
        body: "to many".into(),
        content: Default::default(),
        reply_to: None,
        forwarded: false,
        mentions: Vec::new(),
        mention_all: false,
        client_msg_id: None,
        created_at: Utc::now(),
    }));
    apply_batch(&db.pool, &policy, &log.events).await.unwrap();
    let holders = |db: &TestDb| {
        let pool = db.pool.clone();
        let id = message.to_string();
        async move {
            let rows: Vec<(String,)> = sqlx::query_as(
                "SELECT user_id FROM sync_entries WHERE message_id = $1 ORDER BY user_id",
            )
            .bind(id)
            .fetch_all(&pool)
            .await
            .unwrap();
            rows.into_iter().map(|(u,)| u).collect::<Vec<_>>()
        }
    };
    // The sender, and the first two awake members by id (u1, u3); not u9 (beyond M), not u0, u2.
    assert_eq!(holders(&db).await, ["u1", "u3", "u4"]);
    let back = log.append(Envelope::user_active(UserActive {
        user: user(0),
        at: Utc::now(),
    }));
    apply_batch(&db.pool, &policy, &[back]).await.unwrap();
    assert_eq!(
        holders(&db).await,
        ["u0", "u1", "u3", "u4"],
        "u0's return copies it"
    );
}

/// Over HTTP and WebSocket, the whole pipeline: a celebrity (pull mode) posts; an active follower's
/// socket has it within a second, a follower the sweeper found dormant has no inbox entry, and on
/// return their first sync scan and feed have it.
#[tokio::test]
async fn a_celebrity_post_reaches_active_sockets_at_once_and_dormant_followers_on_return() {
    use harness::ws::{Received, WsClient};
    use schemas::realtime::ServerFrame;
    use std::time::{Duration, Instant};

    let stack = harness::stack::Stack::start_configured(
        |_| {},
        |fanout| {
            fanout.pull_threshold = 2;
            fanout.push_threshold = Some(1);
            fanout.dormancy_sweep_secs = 1;
        },
    )
    .await;
    for fan in ["fana", "fand", "fanx"] {
        stack.api.follow(fan, "star").await;
    }
    // fand was last seen a month ago: the sweeper reports them dormant.
    let producer = harness::raw_producer();
    let old = Envelope::user_active(UserActive {
        user: user_named("fand"),
        at: Utc::now() - TimeDelta::days(30),
    });
    harness::produce_raw(&producer, &stack.topic.name, "fand", &old.to_json()).await;
    harness::wait_until(
        "the sweeper to find fand dormant",
        Duration::from_secs(30),
        || async {
            let active: Option<(bool,)> =
                sqlx::query_as("SELECT active FROM user_activity WHERE user_id = 'fand'")
                    .fetch_optional(&stack.db.pool)
                    .await
                    .unwrap();
            (active == Some((false,))).then_some(())
        },
    )
    .await;
    stack.applied().await;
    let (mode,): (String,) = sqlx::query_as("SELECT mode FROM authors WHERE author = 'star'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(
        mode, "pull",
        "star has more followers than the pull threshold"
    );

    let token = stack.api.token_for("fana");
    let mut socket = WsClient::connect(&stack.reader.url(""), &token, "phone", "")
        .await
        .unwrap();
    assert!(matches!(
        socket.next_data(Duration::from_secs(5)).await,
        Received::Frame(ServerFrame::Hello { .. })
    ));
    let sent = Instant::now();
    let posted = stack.api.post("star", "to everyone", None).await;
    let posted_id = posted.post_id.expect("a post id");
    let arrived = loop {
        match socket.next_data(Duration::from_secs(5)).await {
            Received::Frame(ServerFrame::Sync { entries, .. })
                if entries
                    .iter()
                    .any(|e| e.post_id.as_deref() == Some(posted_id.as_str())) =>
            {
                break sent.elapsed();
            }
            Received::Frame(_) => continue,
            other => panic!("the post did not reach the active follower's socket: {other:?}"),
        }
    };
    println!("a pull-mode post reached an active follower's socket in {arrived:?}");
    assert!(arrived < Duration::from_secs(1), "took {arrived:?}");
    stack.applied().await;
    let held: Vec<(String,)> =
        sqlx::query_as("SELECT user_id FROM sync_entries WHERE post_id = $1 ORDER BY user_id")
            .bind(posted_id.as_str())
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    let held: Vec<String> = held.into_iter().map(|(u,)| u).collect();
    assert_eq!(
        held,
        ["fana", "fanx", "star"],
        "the dormant follower's inbox is not written"
    );

    // fand comes back: the first sync scan waits for the return and has the post.
    let scan = stack.api.sync("fand", 0, 50).await;
    assert!(
        scan.entries
            .iter()
            .any(|e| e.post_id.as_deref() == Some(posted_id.as_str())),
        "the returning follower's first sync scan lacks the post: {scan:?}"
    );
    let feed = stack.api.feed_page("fand", 10, None).await;
    assert_eq!(feed.entries.len(), 1);
    assert_eq!(feed.entries[0].post_id, posted_id);
    socket.close().await;
    stack.stop().await;
}

fn user_named(name: &str) -> UserId {
    UserId::parse("user", name).unwrap()
}

/// A dormant user's first read waits for their return; when fanout cannot apply it in time (here: it is
/// stopped) the answer is `503`, never an incomplete page, and the contact list is not held. Once
/// fanout runs again, the same request answers.
#[tokio::test]
async fn a_return_not_applied_in_time_is_a_503_and_heals() {
    use reqwest::{Method, StatusCode};

    let stack =
        harness::stack::Stack::start_configured(|reader| reader.return_wait_ms = 300, |_| {}).await;
    let harness::stack::Stack {
        db,
        topic,
        group,
        ingest,
        fanout,
        reader,
        api,
        ..
    } = stack;
    fanout.stop().await;
    sqlx::query(
        "INSERT INTO user_activity (user_id, last_active_at, active)
         VALUES ('sleeper', now() - interval '30 days', false)",
    )
    .execute(&db.pool)
    .await
    .unwrap();
    let sleeper = api.as_user("sleeper");
    // The contact list first (as an app opens): it is not held, and it does not let the reads after
    // it skip the wait.
    let url = format!("{}/v1/users/sleeper/conversations", api.reader);
    let (status, body) = sleeper.raw(Method::GET, &url, None, None).await;
    assert_eq!(
        status,
        StatusCode::OK,
        "the contact list is not held: {body}"
    );
    for path in ["feed", "sync"] {
        let url = format!("{}/v1/users/sleeper/{path}", api.reader);
        let (status, body) = sleeper.raw(Method::GET, &url, None, None).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{path}: {body}");
        assert!(
            body["error"].as_str().unwrap().contains("welcome back"),
            "{body}"
        );
    }

    // A worker of a new group (it applies the topic from the start, idempotently): rejoining the
    // stopped worker's group on tansu can leave partitions unassigned for a while (README "Crash
    // recovery"), which is not what this test is about.
    let group = format!("{group}-again");
    let fanout = harness::spawn_fanout(harness::fanout_config(&topic, &group, &db.url)).await;
    harness::wait_until(
        "the return to be applied",
        std::time::Duration::from_secs(60),
        || async {
            let url = format!("{}/v1/users/sleeper/feed", api.reader);
            let (status, _) = sleeper.raw(Method::GET, &url, None, None).await;
            (status == StatusCode::OK).then_some(())
        },
    )
    .await;
    fanout.stop().await;
    ingest.stop().await;
    reader.stop().await;
}
