//! Account deletion (fanout/src/erasure.rs, fanout/src/departures.rs): what the account owned is
//! erased on its key, what it shared ends through ordinary events — and both come out the same live,
//! on a replay, and in other interleavings of the keys (a rebuild), also with events that were in
//! flight when the account went.

pub(crate) mod store {
    use chrono::Utc;
    use fanout::store::SourcedEvent;
    use harness::TestDb;
    use schemas::{
        AccountDeleted, AccountRegistered, BlockChange, ConversationId, Envelope, FollowBlock,
        GroupCreated, GroupId, JoinRule, MembershipChange, PostCreated, PostId, ProfileUpdated,
        Role, UserActive,
    };

    use crate::safety::store::{apply_each, follow, message, partition_of, user};

    /// Kafka positions for `envelopes`, appended after `log`.
    pub(crate) fn append(log: &mut Vec<SourcedEvent>, envelopes: Vec<Envelope>) {
        for envelope in envelopes {
            let partition = partition_of(&envelope);
            let offset = log.iter().filter(|e| e.partition == partition).count() as i64;
            log.push(SourcedEvent {
                partition,
                offset,
                envelope,
            });
        }
    }

    fn post(author: &str, body: &str) -> Envelope {
        Envelope::post_created(PostCreated {
            post_id: PostId::generate(),
            author: user(author),
            body: body.into(),
            content: Default::default(),
            message_id: None,
            created_at: Utc::now(),
        })
    }

    pub(crate) fn join(group: &GroupId, who: &str, by: &str, role: Option<Role>) -> Envelope {
        Envelope::member_added(MembershipChange {
            group: group.clone(),
            user: user(who),
            by: user(by),
            role,
        })
    }

    pub(crate) fn group(name: &str, owner: &str) -> (GroupId, Envelope) {
        let id = GroupId::parse("group", name).unwrap();
        let created = Envelope::group_created(GroupCreated {
            group: id.clone(),
            owner: user(owner),
            name: name.into(),
            group_type: None,
            description: None,
            join_rule: Some(JoinRule::Open),
            history: None,
            created_at: Utc::now(),
        });
        (id, created)
    }

    fn account(name: &str) -> Envelope {
        Envelope::account_registered(AccountRegistered {
            user: user(name),
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        })
    }

    fn profile(name: &str) -> Envelope {
        Envelope::profile_updated(ProfileUpdated {
            user: user(name),
            display_name: format!("{name} the user"),
            age: None,
            gender: None,
            signature: Some("my private signature".into()),
        })
    }

    /// Ann's life before she deletes her account: a profile, posts, follows both ways, a group she
    /// owns (Bob an admin, Cat a member), Cat's group she joined, direct and group messages, a block.
    fn before() -> Vec<Envelope> {
        let (team, team_created) = group("team", "ann");
        let (club, club_created) = group("club", "cat");
        let direct = ConversationId::direct(&user("ann"), &user("bob")).unwrap();
        let mut events = vec![
            account("ann"),
            account("bob"),
            profile("ann"),
            post("ann", "ann's first post"),
            post("bob", "bob's post"),
            follow("bob", "ann"),
            follow("cat", "ann"),
            follow("ann", "bob"),
            team_created,
            join(&team, "cat", "cat", None),
            join(&team, "bob", "bob", None),
            join(&team, "bob", "ann", Some(Role::Admin)),
            club_created,
            join(&club, "ann", "ann", None),
            message(&direct, "ann", "hi bob, secret"),
            message(&direct, "bob", "hi ann"),
            message(&ConversationId::group(&team), "ann", "hello team, secret"),
            message(&ConversationId::group(&team), "bob", "bob to the team"),
            message(&ConversationId::group(&club), "ann", "hello club, secret"),
            post("ann", "ann's second post"),
            post("bob", "bob's second post"),
        ];
        let block = BlockChange {
            blocker: user("ann"),
            target: user("dan"),
        };
        for edge in FollowBlock::both_ways(&block.blocker, &block.target) {
            events.push(Envelope::follow_blocked(edge, true));
        }
        events.extend(Envelope::user_blocked(block, true));
        events
    }

    /// The deletion, and what was on its way when it was applied (ann's writes, and Bob writing to
    /// her), and someone registering her id.
    fn deletion_and_in_flight() -> Vec<Envelope> {
        let direct = ConversationId::direct(&user("ann"), &user("bob")).unwrap();
        vec![
            Envelope::account_deleted(AccountDeleted {
                user: user("ann"),
                by: user("ann"),
            }),
            message(&direct, "bob", "are you there?"),
            message(&direct, "ann", "late, secret"),
            message(
                &ConversationId::group(&GroupId::parse("group", "team").unwrap()),
                "ann",
                "late to the team, secret",
            ),
            post("ann", "a late post, secret"),
            profile("ann"),
            follow("ann", "cat"),
            Envelope::user_active(UserActive {
                user: user("ann"),
                at: Utc::now(),
            }),
            account("ann"),
        ]
    }

    /// Every row the deletion touches or must leave alone, as text (seqs of inboxes vary with the
    /// interleaving; what each inbox holds does not).
    async fn state(db: &TestDb) -> Vec<String> {
        let mut rows = Vec::new();
        for query in [
            "SELECT 'account ' || user_id FROM accounts",
            "SELECT 'profile ' || user_id || ' ' || coalesce(signature, '') FROM users",
            "SELECT 'activity ' || user_id FROM user_activity",
            "SELECT 'post ' || author || ' ' || body || ' ' || (deleted_at IS NOT NULL) || ' '
                    || (search IS NOT NULL) FROM posts",
            "SELECT 'message ' || conversation_id || ' ' || seq || ' ' || sender || ' ' || body || ' '
                    || (erased_at IS NOT NULL) || ' ' || (search IS NOT NULL) FROM messages",
            "SELECT 'refused ' || sender || ' ' || reason FROM refused_messages",
            "SELECT 'group ' || group_id || ' ' || owner || ' ' || member_count FROM groups",
            "SELECT 'member ' || group_id || ' ' || user_id || ' ' || role || ' ' || active
                    FROM group_members",
            "SELECT 'follow ' || follower || '>' || followee || ' ' || active FROM follows",
            "SELECT 'block ' || blocker || ' ' || target FROM blocks",
            "SELECT 'contact ' || user_id || ' ' || conversation_id || ' ' || from_seq || ' '
                    || active || ' ' || unread FROM conversation_members",
            "SELECT 'inbox ' || s.user_id || ' ' || s.kind || ' '
                    || coalesce(p.body, s.message_id, s.conversation_id, '')
             FROM sync_entries s LEFT JOIN posts p ON p.post_id = s.post_id",
            "SELECT 'erased ' || user_id FROM erased_users",
        ] {
            let part: Vec<(String,)> = sqlx::query_as(query).fetch_all(&db.pool).await.unwrap();
            rows.extend(part.into_iter().map(|(row,)| row));
        }
        rows.sort();
        rows
    }

    #[tokio::test]
    async fn a_deletion_comes_out_the_same_live_on_a_replay_and_in_other_interleavings() {
        let mut log = Vec::new();
        append(&mut log, before());
        append(&mut log, deletion_and_in_flight());
        let live = TestDb::create().await;
        apply_each(&live, &log).await;
        // The departures sweeper's events, as it would write them until nothing is left.
        let mut rounds = 0;
        loop {
            let departures = fanout::departures::departures_of(&live.pool, &user("ann"))
                .await
                .unwrap();
            if departures.is_empty() {
                break;
            }
            rounds += 1;
            assert!(rounds < 4, "departures do not converge: {departures:?}");
            let from = log.len();
            append(&mut log, departures);
            apply_each(&live, &log[from..]).await;
        }
        let expected = state(&live).await;
        let secrets: Vec<&String> = expected.iter().filter(|r| r.contains("secret")).collect();
        assert!(secrets.is_empty(), "content left: {secrets:#?}");
        for row in [
            "account bob",
            "erased ann",
            // The team passed to its admin; ann left both groups.
            "group team bob 2",
            "member team ann admin false",
            "member team bob owner true",
            "member club ann member false",
            "group club cat 1",
            // Tombstones: contents and search vectors gone, seqs kept; the others' intact.
            "message d:ann:bob 1 ann  true false",
            "message d:ann:bob 2 bob hi ann false true",
            "message d:ann:bob 3 bob are you there? false true",
            "message d:ann:bob 4 ann  true false",
            "message g:team 1 ann  true false",
            "message g:team 3 ann  true false",
            "post ann  true false",
            "post bob bob's post false true",
            // Bob's contact list and unread are his: ann's last message is a tombstone, unread.
            "contact bob d:ann:bob 0 true 1",
            "follow bob>ann false",
            "follow ann>bob false",
            "follow ann>cat false",
            "follow ann>dan false",
        ] {
            assert!(expected.contains(&row.to_owned()), "{row} in {expected:#?}");
        }
        for prefix in [
            "profile ann",
            "activity ann",
            "contact ann",
            "inbox ann",
            "block ann",
            "account ann",
            "inbox bob post ",
        ] {
            let left: Vec<&String> = expected.iter().filter(|r| r.starts_with(prefix)).collect();
            assert!(
                left.iter()
                    .all(|r| !r.starts_with("inbox bob post ") || r.contains("bob's")),
                "{prefix}: {left:#?}"
            );
            if prefix != "inbox bob post " {
                assert!(left.is_empty(), "{prefix}: {left:#?}");
            }
        }
        assert_eq!(
            expected
                .iter()
                .filter(|r| r.starts_with("post ann"))
                .count(),
            3,
            "ann's three posts stay as tombstones: {expected:#?}"
        );

        apply_each(&live, &log).await;
        assert_eq!(state(&live).await, expected, "a replay changes nothing");

        // A rebuild meets the keys in other orders: the deletion before or after the others.
        for descending in [false, true] {
            let mut by_partition = log.clone();
            by_partition.sort_by_key(|event| {
                let partition = if descending {
                    -event.partition
                } else {
                    event.partition
                };
                (partition, event.offset)
            });
            let rebuilt = TestDb::create().await;
            apply_each(&rebuilt, &by_partition).await;
            assert_eq!(
                state(&rebuilt).await,
                expected,
                "partitions one after another, descending: {descending}"
            );
        }
    }
}

mod http {
    //! Deletion as a user and an operator meet it, over HTTP and a WebSocket.

    use std::time::Duration;

    use harness::stack::Stack;
    use harness::wait_until;
    use harness::ws::{Received, WsClient};
    use reqwest::{Method, StatusCode};
    use serde_json::{json, Value};

    const POLL_MS: u64 = 200;

    /// `auth`'s request helper without the headers.
    async fn call(
        method: Method,
        url: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let (status, _, value) = crate::auth::call(method, url, token, body).await;
        (status, value)
    }

    async fn login(stack: &Stack, user: &str) -> (StatusCode, Value) {
        crate::auth::login(stack, user, "correct horse").await
    }

    /// Registers `user` and returns their first session's tokens once it logs in.
    async fn register(stack: &Stack, user: &str) -> (StatusCode, Value) {
        let body = json!({"user": user, "password": "correct horse"});
        let answer = call(
            Method::POST,
            &stack.ingest.url("/v1/accounts"),
            None,
            Some(body),
        )
        .await;
        if answer.0 != StatusCode::ACCEPTED {
            return answer;
        }
        wait_until(
            "the registration applied",
            Duration::from_secs(30),
            || async {
                let (status, tokens) = login(stack, user).await;
                (status == StatusCode::OK).then_some((status, tokens))
            },
        )
        .await
    }

    #[tokio::test]
    async fn a_deleted_account_is_gone_for_everyone_and_its_id_stays_taken() {
        let stack = Stack::start_configured(
            |config| {
                config.accounts_required = true;
                config.moderation.operators = vec!["root".to_owned()];
                config.moderation.disabled_poll_ms = POLL_MS;
            },
            |fanout| fanout.departures_sweep_secs = 1,
        )
        .await;
        let (_, ann) = register(&stack, "ann").await;
        register(&stack, "bob").await;
        let ann_token = ann["access_token"].as_str().unwrap().to_owned();
        let bob = stack.api.as_user("bob");
        let root = stack.api.token_for("root");
        stack
            .write(
                "ann",
                Method::PUT,
                "/v1/users/ann",
                json!({"display_name": "Ann Secret"}),
            )
            .await;
        stack
            .write(
                "ann",
                Method::POST,
                "/v1/posts",
                json!({"author": "ann", "body": "ann's zebra post"}),
            )
            .await;
        stack
            .write(
                "ann",
                Method::POST,
                "/v1/groups",
                json!({"group": "team", "owner": "ann", "name": "Team", "join_rule": "open"}),
            )
            .await;
        stack
            .write(
                "bob",
                Method::PUT,
                "/v1/groups/team/members/bob",
                Value::Null,
            )
            .await;
        stack
            .write(
                "bob",
                Method::PUT,
                "/v1/users/bob/following/ann",
                Value::Null,
            )
            .await;
        stack.message("ann", "bob", "a zebra secret").await;
        stack.message("bob", "ann", "hi ann").await;
        stack.applied().await;
        let mut socket = WsClient::connect(&stack.reader.url(""), &ann_token, "phone", "")
            .await
            .unwrap();

        // Only the account itself (or an operator) deletes it.
        let ann_url = stack.ingest.url("/v1/accounts/ann");
        let bob_token = stack.api.token_for("bob");
        let (status, _) = call(Method::DELETE, &ann_url, Some(&bob_token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let admin_url = stack.ingest.url("/v1/admin/accounts/ann");
        let (status, _) = call(Method::DELETE, &admin_url, Some(&bob_token), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let dan_url = stack.ingest.url("/v1/admin/accounts/dan");
        let (status, body) = call(Method::DELETE, &dan_url, Some(&root), None).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "an operator deletes dan: {body}"
        );
        let (status, body) = call(Method::DELETE, &ann_url, Some(&ann_token), None).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");

        // Her socket closes, her token and her password stop working.
        let closed = loop {
            match socket.next(Duration::from_secs(10)).await {
                Received::Frame(_) => continue,
                other => break other,
            }
        };
        assert!(matches!(closed, Received::Closed(_)), "{closed:?}");
        let contacts = stack.reader.url("/v1/users/ann/conversations");
        let refused = wait_until("ann's token refused", Duration::from_secs(10), || async {
            let (status, body) = call(Method::GET, &contacts, Some(&ann_token), None).await;
            (status == StatusCode::FORBIDDEN).then_some(body)
        })
        .await;
        assert_eq!(refused["error"], "this account was deleted", "{refused}");
        assert_eq!(login(&stack, "ann").await.0, StatusCode::UNAUTHORIZED);
        let refresh = json!({"refresh_token": ann["refresh_token"]});
        let (status, _) = call(
            Method::POST,
            &stack.reader.url("/v1/sessions/refresh"),
            None,
            Some(refresh),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Bob: her profile and post are gone, her message a tombstone, his own and his unread intact.
        let (status, _) = bob
            .raw(Method::GET, &stack.reader.url("/v1/users/ann"), None, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (_, feed) = bob
            .raw(
                Method::GET,
                &stack.reader.url("/v1/users/bob/feed"),
                None,
                None,
            )
            .await;
        assert!(!feed.to_string().contains("zebra"), "{feed}");
        let (_, history) = bob
            .raw(
                Method::GET,
                &stack.reader.url("/v1/conversations/d:ann:bob/messages"),
                None,
                None,
            )
            .await;
        let messages = history["messages"].as_array().unwrap();
        assert_eq!(messages.len(), 2, "{history}");
        assert_eq!(
            (
                messages[0]["body"].as_str(),
                messages[0]["sender_deleted"].as_bool()
            ),
            (Some(""), Some(true))
        );
        assert_eq!(messages[1]["body"], "hi ann");
        let (_, found) = bob
            .raw(
                Method::GET,
                &stack.reader.url("/v1/users/bob/search/messages?q=zebra"),
                None,
                None,
            )
            .await;
        assert_eq!(found["hits"].as_array().map(Vec::len), Some(0), "{found}");
        // Writing to her is refused where it enters.
        let (status, body) = bob
            .raw(
                Method::POST,
                &stack.ingest.url("/v1/messages"),
                Some(
                    &serde_json::to_vec(&json!({"from": "bob", "to": "ann", "body": "there?"}))
                        .unwrap(),
                ),
                Some("application/json"),
            )
            .await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::NOT_FOUND, Some("to")),
            "{body}"
        );

        // Her group passed to Bob, her follows ended: all through the log.
        let group = wait_until("the group handed over", Duration::from_secs(30), || async {
            let (_, group) = bob
                .raw(
                    Method::GET,
                    &stack.reader.url("/v1/groups/team"),
                    None,
                    None,
                )
                .await;
            (group["owner"] == "bob").then_some(group)
        })
        .await;
        assert_eq!(group["member_count"], 1, "{group}");
        let (_, members) = bob
            .raw(
                Method::GET,
                &stack.reader.url("/v1/groups/team/members"),
                None,
                None,
            )
            .await;
        assert!(!members.to_string().contains("\"ann\""), "{members}");
        wait_until("bob's follow ended", Duration::from_secs(30), || async {
            let follows: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM follows WHERE (follower = 'ann' OR followee = 'ann') AND active",
            )
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
            (follows == 0).then_some(())
        })
        .await;

        // The ids stay taken.
        let (status, _) = register(&stack, "dan").await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "dan's id, deleted by an operator"
        );
        let (status, body) = register(&stack, "ann").await;
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::CONFLICT, Some("user")),
            "{body}"
        );
        socket.close().await;
        stack.stop().await;
    }
}
