//! The web client as people use it (issue 25), in real Chromium: a network cut across the token
//! refresh, a reload with queued messages, a phone-width window (screenshots in
//! `target/screenshots/phone-*.png`), two tabs of one browser, refusals and failures shown where they
//! happen, names, dates and emoji. Each test failed on the page before issue 25.

use std::net::SocketAddr;
use std::time::Duration;

use harness::proxy::TcpProxy;
use harness::stack::Stack;
use harness::ws::{Received, WsClient};
use harness::{free_port, wait_until};
use reqwest::Method;
use schemas::realtime::{ClientFrame, ServerFrame};
use serde_json::{json, Value};

use crate::browser::{Browser, WAIT};

fn at(port: u16) -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], port))
}

/// A stack whose reader listens on a known port (a restarted one comes back where the page expects
/// it) and hands out access tokens for `access_secs`.
async fn stack_on(port: u16, access_secs: u64) -> Stack {
    Stack::start_with(|config| {
        config.listen = at(port);
        config.access_token_secs = access_secs;
        config.accounts_required = true;
    })
    .await
}

/// An account registered through the API (not a page; password `correct horse`), with a display
/// name when one is given.
pub(crate) async fn account(stack: &Stack, user: &str, display_name: Option<&str>) {
    crate::auth::register(stack, user).await;
    if let Some(name) = display_name {
        let profile = json!({"display_name": name});
        stack
            .write(user, Method::PUT, &format!("/v1/users/{user}"), profile)
            .await;
    }
}

async fn script(browser: &Browser, js: &str) -> Value {
    browser.client.execute(js, vec![]).await.expect(js)
}

async fn is_true(browser: &Browser, js: &str) -> bool {
    script(browser, js).await == Value::Bool(true)
}

/// What a screen reader and a low-vision reader would trip on in the page as shown: form fields
/// without a label, buttons without a name, text below WCAG 2's contrast (4.5:1, 3:1 when large)
/// against the first opaque background behind it. Disabled controls are exempt, as WCAG has them.
const ACCESSIBILITY: &str = r#"
const problems = [];
const shown = (e) => e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden';
for (const e of document.querySelectorAll('input, textarea, select')) {
  const named = (e.labels && e.labels.length > 0) || e.getAttribute('aria-label');
  if (!named) problems.push(`unlabelled ${e.id || e.outerHTML.slice(0, 60)}`);
}
for (const b of document.querySelectorAll('button')) {
  if (!shown(b)) continue;
  if (!(b.getAttribute('aria-label') || b.textContent || b.title || '').trim()) problems.push(`nameless ${b.outerHTML.slice(0, 80)}`);
}
const channel = (v) => { v /= 255; return v <= 0.03928 ? v / 12.92 : ((v + 0.055) / 1.055) ** 2.4; };
const luminance = (c) => { const [r, g, b] = c.match(/[\d.]+/g).slice(0, 3).map(Number).map(channel); return 0.2126 * r + 0.7152 * g + 0.0722 * b; };
const background = (e) => {
  for (; e; e = e.parentElement) {
    const c = getComputedStyle(e).backgroundColor, a = c.match(/[\d.]+/g);
    if (a && (a.length < 4 || Number(a[3]) > 0.5)) return c;
  }
  return 'rgb(255, 255, 255)';
};
for (const e of document.querySelectorAll('body *')) {
  if (!shown(e) || e.closest(':disabled')) continue;
  if (![...e.childNodes].some((n) => n.nodeType === 3 && n.textContent.trim())) continue;
  const s = getComputedStyle(e), [a, b] = [luminance(s.color), luminance(background(e))];
  const ratio = (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  const large = parseFloat(s.fontSize) >= 24 || (parseFloat(s.fontSize) >= 18.66 && Number(s.fontWeight) >= 700);
  if (ratio < (large ? 3 : 4.5)) problems.push(`contrast ${ratio.toFixed(2)}: ${e.tagName} ${e.id || e.className} "${e.textContent.trim().slice(0, 24)}"`);
}
return JSON.stringify(problems);
"#;

/// [`ACCESSIBILITY`]'s findings on the page as it is now: none expected.
async fn accessibility_problems(browser: &Browser) -> Vec<String> {
    let found = script(browser, ACCESSIBILITY).await;
    serde_json::from_str(found.as_str().unwrap_or("[]")).unwrap()
}

/// Issue 25, problems 1, 6 and 10: the network to the reader is cut for 25 s across the time the
/// access token (6 s here) must be refreshed. The page stays logged in, says it is offline, and
/// once the network is back refreshes, reconnects and clears the error the outage caused. Its
/// socket's URL never carries the token (it goes in the first frame).
#[tokio::test]
async fn the_session_survives_a_network_cut_across_the_refresh_time() {
    let port = free_port();
    let stack = stack_on(port, 6).await;
    let network = TcpProxy::start(at(port)).await;
    let page = format!("http://127.0.0.1:{}/", network.port());
    let alice = Browser::open(&page).await;
    account(&stack, "bob", None).await;
    alice.register("alice").await;
    stack.message("bob", "alice", "hi alice").await;
    alice
        .wait_text(
            "#conversations li[data-conversation=\"d:alice:bob\"] .badge",
            "bob's message",
            |t| t == "1",
        )
        .await;
    // Every socket the page opens from now on is recorded.
    script(
        &alice,
        "window.__sockets = []; const Real = window.WebSocket; \
         window.WebSocket = function (url, protocols) { window.__sockets.push(String(url)); return new Real(url, protocols); }; \
         window.WebSocket.prototype = Real.prototype; window.WebSocket.OPEN = Real.OPEN;",
    )
    .await;

    network.set_up(false);
    alice
        .wait_text("#status", "the page sees the cut", |t| t != "online")
        .await;
    alice
        .click("#conversations li[data-conversation=\"d:alice:bob\"]")
        .await;
    alice
        .wait_text("#chat-error", "the outage's error", |t| {
            t.starts_with("Network error")
        })
        .await;
    // The outage lasts past the refresh time (4.8 s), the access token's expiry and the 15 s after
    // which the page used to give up.
    tokio::time::sleep(Duration::from_secs(25)).await;
    alice.screenshot("outage-still-logged-in").await;
    assert!(
        is_true(&alice, "return document.querySelector('#auth').hidden").await,
        "logged out by an outage"
    );
    network.set_up(true);
    alice
        .wait_text("#status", "online again", |t| t == "online")
        .await;
    alice
        .wait_text("#chat-error", "the stale error cleared", str::is_empty)
        .await;
    alice.wait_messages("the chat loads", &["hi alice"]).await;
    // One session, refreshed (its generation moved), never revoked.
    let sessions: Vec<(i64, bool)> = sqlx::query_as(
        "SELECT generation, revoked_at IS NULL FROM sessions WHERE user_id = 'alice'",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(sessions.len(), 1, "{sessions:?}");
    assert!(sessions[0].0 >= 1 && sessions[0].1, "{sessions:?}");
    let sockets = script(&alice, "return JSON.stringify(window.__sockets)").await;
    let sockets: Vec<String> = serde_json::from_str(sockets.as_str().unwrap()).unwrap();
    assert!(!sockets.is_empty(), "the page reconnected");
    assert!(
        sockets.iter().all(|url| !url.contains("access_token")),
        "{sockets:?}"
    );
    alice.close().await;
    stack.stop().await;
}

/// Issue 25, problems 2 and 9: messages written while the socket cannot connect wait in the
/// page's outbox (IndexedDB), survive a reload, go out in order once the socket is back, each once;
/// their state says "waiting", then "sent" (stored), then "delivered" only once a device of bob's
/// acknowledged them.
#[tokio::test]
async fn queued_messages_survive_a_reload_and_go_out_in_order_once() {
    // One socket per user, and the harness holds alice's: her page loads, logs in and writes, but
    // its socket is refused (and retried) until the harness lets go.
    let port = free_port();
    let stack = Stack::start_with(|config| {
        config.listen = at(port);
        config.accounts_required = true;
        config.streams_per_user = 1;
    })
    .await;
    account(&stack, "bob", None).await;
    account(&stack, "alice", None).await;
    let token = stack.api.token_for("alice");
    let holder = WsClient::connect(&stack.reader.url(""), &token, "holder", "")
        .await
        .unwrap();
    let alice = Browser::open(&stack.reader.url("/")).await;
    alice.type_into("#auth-user", "alice").await;
    alice.type_into("#auth-password", "correct horse").await;
    alice.click("#auth-login").await;
    alice.wait_text("#me", "logged in", |t| t == "alice").await;
    alice.type_into("#new-chat-user", "bob").await;
    alice.click("#new-chat-open").await;
    alice
        .wait_text("#chat-none", "the empty chat says what to do", |t| {
            t.starts_with("No messages yet")
        })
        .await;
    assert_ne!(alice.text("#status").await.as_deref(), Some("online"));
    alice.send("one").await;
    alice.send("two 😀").await;
    let waiting = |t: &str| t == "waiting for the connection…";
    alice
        .wait_text("#messages li.message:last-child .status", "queued", waiting)
        .await;
    alice.client.refresh().await.expect("reload");
    alice
        .wait_messages("the queue after the reload", &["one", "two 😀"])
        .await;
    alice
        .wait_text(
            "#messages li.message:last-child .status",
            "still queued",
            waiting,
        )
        .await;
    alice.screenshot("queued-after-reload").await;
    // Logging out now would drop them: the page asks first, and staying keeps them.
    alice.click("#logout").await;
    let question = alice.client.get_alert_text().await.expect("a question");
    assert_eq!(
        question,
        "2 messages are not sent yet. Log out and discard them?"
    );
    alice.client.dismiss_alert().await.unwrap();
    assert_eq!(alice.text("#me").await.as_deref(), Some("alice"));

    holder.close().await;
    let sent = |t: &str| t == "✓ sent";
    alice
        .wait_text("#messages li.message:last-child .status", "stored", sent)
        .await;
    stack.applied().await;
    let bodies: Vec<String> = sqlx::query_scalar(
        "SELECT body FROM messages WHERE conversation_id = 'd:alice:bob' ORDER BY seq",
    )
    .fetch_all(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(bodies, ["one", "two 😀"], "in order, each once");
    // Stored is not delivered: bob has no device yet. His device takes them and acknowledges.
    assert_eq!(
        alice
            .text("#messages li.message:last-child .status")
            .await
            .as_deref(),
        Some("✓ sent")
    );
    let token = stack.api.token_for("bob");
    let mut device = WsClient::connect(&stack.reader.url(""), &token, "phone", "")
        .await
        .unwrap();
    let last = loop {
        match device.next_data(WAIT).await {
            Received::Frame(ServerFrame::Sync { last_seq, .. }) => break last_seq,
            Received::Frame(_) => {}
            other => panic!("expected bob's sync, got {other:?}"),
        }
    };
    device.send(&ClientFrame::Ack { seq: last }).await;
    alice
        .wait_text(
            "#messages li.message:last-child .status",
            "delivered",
            |t| t == "✓✓ delivered",
        )
        .await;
    // Nothing is left to send: another reload shows the two messages once.
    alice.client.refresh().await.expect("reload");
    alice
        .wait_text("#status", "online", |t| t == "online")
        .await;
    alice
        .wait_messages("the chat after the second reload", &["one", "two 😀"])
        .await;
    device.close().await;
    alice.close().await;
    stack.stop().await;
}

/// Issue 25, problems 3 and 10, at 400 px: the conversation list and the chat are two screens, the
/// text box takes the width, nothing sticks out; every field is labelled, every button named, all
/// text readable (contrast); an empty list and an empty chat say what to do; the unread total shows
/// only when there is one, unread chats are bold; the page has an icon.
#[tokio::test]
async fn at_phone_width_the_list_and_the_chat_are_two_screens() {
    let port = free_port();
    let stack = stack_on(port, 900).await;
    account(&stack, "bob", None).await;
    account(&stack, "carol", None).await;
    let alice = Browser::open_sized(&stack.reader.url("/"), (400, 800)).await;
    assert!(is_true(&alice, "return window.innerWidth === 400").await);
    alice.register("alice").await;
    alice
        .wait_text("#conv-empty", "the empty list says what to do", |t| {
            t.starts_with("No conversations yet")
        })
        .await;
    assert!(
        is_true(
            &alice,
            "return document.querySelector('#total-wrap').hidden"
        )
        .await
    );
    alice.screenshot("phone-empty-list").await;

    stack.message("bob", "alice", "hello from bob").await;
    stack.message("bob", "alice", "are you there?").await;
    let bob = "#conversations li[data-conversation=\"d:alice:bob\"]";
    alice
        .wait_text(&format!("{bob} .badge"), "two unread", |t| t == "2")
        .await;
    alice
        .wait_text("#total-unread", "the total", |t| t == "2")
        .await;
    assert!(
        is_true(
            &alice,
            &format!(
                "return Number(getComputedStyle(document.querySelector('{}')).fontWeight) >= 700",
                format!("{bob} .title").replace('\'', "\\'")
            )
        )
        .await,
        "an unread chat is bold"
    );
    let fits = "return document.documentElement.scrollWidth <= window.innerWidth \
                && [...document.querySelectorAll('button, input, textarea')].every((e) => { \
                     const r = e.getBoundingClientRect(); return r.width === 0 || r.right <= window.innerWidth + 1; })";
    assert!(is_true(&alice, fits).await, "the list fits 400 px");
    assert_eq!(accessibility_problems(&alice).await, Vec::<String>::new());
    alice.screenshot("phone-list").await;

    alice.click(&format!("{bob} button")).await;
    alice
        .wait_messages("the chat", &["hello from bob", "are you there?"])
        .await;
    assert!(
        is_true(
            &alice,
            "return getComputedStyle(document.querySelector('.sidebar')).display === 'none'"
        )
        .await
    );
    assert!(
        is_true(
            &alice,
            "return document.querySelector('#composer-input').getBoundingClientRect().width >= 250"
        )
        .await,
        "the text box takes the width"
    );
    assert!(is_true(&alice, fits).await, "the chat fits 400 px");
    assert!(
        is_true(
            &alice,
            "return document.activeElement === document.querySelector('#composer-input')"
        )
        .await,
        "opening a chat puts the focus in its text box"
    );
    alice.send("hi bob").await;
    alice
        .wait_text("#messages li.message:last-child .status", "sent", |t| {
            t == "✓ sent"
        })
        .await;
    assert_eq!(accessibility_problems(&alice).await, Vec::<String>::new());
    alice.screenshot("phone-chat").await;

    alice.click("#chat-back").await;
    alice
        .wait_text(bob, "the list again", |t| t.contains("hi bob"))
        .await;
    assert!(
        is_true(
            &alice,
            "return getComputedStyle(document.querySelector('#chat-panel')).display === 'none'"
        )
        .await
    );
    alice.type_into("#new-chat-user", "carol").await;
    alice.click("#new-chat-open").await;
    alice
        .wait_text("#chat-none", "the empty chat says what to do", |t| {
            t.starts_with("No messages yet")
        })
        .await;
    alice.screenshot("phone-empty-chat").await;
    assert!(
        is_true(
            &alice,
            "return !!document.querySelector('link[rel=icon][href=\"/favicon.svg\"]')"
        )
        .await
    );
    let icon = reqwest::get(stack.reader.url("/favicon.svg"))
        .await
        .unwrap();
    assert_eq!(icon.status(), 200);
    assert_eq!(icon.headers()["content-type"], "image/svg+xml");
    alice.close().await;
    stack.stop().await;
}

/// Issue 25, problem 4: a second tab starts logged in; both tabs keep one session through several
/// refreshes (refresh tokens rotate: two tabs refreshing with the same one would end it), and a
/// logout in one logs the other out.
#[tokio::test]
async fn two_tabs_share_one_session_through_refreshes_and_a_logout() {
    let port = free_port();
    let stack = stack_on(port, 6).await;
    let page = stack.reader.url("/");
    let browser = Browser::open(&page).await;
    browser.register("alice").await;
    let first = browser.client.window().await.unwrap();
    let second = browser.client.new_window(true).await.unwrap().handle;
    browser
        .client
        .switch_to_window(second.clone())
        .await
        .unwrap();
    browser.client.goto(&page).await.unwrap();
    browser
        .wait_text("#me", "the second tab is logged in", |t| t == "alice")
        .await;
    browser
        .wait_text("#status", "the second tab is online", |t| t == "online")
        .await;

    // Both tabs hold the same tokens, so their refreshes fall due together: three rounds.
    wait_until("three refreshes", Duration::from_secs(60), || async {
        let (generation, live): (i64, bool) = sqlx::query_as(
            "SELECT generation, revoked_at IS NULL FROM sessions WHERE user_id = 'alice'",
        )
        .fetch_one(&stack.db.pool)
        .await
        .ok()?;
        assert!(live, "the session was revoked (a refresh token used twice)");
        (generation >= 3).then_some(())
    })
    .await;
    for tab in [&first, &second] {
        browser.client.switch_to_window(tab.clone()).await.unwrap();
        browser
            .wait_text("#status", "still online", |t| t == "online")
            .await;
        assert!(is_true(&browser, "return document.querySelector('#auth').hidden").await);
    }
    let sessions: i64 = sqlx::query_scalar("SELECT count(*) FROM sessions WHERE user_id = 'alice'")
        .fetch_one(&stack.db.pool)
        .await
        .unwrap();
    assert_eq!(sessions, 1, "one login for both tabs");

    browser.client.switch_to_window(first).await.unwrap();
    browser.click("#logout").await;
    browser.client.switch_to_window(second).await.unwrap();
    browser
        .wait_text("#auth-error", "the other tab logs out", |t| {
            t.contains("logged out in another tab")
        })
        .await;
    browser.close().await;
    stack.stop().await;
}

/// Issue 25, problems 5 and 7: registering a taken id says so at once (and a registration that
/// loses a race for an id says so too, not "too many login attempts"); a chat with an id nobody has
/// is refused at the form; an invitation fanout refuses (sent by an admin demoted meanwhile) is
/// reported beside the group; a refused message can be retried once the cause is gone.
#[tokio::test]
async fn refusals_and_failures_are_shown_where_they_happen() {
    let port = free_port();
    let stack = stack_on(port, 900).await;
    account(&stack, "dave", None).await;
    let page = stack.reader.url("/");
    let (alice, carol) = (Browser::open(&page).await, Browser::open(&page).await);
    alice.register("alice").await;
    carol.type_into("#auth-user", "alice").await;
    carol.type_into("#auth-password", "another password").await;
    carol.click("#auth-register").await;
    carol
        .wait_text("#auth-error", "the taken id", |t| t.contains("is taken"))
        .await;
    // Two registrations of one id at once: one gets it, the other is told it was taken.
    let other = Browser::open(&page).await;
    // (Different passwords: the loser's cannot log in to the winner's account.)
    for (browser, password) in [(&carol, "carol's password"), (&other, "another password")] {
        browser.type_into("#auth-user", "erin").await;
        browser.type_into("#auth-password", password).await;
    }
    let (a, b) = tokio::join!(carol.click("#auth-register"), other.click("#auth-register"));
    let ((), ()) = (a, b);
    let outcome = |browser: &Browser| {
        let browser = browser.client.clone();
        async move {
            let me = browser
                .find(fantoccini::Locator::Css("#me"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            let error = browser
                .find(fantoccini::Locator::Css("#auth-error"))
                .await
                .ok()?
                .text()
                .await
                .ok()?;
            if me == "erin" {
                Some("in".to_owned())
            } else if error.contains("taken") {
                Some("taken".to_owned())
            } else {
                assert!(!error.contains("too many"), "{error}");
                None
            }
        }
    };
    let outcomes = wait_until("both registrations answered", WAIT, || async {
        Some((outcome(&carol).await?, outcome(&other).await?))
    })
    .await;
    let carol_won = outcomes.0 == "in";
    let mut outcomes = [outcomes.0, outcomes.1];
    outcomes.sort();
    assert_eq!(outcomes, ["in", "taken"]);
    other.close().await;
    // Carol goes on as whoever she became.
    let carol_id = if carol_won {
        "erin"
    } else {
        carol.register("carol").await;
        "carol"
    };

    // A chat with nobody.
    alice.type_into("#new-chat-user", "nobody").await;
    alice.click("#new-chat-open").await;
    alice
        .wait_text("#side-error", "no such user", |t| {
            t == "There is no user \"nobody\"."
        })
        .await;

    // The group: carol an admin, then demoted while her page still offers the form.
    let group =
        json!({"group": "trip", "owner": "alice", "name": "Weekend trip", "join_rule": "open"});
    stack
        .write("alice", Method::POST, "/v1/groups", group)
        .await;
    stack.applied().await;
    let member = |role: &str| format!("/v1/groups/trip/members/{carol_id}?by=alice&role={role}");
    stack
        .write("alice", Method::PUT, &member("member"), json!(null))
        .await;
    stack
        .write("alice", Method::PUT, &member("admin"), json!(null))
        .await;
    // A first message brings the group to carol's list.
    let welcome = json!({"from": "alice", "group": "trip", "body": "welcome"});
    stack
        .write("alice", Method::POST, "/v1/messages", welcome)
        .await;
    stack.applied().await;
    carol
        .click("#conversations li[data-conversation=\"g:trip\"]")
        .await;
    carol
        .wait_script(
            "the invitation form",
            "return String(!document.querySelector('#member-form').hidden)",
            "true",
        )
        .await;
    stack
        .write("alice", Method::PUT, &member("member"), json!(null))
        .await;
    stack.applied().await;
    carol.type_into("#member-user", "dave").await;
    carol.click("#member-add").await;
    carol
        .wait_text("#chat-error", "the refusal", |t| {
            t == "dave was not added or invited: not allowed."
        })
        .await;
    carol.screenshot("refused-invitation").await;

    // A message refused (dave blocked carol), retried once he no longer does.
    let block = format!("/v1/users/dave/blocks/{carol_id}");
    stack.write("dave", Method::PUT, &block, json!(null)).await;
    stack.applied().await;
    carol.type_into("#new-chat-user", "dave").await;
    carol.click("#new-chat-open").await;
    carol.send("hello dave").await;
    let last = "#messages li.message:last-child";
    carol
        .wait_text(&format!("{last} .note"), "refused", |t| {
            t == "Not delivered: blocked"
        })
        .await;
    stack
        .write("dave", Method::DELETE, &block, json!(null))
        .await;
    stack.applied().await;
    carol
        .click(&format!("{last} [data-action=\"retry\"]"))
        .await;
    carol
        .wait_text(&format!("{last} .status"), "sent after the retry", |t| {
            t == "✓ sent"
        })
        .await;
    assert_eq!(
        carol.messages().await,
        ["hello dave"],
        "the refused copy is gone"
    );
    alice.close().await;
    carol.close().await;
    stack.stop().await;
}

/// Issue 25, problems 8 and 9: lists and titles show display names and group names with initials and
/// times; an older message's time has its day; a sender in a group shows by name; a message of emoji
/// counts them as the server does; a reload reopens the open chat.
#[tokio::test]
async fn names_dates_emoji_and_the_open_chat_after_a_reload() {
    let port = free_port();
    let stack = stack_on(port, 900).await;
    account(&stack, "bob", Some("Bob Builder")).await;
    let alice = Browser::open(&stack.reader.url("/")).await;
    alice.register("alice").await;
    let group =
        json!({"group": "trip", "owner": "bob", "name": "Weekend trip", "join_rule": "open"});
    stack.write("bob", Method::POST, "/v1/groups", group).await;
    stack.applied().await;
    let add = "/v1/groups/trip/members/alice?by=bob";
    stack.write("bob", Method::PUT, add, json!(null)).await;
    stack.message("bob", "alice", "old news").await;
    stack.applied().await;
    let plans = json!({"from": "bob", "group": "trip", "body": "plans?"});
    stack
        .write("bob", Method::POST, "/v1/messages", plans)
        .await;
    stack.applied().await;
    sqlx::query(
        "UPDATE messages SET created_at = now() - interval '3 days' WHERE body = 'old news'",
    )
    .execute(&stack.db.pool)
    .await
    .unwrap();

    let item =
        |conv: &str, part: &str| format!("#conversations li[data-conversation=\"{conv}\"] {part}");
    alice
        .wait_text(&item("g:trip", ".title"), "the group's name", |t| {
            t == "Weekend trip"
        })
        .await;
    alice
        .wait_text(&item("d:alice:bob", ".title"), "bob's name", |t| {
            t == "Bob Builder"
        })
        .await;
    assert_eq!(
        alice.text(&item("g:trip", ".avatar")).await.as_deref(),
        Some("WT")
    );
    assert_eq!(
        alice.text(&item("d:alice:bob", ".avatar")).await.as_deref(),
        Some("BB")
    );
    assert!(!alice
        .text(&item("g:trip", ".when"))
        .await
        .unwrap()
        .is_empty());
    alice.screenshot("names-list").await;
    assert_eq!(accessibility_problems(&alice).await, Vec::<String>::new());

    alice.click(&item("d:alice:bob", "button")).await;
    alice
        .wait_text("#chat-title", "bob's name", |t| t == "Bob Builder")
        .await;
    alice.wait_messages("the old message", &["old news"]).await;
    let day = script(
        &alice,
        "return new Intl.DateTimeFormat(undefined, {day: 'numeric', month: 'short'}).format(new Date(Date.now() - 3 * 86400000))",
    )
    .await;
    let time = alice.text("#messages li.message time").await.unwrap();
    assert!(time.starts_with(day.as_str().unwrap()), "{time} has no day");

    // 3,000 emoji are 6,000 UTF-16 units and 3,000 characters: the server's limit is 4,096.
    let type_in = |text: &str| {
        format!(
            "const i = document.querySelector('#composer-input'); i.value = {}; \
             i.dispatchEvent(new Event('input')); document.querySelector('#composer-send').click();",
            json!(text)
        )
    };
    script(&alice, &type_in(&"😀".repeat(3000))).await;
    alice
        .wait_text(
            "#messages li.message:last-child .status",
            "the emoji stored",
            |t| t == "✓ sent",
        )
        .await;
    script(&alice, &type_in(&"a".repeat(4097))).await;
    alice
        .wait_text("#chat-error", "too long", |t| {
            t == "A message holds at most 4096 characters; this one has 4097."
        })
        .await;

    alice.click(&item("g:trip", "button")).await;
    alice
        .wait_text("#chat-title", "the group's name", |t| t == "Weekend trip")
        .await;
    alice
        .wait_text("#messages li.message .sender", "the sender by name", |t| {
            t == "Bob Builder"
        })
        .await;
    alice.client.refresh().await.expect("reload");
    alice
        .wait_text("#chat-title", "the group again after the reload", |t| {
            t == "Weekend trip"
        })
        .await;
    alice.wait_messages("its messages", &["plans?"]).await;
    alice.screenshot("names-group").await;
    assert_eq!(accessibility_problems(&alice).await, Vec::<String>::new());
    let (length,): (i32,) = sqlx::query_as(
        "SELECT char_length(body) FROM messages WHERE sender = 'alice' ORDER BY seq DESC LIMIT 1",
    )
    .fetch_one(&stack.db.pool)
    .await
    .unwrap();
    assert_eq!(length, 3000);
    alice.close().await;
    stack.stop().await;
}
