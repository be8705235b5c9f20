//! Model test of IM state: random direct and group messages (also from non-members), read markers
//! (stale, repeated, beyond the end), joins, leaves, removals and recalls over a few users and groups,
//! applied through fanout's store one event at a time. After every step every unread count, every
//! user's total, every conversation's seq and every member's read marker is compared with a ground
//! truth, with group thresholds so low that groups switch between push and pull (read diffusion) all
//! the time; at the end the whole event log is applied again (a replay) and, into a fresh database, from
//! scratch (a rebuild): neither changes a count.

use std::collections::{BTreeMap, BTreeSet};

use chrono::Utc;
use fanout::store::{apply_batch, Policy};
use harness::model::KeyedLog;
use harness::TestDb;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use schemas::{
    ConversationId, Envelope, GroupCreated, GroupId, MembershipChange, MessageRecalled,
    MessageSent, ReadMarked, UserId,
};

const USERS: usize = 5;
const GROUPS: usize = 2;
const PARTITIONS: i32 = 4;

fn user(index: usize) -> UserId {
    UserId::parse("user", &format!("u{index}")).unwrap()
}

fn group(index: usize) -> GroupId {
    GroupId::parse("group", &format!("g{index}")).unwrap()
}

struct ModelMessage {
    conversation: String,
    seq: i64,
    sender: usize,
    id: String,
    recalled: bool,
    delivered_to: BTreeSet<usize>,
}

#[derive(Default, Clone, Copy)]
struct MemberState {
    active: bool,
    delivered: i64,
    read: i64,
}

#[derive(Default)]
struct Model {
    /// conversation → last seq.
    seqs: BTreeMap<String, i64>,
    /// (user, conversation) → state; a row exists once the user took part.
    members: BTreeMap<(usize, String), MemberState>,
    /// group → owner.
    owners: BTreeMap<usize, usize>,
    messages: Vec<ModelMessage>,
}

impl Model {
    fn active_members(&self, conversation: &str) -> BTreeSet<usize> {
        self.members
            .iter()
            .filter(|((_, c), state)| c == conversation && state.active)
            .map(|((u, _), _)| *u)
            .collect()
    }

    fn unread(&self, user: usize, conversation: &str) -> i64 {
        let Some(state) = self.members.get(&(user, conversation.to_owned())) else {
            return 0;
        };
        if !state.active {
            return 0;
        }
        self.messages
            .iter()
            .filter(|m| {
                m.conversation == conversation
                    && m.delivered_to.contains(&user)
                    && m.sender != user
                    && !m.recalled
                    && m.seq > state.read
            })
            .count() as i64
    }

    /// (user, conversation) → (unread, read seq, delivered seq, active), as the database should say.
    fn expected(&self) -> BTreeMap<(String, String), (i64, i64, i64, bool)> {
        self.members
            .iter()
            .map(|((u, c), state)| {
                (
                    (format!("u{u}"), c.clone()),
                    (
                        self.unread(*u, c),
                        state.read,
                        state.delivered,
                        state.active,
                    ),
                )
            })
            .collect()
    }

    fn deliver(&mut self, conversation: &str, sender: usize, id: String) {
        let seq = {
            let seq = self.seqs.entry(conversation.to_owned()).or_default();
            *seq += 1;
            *seq
        };
        let audience = self.active_members(conversation);
        for member in &audience {
            let state = self
                .members
                .get_mut(&(*member, conversation.to_owned()))
                .unwrap();
            state.delivered = seq;
            if *member == sender {
                state.read = seq;
            }
        }
        self.messages.push(ModelMessage {
            conversation: conversation.to_owned(),
            seq,
            sender,
            id,
            recalled: false,
            delivered_to: audience,
        });
    }
}

/// Every member's state as the reader sees it (stored counters for push conversations, derived ones
/// for pull-mode groups).
async fn snapshot(db: &TestDb) -> BTreeMap<(String, String), (i64, i64, i64, bool)> {
    let rows: Vec<(String, String, i64, i64, i64, bool)> = sqlx::query_as(
        "SELECT user_id, conversation_id, unread, read_seq, delivered_seq, active
         FROM conversation_state",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter()
        .map(|(u, c, unread, read, delivered, active)| ((u, c), (unread, read, delivered, active)))
        .collect()
}

async fn seqs(db: &TestDb) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> =
        sqlx::query_as("SELECT conversation_id, last_seq FROM conversations WHERE last_seq > 0")
            .fetch_all(&db.pool)
            .await
            .unwrap();
    rows.into_iter().collect()
}

async fn totals(db: &TestDb) -> BTreeMap<String, i64> {
    let rows: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, sum(unread)::bigint FROM conversation_state GROUP BY user_id",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    rows.into_iter().collect()
}

/// Messages per conversation must be numbered 1, 2, 3 … without a hole.
async fn assert_gap_free(db: &TestDb) {
    let holes: Vec<(String,)> = sqlx::query_as(
        "SELECT conversation_id FROM messages GROUP BY conversation_id
         HAVING max(seq) <> count(*) OR min(seq) <> 1",
    )
    .fetch_all(&db.pool)
    .await
    .unwrap();
    assert!(holes.is_empty(), "conversations with holes: {holes:?}");
}

/// Pull mode above 2 members, push again below 2: with 5 users the groups cross both ways all the time.
async fn run_model(seed: u64, steps: usize) -> (usize, u64) {
    let db = TestDb::create().await;
    let policy = Policy {
        group_pull_above: 2,
        group_push_below: 2,
        ..Policy::default()
    };
    let mut mode_changes = 0;
    let mut last_modes = BTreeMap::new();
    let mut rng = StdRng::seed_from_u64(seed);
    let mut model = Model::default();
    let mut log = KeyedLog::new(PARTITIONS as usize);
    for g in 0..GROUPS {
        let owner = g;
        let event = log.append(Envelope::group_created(GroupCreated {
            group: group(g),
            owner: user(owner),
            name: format!("group {g}"),
            group_type: None,
            description: None,
            join_rule: None,
            history: None,
            created_at: Utc::now(),
        }));
        apply_batch(&db.pool, &policy, &[event]).await.unwrap();
        model.owners.insert(g, owner);
        let conversation = format!("g:g{g}");
        model.seqs.insert(conversation.clone(), 0);
        model.members.insert(
            (owner, conversation),
            MemberState {
                active: true,
                ..MemberState::default()
            },
        );
    }
    let mut refused = 0;
    for step in 0..steps {
        let envelope = match rng.gen_range(0..100) {
            // A direct message.
            0..=24 => {
                let from = rng.gen_range(0..USERS);
                let to = (from + rng.gen_range(1..USERS)) % USERS;
                let conversation =
                    ConversationId::direct(&user(from), &user(to)).expect("two users");
                for member in [from, to] {
                    model
                        .members
                        .entry((member, conversation.to_string()))
                        .or_insert(MemberState {
                            active: true,
                            ..MemberState::default()
                        });
                }
                model.seqs.entry(conversation.to_string()).or_default();
                let id = schemas::MessageId::generate();
                model.deliver(conversation.as_str(), from, id.to_string());
                Envelope::message_sent(MessageSent {
                    message_id: id,
                    conversation,
                    sender: user(from),
                    body: format!("step {step}"),
                    content: Default::default(),
                    reply_to: None,
                    forwarded: false,
                    mentions: Vec::new(),
                    mention_all: false,
                    client_msg_id: Some(format!("c{step}")),
                    created_at: Utc::now(),
                })
            }
            // A group message, from a member or not.
            25..=49 => {
                let g = rng.gen_range(0..GROUPS);
                let from = rng.gen_range(0..USERS);
                let conversation = ConversationId::group(&group(g));
                let id = schemas::MessageId::generate();
                if model.active_members(conversation.as_str()).contains(&from) {
                    model.deliver(conversation.as_str(), from, id.to_string());
                } else {
                    refused += 1;
                }
                Envelope::message_sent(MessageSent {
                    message_id: id,
                    conversation,
                    sender: user(from),
                    body: format!("step {step}"),
                    content: Default::default(),
                    reply_to: None,
                    forwarded: false,
                    mentions: Vec::new(),
                    mention_all: false,
                    client_msg_id: None,
                    created_at: Utc::now(),
                })
            }
            // A read marker: stale, current, or beyond the end.
            50..=69 => {
                let u = rng.gen_range(0..USERS);
                let conversations: Vec<String> = model
                    .members
                    .keys()
                    .filter(|(m, _)| *m == u)
                    .map(|(_, c)| c.clone())
                    .collect();
                if conversations.is_empty() {
                    continue;
                }
                let conversation = conversations[rng.gen_range(0..conversations.len())].clone();
                let last = model.seqs[&conversation];
                let seq = rng.gen_range(0..=last + 2);
                let state = model.members.get_mut(&(u, conversation.clone())).unwrap();
                if state.active && seq.min(state.delivered) > state.read {
                    state.read = seq.min(state.delivered);
                }
                Envelope::read_marked(ReadMarked {
                    conversation: ConversationId::parse("c", &conversation).unwrap(),
                    user: user(u),
                    seq,
                })
            }
            // A join (or a join of a member: nothing changes).
            70..=79 => {
                let g = rng.gen_range(0..GROUPS);
                let u = rng.gen_range(0..USERS);
                let conversation = format!("g:g{g}");
                let last = model.seqs[&conversation];
                let state = model.members.entry((u, conversation)).or_default();
                if !state.active {
                    *state = MemberState {
                        active: true,
                        delivered: last,
                        read: last,
                    };
                }
                Envelope::member_added(MembershipChange {
                    group: group(g),
                    user: user(u),
                    by: user(u),
                    role: None,
                })
            }
            // A leave, or a removal by the owner (the owner cannot leave).
            80..=89 => {
                let g = rng.gen_range(0..GROUPS);
                let u = rng.gen_range(0..USERS);
                let owner = model.owners[&g];
                let by = if rng.gen_bool(0.5) { u } else { owner };
                if u != owner {
                    if let Some(state) = model.members.get_mut(&(u, format!("g:g{g}"))) {
                        state.active = false;
                    }
                }
                Envelope::member_removed(MembershipChange {
                    group: group(g),
                    user: user(u),
                    by: user(by),
                    role: None,
                })
            }
            // A recall of a random message by its sender (or, sometimes, by someone else: refused).
            _ => {
                if model.messages.is_empty() {
                    continue;
                }
                let index = rng.gen_range(0..model.messages.len());
                let message = &mut model.messages[index];
                let by = if rng.gen_bool(0.8) {
                    message.sender
                } else {
                    (message.sender + 1) % USERS
                };
                if by == message.sender {
                    message.recalled = true;
                }
                Envelope::message_recalled(MessageRecalled {
                    message_id: schemas::MessageId::parse("m", &message.id).unwrap(),
                    conversation: ConversationId::parse("c", &message.conversation).unwrap(),
                    sender: user(by),
                    recalled_at: Utc::now(),
                })
            }
        };
        let event = log.append(envelope);
        apply_batch(&db.pool, &policy, &[event]).await.unwrap();
        let modes: BTreeMap<String, String> =
            sqlx::query_as("SELECT conversation_id, mode FROM conversations WHERE kind = 'group'")
                .fetch_all(&db.pool)
                .await
                .unwrap()
                .into_iter()
                .collect();
        mode_changes += modes
            .iter()
            .filter(|(c, m)| last_modes.get(*c).is_some_and(|old| old != *m))
            .count() as u64;
        last_modes = modes;
        assert_eq!(
            snapshot(&db).await,
            model.expected(),
            "seed {seed}, step {step}: unread, read and delivered seqs per member"
        );
    }
    assert_gap_free(&db).await;
    let expected_seqs: BTreeMap<String, i64> = model
        .seqs
        .iter()
        .filter(|(_, s)| **s > 0)
        .map(|(c, s)| (c.clone(), *s))
        .collect();
    assert_eq!(
        seqs(&db).await,
        expected_seqs,
        "seed {seed}: conversation seqs"
    );
    let expected_totals: BTreeMap<String, i64> = model
        .members
        .keys()
        .map(|(u, _)| {
            let total = model
                .members
                .keys()
                .filter(|(m, _)| m == u)
                .map(|(m, c)| model.unread(*m, c))
                .sum();
            (format!("u{u}"), total)
        })
        .collect();
    assert_eq!(
        totals(&db).await,
        expected_totals,
        "seed {seed}: total unread"
    );

    // A replay of the whole log into the live database changes nothing …
    let before = (snapshot(&db).await, seqs(&db).await);
    apply_batch(&db.pool, &policy, &log.events).await.unwrap();
    assert_eq!(
        (snapshot(&db).await, seqs(&db).await),
        before,
        "seed {seed}: replay"
    );
    // … and a rebuild from it, in batches, arrives at the same state.
    let rebuilt = TestDb::create().await;
    for batch in log.events.chunks(7) {
        apply_batch(&rebuilt.pool, &policy, batch).await.unwrap();
    }
    assert_eq!(
        (snapshot(&rebuilt).await, seqs(&rebuilt).await),
        before,
        "seed {seed}: rebuild"
    );
    (refused, mode_changes)
}

#[tokio::test]
async fn unread_counts_stay_exact_through_every_kind_of_event_and_a_replay() {
    let (mut refused, mut mode_changes) = (0, 0);
    for seed in 1..=5 {
        let (r, m) = run_model(seed, 200).await;
        refused += r;
        mode_changes += m;
    }
    assert!(refused > 0, "non-member messages were exercised");
    assert!(
        mode_changes > 4,
        "groups crossed the pull threshold both ways ({mode_changes})"
    );
}

/// An event refused when it was new stays without effect on a replay, even where the state it met has
/// changed since: a read marker sent before the conversation's first message, a join sent before the
/// group was created, a removal by a member who was promoted afterwards.
#[tokio::test]
async fn refused_events_stay_refused_on_a_replay() {
    let db = TestDb::create().await;
    let policy = Policy::default();
    let mut log = KeyedLog::new(PARTITIONS as usize);
    let direct = ConversationId::direct(&user(0), &user(1)).expect("two users");
    let team = group(0);
    log.append(Envelope::read_marked(ReadMarked {
        conversation: direct.clone(),
        user: user(0),
        seq: 5,
    }));
    log.append(Envelope::member_added(MembershipChange {
        group: team.clone(),
        user: user(3),
        by: user(3),
        role: None,
    }));
    log.append(Envelope::group_created(GroupCreated {
        group: team.clone(),
        owner: user(0),
        name: "team".into(),
        group_type: None,
        description: None,
        join_rule: None,
        history: None,
        created_at: Utc::now(),
    }));
    for member in [1, 2] {
        log.append(Envelope::member_added(MembershipChange {
            group: team.clone(),
            user: user(member),
            by: user(member),
            role: None,
        }));
    }
    // u1, a plain member, may not remove u2; the owner then makes u1 an admin.
    log.append(Envelope::member_removed(MembershipChange {
        group: team.clone(),
        user: user(2),
        by: user(1),
        role: None,
    }));
    log.append(Envelope::member_added(MembershipChange {
        group: team.clone(),
        user: user(1),
        by: user(0),
        role: Some(schemas::Role::Admin),
    }));
    for n in 0..7 {
        log.append(Envelope::message_sent(MessageSent {
            message_id: schemas::MessageId::generate(),
            conversation: direct.clone(),
            sender: user(1),
            body: format!("m{n}"),
            content: Default::default(),
            reply_to: None,
            forwarded: false,
            mentions: Vec::new(),
            mention_all: false,
            client_msg_id: None,
            created_at: Utc::now(),
        }));
    }
    for event in &log.events {
        apply_batch(&db.pool, &policy, std::slice::from_ref(event))
            .await
            .unwrap();
    }
    let before = snapshot(&db).await;
    assert_eq!(
        before[&("u0".to_owned(), direct.to_string())].0,
        7,
        "7 unread"
    );
    let active =
        "SELECT user_id FROM group_members WHERE group_id = 'g0' AND active ORDER BY user_id";
    let members: Vec<(String,)> = sqlx::query_as(active).fetch_all(&db.pool).await.unwrap();
    let names: Vec<&str> = members.iter().map(|(u,)| u.as_str()).collect();
    assert_eq!(
        names,
        ["u0", "u1", "u2"],
        "the early join was refused, u2 stayed"
    );
    apply_batch(&db.pool, &policy, &log.events).await.unwrap();
    assert_eq!(snapshot(&db).await, before, "the replay changed nothing");
    let after: Vec<(String,)> = sqlx::query_as(active).fetch_all(&db.pool).await.unwrap();
    assert_eq!(after, members);
}
