//! Issue 20 end to end over HTTP: private groups (join rules, invitations, requests, history
//! visibility, owner transfer, member mutes, dissolution) and blocks and muted conversations, each
//! checked on every path a user reads.

use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

use crate::im_api::{message_entries, unread_of, Stack};

impl Stack {
    /// A read as `user` that must answer `status`; the body.
    async fn read_status(&self, user: &str, path: &str, status: StatusCode) -> Value {
        let url = format!("{}{path}", self.api.reader);
        let (got, value) = self
            .api
            .as_user(user)
            .raw(Method::GET, &url, None, None)
            .await;
        assert_eq!(got, status, "{user} GET {path}: {value}");
        value
    }

    /// The message bodies `user` reads in the group's history.
    async fn history(&self, user: &str, group: &str) -> Vec<String> {
        let page = self
            .read_as(user, &format!("/v1/conversations/g:{group}/messages"))
            .await;
        bodies(&page["messages"])
    }
}

fn bodies(messages: &Value) -> Vec<String> {
    messages
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["body"].as_str().unwrap().to_owned())
        .collect()
}

/// The `refused` entries' reasons in `user`'s sync timeline.
async fn refusals(stack: &Stack, user: &str) -> Vec<String> {
    let page = stack
        .read(&format!("/v1/users/{user}/sync?after=0&limit=200"))
        .await;
    page["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "refused")
        .map(|e| e["reason"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn an_uninvited_user_reads_nothing_of_an_invite_group_and_invitations_requests_and_history_rules_hold(
) {
    let stack = Stack::start().await;
    stack
        .write(
            Method::POST,
            "/v1/groups",
            json!({"group": "club", "owner": "olga", "name": "The club"}),
        )
        .await;
    stack
        .send(json!({"from": "olga", "group": "club", "body": "secret 1"}))
        .await;
    // Uninvited: a join of an invite group is refused; nothing of it can be read on any path.
    stack
        .write(Method::PUT, "/v1/groups/club/members/mallory", Value::Null)
        .await;
    stack
        .send(json!({"from": "mallory", "group": "club", "body": "let me in"}))
        .await;
    stack.applied().await;
    let card = stack.read_as("olga", "/v1/groups/club").await;
    assert_eq!(
        (card["join_rule"].as_str(), card["history"].as_str()),
        (Some("invite"), Some("joined"))
    );
    let hidden = stack
        .read_status("mallory", "/v1/groups/club", StatusCode::NOT_FOUND)
        .await;
    let never = stack
        .read_status("mallory", "/v1/groups/nosuch", StatusCode::NOT_FOUND)
        .await;
    assert_eq!(
        hidden, never,
        "a private group answers like an id never used"
    );
    stack
        .read_status("mallory", "/v1/groups/club/members", StatusCode::NOT_FOUND)
        .await;
    stack
        .read_status("mallory", "/v1/groups/club/pending", StatusCode::NOT_FOUND)
        .await;
    stack
        .read_status(
            "mallory",
            "/v1/conversations/g:club/messages",
            StatusCode::FORBIDDEN,
        )
        .await;
    let contacts = stack.contacts("mallory").await;
    assert!(contacts["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .all(|c| c["conversation_id"] != "g:club"));
    let entries = message_entries(&stack, "mallory").await;
    assert!(entries.iter().all(|e| e.0 == "refused"), "{entries:?}");
    // Her join is told as one of a group that does not exist (issue 25: refused writes reach their
    // actor, without telling a stranger the private group is there); her message as before.
    assert_eq!(
        refusals(&stack, "mallory").await,
        ["no_such_group", "not_member"]
    );

    // An invitation: the card (not the members, not the history) until accepted; then what follows.
    stack
        .write(
            Method::PUT,
            "/v1/groups/club/members/pat?by=olga",
            Value::Null,
        )
        .await;
    stack.applied().await;
    assert_eq!(
        stack.read_as("pat", "/v1/groups/club").await["name"],
        "The club"
    );
    stack
        .read_status("pat", "/v1/groups/club/members", StatusCode::FORBIDDEN)
        .await;
    stack
        .read_status(
            "pat",
            "/v1/conversations/g:club/messages",
            StatusCode::FORBIDDEN,
        )
        .await;
    let sync = stack.read("/v1/users/pat/sync?after=0").await;
    let invitation = &sync["entries"][0];
    assert_eq!(
        (
            invitation["kind"].as_str(),
            invitation["conversation_id"].as_str(),
            invitation["author"].as_str()
        ),
        (Some("invitation"), Some("g:club"), Some("olga")),
        "the invitation reaches pat's devices: {sync}"
    );
    let invited = stack.read("/v1/users/pat/invitations").await;
    assert_eq!(invited["pending"][0]["kind"], "invitation");
    assert_eq!(invited["pending"][0]["by"], "olga");
    let pending = stack.read_as("olga", "/v1/groups/club/pending").await;
    assert_eq!(pending["pending"][0]["user"], "pat");
    stack
        .write(Method::PUT, "/v1/groups/club/members/pat", Value::Null)
        .await;
    stack
        .send(json!({"from": "olga", "group": "club", "body": "secret 2"}))
        .await;
    stack.applied().await;
    assert_eq!(
        stack.history("pat", "club").await,
        ["secret 2"],
        "joined: from the join on"
    );
    assert_eq!(
        stack.read("/v1/users/pat/invitations").await["pending"],
        json!([])
    );
    let pat_entries: Vec<String> = message_entries(&stack, "pat")
        .await
        .into_iter()
        .map(|e| e.2)
        .collect();
    assert_eq!(pat_entries, ["secret 2"]);
    // Shared: the whole history, for every member.
    stack
        .write(
            Method::PATCH,
            "/v1/groups/club",
            json!({"by": "olga", "history": "shared"}),
        )
        .await;
    stack.applied().await;
    assert_eq!(stack.history("pat", "club").await, ["secret 1", "secret 2"]);

    // Approval: a join is a request the owner accepts or declines.
    stack
        .write(
            Method::PATCH,
            "/v1/groups/club",
            json!({"by": "olga", "join_rule": "approval", "history": "joined"}),
        )
        .await;
    for user in ["quinn", "rob"] {
        stack
            .write(
                Method::PUT,
                &format!("/v1/groups/club/members/{user}"),
                Value::Null,
            )
            .await;
    }
    stack.applied().await;
    let requests = stack
        .read_as("olga", "/v1/groups/club/pending?limit=1")
        .await;
    assert_eq!(requests["pending"].as_array().unwrap().len(), 1);
    let rest = stack
        .read_as(
            "olga",
            &format!(
                "/v1/groups/club/pending?cursor={}",
                requests["next_cursor"].as_str().unwrap()
            ),
        )
        .await;
    let mut requesters: Vec<&str> = [&requests, &rest]
        .iter()
        .flat_map(|page| page["pending"].as_array().unwrap())
        .map(|p| {
            assert_eq!(p["kind"], "request");
            p["user"].as_str().unwrap()
        })
        .collect();
    requesters.sort();
    assert_eq!(requesters, ["quinn", "rob"]);
    stack
        .read_status("pat", "/v1/groups/club/pending", StatusCode::FORBIDDEN)
        .await;
    stack
        .read_status(
            "quinn",
            "/v1/conversations/g:club/messages",
            StatusCode::FORBIDDEN,
        )
        .await;
    stack
        .write(
            Method::PUT,
            "/v1/groups/club/members/quinn?by=olga",
            Value::Null,
        )
        .await;
    stack
        .write(
            Method::DELETE,
            "/v1/groups/club/members/rob?by=olga",
            Value::Null,
        )
        .await;
    stack.applied().await;
    assert_eq!(
        stack.read_as("olga", "/v1/groups/club/pending").await["pending"],
        json!([])
    );
    assert_eq!(stack.history("quinn", "club").await, Vec::<String>::new());
    stack
        .read_status(
            "rob",
            "/v1/conversations/g:club/messages",
            StatusCode::FORBIDDEN,
        )
        .await;

    // Leaving and coming back (joined visibility): nothing said while away, nothing from before.
    stack
        .write(Method::DELETE, "/v1/groups/club/members/pat", Value::Null)
        .await;
    stack
        .send(json!({"from": "olga", "group": "club", "body": "while pat was away"}))
        .await;
    stack
        .write(
            Method::PUT,
            "/v1/groups/club/members/pat?by=olga",
            Value::Null,
        )
        .await;
    stack
        .write(Method::PUT, "/v1/groups/club/members/pat", Value::Null)
        .await;
    stack
        .send(json!({"from": "olga", "group": "club", "body": "welcome back"}))
        .await;
    stack.applied().await;
    assert_eq!(stack.history("pat", "club").await, ["welcome back"]);

    // The owner hands the group over; the new owner mutes a member; an admin may not dissolve it.
    stack
        .write(
            Method::PATCH,
            "/v1/groups/club",
            json!({"by": "olga", "owner": "pat", "name": "Pat's club"}),
        )
        .await;
    let until = (chrono::Utc::now() + chrono::Duration::hours(1)).to_rfc3339();
    stack
        .write(
            Method::PUT,
            "/v1/groups/club/mutes/quinn",
            json!({"by": "pat", "until": until}),
        )
        .await;
    stack
        .send(json!({"from": "quinn", "group": "club", "body": "muted words"}))
        .await;
    stack
        .write(Method::DELETE, "/v1/groups/club?by=olga", Value::Null)
        .await;
    stack.applied().await;
    let card = stack.read_as("olga", "/v1/groups/club").await;
    assert_eq!(
        (card["owner"].as_str(), card["name"].as_str()),
        (Some("pat"), Some("Pat's club"))
    );
    assert_eq!(card["dissolved"], false);
    let members = stack.read_as("olga", "/v1/groups/club/members").await;
    assert!(members["members"]
        .as_array()
        .unwrap()
        .contains(&json!({"user": "olga", "role": "admin"})));
    assert_eq!(refusals(&stack, "quinn").await, ["muted"]);
    assert!(!stack
        .history("pat", "club")
        .await
        .contains(&"muted words".to_owned()));

    // Dissolved by its owner: everyone leaves, nothing more is taken, the id stays taken.
    stack
        .write(Method::DELETE, "/v1/groups/club?by=pat", Value::Null)
        .await;
    stack
        .send(json!({"from": "pat", "group": "club", "body": "anyone?"}))
        .await;
    stack
        .write(
            Method::POST,
            "/v1/groups",
            json!({"group": "club", "owner": "mallory", "name": "Mine"}),
        )
        .await;
    stack.applied().await;
    let card = stack.read_as("pat", "/v1/groups/club").await;
    assert_eq!(
        (card["dissolved"].as_bool(), card["member_count"].as_i64()),
        (Some(true), Some(0))
    );
    assert_eq!(card["owner"], "pat");
    stack
        .read_status("mallory", "/v1/groups/club", StatusCode::NOT_FOUND)
        .await;
    stack
        .read_status(
            "pat",
            "/v1/conversations/g:club/messages",
            StatusCode::FORBIDDEN,
        )
        .await;
    assert_eq!(refusals(&stack, "pat").await, ["no_such_group"]);
    let contacts = stack.contacts("quinn").await;
    assert_eq!(contacts["conversations"][0]["active"], false);
    stack.stop().await;
}

#[tokio::test]
async fn blocks_refuse_messages_and_follows_both_ways_and_a_muted_conversation_leaves_the_total() {
    let stack = Stack::start().await;
    for (follower, followee) in [("alice", "bob"), ("bob", "alice")] {
        stack
            .write(
                Method::PUT,
                &format!("/v1/users/{follower}/following/{followee}"),
                Value::Null,
            )
            .await;
    }
    stack
        .write(
            Method::POST,
            "/v1/posts",
            json!({"author": "bob", "body": "bob's first"}),
        )
        .await;
    stack
        .send(json!({"from": "bob", "to": "alice", "body": "hi"}))
        .await;
    stack.applied().await;
    let posts_of = |page: &Value, author: &str| {
        page["entries"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|e| e["kind"] == "post" && e["author"] == author)
            .count()
    };
    assert_eq!(
        posts_of(&stack.read("/v1/users/alice/sync?after=0").await, "bob"),
        1
    );

    stack
        .write(Method::PUT, "/v1/users/alice/blocks/bob", Value::Null)
        .await;
    stack
        .send(json!({"from": "bob", "to": "alice", "body": "why?"}))
        .await;
    stack
        .send(json!({"from": "alice", "to": "bob", "body": "bye"}))
        .await;
    stack
        .write(Method::PUT, "/v1/users/bob/following/alice", Value::Null)
        .await;
    stack
        .write(
            Method::POST,
            "/v1/posts",
            json!({"author": "bob", "body": "bob's second"}),
        )
        .await;
    stack.applied().await;
    assert_eq!(refusals(&stack, "bob").await, ["blocked"]);
    assert_eq!(refusals(&stack, "alice").await, ["blocked"]);
    let history = stack.read("/v1/conversations/d:alice:bob/messages").await;
    assert_eq!(bodies(&history["messages"]), ["hi"]);
    assert_eq!(
        posts_of(&stack.read("/v1/users/alice/sync?after=0").await, "bob"),
        0,
        "bob's posts left alice's inbox"
    );
    let feed = stack.read("/v1/users/alice/feed").await;
    assert_eq!(feed["entries"], json!([]), "{feed}");
    let follows: Vec<(String, String, bool)> =
        sqlx::query_as("SELECT follower, followee, active FROM follows ORDER BY 1")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    assert!(
        follows.iter().all(|f| !f.2),
        "no follow between the two, none re-created: {follows:?}"
    );
    let blocked = stack.read("/v1/users/alice/blocks").await;
    assert_eq!(blocked["blocked"][0]["user"], "bob");
    stack
        .read_status("bob", "/v1/users/alice/blocks", StatusCode::FORBIDDEN)
        .await;

    // Lifted: messages and follows work again; nothing came back by itself.
    stack
        .write(Method::DELETE, "/v1/users/alice/blocks/bob", Value::Null)
        .await;
    stack
        .send(json!({"from": "bob", "to": "alice", "body": "friends again?"}))
        .await;
    stack.applied().await;
    assert_eq!(
        stack.read("/v1/users/alice/blocks").await["blocked"],
        json!([])
    );
    let history = stack.read("/v1/conversations/d:alice:bob/messages").await;
    assert_eq!(bodies(&history["messages"]), ["hi", "friends again?"]);
    let (active,): (i64,) = sqlx::query_as("SELECT count(*) FROM follows WHERE active")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(active, 0);
    stack
        .write(Method::PUT, "/v1/users/bob/following/alice", Value::Null)
        .await;
    stack.applied().await;
    let (active,): (i64,) = sqlx::query_as("SELECT count(*) FROM follows WHERE active")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(active, 1);

    // A muted conversation keeps its count, out of the total.
    for body in ["one", "two"] {
        stack
            .send(json!({"from": "carol", "to": "alice", "body": body}))
            .await;
    }
    stack
        .write(
            Method::PUT,
            "/v1/users/alice/conversations/d:alice:carol/mute",
            Value::Null,
        )
        .await;
    stack.applied().await;
    let contacts = stack.contacts("alice").await;
    assert_eq!(unread_of(&contacts, "d:alice:carol"), 2);
    assert_eq!(unread_of(&contacts, "d:alice:bob"), 2);
    assert_eq!(contacts["total_unread"], 2, "{contacts}");
    let muted: Vec<bool> = contacts["conversations"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["muted"].as_bool().unwrap())
        .collect();
    assert_eq!(muted, [true, false]);
    stack
        .write(
            Method::DELETE,
            "/v1/users/alice/conversations/d:alice:carol/mute",
            Value::Null,
        )
        .await;
    stack.applied().await;
    assert_eq!(stack.contacts("alice").await["total_unread"], 4);
    stack.stop().await;
}

pub(crate) mod store {
    //! The safety rules applied through fanout's store, one event at a time: live, again (a replay),
    //! and into a fresh database partition by partition (another interleaving of the keys, as a
    //! rebuild may meet it). Each rule is decided on the key its events share, so all three agree.

    use chrono::{Duration, Utc};
    use fanout::store::{apply_batch, Policy, SourcedEvent};
    use harness::TestDb;
    use schemas::{
        AccountModeration, BlockChange, ConversationId, ConversationMute, Envelope, FollowBlock,
        FollowChange, GroupCreated, GroupDissolved, GroupId, GroupUpdated, JoinRule, MemberMute,
        MembershipChange, MessageId, MessageRemoved, MessageSent, ReportFiled, ReportKind,
        ReportResolved, UserId,
    };

    const PARTITIONS: i32 = 4;

    pub(crate) fn user(name: &str) -> UserId {
        UserId::parse("user", name).unwrap()
    }

    pub(crate) fn partition_of(envelope: &Envelope) -> i32 {
        (envelope.key.as_str().bytes().map(u32::from).sum::<u32>() % PARTITIONS as u32) as i32
    }

    fn log(envelopes: Vec<Envelope>) -> Vec<SourcedEvent> {
        let mut offsets = [0i64; PARTITIONS as usize];
        envelopes
            .into_iter()
            .map(|envelope| {
                let partition = partition_of(&envelope);
                let offset = offsets[partition as usize];
                offsets[partition as usize] += 1;
                SourcedEvent {
                    partition,
                    offset,
                    envelope,
                }
            })
            .collect()
    }

    fn membership(group: &GroupId, who: &str, by: &str) -> MembershipChange {
        MembershipChange {
            group: group.clone(),
            user: user(who),
            by: user(by),
            role: None,
        }
    }

    pub(crate) fn message(conversation: &ConversationId, sender: &str, body: &str) -> Envelope {
        Envelope::message_sent(MessageSent {
            message_id: MessageId::generate(),
            conversation: conversation.clone(),
            sender: user(sender),
            body: body.into(),
            content: Default::default(),
            reply_to: None,
            forwarded: false,
            mentions: Vec::new(),
            mention_all: false,
            client_msg_id: None,
            created_at: Utc::now(),
        })
    }

    pub(crate) fn follow(follower: &str, followee: &str) -> Envelope {
        Envelope::followed(FollowChange {
            follower: user(follower),
            followee: user(followee),
        })
    }

    fn block(blocked: bool) -> Vec<Envelope> {
        let change = BlockChange {
            blocker: user("u3"),
            target: user("u4"),
        };
        let mut events: Vec<Envelope> = FollowBlock::both_ways(&change.blocker, &change.target)
            .into_iter()
            .map(|edge| Envelope::follow_blocked(edge, blocked))
            .collect();
        events.extend(Envelope::user_blocked(change, blocked));
        events
    }

    fn script() -> Vec<Envelope> {
        let g = GroupId::parse("group", "g1").unwrap();
        let club = ConversationId::group(&g);
        let pair = ConversationId::direct(&user("u3"), &user("u4")).unwrap();
        let update = |by: &str| GroupUpdated {
            group: g.clone(),
            by: user(by),
            name: None,
            description: None,
            join_rule: None,
            history: None,
            owner: None,
            retention_days: None,
        };
        let mut events = vec![
            Envelope::group_created(GroupCreated {
                group: g.clone(),
                owner: user("u0"),
                name: "g1".into(),
                group_type: None,
                description: None,
                join_rule: Some(JoinRule::Invite),
                history: None,
                created_at: Utc::now(),
            }),
            Envelope::member_added(membership(&g, "u1", "u1")), // refused: not invited
            Envelope::member_added(membership(&g, "u1", "u0")), // an invitation
            Envelope::member_added(membership(&g, "u1", "u1")), // accepted
            Envelope::group_updated(GroupUpdated {
                join_rule: Some(JoinRule::Approval),
                ..update("u0")
            }),
            Envelope::member_added(membership(&g, "u2", "u2")), // a request
            Envelope::member_added(membership(&g, "u2", "u1")), // refused: a plain member
            Envelope::member_added(membership(&g, "u2", "u0")), // accepted
            Envelope::member_muted(MemberMute {
                group: g.clone(),
                user: user("u2"),
                by: user("u0"),
                until: Some(Utc::now() + Duration::hours(1)),
            }),
            message(&club, "u2", "refused: muted"),
            message(&club, "u1", "hello"),
            message(&pair, "u3", "before the block"),
            follow("u3", "u4"),
            follow("u4", "u3"),
        ];
        events.extend(block(true));
        events.push(follow("u4", "u3")); // refused by the block
        events.push(message(&pair, "u4", "refused: blocked"));
        events.push(Envelope::conversation_muted(
            ConversationMute {
                conversation: pair.clone(),
                user: user("u3"),
            },
            true,
        ));
        events.extend(block(false));
        events.push(follow("u4", "u3"));
        events.extend(moderation(&club));
        events.push(Envelope::group_updated(GroupUpdated {
            owner: Some(user("u1")),
            ..update("u0")
        }));
        events.push(Envelope::group_dissolved(GroupDissolved {
            group: g.clone(),
            by: user("u0"), // refused: no longer the owner
            by_operator: false,
        }));
        events.push(Envelope::group_dissolved(GroupDissolved {
            group: g,
            by: user("u1"),
            by_operator: false,
        }));
        events
    }

    /// An operator's work: a resolution logged before the report it closes (they merge either way), a
    /// message removed, an account disabled, re-enabled, and another disabled.
    fn moderation(club: &ConversationId) -> Vec<Envelope> {
        let report = ReportFiled {
            report_id: "01JREPORT0000000000000000A".into(),
            reporter: user("u2"),
            kind: ReportKind::User,
            subject: "u1".into(),
            context: None,
            reason: "rude".into(),
            created_at: Utc::now(),
        };
        let account = |name: &str| AccountModeration {
            user: user(name),
            by: user("op"),
            reason: None,
        };
        let sent = message(club, "u1", "to be removed");
        let schemas::Event::MessageSent(payload) = &sent.event else {
            unreachable!("a message")
        };
        let removed = Envelope::message_removed(MessageRemoved {
            message_id: payload.message_id.clone(),
            conversation: club.clone(),
            by: user("op"),
            removed_at: Utc::now(),
        });
        vec![
            Envelope::report_resolved(ReportResolved {
                report_id: report.report_id.clone(),
                by: user("op"),
                resolution: "warned".into(),
                resolved_at: Utc::now(),
            }),
            Envelope::report_filed(report),
            sent,
            removed,
            Envelope::account_disabled(account("u4"), true),
            Envelope::account_disabled(account("u4"), false),
            Envelope::account_disabled(account("u3"), true),
        ]
    }

    /// Every row the safety rules decide, as text.
    async fn state(db: &TestDb) -> Vec<String> {
        let mut rows = Vec::new();
        for query in [
            "SELECT 'group ' || group_id || ' ' || owner || ' ' || join_rule || ' ' || history || ' '
                    || (dissolved_at IS NOT NULL) || ' ' || member_count FROM groups",
            "SELECT 'member ' || group_id || ' ' || user_id || ' ' || role || ' ' || active || ' '
                    || (muted_until IS NOT NULL) FROM group_members",
            "SELECT 'pending ' || group_id || ' ' || user_id || ' ' || kind FROM group_pending",
            "SELECT 'block ' || blocker || ' ' || target FROM blocks",
            "SELECT 'follow ' || follower || '>' || followee || ' ' || active || ' '
                    || blocked_by_follower || ' ' || blocked_by_followee FROM follows",
            "SELECT 'conversation ' || user_id || ' ' || conversation_id || ' ' || from_seq || ' '
                    || active || ' ' || muted || ' ' || unread FROM conversation_members",
            "SELECT 'message ' || conversation_id || ' ' || seq || ' ' || body || ' '
                    || (recalled_at IS NOT NULL) FROM messages",
            "SELECT 'report ' || report_id || ' ' || reporter || ' ' || kind || ' ' || resolution
                    FROM reports",
            "SELECT 'disabled ' || user_id FROM disabled_accounts",
            "SELECT 'refused ' || body_of.reason FROM refused_messages body_of",
        ] {
            let part: Vec<(String,)> = sqlx::query_as(query).fetch_all(&db.pool).await.unwrap();
            rows.extend(part.into_iter().map(|(row,)| row));
        }
        rows.sort();
        rows
    }

    pub(crate) async fn apply_each(db: &TestDb, events: &[SourcedEvent]) {
        for event in events {
            apply_batch(&db.pool, &Policy::default(), std::slice::from_ref(event))
                .await
                .unwrap();
        }
    }

    #[tokio::test]
    async fn safety_rules_come_out_the_same_live_on_a_replay_and_in_another_interleaving() {
        let events = log(script());
        let live = TestDb::create().await;
        apply_each(&live, &events).await;
        let expected = state(&live).await;
        for row in [
            "group g1 u1 approval joined true 0",
            "member g1 u0 admin false false",
            "member g1 u2 member false true",
            "follow u3>u4 false false false",
            "follow u4>u3 true false false",
            "conversation u3 d:u3:u4 0 true true 0",
            "message g:g1 1 hello false",
            "message g:g1 2  true", // removed: a tombstone
            "report 01JREPORT0000000000000000A u2 user warned",
            "disabled u3",
            "refused muted",
            "refused blocked",
        ] {
            assert!(expected.contains(&row.to_owned()), "{row} in {expected:#?}");
        }
        assert!(!expected
            .iter()
            .any(|row| row.starts_with("pending ") || row.starts_with("block ")));
        assert_eq!(
            expected
                .iter()
                .filter(|row| row.starts_with("refused "))
                .count(),
            2
        );

        apply_each(&live, &events).await;
        assert_eq!(state(&live).await, expected, "a replay changes nothing");

        let mut by_partition = events.clone();
        by_partition.sort_by_key(|event| (event.partition, event.offset));
        let rebuilt = TestDb::create().await;
        apply_each(&rebuilt, &by_partition).await;
        assert_eq!(
            state(&rebuilt).await,
            expected,
            "another interleaving of the keys"
        );
    }
}

mod moderation {
    //! Reports and what operators do, over HTTP: the queue, removals, a disabled account locked out
    //! of every path within the documented bound, and back in when re-enabled.

    use std::time::Duration;

    use reqwest::{Method, StatusCode};
    use serde_json::{json, Value};

    const POLL_MS: u64 = 200;

    async fn call(
        stack: &harness::stack::Stack,
        user: &str,
        method: Method,
        url: String,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let bytes = body.map(|b| b.to_string().into_bytes());
        stack
            .api
            .as_user(user)
            .raw(method, &url, bytes.as_deref(), Some("application/json"))
            .await
    }

    #[tokio::test]
    async fn reports_reach_operators_who_remove_content_and_disable_accounts_within_the_bound() {
        let stack = harness::stack::Stack::start_configured(
            |config| {
                config.moderation.operators = vec!["root".to_owned()];
                config.moderation.disabled_poll_ms = POLL_MS;
            },
            |_| {},
        )
        .await;
        let (ingest, reader) = (stack.api.ingest.clone(), stack.api.reader.clone());
        let registration = json!({"user": "bob", "password": "bob's password"});
        let (status, _) = call(
            &stack,
            "bob",
            Method::POST,
            format!("{ingest}/v1/accounts"),
            Some(registration),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let (status, sent) = call(
            &stack,
            "bob",
            Method::POST,
            format!("{ingest}/v1/messages"),
            Some(json!({"from": "bob", "to": "alice", "body": "buy my stuff"})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{sent}");
        let message_id = sent["message_id"].as_str().unwrap().to_owned();
        let report = json!({"reporter": "alice", "kind": "message", "subject": message_id,
                            "context": "d:alice:bob", "reason": "spam"});
        let (status, filed) = call(
            &stack,
            "alice",
            Method::POST,
            format!("{ingest}/v1/reports"),
            Some(report.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{filed}");
        let report_id = filed["report_id"].as_str().unwrap().to_owned();
        // Reporting as someone else, or a malformed report: refused at the edge.
        let (status, _) = call(
            &stack,
            "mallory",
            Method::POST,
            format!("{ingest}/v1/reports"),
            Some(report),
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let bad = json!({"reporter": "alice", "kind": "message", "subject": message_id, "reason": "no context"});
        let (status, body) = call(
            &stack,
            "alice",
            Method::POST,
            format!("{ingest}/v1/reports"),
            Some(bad),
        )
        .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("context"))
        );
        stack.applied().await;

        // Only operators see the queue and act.
        let (status, _) = call(
            &stack,
            "alice",
            Method::GET,
            format!("{reader}/v1/admin/reports"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        for (method, path) in [
            (Method::PUT, "/v1/admin/accounts/bob/disabled".to_owned()),
            (
                Method::DELETE,
                format!("/v1/admin/messages/{message_id}?conversation=d:alice:bob"),
            ),
            (Method::DELETE, "/v1/admin/groups/anything".to_owned()),
        ] {
            let (status, body) = call(
                &stack,
                "alice",
                method,
                format!("{ingest}{path}"),
                Some(json!({})),
            )
            .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {body}");
        }
        let (status, queue) = call(
            &stack,
            "root",
            Method::GET,
            format!("{reader}/v1/admin/reports"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(queue["reports"][0]["report_id"], report_id.as_str());
        assert_eq!(queue["reports"][0]["content"], "buy my stuff");
        let (status, _) = call(
            &stack,
            "root",
            Method::DELETE,
            format!("{ingest}/v1/admin/messages/{message_id}?conversation=d:alice:bob"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        let resolution = json!({"resolution": "removed the message"});
        let (status, _) = call(
            &stack,
            "root",
            Method::PUT,
            format!("{ingest}/v1/admin/reports/{report_id}"),
            Some(resolution),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        stack.applied().await;
        let (_, history) = call(
            &stack,
            "alice",
            Method::GET,
            format!("{reader}/v1/conversations/d:alice:bob/messages"),
            None,
        )
        .await;
        assert_eq!(history["messages"][0]["recalled"], true, "{history}");
        let (_, open) = call(
            &stack,
            "root",
            Method::GET,
            format!("{reader}/v1/admin/reports"),
            None,
        )
        .await;
        assert_eq!(open["reports"], json!([]));
        let (_, all) = call(
            &stack,
            "root",
            Method::GET,
            format!("{reader}/v1/admin/reports?state=all"),
            None,
        )
        .await;
        assert_eq!(all["reports"][0]["resolution"], "removed the message");
        assert_eq!(all["reports"][0]["content"], "");

        // Disabled: locked out of login, refresh, writes and reads within fanout's lag plus the poll.
        let login = json!({"user": "bob", "password": "bob's password"});
        let (status, session) = call(
            &stack,
            "bob",
            Method::POST,
            format!("{reader}/v1/sessions"),
            Some(login.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{session}");
        let (status, _) = call(
            &stack,
            "root",
            Method::PUT,
            format!("{ingest}/v1/admin/accounts/bob/disabled"),
            Some(json!({"reason": "spam"})),
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        stack.applied().await;
        let write = || {
            call(
                &stack,
                "bob",
                Method::POST,
                format!("{ingest}/v1/messages"),
                Some(json!({"from": "bob", "to": "alice", "body": "again"})),
            )
        };
        let read = || {
            call(
                &stack,
                "bob",
                Method::GET,
                format!("{reader}/v1/users/bob/conversations"),
                None,
            )
        };
        harness::wait_until(
            "bob's token refused",
            Duration::from_millis(POLL_MS * 10),
            || async {
                (write().await.0 == StatusCode::FORBIDDEN
                    && read().await.0 == StatusCode::FORBIDDEN)
                    .then_some(())
            },
        )
        .await;
        let (status, body) = call(
            &stack,
            "bob",
            Method::POST,
            format!("{reader}/v1/sessions"),
            Some(login.clone()),
        )
        .await;
        assert_eq!(
            (status, body["error"].as_str()),
            (StatusCode::FORBIDDEN, Some("this account is disabled"))
        );
        let refresh = json!({"refresh_token": session["refresh_token"]});
        let (status, _) = call(
            &stack,
            "bob",
            Method::POST,
            format!("{reader}/v1/sessions/refresh"),
            Some(refresh),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (revoked,): (bool,) = sqlx::query_as(
            "SELECT bool_and(revoked_at IS NOT NULL) FROM sessions WHERE user_id = 'bob'",
        )
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
        assert!(revoked, "the poller ended bob's sessions");

        // Re-enabled: back in.
        let (status, _) = call(
            &stack,
            "root",
            Method::DELETE,
            format!("{ingest}/v1/admin/accounts/bob/disabled"),
            None,
        )
        .await;
        assert_eq!(status, StatusCode::ACCEPTED);
        stack.applied().await;
        harness::wait_until(
            "bob's token accepted again",
            Duration::from_millis(POLL_MS * 10),
            || async { (write().await.0 == StatusCode::ACCEPTED).then_some(()) },
        )
        .await;
        let (status, _) = call(
            &stack,
            "bob",
            Method::POST,
            format!("{reader}/v1/sessions"),
            Some(login),
        )
        .await;
        assert_eq!(status, StatusCode::OK);
        stack.stop().await;
    }
}

mod caps {
    //! Issue 21's caps: follows per user and groups per user at ingest (`409` with the reason), members
    //! per group at ingest and, as the rule a replay applies, in fanout (`group_full`).

    use reqwest::{Method, StatusCode};
    use serde_json::{json, Value};

    async fn call(
        stack: &harness::stack::Stack,
        user: &str,
        method: Method,
        path: &str,
    ) -> (StatusCode, Value) {
        let url = format!("{}{path}", stack.api.ingest);
        stack.api.as_user(user).raw(method, &url, None, None).await
    }

    async fn create(
        stack: &harness::stack::Stack,
        owner: &str,
        group: &str,
    ) -> (StatusCode, Value) {
        let body =
            json!({"group": group, "owner": owner, "name": group, "join_rule": "open"}).to_string();
        let url = format!("{}/v1/groups", stack.api.ingest);
        stack
            .api
            .as_user(owner)
            .raw(
                Method::POST,
                &url,
                Some(body.as_bytes()),
                Some("application/json"),
            )
            .await
    }

    #[tokio::test]
    async fn follows_groups_and_members_are_capped_with_a_reason() {
        let stack = harness::stack::Stack::start_all(
            |_| {},
            |ingest| {
                ingest.caps.max_follows_per_user = 2;
                ingest.caps.max_groups_per_user = 2;
                ingest.caps.max_group_members = 3;
            },
            |fanout| fanout.max_group_members = 3,
        )
        .await;
        for target in ["b", "c"] {
            assert_eq!(
                call(
                    &stack,
                    "a",
                    Method::PUT,
                    &format!("/v1/users/a/following/{target}")
                )
                .await
                .0,
                StatusCode::ACCEPTED
            );
        }
        stack.applied().await;
        let (status, body) = call(&stack, "a", Method::PUT, "/v1/users/a/following/d").await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::CONFLICT, Some("user")),
            "{body}"
        );
        assert_eq!(
            call(&stack, "a", Method::DELETE, "/v1/users/a/following/b")
                .await
                .0,
            StatusCode::ACCEPTED
        );
        stack.applied().await;
        assert_eq!(
            call(&stack, "a", Method::PUT, "/v1/users/a/following/d")
                .await
                .0,
            StatusCode::ACCEPTED,
            "room again"
        );

        // Groups per user: a owns two; a third is refused, and so is joining another.
        for group in ["g1", "g2"] {
            assert_eq!(create(&stack, "a", group).await.0, StatusCode::ACCEPTED);
        }
        assert_eq!(create(&stack, "z", "g3").await.0, StatusCode::ACCEPTED);
        stack.applied().await;
        let (status, body) = create(&stack, "a", "g4").await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::CONFLICT, Some("owner")),
            "{body}"
        );
        let (status, body) = call(&stack, "a", Method::PUT, "/v1/groups/g3/members/a").await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::CONFLICT, Some("user")),
            "{body}"
        );

        // Members per group: g3 takes two more, then ingest says it is full.
        for user in ["m1", "m2"] {
            assert_eq!(
                call(
                    &stack,
                    user,
                    Method::PUT,
                    &format!("/v1/groups/g3/members/{user}")
                )
                .await
                .0,
                StatusCode::ACCEPTED
            );
        }
        stack.applied().await;
        let (status, body) = call(&stack, "m3", Method::PUT, "/v1/groups/g3/members/m3").await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::CONFLICT, Some("group")),
            "{body}"
        );
        stack.stop().await;
    }

    /// Joins racing past ingest's check (all sent before any is applied) are cut by fanout at the cap,
    /// on the group's key: the same joins on a replay.
    #[tokio::test]
    async fn joins_racing_past_ingest_are_refused_by_fanout_at_the_cap() {
        let stack = harness::stack::Stack::start_all(
            |_| {},
            |ingest| ingest.caps.max_group_members = 3,
            |fanout| fanout.max_group_members = 3,
        )
        .await;
        assert_eq!(
            create(&stack, "owner", "club").await.0,
            StatusCode::ACCEPTED
        );
        stack.applied().await;
        for user in ["m1", "m2", "m3", "m4"] {
            assert_eq!(
                call(
                    &stack,
                    user,
                    Method::PUT,
                    &format!("/v1/groups/club/members/{user}")
                )
                .await
                .0,
                StatusCode::ACCEPTED
            );
        }
        stack.applied().await;
        let (members,): (i64,) =
            sqlx::query_as("SELECT member_count FROM groups WHERE group_id = 'club'")
                .fetch_one(&stack.db.pool)
                .await
                .unwrap();
        assert_eq!(members, 3);
        assert_eq!(
            stack.fanout.metric(
                "fanline_fanout_im_refused_total",
                &[("reason", "group_full")]
            ),
            2.0
        );
        stack.stop().await;
    }
}
