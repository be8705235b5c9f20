//! Accounts and tokens end to end: registration through Kafka, login, refresh, logout, and every
//! protected route refusing a missing, forged, expired or someone else's token.

use std::time::Duration;

use harness::stack::Stack;
use harness::{wait_until, Api};
use reqwest::{Method, StatusCode};
use serde_json::{json, Value};

pub(crate) async fn call(
    method: Method,
    url: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, reqwest::header::HeaderMap, Value) {
    let mut request = reqwest::Client::new().request(method, url);
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let headers = response.headers().clone();
    let value = response.json().await.unwrap_or(Value::Null);
    (status, headers, value)
}

pub(crate) async fn login(stack: &Stack, user: &str, password: &str) -> (StatusCode, Value) {
    let url = stack.reader.url("/v1/sessions");
    let body = json!({"user": user, "password": password});
    let (status, _, value) = call(Method::POST, &url, None, Some(body)).await;
    (status, value)
}

/// Registers `user` with the password "correct horse" and waits until it logs in.
/// Registers `user` (password `correct horse`) through the API and waits until the account logs in.
pub(crate) async fn register(stack: &Stack, user: &str) {
    let url = stack.ingest.url("/v1/accounts");
    let credentials = json!({"user": user, "password": "correct horse"});
    let (status, _, value) = call(Method::POST, &url, None, Some(credentials)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");
    wait_until(
        "the registration applied",
        Duration::from_secs(30),
        || async { (login(stack, user, "correct horse").await.0 == StatusCode::OK).then_some(()) },
    )
    .await;
}

#[tokio::test]
async fn register_log_in_refresh_and_log_out() {
    let stack = Stack::start().await;
    let register = stack.ingest.url("/v1/accounts");
    let credentials = json!({"user": "alice", "password": "correct horse"});
    let (status, _, value) = call(Method::POST, &register, None, Some(credentials)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");
    // Bad registrations name the field.
    for (body, field) in [
        (json!({"user": "a b", "password": "long enough"}), "user"),
        (json!({"user": "bob", "password": "short"}), "password"),
        // Lowercase only: `Alice` beside `alice` would pass for her (issue 19, finding 8).
        (json!({"user": "Alice", "password": "long enough"}), "user"),
    ] {
        let (status, _, value) = call(Method::POST, &register, None, Some(body)).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{value}");
        assert_eq!(value["field"], field);
    }
    // The account exists once fanout applied the event; the password is stored as argon2id only.
    let tokens = wait_until(
        "the registration applied",
        Duration::from_secs(30),
        || async {
            let (status, value) = login(&stack, "alice", "correct horse").await;
            (status == StatusCode::OK).then_some(value)
        },
    )
    .await;
    let stored: String =
        sqlx::query_scalar("SELECT password_hash FROM accounts WHERE user_id = 'alice'")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert!(stored.starts_with("$argon2id$"), "{stored}");
    assert!(!stored.contains("correct horse"));

    // A second registration of a taken id changes nothing: its password never logs in.
    let hijack = json!({"user": "alice", "password": "another password"});
    let (status, _, _) = call(Method::POST, &register, None, Some(hijack)).await;
    assert_eq!(status, StatusCode::ACCEPTED);
    stack.applied().await;
    assert_eq!(
        login(&stack, "alice", "another password").await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, value) = login(&stack, "nobody", "whatever at all").await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    assert!(value["error"].is_string());

    // The access token works on ingest and reader, for alice only.
    let access = tokens["access_token"].as_str().unwrap().to_owned();
    let sync = stack.reader.url("/v1/users/alice/sync");
    assert_eq!(
        call(Method::GET, &sync, Some(&access), None).await.0,
        StatusCode::OK
    );
    let post = json!({"author": "alice", "body": "signed in"});
    let (status, _, value) = call(
        Method::POST,
        &stack.ingest.url("/v1/posts"),
        Some(&access),
        Some(post),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");

    // Refresh: new tokens; the used refresh token is dead.
    let refresh = tokens["refresh_token"].as_str().unwrap().to_owned();
    let refresh_url = stack.reader.url("/v1/sessions/refresh");
    let (status, _, renewed) = call(
        Method::POST,
        &refresh_url,
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{renewed}");
    assert_eq!(renewed["session_id"], tokens["session_id"]);
    assert_ne!(renewed["refresh_token"], tokens["refresh_token"]);
    let (status, _, _) = call(
        Method::POST,
        &refresh_url,
        None,
        Some(json!({"refresh_token": refresh})),
    )
    .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The used refresh token presented again means two parties hold the session: it is revoked, and
    // the refresh token the legitimate refresh got is dead too.
    let refresh_with = |token: Value| {
        let url = refresh_url.clone();
        async move {
            call(
                Method::POST,
                &url,
                None,
                Some(json!({"refresh_token": token})),
            )
            .await
            .0
        }
    };
    assert_eq!(
        refresh_with(renewed["refresh_token"].clone()).await,
        StatusCode::UNAUTHORIZED
    );

    // Logout revokes the session: its refresh token stops working at once.
    let (_, again) = login(&stack, "alice", "correct horse").await;
    let again_access = again["access_token"].as_str().unwrap();
    let logout = stack.reader.url("/v1/sessions/current");
    let (status, _, _) = call(Method::DELETE, &logout, Some(again_access), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    assert_eq!(
        refresh_with(again["refresh_token"].clone()).await,
        StatusCode::UNAUTHORIZED
    );
    stack.stop().await;
}

#[tokio::test]
async fn refresh_reuse_password_change_and_logging_out_everywhere_end_sessions() {
    // Many logins of one account from one address here: the budgets are another test's subject.
    let stack = Stack::start_with(|config| {
        config.login_per_account_address_per_minute = 1000;
        config.login_per_address_per_minute = 1000;
    })
    .await;
    register(&stack, "alice").await;
    let refresh_url = stack.reader.url("/v1/sessions/refresh");
    let refresh = |token: Value| {
        let url = refresh_url.clone();
        async move {
            let (status, _, value) = call(
                Method::POST,
                &url,
                None,
                Some(json!({"refresh_token": token})),
            )
            .await;
            (status, value)
        }
    };
    let (_, first) = login(&stack, "alice", "correct horse").await;
    let (status, second) = refresh(first["refresh_token"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{second}");
    let (status, third) = refresh(second["refresh_token"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{third}");
    // A forged token of an old generation (right session, made-up secret) is refused and revokes
    // nothing: the session id alone must not let anyone end a session.
    let session = third["session_id"].as_str().unwrap();
    let forged = json!(format!(
        "{session}.0.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"
    ));
    assert_eq!(refresh(forged).await.0, StatusCode::UNAUTHORIZED);
    let (status, fourth) = refresh(third["refresh_token"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{fourth}");
    // The first token, two rotations old (issue 19, finding 6: only the one just before the current
    // was recognised): the session is revoked, the current token dies with it.
    assert_eq!(
        refresh(first["refresh_token"].clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        refresh(fourth["refresh_token"].clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A password change needs the current password, keeps the session that made it and ends the others.
    let (_, keeper) = login(&stack, "alice", "correct horse").await;
    let (_, other) = login(&stack, "alice", "correct horse").await;
    let url = stack.reader.url("/v1/accounts/alice/password");
    let token = keeper["access_token"].as_str().unwrap();
    let wrong = json!({"current_password": "not it at all", "new_password": "battery staple"});
    let (status, _, value) = call(Method::PUT, &url, Some(token), Some(wrong)).await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    assert_eq!(value["field"], "current_password");
    let right = json!({"current_password": "correct horse", "new_password": "battery staple"});
    let (status, _, value) = call(Method::PUT, &url, Some(token), Some(right)).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");
    // The old password may still log in until fanout applied the change; such a session is revoked
    // once it has (the reader watches for the change's position in the account's row).
    let (status, late) = login(&stack, "alice", "correct horse").await;
    if status == StatusCode::OK {
        wait_until(
            "the late session revoked",
            Duration::from_secs(30),
            || async {
                (refresh(late["refresh_token"].clone()).await.0 == StatusCode::UNAUTHORIZED)
                    .then_some(())
            },
        )
        .await;
    }
    assert_eq!(
        refresh(other["refresh_token"].clone()).await.0,
        StatusCode::UNAUTHORIZED
    );
    let (status, kept) = refresh(keeper["refresh_token"].clone()).await;
    assert_eq!(status, StatusCode::OK, "{kept}");
    wait_until(
        "the new password applied",
        Duration::from_secs(30),
        || async {
            (login(&stack, "alice", "battery staple").await.0 == StatusCode::OK).then_some(())
        },
    )
    .await;
    assert_eq!(
        login(&stack, "alice", "correct horse").await.0,
        StatusCode::UNAUTHORIZED
    );
    // Someone else's password: 403 naming the user, before any password is looked at.
    let (status, _, value) = call(
        Method::PUT,
        &stack.reader.url("/v1/accounts/bob/password"),
        Some(token),
        Some(json!({"current_password": "x", "new_password": "long enough"})),
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    assert_eq!(value["field"], "user");

    // Log out everywhere: every session of the user ends, this one included.
    let (_, one) = login(&stack, "alice", "battery staple").await;
    let (_, two) = login(&stack, "alice", "battery staple").await;
    let url = stack.reader.url("/v1/sessions");
    let token = one["access_token"].as_str().unwrap();
    let (status, _, _) = call(Method::DELETE, &url, Some(token), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    for session in [one, two] {
        assert_eq!(
            refresh(session["refresh_token"].clone()).await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    stack.stop().await;
}

#[tokio::test]
async fn every_protected_route_refuses_bad_tokens_and_other_users() {
    let stack = Stack::start().await;
    let alice = stack.api.token_for("alice");
    let forged = Api::with_token_key("", "", "someone-elses-key-that-is-long-enough-0123456789")
        .token_for("alice");
    let key = authkit::TokenKey::from_secret(harness::TEST_TOKEN_KEY.as_bytes()).unwrap();
    let expired = key.issue("alice", "s", Duration::ZERO);
    // `exp` is in whole seconds and has passed only once the clock's second moves on.
    wait_until(
        "the zero-lifetime token to expire",
        Duration::from_secs(5),
        || async {
            matches!(key.verify(&expired), Err(authkit::TokenError::Expired)).then_some(())
        },
    )
    .await;
    let reads = [
        "/v1/users/bob/feed",
        "/v1/users/bob/sync",
        "/v1/users/bob/conversations",
        "/v1/users/bob/events",
    ];
    for path in reads {
        let url = stack.reader.url(path);
        for (token, reason) in [
            (None, "missing bearer token"),
            (Some("not.a.token"), "malformed bearer token"),
            (Some(forged.as_str()), "invalid token signature"),
            (Some(expired.as_str()), "token expired"),
        ] {
            let (status, headers, value) = call(Method::GET, &url, token, None).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} {reason}: {value}");
            assert_eq!(value["error"], reason, "{path}");
            assert_eq!(headers["www-authenticate"], "Bearer");
        }
        let (status, _, value) = call(Method::GET, &url, Some(&alice), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{path}: {value}");
        assert_eq!(value["field"], "user", "{path}");
    }
    // Tokens in URLs only where clients cannot set headers (WebSocket, event streams).
    let url = stack
        .reader
        .url(&format!("/v1/users/alice/sync?access_token={alice}"));
    assert_eq!(
        call(Method::GET, &url, None, None).await.0,
        StatusCode::UNAUTHORIZED
    );
    // A direct conversation's history is its two users'; a group's, its active members'.
    let (status, _, _) = call(
        Method::GET,
        &stack.reader.url("/v1/conversations/d:bob:carol/messages"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _, _) = call(
        Method::GET,
        &stack.reader.url("/v1/conversations/d:alice:bob/messages"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _, _) = call(
        Method::GET,
        &stack.reader.url("/v1/conversations/g:team/messages"),
        Some(&alice),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);

    // Writes as someone else: 403 naming the field; without a token: 401. Nothing reaches the topic.
    let writes = [
        (
            Method::POST,
            "/v1/posts",
            json!({"author": "bob", "body": "x"}),
            "author",
        ),
        (
            Method::PUT,
            "/v1/users/bob/following/carol",
            Value::Null,
            "user",
        ),
        (
            Method::POST,
            "/v1/messages",
            json!({"from": "bob", "to": "carol", "body": "x"}),
            "from",
        ),
        (
            Method::PUT,
            "/v1/users/bob/conversations/d:bob:carol/read",
            json!({"seq": 1}),
            "user",
        ),
        (
            Method::PUT,
            "/v1/users/bob",
            json!({"display_name": "Bob"}),
            "user",
        ),
        (
            Method::POST,
            "/v1/groups",
            json!({"group": "g1", "owner": "bob", "name": "G"}),
            "owner",
        ),
        (
            Method::PUT,
            "/v1/groups/g1/members/carol?by=bob",
            Value::Null,
            "by",
        ),
        (
            Method::DELETE,
            "/v1/groups/g1/members/carol",
            Value::Null,
            "user",
        ),
        (
            Method::DELETE,
            "/v1/messages/01JD8Z5V2Q3W4E5R6T7Y8V9K0M?from=bob&conversation=d:bob:carol",
            Value::Null,
            "from",
        ),
    ];
    for (method, path, body, field) in writes {
        let url = stack.ingest.url(path);
        let body = (!body.is_null()).then_some(body);
        let (status, _, value) = call(method.clone(), &url, Some(&alice), body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {value}");
        assert_eq!(value["field"], field, "{method} {path}");
        let (status, _, _) = call(method.clone(), &url, None, body).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}");
    }
    assert_eq!(
        stack
            .ingest
            .metric("fanline_ingest_events_produced_total", &[]),
        0.0
    );
    // Group administration by a non-admin is refused where membership is known (fanout): alice owns
    // "team", mallory may not add anyone to it.
    stack
        .write(
            "alice",
            Method::POST,
            "/v1/groups",
            json!({"group": "team", "owner": "alice", "name": "Team"}),
        )
        .await;
    stack
        .write(
            "mallory",
            Method::PUT,
            "/v1/groups/team/members/eve?by=mallory",
            Value::Null,
        )
        .await;
    stack.applied().await;
    let members: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM group_members WHERE group_id = 'team' ORDER BY 1")
            .fetch_all(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(members, ["alice"]);
    stack.stop().await;
}

#[tokio::test]
async fn login_attempts_are_limited_per_account_and_address_and_per_address() {
    let stack = Stack::start_with(|config| {
        config.login_per_account_address_per_minute = 3;
        config.login_per_address_per_minute = 5;
    })
    .await;
    for _ in 0..3 {
        assert_eq!(
            login(&stack, "alice", "wrong password").await.0,
            StatusCode::UNAUTHORIZED
        );
    }
    let url = stack.reader.url("/v1/sessions");
    let body = json!({"user": "alice", "password": "wrong password"});
    let (status, headers, value) = call(Method::POST, &url, None, Some(body)).await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{value}");
    assert!(value["error"].is_string());
    let wait: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    // Other accounts from this address still get through, until the address's own budget is spent.
    assert_eq!(
        login(&stack, "bob", "wrong password").await.0,
        StatusCode::UNAUTHORIZED
    );
    assert_eq!(
        login(&stack, "carol", "wrong password").await.0,
        StatusCode::TOO_MANY_REQUESTS
    );
    stack.stop().await;
}

#[tokio::test]
async fn writes_to_ids_without_an_account_are_refused_and_held_ids_need_their_claim_code() {
    let stack = Stack::start_with(|config| config.accounts_required = true).await;
    register(&stack, "alice").await;
    let as_alice = stack.api.as_user("alice");
    let ingest = |path: &str| stack.ingest.url(path);
    let send = |method: Method, path: String, body: Value| {
        let api = as_alice.clone();
        async move {
            let bytes = serde_json::to_vec(&body).unwrap();
            api.raw(method, &path, Some(&bytes), Some("application/json"))
                .await
        }
    };
    // Issue 19, finding 2: a message to `carol` before Carol registered was read by whoever
    // registered `carol` first. Now every write addressed to an id nobody owns is refused.
    let message = json!({"from": "alice", "to": "carol", "body": "for carol only"});
    let (status, value) = send(Method::POST, ingest("/v1/messages"), message.clone()).await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("to")),
        "{value}"
    );
    let (status, value) = send(
        Method::PUT,
        ingest("/v1/users/alice/following/carol"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("target")),
        "{value}"
    );
    let group = json!({"group": "club", "owner": "alice", "name": "Club"});
    assert_eq!(
        send(Method::POST, ingest("/v1/groups"), group).await.0,
        StatusCode::ACCEPTED
    );
    let (status, value) = send(
        Method::PUT,
        ingest("/v1/groups/club/members/carol?by=alice"),
        Value::Null,
    )
    .await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::NOT_FOUND, Some("user")),
        "{value}"
    );
    // Over a socket too.
    let token = stack.api.token_for("alice");
    let mut socket = harness::ws::WsClient::connect(&stack.reader.url(""), &token, "d1", "")
        .await
        .unwrap();
    socket
        .send(&schemas::realtime::ClientFrame::Send {
            request_id: Some("r1".to_owned()),
            draft: schemas::api::MessageDraft {
                to: Some("carol".to_owned()),
                group: None,
                body: "for carol only".to_owned(),
                ..schemas::api::MessageDraft::default()
            },
        })
        .await;
    let answer = loop {
        match socket.next(Duration::from_secs(10)).await {
            harness::ws::Received::Frame(schemas::realtime::ServerFrame::Error {
                status,
                field,
                ..
            }) => break (status, field),
            harness::ws::Received::Frame(_) => continue,
            harness::ws::Received::Closed(code) => panic!("closed ({code:?}) instead of answering"),
            harness::ws::Received::Nothing => panic!("no answer to the send"),
        }
    };
    assert_eq!(answer, (404, Some("to".to_owned())));
    socket.close().await;
    // Once Carol registers, she gets messages.
    register(&stack, "carol").await;
    assert_eq!(
        send(Method::POST, ingest("/v1/messages"), message).await.0,
        StatusCode::ACCEPTED
    );

    // `dave` holds data from before accounts (an author whose tokens predate them): registering the
    // id needs the claim code an operator issues, so nobody else takes his timeline over.
    stack.api.post("dave", "from before accounts", None).await;
    stack.applied().await;
    let url = ingest("/v1/accounts");
    let attempt = |claim: Option<String>| {
        let mut body = json!({"user": "dave", "password": "correct horse"});
        if let Some(code) = claim {
            body["claim_code"] = json!(code);
        }
        let url = url.clone();
        async move { call(Method::POST, &url, None, Some(body)).await }
    };
    // What a registration form asks first (issue 25), without a token: the same decision.
    for (id, state) in [("dave", "reserved"), ("carol", "taken"), ("zed", "free")] {
        let url = stack.reader.url(&format!("/v1/accounts/{id}/availability"));
        let (status, _, value) = call(Method::GET, &url, None, None).await;
        assert_eq!(
            (status, &value),
            (StatusCode::OK, &json!({"user": id, "state": state}))
        );
    }
    let bad = stack.reader.url("/v1/accounts/no%20way/availability");
    let (status, _, value) = call(Method::GET, &bad, None, None).await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("user"))
    );
    let (status, _, value) = attempt(None).await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::CONFLICT, Some("claim_code")),
        "{value}"
    );
    let (status, _, value) = attempt(Some("not-the-code".to_owned())).await;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    let key = authkit::TokenKey::from_secret(harness::TEST_TOKEN_KEY.as_bytes()).unwrap();
    let (status, _, value) = attempt(Some(key.claim_code("dave"))).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{value}");
    // A taken id: 409 at once.
    let (status, _, value) = call(
        Method::POST,
        &url,
        None,
        Some(json!({"user": "alice", "password": "another one"})),
    )
    .await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::CONFLICT, Some("user")),
        "{value}"
    );
    stack.stop().await;
}

#[tokio::test]
async fn writes_beyond_a_users_budget_get_429_over_http_and_sockets() {
    // 8 messages a minute: 2 at once, then one every 7.5 s.
    let stack = Stack::start_with(|config| {
        config.writes.writes_per_minute_messages = 8;
        config.writes.writes_per_minute_posts = 8;
    })
    .await;
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for n in 0..4 {
        let message = json!({"from": "alice", "to": "bob", "body": format!("m{n}")});
        let url = stack.ingest.url("/v1/messages");
        let token = stack.api.token_for("alice");
        let (status, headers, _) = call(Method::POST, &url, Some(&token), Some(message)).await;
        statuses.push(status.as_u16());
        if status == StatusCode::TOO_MANY_REQUESTS {
            retry_after = headers.get("retry-after").cloned();
        }
    }
    // Issue 20: one token sent 200 direct messages in 0.4 s, all 202.
    assert_eq!(statuses, [202, 202, 429, 429]);
    let wait: u64 = retry_after.unwrap().to_str().unwrap().parse().unwrap();
    assert!((1..=8).contains(&wait), "{wait}");
    // Another user, another budget; a post is another kind.
    let token = stack.api.token_for("carol");
    let url = stack.ingest.url("/v1/messages");
    let message = json!({"from": "carol", "to": "bob", "body": "hi"});
    assert_eq!(
        call(Method::POST, &url, Some(&token), Some(message))
            .await
            .0,
        StatusCode::ACCEPTED
    );
    stack.api.post("alice", "a post", None).await;
    // The socket's sends spend the same kind of budget (this reader's own buckets).
    let mut socket = harness::ws::WsClient::connect(
        &stack.reader.url(""),
        &stack.api.token_for("dave"),
        "d1",
        "",
    )
    .await
    .unwrap();
    let mut answers = Vec::new();
    for n in 0..3 {
        socket
            .send(&schemas::realtime::ClientFrame::Send {
                request_id: Some(format!("r{n}")),
                draft: schemas::api::MessageDraft {
                    to: Some("bob".to_owned()),
                    group: None,
                    body: format!("s{n}"),
                    ..schemas::api::MessageDraft::default()
                },
            })
            .await;
    }
    while answers.len() < 3 {
        match socket.next(Duration::from_secs(10)).await {
            harness::ws::Received::Frame(schemas::realtime::ServerFrame::Accepted { .. }) => {
                answers.push(202)
            }
            harness::ws::Received::Frame(schemas::realtime::ServerFrame::Error {
                status, ..
            }) => answers.push(status),
            harness::ws::Received::Frame(_) => {}
            other => panic!(
                "the socket stopped answering: {}",
                matches!(other, harness::ws::Received::Nothing)
            ),
        }
    }
    // Accepted answers wait for the broker, refusals do not: compare as a set.
    answers.sort_unstable();
    assert_eq!(answers, [202, 202, 429]);
    socket.close().await;
    // A batch larger than the burst could never pass: 400, not a wait.
    let posts: Vec<Value> = (0..3)
        .map(|n| json!({"author": "erin", "body": format!("p{n}")}))
        .collect();
    let url = stack.ingest.url("/v1/posts/batch");
    let token = stack.api.token_for("erin");
    let (status, _, value) = call(
        Method::POST,
        &url,
        Some(&token),
        Some(json!({"posts": posts})),
    )
    .await;
    assert_eq!(
        (status, value["field"].as_str()),
        (StatusCode::BAD_REQUEST, Some("posts")),
        "{value}"
    );
    stack.stop().await;
}
