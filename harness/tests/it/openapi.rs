//! The OpenAPI documents against the running services: each serves its committed document at
//! `/openapi.json`, and schemathesis (from PyPI, installed by scripts/test.sh) sends generated valid and
//! invalid requests to ingest and reader — on the real broker and Postgres, with fanout applying what
//! ingest accepts — and checks that no answer is a 5xx and that every answer is as documented (status
//! code, content type, headers, body schema). Settings: harness/schemathesis.toml.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use harness::{
    brokers, fanout_config, spawn_fanout, spawn_ingest, unique, wait_until, Api, TestDb, TestTopic,
};

fn harness_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `FANLINE_SCHEMATHESIS`, else the project's virtualenv (scripts/test.sh installs it there).
fn schemathesis() -> PathBuf {
    match std::env::var_os("FANLINE_SCHEMATHESIS") {
        Some(path) => PathBuf::from(path),
        None => harness_dir().join("../.fanline/venv/bin/st"),
    }
}

/// Runs schemathesis signed in as `token`'s user (the documents' example user): requests for other
/// users get the documented 403. The realtime routes (a WebSocket, an endless event stream) are left
/// out: realtime.rs tests them.
async fn schemathesis_passes(service: &str, base_url: &str, token: &str) {
    let program = schemathesis();
    let run = tokio::process::Command::new(&program)
        .arg("--config-file")
        .arg(harness_dir().join("schemathesis.toml"))
        .args([
            "run",
            &format!("{base_url}/openapi.json"),
            "--url",
            base_url,
            "--header",
            &format!("Authorization: Bearer {token}"),
            "--exclude-tag",
            "realtime",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let output = tokio::time::timeout(Duration::from_secs(300), run)
        .await
        .unwrap_or_else(|_| panic!("schemathesis against {service} ran over 300 s"))
        .unwrap_or_else(|err| {
            panic!(
                "cannot run {} ({err}): scripts/test.sh installs schemathesis, or set FANLINE_SCHEMATHESIS",
                program.display()
            )
        });
    let report = String::from_utf8_lossy(&output.stdout);
    println!("schemathesis against {service}:\n{report}");
    assert!(
        output.status.success(),
        "schemathesis found problems in {service} ({}):\n{report}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(
        report.contains(" passed") && !report.contains("No test cases were generated"),
        "schemathesis tested nothing against {service}:\n{report}"
    );
}

#[tokio::test]
async fn ingest_and_reader_answer_as_their_openapi_documents_say() {
    let db = TestDb::create().await;
    let topic = TestTopic::create(2).await;
    // Attachments on (a directory store): schemathesis exercises uploads and downloads too.
    let blobs_dir = std::env::temp_dir().join(unique("fanline-blobs"));
    let blobs = blobkit::BlobArgs::directory(&blobs_dir, "a test secret of thirty-two chars!");
    let mut ingest_config = ingest::Config::for_brokers(&brokers(), &topic.name);
    ingest_config.blobs = blobs.clone();
    let ingest = spawn_ingest(ingest_config).await;
    let mut reader_config = reader::Config::for_database(&db.url);
    reader_config.brokers = brokers();
    reader_config.topic = topic.name.clone();
    reader_config.blobs = blobs;
    let reader = harness::spawn_reader_with(reader_config).await;
    let fanout = spawn_fanout(fanout_config(&topic, &unique("fanout"), &db.url)).await;
    let api = Api::new(ingest.url(""), reader.url(""));

    // The committed documents are what the services serve.
    for (service, url, committed) in [
        (
            "ingest",
            ingest.url("/openapi.json"),
            ingest::openapi::document_json(),
        ),
        (
            "reader",
            reader.url("/openapi.json"),
            reader::openapi::document_json(),
        ),
    ] {
        let served = reqwest::get(&url).await.unwrap();
        assert_eq!(served.status(), 200, "{service}");
        assert_eq!(
            served.headers()["content-type"],
            "application/json",
            "{service}"
        );
        assert_eq!(served.text().await.unwrap(), committed, "{service}");
    }

    // The documents' example user has a feed, a store timeline and a sync timeline with entries, so the
    // pages schemathesis reads are not all empty.
    api.follow("alice", "bob").await;
    for i in 0..3 {
        api.post("bob", &format!("hello {i}"), None).await;
        api.post("alice", &format!("mine {i}"), None).await;
    }
    wait_until(
        "the example user's feed",
        Duration::from_secs(60),
        || async { (api.feed_page("alice", 20, None).await.entries.len() == 6).then_some(()) },
    )
    .await;

    let token = api.token_for("alice");
    schemathesis_passes("ingest", &ingest.url(""), &token).await;
    schemathesis_passes("reader", &reader.url(""), &token).await;
    fanout.stop().await;
    ingest.stop().await;
    reader.stop().await;
    let _ = std::fs::remove_dir_all(blobs_dir);
}

/// Every documented `limit` and `wait` of both services is the enforced one: utoipa's attributes take
/// literals only, so the documents are walked against the constants in `schemas::api`.
#[test]
fn every_documented_limit_and_wait_is_the_enforced_one() {
    use schemas::api::{DEFAULT_PAGE_LIMIT, MAX_BATCH_POSTS, MAX_PAGE_LIMIT, MAX_WAIT_SECS};
    let mut limits = 0;
    let mut waits = 0;
    for document in [
        ingest::openapi::document_json(),
        reader::openapi::document_json(),
    ] {
        let document: serde_json::Value = serde_json::from_str(&document).unwrap();
        let paths = document["paths"].as_object().unwrap();
        for (path, operations) in paths {
            for (method, operation) in operations.as_object().unwrap() {
                let parameters = operation["parameters"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default();
                for parameter in parameters {
                    let at = format!("{method} {path} {}", parameter["name"]);
                    let schema = &parameter["schema"];
                    match parameter["name"].as_str() {
                        Some("limit") => {
                            limits += 1;
                            assert_eq!(schema["minimum"], 1, "{at}");
                            assert_eq!(schema["maximum"], MAX_PAGE_LIMIT, "{at}");
                            let text = parameter["description"].as_str().unwrap_or_default();
                            assert!(
                                text.contains(&format!("{DEFAULT_PAGE_LIMIT} when not given")),
                                "{at}: the default is {DEFAULT_PAGE_LIMIT}: {text}"
                            );
                        }
                        Some("wait") => {
                            waits += 1;
                            assert_eq!(schema["minimum"], 0, "{at}");
                            assert_eq!(schema["maximum"], MAX_WAIT_SECS, "{at}");
                        }
                        _ => {}
                    }
                }
            }
        }
        if let Some(batch) = document["components"]["schemas"]["BatchRequest"].as_object() {
            assert_eq!(batch["properties"]["posts"]["maxItems"], MAX_BATCH_POSTS);
        }
    }
    // feed, posts, sync, the contact list, members, history, a group's pending, a user's invitations
    // and blocks, the moderation queue, message, post, people and group search, a message's readers;
    // the sync long poll.
    assert_eq!(
        (limits, waits),
        (15, 1),
        "every paged route documents its parameters"
    );
}
