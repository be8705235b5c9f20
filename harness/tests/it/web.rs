//! The web chat client in a real browser: headless Chromium (Debian's, installed by scripts/test.sh)
//! driven through chromedriver. Three users in three browsers register, chat 1:1 and in a group,
//! watch badges and totals change as they read, and keep every message across a reader restart.
//! Screenshots go to `target/screenshots/`.

use fantoccini::Locator;
use harness::stack::Stack;
use harness::{free_port, spawn_reader_with, wait_until};
use reqwest::Method;
use serde_json::json;

use crate::browser::{Browser, WAIT};

#[tokio::test]
async fn three_users_chat_in_real_browsers_across_a_reader_restart() {
    let port = free_port();
    let mut stack = Stack::start_with(|config| {
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await;
    let page = stack.reader.url("/");
    let alice = Browser::open(&page).await;
    let bob = Browser::open(&page).await;
    let carol = Browser::open(&page).await;
    alice.register("alice").await;
    bob.register("bob").await;
    carol.register("carol").await;

    // 1:1: alice writes; her message goes sending → sent → delivered (bob's page acknowledged it);
    // bob's badge and total count it.
    alice.type_into("#new-chat-user", "bob").await;
    alice.click("#new-chat-open").await;
    alice.send("hello bob").await;
    alice
        .wait_text("#messages li.message .status", "delivered", |t| {
            t == "✓✓ delivered" || t == "✓✓ read"
        })
        .await;
    wait_until("bob's badge", WAIT, || async {
        (bob.badge("d:alice:bob").await.as_deref() == Some("1")).then_some(())
    })
    .await;
    bob.wait_text("#total-unread", "total 1", |t| t == "1")
        .await;
    alice.send("are you there?").await;
    wait_until("bob's badge", WAIT, || async {
        (bob.badge("d:alice:bob").await.as_deref() == Some("2")).then_some(())
    })
    .await;
    bob.wait_text("#total-unread", "total 2", |t| t == "2")
        .await;
    bob.screenshot("bob-unread").await;

    // Bob reads: badge and total go to zero; his answer reaches alice live.
    bob.click("#conversations li[data-conversation=\"d:alice:bob\"]")
        .await;
    bob.wait_messages("bob sees the chat", &["hello bob", "are you there?"])
        .await;
    // Zero is not shown (issue 25: a "Chats 0" pill said nothing).
    bob.wait_text("#total-unread", "total 0", str::is_empty)
        .await;
    wait_until("bob's badge cleared", WAIT, || async {
        (bob.badge("d:alice:bob")
            .await
            .unwrap_or_default()
            .is_empty())
        .then_some(())
    })
    .await;
    bob.send("hi alice").await;
    alice
        .wait_messages(
            "alice sees the answer",
            &["hello bob", "are you there?", "hi alice"],
        )
        .await;

    // A group of three: alice creates it, adds bob and carol, and writes.
    alice.type_into("#group-id", "team").await;
    alice.type_into("#group-name", "The team").await;
    alice.click("#group-create").await;
    alice
        .wait_text("#chat", "the group chat opens", |_| true)
        .await;
    // The group is private (the default): alice invites, bob and carol accept in their pages.
    for member in ["bob", "carol"] {
        alice.type_into("#member-user", member).await;
        alice.click("#member-add").await;
        alice
            .wait_text("#member-note", "the invitation is confirmed", |t| {
                t.contains(member)
            })
            .await;
    }
    for (browser, member) in [(&bob, "bob"), (&carol, "carol")] {
        browser
            .wait_text(
                "#invitations li[data-group=\"team\"]",
                "the invitation",
                |t| t.contains("from alice"),
            )
            .await;
        if member == "bob" {
            browser.screenshot("bob-invitation").await;
        }
        browser
            .click("#invitations li[data-group=\"team\"] button.accept")
            .await;
        wait_until("the member is listed", WAIT, || async {
            alice
                .client
                .find(Locator::Css(&format!(
                    "#members li[data-user=\"{member}\"]"
                )))
                .await
                .ok()
        })
        .await;
    }
    // "Invitation for carol sent" was true until she was in: it goes once she is listed.
    alice
        .wait_text("#member-note", "the note cleared", str::is_empty)
        .await;
    // Accepting opened the group in bob's and carol's pages: the message appears there live.
    alice.send("hello team").await;
    for (browser, name) in [(&bob, "bob"), (&carol, "carol")] {
        browser
            .wait_messages(&format!("{name} sees the group message"), &["hello team"])
            .await;
    }
    carol.screenshot("carol-group").await;
    alice.screenshot("alice-group").await;

    // Bob mutes the group (its count leaves his total) and blocks alice: her next message to him is
    // refused, and her page says so.
    bob.click("#conversations li[data-conversation=\"g:team\"]")
        .await;
    bob.click("#chat-mute").await;
    bob.wait_text("#chat-mute", "the group is muted", |t| t == "Unmute")
        .await;
    bob.click("#conversations li[data-conversation=\"d:alice:bob\"]")
        .await;
    bob.click("#chat-block").await;
    bob.wait_text("#chat-block", "alice is blocked", |t| t == "Unblock")
        .await;
    alice
        .click("#conversations li[data-conversation=\"d:alice:bob\"]")
        .await;
    alice.send("still friends?").await;
    alice
        .wait_text(
            "#messages li.message:last-child .note",
            "the refusal",
            |t| t == "Not delivered: blocked",
        )
        .await;
    alice.screenshot("alice-blocked").await;
    alice
        .click("#conversations li[data-conversation=\"g:team\"]")
        .await;
    alice.send("muted for bob").await;
    wait_until("bob's muted badge", WAIT, || async {
        (bob.badge("g:team").await.as_deref() == Some("1")).then_some(())
    })
    .await;
    bob.wait_text("#total-unread", "a muted group is not in the total", |t| {
        t.is_empty()
    })
    .await;
    bob.screenshot("bob-muted-and-blocked").await;
    bob.click("#chat-block").await;
    bob.wait_text("#chat-block", "alice is unblocked", |t| t == "Block")
        .await;
    bob.click("#conversations li[data-conversation=\"g:team\"]")
        .await;

    // Carol, a plain member, is not offered an invitation form; she reports the group from its chat.
    wait_until("carol's page hides the invitation form", WAIT, || async {
        let hidden = carol
            .client
            .execute(
                "return document.querySelector('#member-form').hidden",
                vec![],
            )
            .await
            .ok()?;
        (hidden == serde_json::Value::Bool(true)).then_some(())
    })
    .await;
    carol.click("#chat-report").await;
    carol.type_into("#report-reason", "spam in the team").await;
    carol.screenshot("carol-report").await;
    carol.click("#report-send").await;
    carol
        .wait_text("#chat-note", "the report is confirmed", |t| {
            t.starts_with("Reported")
        })
        .await;
    stack.applied().await;
    let (kind, subject, reason): (String, String, String) =
        sqlx::query_as("SELECT kind, subject, reason FROM reports WHERE reporter = 'carol'")
            .fetch_one(&stack.db.pool)
            .await
            .unwrap();
    assert_eq!(
        (kind.as_str(), subject.as_str(), reason.as_str()),
        ("group", "team", "spam in the team")
    );

    // The reader restarts: every page reconnects and nothing sent meanwhile is lost.
    stack.reader.stop().await;
    for browser in [&alice, &bob, &carol] {
        browser
            .wait_text("#status", "reconnecting", |t| t != "online")
            .await;
    }
    // Written while the reader is down: carol through ingest, alice from her page (queued).
    let message = json!({"from": "carol", "group": "team", "body": "while the reader was down"});
    let (status, value) = stack
        .api
        .as_user("carol")
        .raw(
            Method::POST,
            &format!("{}/v1/messages", stack.api.ingest),
            Some(message.to_string().as_bytes()),
            Some("application/json"),
        )
        .await;
    assert_eq!(status, 202, "{value}");
    alice.send("queued while offline").await;
    stack.reader = spawn_reader_with(stack.reader_config.clone()).await;
    for browser in [&alice, &bob, &carol] {
        browser
            .wait_text("#status", "back online", |t| t == "online")
            .await;
    }
    let expected = [
        "hello team",
        "muted for bob",
        "while the reader was down",
        "queued while offline",
    ];
    bob.wait_messages("bob has every group message", &expected)
        .await;
    carol
        .wait_messages("carol has every group message", &expected)
        .await;
    alice
        .wait_messages("alice has every group message", &expected)
        .await;
    bob.screenshot("bob-after-restart").await;
    alice.close().await;
    bob.close().await;
    carol.close().await;
    stack.stop().await;
}

/// Search in the page: alice finds bob by his name and starts a chat from the hit; she finds a
/// Chinese word said 100 messages back and the hit opens that chat around it (marked, scrolled to),
/// with "Back to latest" returning to the newest messages, and "Load newer" growing the window until it
/// joins them.
#[tokio::test]
async fn search_starts_a_chat_and_jumps_to_an_old_message() {
    let port = free_port();
    let stack = Stack::start_with(|config| {
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await;
    let alice = Browser::open(&stack.reader.url("/")).await;
    alice.register("alice").await;
    crate::web_client::account(&stack, "bob", Some("Bobby Tables")).await;
    stack.message("bob", "alice", "早上好").await;
    stack
        .message("bob", "alice", "明天的会议改到下午三点")
        .await;
    for n in 0..100 {
        stack.message("bob", "alice", &format!("filler {n}")).await;
    }
    stack.applied().await;

    // People: by a word of the display name; the hit starts the chat.
    alice.type_into("#search-q", "tables").await;
    alice.click("#search-go").await;
    alice
        .wait_text(
            "#search-people li[data-user=\"bob\"]",
            "bob is found",
            |t| t.contains("Bobby Tables"),
        )
        .await;
    alice.screenshot("search-people").await;
    alice
        .click("#search-people li[data-user=\"bob\"] button")
        .await;
    alice
        .wait_text("#chat-title", "the chat with bob opens", |t| {
            t == "Bobby Tables"
        })
        .await;
    alice
        .wait_text(
            "#messages li.message:last-child .body",
            "the newest message",
            |t| t == "filler 99",
        )
        .await;

    // Messages: a two-character Chinese word, highlighted. The page already holds the message (its
    // socket delivered all 102): the hit is marked and scrolled to in the chat as it is.
    alice.type_into("#search-q", "会议").await;
    alice.click("#search-go").await;
    alice
        .wait_text("#search-messages li mark", "the highlighted word", |t| {
            t == "会议"
        })
        .await;
    alice.screenshot("search-messages").await;
    let hit = "#search-messages li[data-seq=\"2\"] button";
    alice.click(hit).await;
    alice
        .wait_text(
            "#messages li.message.hit .body",
            "the hit in the chat",
            |t| t == "明天的会议改到下午三点",
        )
        .await;
    assert_eq!(alice.text("#back-to-latest").await.as_deref(), Some(""));

    // A reload (the device acknowledged everything: only the latest page is loaded): the hit is 100
    // messages back, so the chat shows a window of history around it until "Back to latest".
    wait_until("alice's device acknowledged the messages", WAIT, || async {
        let (acked,): (i64,) = sqlx::query_as(
            "SELECT coalesce(max(acked_seq), 0) FROM device_cursors WHERE user_id = 'alice'",
        )
        .fetch_one(&stack.db.pool)
        .await
        .ok()?;
        (acked >= 102).then_some(())
    })
    .await;
    alice.client.refresh().await.expect("reload");
    alice
        .wait_text("#status", "online again", |t| t == "online")
        .await;
    alice.type_into("#search-q", "会议").await;
    alice.click("#search-go").await;
    alice.click(hit).await;
    alice
        .wait_text(
            "#messages li.message.hit .body",
            "the hit in a window",
            |t| t == "明天的会议改到下午三点",
        )
        .await;
    alice
        .wait_text("#back-to-latest", "back to latest is offered", |t| {
            t == "Back to latest"
        })
        .await;
    let window = alice.messages().await;
    assert_eq!(window.first().map(String::as_str), Some("早上好"));
    assert_eq!(
        window.len(),
        27,
        "25 after the hit, the hit and the one before"
    );
    alice.screenshot("search-jump").await;
    alice.click("#back-to-latest").await;
    alice
        .wait_text(
            "#messages li.message:last-child .body",
            "the latest page again",
            |t| t == "filler 99",
        )
        .await;
    assert_eq!(alice.messages().await.len(), 50, "the latest page");

    // The hit again, then "Load newer" until the window reaches the newest message: it joins the
    // chat's store, which now holds the whole conversation, with nothing older to load.
    alice.click(hit).await;
    alice
        .wait_text("#load-newer", "load newer is offered", |t| {
            t == "Load newer messages"
        })
        .await;
    alice.click("#load-newer").await;
    wait_until("the window grows", WAIT, || async {
        (alice.messages().await.len() == 77).then_some(())
    })
    .await;
    alice.click("#load-newer").await;
    alice
        .wait_text("#back-to-latest", "the window is left", |t| t.is_empty())
        .await;
    let whole = alice.messages().await;
    assert_eq!(whole.len(), 102, "the whole conversation, once each");
    assert_eq!(
        (whole[0].as_str(), whole[101].as_str()),
        ("早上好", "filler 99")
    );
    assert_eq!(alice.text("#load-older").await.as_deref(), Some(""));
    alice.close().await;
    stack.stop().await;
}

#[tokio::test]
async fn a_deleted_sender_and_removed_history_are_shown_as_such() {
    let port = free_port();
    let stack = Stack::start_with(|config| {
        config.listen = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    })
    .await;
    let alice = Browser::open(&stack.reader.url("/")).await;
    alice.register("alice").await;
    for body in ["an old one", "hello alice", "bye"] {
        stack.message("bob", "alice", body).await;
    }
    stack.message("alice", "bob", "hi bob").await;
    stack.applied().await;
    // The first message is past a 30-day retention; then bob deletes his account.
    sqlx::query(
        "UPDATE messages SET created_at = created_at - interval '40 days'
         WHERE conversation_id = 'd:alice:bob' AND seq = 1",
    )
    .execute(&stack.db.pool)
    .await
    .unwrap();
    let retention = fanout::store_retention::StoreRetention {
        pool: stack.db.pool.clone(),
        age: Some(chrono::TimeDelta::days(30)),
        post_age: None,
        every: WAIT,
    };
    wait_until("the history trimmed", WAIT, || async {
        let report = retention.run_once(chrono::Utc::now()).await.unwrap();
        (report.elected && report.messages == 1).then_some(())
    })
    .await;
    stack
        .write("bob", Method::DELETE, "/v1/accounts/bob", json!(null))
        .await;
    stack.applied().await;

    // What the page already held stays until it reads the history again (as a mail client's copy;
    // no event retracts a deleted account's messages): a reload does.
    alice.client.refresh().await.expect("reload");
    alice
        .wait_text("#status", "online again", |t| t == "online")
        .await;
    alice
        .click("#conversations li[data-conversation=\"d:alice:bob\"]")
        .await;
    // Bob's two messages left are tombstones (the body is gone, the page says why); alice's stays.
    alice
        .wait_messages("bob's messages erased", &["", "", "hi bob"])
        .await;
    let erased = alice
        .client
        .find_all(Locator::Css("#messages li.message.erased"))
        .await
        .unwrap();
    assert_eq!(erased.len(), 2);
    alice
        .wait_text("#older-removed", "the removed history is said", |t| {
            t == "Older messages were removed"
        })
        .await;
    let load_older = alice
        .client
        .find(Locator::Css("#load-older"))
        .await
        .unwrap();
    assert!(
        !load_older.is_displayed().await.unwrap(),
        "nothing older to load"
    );
    alice.screenshot("deleted-and-removed").await;
    alice.close().await;
    stack.stop().await;
}

/// A tiny PNG (1×1), for the page to upload.
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

/// Issue 24 in the browser: alice sends bob a picture from the page (uploaded through a signed URL,
/// shown as a thumbnail), replies to his message, edits her reply and reacts to his message; her
/// messages tick from sent to read once bob's read marker passes them.
#[tokio::test]
async fn a_picture_a_reply_an_edit_a_reaction_and_read_ticks_in_the_browser() {
    use base64::Engine;
    let (reader_port, ingest_port) = (free_port(), free_port());
    let dir = std::env::temp_dir().join(harness::unique("fanline-blobs"));
    let blobs = blobkit::BlobArgs::directory(&dir, "a test secret of thirty-two chars!");
    let (for_ingest, for_fanout) = (blobs.clone(), blobs.clone());
    let at = |port: u16| std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let stack = Stack::start_all(
        |config| {
            config.listen = at(reader_port);
            config.public_url = format!("http://127.0.0.1:{reader_port}");
            config.blobs = blobs;
        },
        |config| {
            config.listen = at(ingest_port);
            config.public_url = format!("http://127.0.0.1:{ingest_port}");
            config.blobs = for_ingest;
        },
        |config| config.blobs = for_fanout,
    )
    .await;
    let picture = dir.join("beach.png");
    let png = base64::engine::general_purpose::STANDARD
        .decode(PNG)
        .unwrap();
    std::fs::write(&picture, png).unwrap();
    let alice = Browser::open(&stack.reader.url("/")).await;
    alice.register("alice").await;
    stack.message("bob", "alice", "hi alice").await;
    stack.applied().await;
    alice
        .click("#conversations li[data-conversation=\"d:alice:bob\"]")
        .await;
    alice.wait_messages("bob's message", &["hi alice"]).await;

    // A picture: chosen in the page, uploaded, sent, shown decoded.
    let input = alice
        .client
        .find(Locator::Css("#composer-file"))
        .await
        .unwrap();
    input
        .send_keys(picture.to_str().unwrap())
        .await
        .expect("choose the file");
    // Shown at once from the chosen file (the server's copy after a reload, below).
    alice
        .wait_script(
            "the thumbnail",
            "const i = document.querySelector('#messages img.thumb'); \
             return i && i.complete ? String(i.naturalWidth) : document.querySelector('#chat-error').textContent;",
            "1",
        )
        .await;
    alice
        .wait_text(
            "#messages li.message.own .status",
            "the picture stored",
            |t| t == "✓ sent",
        )
        .await;

    // A reply to bob's message, then an edit of it.
    alice
        .click("#messages li.message:not(.own) [data-action=\"reply\"]")
        .await;
    alice.send("see you there").await;
    alice
        .wait_messages("the reply", &["hi alice", "", "see you there"])
        .await;
    let edit = "#messages li.message.own:last-child [data-action=\"edit\"]";
    wait_until("the reply stored", WAIT, || async {
        let li = alice
            .client
            .find(Locator::Css("#messages li.message.own:last-child"))
            .await
            .ok()?;
        (!li.attr("data-seq").await.ok()??.is_empty()).then_some(())
    })
    .await;
    alice.click(edit).await;
    alice.send("see you at nine").await;
    alice
        .wait_text(
            "#messages li.message.own:last-child .edited",
            "edited",
            |t| t == "(edited)",
        )
        .await;
    // A reaction to bob's message.
    alice
        .click("#messages li.message:not(.own) [data-action=\"react\"]")
        .await;
    alice
        .wait_text(
            "#messages li.message:not(.own) .reaction.mine",
            "the reaction",
            |t| t == "👍 1",
        )
        .await;

    stack.applied().await;
    let url = stack.reader.url("/v1/conversations/d:alice:bob/messages");
    let (_, history) = stack
        .api
        .as_user("bob")
        .raw(Method::GET, &url, None, None)
        .await;
    let messages = history["messages"].as_array().unwrap();
    assert_eq!(messages[1]["content_type"], "image", "{history}");
    assert_eq!(messages[1]["attachments"][0]["mime"], "image/png");
    assert_eq!(messages[1]["attachments"][0]["width"], 1);
    assert_eq!(
        (
            &messages[2]["body"],
            &messages[2]["version"],
            &messages[2]["reply_to"]["seq"]
        ),
        (&json!("see you at nine"), &json!(2), &json!(1)),
        "{history}"
    );
    assert_eq!(messages[0]["reactions"][0]["key"], "👍");

    // Bob reads everything: her messages tick "read".
    stack
        .write(
            "bob",
            Method::PUT,
            "/v1/users/bob/conversations/d:alice:bob/read",
            json!({"seq": 3}),
        )
        .await;
    alice
        .wait_text(
            "#messages li.message.own:last-child .status",
            "read ticks",
            |t| t == "✓✓ read",
        )
        .await;
    alice.screenshot("rich-messages").await;
    // After a reload the picture comes from the server, through its signed download URL.
    alice.client.refresh().await.expect("reload");
    alice
        .wait_text("#status", "online again", |t| t == "online")
        .await;
    alice
        .click("#conversations li[data-conversation=\"d:alice:bob\"]")
        .await;
    alice
        .wait_script(
            "the thumbnail from the store",
            "const i = document.querySelector('#messages img.thumb'); \
             return i && i.complete && i.src.startsWith('http') ? String(i.naturalWidth) : '';",
            "1",
        )
        .await;
    alice.close().await;
    stack.stop().await;
    let _ = std::fs::remove_dir_all(dir);
}
