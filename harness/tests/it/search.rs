//! Search over HTTP. Messages: Chinese and English matching, scoping by membership (a non-member, a
//! member who left, a member who joined late, a late member of a `shared` group, another user's direct
//! chat), recalls, bad input, the same results after the log is applied again and rebuilt, the backlog
//! indexed as fan-out would have, searchable the moment history shows it. Posts; people and groups.

use chrono::{TimeDelta, Utc};
use fanout::store::{apply_batch, Policy, SourcedEvent};
use harness::{spawn_reader, Api, TestDb};
use reqwest::{Method, StatusCode};
use schemas::{
    ConversationId, Envelope, GroupCreated, GroupId, MembershipChange, MessageId, MessageRecalled,
    MessageSent, UserId,
};
use serde_json::Value;

fn user(name: &str) -> UserId {
    UserId::parse("user", name).unwrap()
}

fn team() -> GroupId {
    GroupId::parse("group", "team").unwrap()
}

/// The scripted log: (event, message id when it is a message).
fn history() -> Vec<Envelope> {
    let now = Utc::now() - TimeDelta::minutes(10);
    let group = ConversationId::group(&team());
    let join = |who: &str| {
        Envelope::member_added(MembershipChange {
            group: team(),
            user: user(who),
            by: user(who),
            role: None,
        })
    };
    let say = |id: &MessageId, conversation: &ConversationId, from: &str, body: &str, minute| {
        Envelope::message_sent(MessageSent {
            message_id: id.clone(),
            conversation: conversation.clone(),
            sender: user(from),
            body: body.into(),
            content: Default::default(),
            reply_to: None,
            forwarded: false,
            mentions: Vec::new(),
            mention_all: false,
            client_msg_id: None,
            created_at: now + TimeDelta::minutes(minute),
        })
    };
    let direct = ConversationId::direct(&user("ann"), &user("bob")).unwrap();
    let recalled = MessageId::generate();
    vec![
        Envelope::group_created(GroupCreated {
            group: team(),
            owner: user("ann"),
            name: "Team".into(),
            group_type: None,
            description: None,
            join_rule: Some(schemas::JoinRule::Open),
            history: None,
            created_at: now,
        }),
        join("bob"),
        say(
            &MessageId::generate(),
            &group,
            "ann",
            "明天的会议改到下午三点",
            1,
        ),
        say(
            &MessageId::generate(),
            &group,
            "bob",
            "The MEETINGS moved, see ｔｈｅ agenda",
            2,
        ),
        say(&recalled, &group, "ann", "会议 secret draft", 3),
        Envelope::message_recalled(MessageRecalled {
            message_id: recalled,
            conversation: group.clone(),
            sender: user("ann"),
            recalled_at: now + TimeDelta::minutes(3),
        }),
        Envelope::member_removed(MembershipChange {
            group: team(),
            user: user("bob"),
            by: user("bob"),
            role: None,
        }),
        say(
            &MessageId::generate(),
            &group,
            "ann",
            "会议纪要 after bob left",
            4,
        ),
        join("cat"),
        say(&MessageId::generate(), &group, "ann", "新的会议 for cat", 5),
        say(
            &MessageId::generate(),
            &direct,
            "ann",
            "你好 bob, private meeting",
            6,
        ),
    ]
}

/// The events in order, each at the next offset of its partition (direct conversations on 1, the rest
/// on 0), as a log holds them.
/// `events` applied (with [`sourced`]'s positions, the default policy) and a reader over `db`.
async fn applied_and_served(db: &TestDb, events: &[Envelope]) -> (harness::Running, Api) {
    apply_batch(&db.pool, &Policy::default(), &sourced(events))
        .await
        .unwrap();
    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url(""));
    (reader, api)
}

fn sourced(events: &[Envelope]) -> Vec<SourcedEvent> {
    let mut offsets = [0i64; 2];
    events
        .iter()
        .map(|envelope| {
            let partition = i32::from(envelope.key.as_str().starts_with("d:"));
            let offset = offsets[partition as usize];
            offsets[partition as usize] += 1;
            SourcedEvent {
                partition,
                offset,
                envelope: envelope.clone(),
            }
        })
        .collect()
}

/// The bodies `who` finds for `q`, newest first, or the error status and body.
async fn search(api: &Api, who: &str, q: &str) -> Result<Vec<String>, (StatusCode, Value)> {
    let url = format!(
        "{}/v1/users/{who}/search/messages?q={}",
        api.reader,
        urlencode(q)
    );
    let (status, body) = api.as_user(who).raw(Method::GET, &url, None, None).await;
    if status != StatusCode::OK {
        return Err((status, body));
    }
    Ok(body["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| hit["snippet"].as_str().unwrap().to_owned())
        .collect())
}

fn urlencode(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

async fn everything_found(api: &Api) -> Vec<Vec<String>> {
    let mut all = Vec::new();
    for who in ["ann", "bob", "cat", "dan"] {
        for q in ["会议", "meet", "你好", "the agenda", "下午三点"] {
            all.push(search(api, who, q).await.unwrap());
        }
    }
    all
}

#[tokio::test]
async fn search_finds_chinese_and_english_only_where_the_caller_may_read() {
    let db = TestDb::create().await;
    let history = history();
    let (reader, api) = applied_and_served(&db, &history).await;

    // A two-character Chinese word in the middle of a sentence; newest first; recalled never.
    assert_eq!(
        search(&api, "ann", "会议").await.unwrap(),
        [
            "新的会议 for cat",
            "会议纪要 after bob left",
            "明天的会议改到下午三点"
        ]
    );
    // A phrase of pieces, and English by prefix with case and width folded, words ANDed.
    assert_eq!(
        search(&api, "ann", "下午三点").await.unwrap(),
        ["明天的会议改到下午三点"]
    );
    assert_eq!(
        search(&api, "ann", "meet AGENDA").await.unwrap(),
        ["The MEETINGS moved, see ｔｈｅ agenda"]
    );
    // bob left: what was said before he left, nothing after; and his direct chat with ann.
    assert_eq!(
        search(&api, "bob", "会议").await.unwrap(),
        ["明天的会议改到下午三点"]
    );
    assert_eq!(
        search(&api, "bob", "你好").await.unwrap(),
        ["你好 bob, private meeting"]
    );
    // cat joined late (history "joined"): only what came after; nothing of ann and bob's chat.
    assert_eq!(
        search(&api, "cat", "会议").await.unwrap(),
        ["新的会议 for cat"]
    );
    assert!(search(&api, "cat", "你好").await.unwrap().is_empty());
    // dan is in nothing.
    assert!(search(&api, "dan", "会议").await.unwrap().is_empty());
    assert!(search(&api, "dan", "meet").await.unwrap().is_empty());

    // Bad input: 400 naming q; query syntax is only a separator; another user's search is refused.
    for bad in ["", "   ", "?!…", "' & |"] {
        let (status, body) = search(&api, "ann", bad).await.unwrap_err();
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("q")),
            "{bad:?}"
        );
    }
    let (status, _) = search(&api, "ann", &"x".repeat(201)).await.unwrap_err();
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert_eq!(search(&api, "ann", "meet'|!").await.unwrap().len(), 2);
    let url = format!("{}/v1/users/ann/search/messages?q=x", api.reader);
    let (status, _) = api.as_user("bob").raw(Method::GET, &url, None, None).await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // The log again, and a rebuild: the same results.
    let before = everything_found(&api).await;
    apply_batch(&db.pool, &Policy::default(), &sourced(&history))
        .await
        .unwrap();
    assert_eq!(everything_found(&api).await, before, "applied again");
    let fresh = TestDb::create().await;
    let (rebuilt, rebuilt_api) = applied_and_served(&fresh, &history).await;
    assert_eq!(everything_found(&rebuilt_api).await, before, "rebuilt");
    rebuilt.stop().await;
    reader.stop().await;
}

/// A group whose history is `shared`: a member who joins late finds what was said before they
/// joined, as its history shows them; after they leave, nothing said later.
#[tokio::test]
async fn a_late_member_of_a_shared_history_group_finds_what_was_said_before() {
    let db = TestDb::create().await;
    let club = GroupId::parse("group", "club").unwrap();
    let conversation = ConversationId::group(&club);
    let now = Utc::now() - TimeDelta::minutes(5);
    let say = |body: &str, minute| {
        Envelope::message_sent(MessageSent {
            message_id: MessageId::generate(),
            conversation: conversation.clone(),
            sender: user("ann"),
            body: body.into(),
            content: Default::default(),
            reply_to: None,
            forwarded: false,
            mentions: Vec::new(),
            mention_all: false,
            client_msg_id: None,
            created_at: now + TimeDelta::minutes(minute),
        })
    };
    let membership = |who: &str| MembershipChange {
        group: club.clone(),
        user: user(who),
        by: user(who),
        role: None,
    };
    let events = vec![
        Envelope::group_created(GroupCreated {
            group: club.clone(),
            owner: user("ann"),
            name: "Club".into(),
            group_type: None,
            description: None,
            join_rule: Some(schemas::JoinRule::Open),
            history: Some(schemas::HistoryVisibility::Shared),
            created_at: now,
        }),
        say("会议 before eve joined", 1),
        Envelope::member_added(membership("eve")),
        say("会议 while eve is in", 2),
        Envelope::member_removed(membership("eve")),
        say("会议 after eve left", 3),
    ];
    let (reader, api) = applied_and_served(&db, &events).await;
    assert_eq!(
        search(&api, "eve", "会议").await.unwrap(),
        ["会议 while eve is in", "会议 before eve joined"]
    );
    assert_eq!(search(&api, "ann", "会议").await.unwrap().len(), 3);
    reader.stop().await;
}

/// Stored without indexing (rows older than search, or `FANLINE_SKIP_SEARCH_INDEX`): search finds
/// nothing; the reindexer then writes exactly what indexing on the way in writes — recalled messages
/// stay out — and a second pass finds no backlog.
#[tokio::test]
async fn the_search_backlog_is_indexed_as_fan_out_would_have() {
    use fanout::reindex::Reindexer;

    let events = sourced(&history());
    let indexed = TestDb::create().await;
    apply_batch(&indexed.pool, &Policy::default(), &events)
        .await
        .unwrap();
    let db = TestDb::create().await;
    let skipping = Policy {
        index_search: false,
        ..Policy::default()
    };
    apply_batch(&db.pool, &skipping, &events).await.unwrap();
    let reader = spawn_reader(&db.url).await;
    let api = Api::new("", reader.url(""));
    assert!(search(&api, "ann", "会议").await.unwrap().is_empty());

    let reindexer = Reindexer {
        pool: db.pool.clone(),
        indexed: None,
    };
    // Six messages, one recalled; the group's name is indexed on the way in whatever the policy.
    assert_eq!(reindexer.drain().await.unwrap(), 5);
    assert_eq!(reindexer.drain().await.unwrap(), 0, "no backlog left");
    let vectors = "SELECT message_id, search::text FROM messages ORDER BY message_id";
    let stored: Vec<(String, Option<String>)> =
        sqlx::query_as(vectors).fetch_all(&db.pool).await.unwrap();
    let expected: Vec<(String, Option<String>)> = sqlx::query_as(vectors)
        .fetch_all(&indexed.pool)
        .await
        .unwrap();
    assert_eq!(
        stored, expected,
        "the same vectors as indexing on the way in"
    );
    assert_eq!(
        search(&api, "ann", "会议").await.unwrap(),
        [
            "新的会议 for cat",
            "会议纪要 after bob left",
            "明天的会议改到下午三点"
        ]
    );
    reader.stop().await;
}

/// Posts: the caller's own and their followed authors' (not others'), or one author's with `author=`;
/// deleted posts never match; a 4,000-character word is indexed (cut) and found by its start.
#[tokio::test]
async fn post_search_covers_followed_authors_and_one_author_on_request() {
    use schemas::{FollowChange, PostCreated, PostDeleted, PostId};

    let db = TestDb::create().await;
    let post = |author: &str, body: &str| {
        let post_id = PostId::generate();
        let envelope = Envelope::post_created(PostCreated {
            post_id: post_id.clone(),
            author: user(author),
            body: body.into(),
            content: Default::default(),
            message_id: None,
            created_at: Utc::now(),
        });
        (post_id, envelope)
    };
    let (_, by_ann) = post("ann", "周末会议 notes");
    let (gone, by_ann_deleted) = post("ann", "会议 withdrawn");
    let (_, by_cat) = post("cat", "会议 elsewhere");
    let (_, by_bob) = post("bob", "my own 会议");
    let long_word = format!("super{}", "a".repeat(4000));
    let (_, by_ann_long) = post("ann", &long_word);
    let events = vec![
        Envelope::followed(FollowChange {
            follower: user("bob"),
            followee: user("ann"),
        }),
        by_ann,
        by_ann_deleted,
        by_cat,
        by_bob,
        by_ann_long,
        Envelope::post_deleted(PostDeleted {
            post_id: gone,
            author: user("ann"),
        }),
    ];
    let (reader, api) = applied_and_served(&db, &events).await;
    let find = |who: &'static str, query: String| {
        let api = api.as_user(who);
        let url = format!("{}/v1/users/{who}/search/posts?{query}", api.reader);
        async move {
            let (status, body) = api.raw(Method::GET, &url, None, None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            body["hits"]
                .as_array()
                .unwrap()
                .iter()
                .map(|hit| hit["author"].as_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        }
    };
    let q = urlencode("会议");
    assert_eq!(find("bob", format!("q={q}")).await, ["bob", "ann"]);
    assert_eq!(find("bob", format!("q={q}&author=cat")).await, ["cat"]);
    assert!(find("dan", format!("q={q}")).await.is_empty());
    assert_eq!(find("bob", "q=SUPERAAA".into()).await, ["ann"]);
    reader.stop().await;
}

/// People and groups: ranked (exact id, id containing the query, names containing its words, names
/// containing it), Chinese names by their words, private groups only for their members, bad input.
#[tokio::test]
async fn people_and_groups_are_found_by_id_and_name_private_groups_by_members_only() {
    use schemas::{AccountRegistered, GroupUpdated, JoinRule, ProfileUpdated};

    let db = TestDb::create().await;
    let hash = "$argon2id$v=19$m=19456,t=2,p=1$c29tZXNhbHQ$c29tZWhhc2hzb21laGFzaHNvbWVoYXNoc29tZQ";
    let mut events = Vec::new();
    for name in ["ann", "anna", "joanne", "bob", "zhang"] {
        events.push(Envelope::account_registered(AccountRegistered {
            user: user(name),
            password_hash: hash.into(),
        }));
    }
    let profile = |who: &str, display: &str| {
        Envelope::profile_updated(ProfileUpdated {
            user: user(who),
            display_name: display.into(),
            age: None,
            gender: None,
            signature: None,
        })
    };
    events.push(profile("bob", "Bob Annan"));
    events.push(profile("zhang", "张三丰"));
    let group = |id: &str, owner: &str, name: &str, rule| {
        Envelope::group_created(GroupCreated {
            group: GroupId::parse("group", id).unwrap(),
            owner: user(owner),
            name: name.into(),
            group_type: None,
            description: Some("周末爬山 hiking".into()),
            join_rule: Some(rule),
            history: None,
            created_at: Utc::now(),
        })
    };
    events.push(group("hikers", "ann", "Hikers", JoinRule::Open));
    events.push(group("secret", "bob", "Secret hikers", JoinRule::Invite));
    events.push(Envelope::group_updated(GroupUpdated {
        group: GroupId::parse("group", "hikers").unwrap(),
        by: user("ann"),
        name: Some("Mountain hikers".into()),
        description: None,
        join_rule: None,
        history: None,
        owner: None,
        retention_days: None,
    }));
    let (reader, api) = applied_and_served(&db, &events).await;
    let find = |who: &'static str, what: &'static str, q: &str| {
        let api = api.as_user(who);
        let url = format!("{}/v1/search/{what}?q={}", api.reader, urlencode(q));
        async move {
            let (status, body) = api.raw(Method::GET, &url, None, None).await;
            (status, body)
        }
    };
    let ids = |body: &Value, list: &str, key: &str| -> Vec<String> {
        body[list]
            .as_array()
            .unwrap()
            .iter()
            .map(|hit| hit[key].as_str().unwrap().to_owned())
            .collect()
    };
    // ann exactly, then ids containing "ann" by id, then a name with a word starting with it.
    let (_, body) = find("dan", "users", "ann").await;
    assert_eq!(
        ids(&body, "users", "user"),
        ["ann", "anna", "joanne", "bob"]
    );
    // A two-character Chinese name part, in the middle of the name.
    let (_, body) = find("dan", "users", "三丰").await;
    assert_eq!(ids(&body, "users", "user"), ["zhang"]);
    assert_eq!(body["users"][0]["display_name"], "张三丰");
    // Groups by a renamed name and by a Chinese word of the description; the private one only for
    // its member.
    let (_, body) = find("dan", "groups", "mountain").await;
    assert_eq!(ids(&body, "groups", "group"), ["hikers"]);
    let (_, body) = find("dan", "groups", "爬山").await;
    assert_eq!(ids(&body, "groups", "group"), ["hikers"]);
    let (_, body) = find("bob", "groups", "爬山").await;
    assert_eq!(ids(&body, "groups", "group"), ["hikers", "secret"]);
    // Paging keeps the order.
    let url = format!("{}/v1/search/users?q=ann&limit=2", api.reader);
    let (_, first) = api.as_user("dan").raw(Method::GET, &url, None, None).await;
    assert_eq!(ids(&first, "users", "user"), ["ann", "anna"]);
    let next = first["next_cursor"].as_str().unwrap();
    let (_, second) = api
        .as_user("dan")
        .raw(Method::GET, &format!("{url}&cursor={next}"), None, None)
        .await;
    assert_eq!(ids(&second, "users", "user"), ["joanne", "bob"]);
    // Bad input names q.
    for bad in ["", "%%", "' OR 1=1 --"] {
        let (status, body) = find("dan", "users", bad).await;
        if bad == "' OR 1=1 --" {
            assert_eq!(status, StatusCode::OK, "only words: or, 1, 1");
            continue;
        }
        assert_eq!(
            (status, body["field"].as_str()),
            (StatusCode::BAD_REQUEST, Some("q"))
        );
    }
    reader.stop().await;
}

/// Searchable as soon as readable: fanout writes a message's searchable form in the transaction that
/// stores it, so the moment its history shows a message (through Kafka and fanout), search finds it,
/// without waiting for anything else. The bound after the `202` is fanout's lag (README "Search").
#[tokio::test]
async fn a_message_is_searchable_the_moment_its_history_shows_it() {
    let stack = harness::stack::Stack::start().await;
    let api = stack.api.as_user("ann");
    let history = format!("{}/v1/conversations/d:ann:bob/messages", api.reader);
    for n in 0..5 {
        let token = format!("会议token{n}x");
        stack
            .message("ann", "bob", &format!("{token} agenda"))
            .await;
        harness::wait_until(
            "history shows the message",
            std::time::Duration::from_secs(30),
            || async {
                let (status, page) = api.raw(Method::GET, &history, None, None).await;
                let shown = status == StatusCode::OK
                    && page["messages"]
                        .as_array()
                        .is_some_and(|m| m.iter().any(|m| m["body"] == format!("{token} agenda")));
                shown.then_some(())
            },
        )
        .await;
        let found = search(&api, "ann", &format!("token{n}x")).await.unwrap();
        assert_eq!(found, [format!("{token} agenda")], "message {n}");
        assert_eq!(search(&api, "bob", "会议").await.unwrap().len(), n + 1);
    }
    stack.stop().await;
}
