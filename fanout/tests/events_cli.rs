//! `fanout events produce|consume` as an operator runs them, against the test broker (the default
//! broker under scripts/test.sh): events written by hand are keyed like ingest's and read back; bad
//! input is refused with the line named and nothing sent.

#![allow(clippy::unwrap_used, clippy::missing_panics_doc)]

use std::io::Write;
use std::process::{Command, Output, Stdio};

fn brokers() -> String {
    std::env::var("FANLINE_TEST_BROKERS").unwrap_or_else(|_| "127.0.0.1:9092".to_owned())
}

/// Runs the fanout binary on `topic` with `stdin` as its input.
fn fanout(topic: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_fanout"))
        .args(args)
        .env("FANLINE_KAFKA_BROKERS", brokers())
        .env("FANLINE_EVENTS_TOPIC", topic)
        .env("FANLINE_DLQ_TOPIC", format!("{topic}.dlq"))
        .env("FANLINE_EVENTS_PARTITIONS", "4")
        .env("RUST_LOG", "warn")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run fanout");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

fn unique_topic() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("fanline-events-cli-{}-{nanos}", std::process::id())
}

fn lines(output: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .map(|line| serde_json::from_str(line).expect("a JSON line"))
        .collect()
}

fn post(key: &str, id: &str, post_id: &str) -> String {
    format!(
        r#"{{"v":1,"id":"{id}","type":"post_created","key":"{key}","ts":"2026-11-25T12:00:00Z","payload":{{"post_id":"{post_id}","author":"{key}","body":"by hand","created_at":"2026-11-25T12:00:00Z"}}}}"#
    )
}

#[test]
fn events_written_by_hand_are_keyed_like_ingest_and_read_back() {
    let topic = unique_topic();
    let created = fanout(&topic, &["create-topics"], "");
    assert!(created.status.success(), "{created:?}");
    let input = [
        post("alice", "01JF0000000000000000000001", "01JF0000000000000000000A01"),
        r#"{"v":1,"id":"01JF0000000000000000000002","type":"followed","key":"alice","ts":"2026-11-25T12:00:00Z","payload":{"follower":"bob","followee":"alice"}}"#.to_owned(),
        String::new(),
        post("carol", "01JF0000000000000000000003", "01JF0000000000000000000A03"),
        post("alice", "01JF0000000000000000000004", "01JF0000000000000000000A04"),
    ]
    .join("\n");
    let produced = fanout(&topic, &["events", "produce"], &input);
    assert!(produced.status.success(), "{produced:?}");
    let acks = lines(&produced);
    assert_eq!(acks.len(), 4, "one line per event, the empty line skipped");
    // One timeline, one partition: alice's three events are in order on one partition.
    let alice: Vec<_> = acks.iter().filter(|a| a["key"] == "alice").collect();
    assert_eq!(alice.len(), 3);
    assert!(alice
        .iter()
        .all(|a| a["partition"] == alice[0]["partition"]));
    assert!(alice
        .windows(2)
        .all(|w| w[0]["offset"].as_i64() < w[1]["offset"].as_i64()));

    let consumed = fanout(&topic, &["events", "consume", "--from", "earliest"], "");
    assert!(consumed.status.success(), "{consumed:?}");
    let records = lines(&consumed);
    assert_eq!(records.len(), 4);
    for ack in &acks {
        let record = records
            .iter()
            .find(|r| r["partition"] == ack["partition"] && r["offset"] == ack["offset"])
            .unwrap_or_else(|| panic!("{ack} not read back"));
        assert_eq!(record["key"], ack["key"]);
        assert_eq!(record["event"]["id"], ack["id"]);
    }
    let first_alice = records
        .iter()
        .find(|r| r["event"]["id"] == "01JF0000000000000000000001")
        .unwrap();
    assert_eq!(first_alice["event"]["payload"]["body"], "by hand");

    let limited = fanout(&topic, &["events", "consume", "--max", "2"], "");
    assert_eq!(lines(&limited).len(), 2);
    let latest = fanout(&topic, &["events", "consume", "--from", "latest"], "");
    assert!(latest.status.success());
    assert!(lines(&latest).is_empty(), "nothing after the end");
}

#[test]
fn bad_input_is_refused_with_its_line_and_nothing_is_sent() {
    let topic = unique_topic();
    assert!(fanout(&topic, &["create-topics"], "").status.success());
    let input = [
        post(
            "alice",
            "01JF0000000000000000000001",
            "01JF0000000000000000000A01",
        ),
        // The key names another timeline than the author: refused, like a forged event.
        post(
            "alice",
            "01JF0000000000000000000002",
            "01JF0000000000000000000A02",
        )
        .replace("\"author\":\"alice\"", "\"author\":\"mallory\""),
    ]
    .join("\n");
    let refused = fanout(&topic, &["events", "produce"], &input);
    assert!(!refused.status.success());
    let stderr = String::from_utf8_lossy(&refused.stderr);
    assert!(stderr.contains("line 2"), "{stderr}");
    let not_json = fanout(&topic, &["events", "produce"], "{not json\n");
    assert!(!not_json.status.success());
    assert!(String::from_utf8_lossy(&not_json.stderr).contains("line 1"));

    let consumed = fanout(&topic, &["events", "consume"], "");
    assert!(consumed.status.success(), "{consumed:?}");
    assert!(
        lines(&consumed).is_empty(),
        "no line of a refused input was sent"
    );
}
