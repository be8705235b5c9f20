//! Crash recovery of fanout workers: a worker killed with SIGKILL (no final commit, no LeaveGroup) is
//! replaced, and the group applies every acknowledged post within 30 s of the replacement starting:
//! by default (dynamic members) the watchdog rejoins a replacement the broker leaves empty; with static
//! membership (`--instance-id`) a worker restarted under its id takes its partitions back at once. With
//! two workers, the survivor takes over a peer that was stopped (scale-down), and a killed peer that
//! its supervisor restarts at once gets its share back.

use std::process::Stdio;
use std::time::{Duration, Instant};

use harness::{
    brokers, free_port, group_lag, spawn_ingest, unique, wait_until, Api, TestDb, TestTopic,
};
use tokio::process::{Child, Command};

/// The bound: delivery resumes within 30 s of the process being back.
const RECOVERY: Duration = Duration::from_secs(30);

/// A worker process; `instance_id` makes it a static member.
fn start_worker(
    topic: &TestTopic,
    group: &str,
    database_url: &str,
    instance_id: Option<&str>,
) -> Child {
    start_worker_on(topic, group, database_url, instance_id, 0)
}

/// A worker whose operations server listens on `port` (0: any).
fn start_worker_on(
    topic: &TestTopic,
    group: &str,
    database_url: &str,
    instance_id: Option<&str>,
    port: u16,
) -> Child {
    let listen = format!("127.0.0.1:{port}");
    let mut command = Command::new(env!("CARGO_BIN_EXE_fanline-worker"));
    if let Some(id) = instance_id {
        command.args(["--instance-id", id]);
    }
    command
        .args(["--brokers", &brokers(), "--topic", &topic.name])
        .args(["--dlq-topic", &topic.dlq, "--group", group])
        .args(["--database-url", database_url])
        .args([
            "--listen",
            &listen,
            "--skip-setup",
            "--lag-interval-ms",
            "500",
        ])
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("start fanline-worker")
}

/// SIGTERM, as a supervisor stops a worker, and wait for it to exit.
async fn stop_worker(mut worker: Child) {
    if let Some(pid) = worker.id() {
        let _ = Command::new("kill")
            .args(["-TERM", &pid.to_string()])
            .status()
            .await;
    }
    let _ = tokio::time::timeout(Duration::from_secs(30), worker.wait()).await;
}

/// Waits until the worker on `port` is ready: it joined the group and was assigned its share.
async fn joined(port: u16) {
    let url = format!("http://127.0.0.1:{port}/readyz");
    wait_until(
        "the worker joins its group",
        Duration::from_secs(60),
        || {
            let url = url.clone();
            async move {
                let response = reqwest::get(&url).await.ok()?;
                response.status().is_success().then_some(())
            }
        },
    )
    .await;
}

/// The partitions the worker on `port` has assigned, from its `/metrics`.
async fn assigned_partitions(port: u16) -> Option<i64> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let text = reqwest::get(&url).await.ok()?.text().await.ok()?;
    text.lines()
        .find_map(|line| line.strip_prefix("fanline_fanout_assigned_partitions "))
        .and_then(|value| value.trim().parse().ok())
}

async fn posts(db: &TestDb) -> i64 {
    let (count,): (i64,) = sqlx::query_as("SELECT count(*) FROM posts")
        .fetch_one(&db.pool)
        .await
        .unwrap();
    count
}

/// Kills a worker (static under `first_id`) mid-stream, keeps posting, starts a replacement (static under
/// `replacement_id`); returns how long the replacement took to apply every acknowledged post.
async fn crash_and_replace(first_id: Option<&str>, replacement_id: Option<&str>) -> Duration {
    let db = TestDb::create().await;
    let topic = TestTopic::create(4).await;
    let group = unique("fanout");
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "");
    let mut first = start_worker(&topic, &group, &db.url, first_id);
    for i in 0..20 {
        api.post(&format!("author{}", i % 5), "before the crash", None)
            .await;
    }
    wait_until(
        "the first worker applies",
        Duration::from_secs(60),
        || async { (posts(&db).await == 20).then_some(()) },
    )
    .await;
    first.kill().await.expect("SIGKILL the first worker");
    for i in 0..20 {
        api.post(&format!("author{}", i % 5), "while no worker runs", None)
            .await;
    }
    let started = Instant::now();
    let second = start_worker(&topic, &group, &db.url, replacement_id);
    wait_until("every acknowledged post applied", RECOVERY, || async {
        (posts(&db).await == 40).then_some(())
    })
    .await;
    let took = started.elapsed();
    wait_until("the group commits everything", RECOVERY, || async {
        group_lag(&topic.name, &group)
            .await
            .iter()
            .all(|l| l.lag == 0)
            .then_some(())
    })
    .await;
    stop_worker(second).await;
    ingest.stop().await;
    took
}

#[tokio::test]
async fn a_worker_killed_with_sigkill_is_replaced_and_the_backlog_applied() {
    let took = crash_and_replace(None, None).await;
    println!("replacement worker applied the backlog {took:?} after it started");
}

/// The watchdog's path: on tansu 0.6 a static member that replaces a killed static member under
/// another id never completes its join (its JoinGroup does not evict the dead member), so the
/// replacement owns nothing while the group stalls; only the watchdog's dynamic rejoin gets it going.
#[tokio::test]
async fn a_member_left_without_partitions_is_rejoined_by_its_watchdog() {
    let took = crash_and_replace(Some(&unique("worker")), Some(&unique("worker"))).await;
    println!("watchdog rejoin: replacement applied the backlog {took:?} after it started");
    assert!(
        took >= Duration::from_secs(10),
        "recovered in {took:?}, before the watchdog's grace: the watchdog path was not taken"
    );
}

#[tokio::test]
async fn a_static_member_restarted_under_its_id_takes_its_partitions_back() {
    let id = unique("worker");
    let took = crash_and_replace(Some(&id), Some(&id)).await;
    println!("restarted static member applied the backlog {took:?} after it started");
}

/// Two workers in one group that share the partitions and have applied 20 posts.
struct TwoWorkers {
    db: TestDb,
    topic: TestTopic,
    group: String,
    ingest: harness::Running,
    api: Api,
    survivor: Child,
    peer: Child,
}

async fn two_workers_applying() -> TwoWorkers {
    let db = TestDb::create().await;
    let topic = TestTopic::create(4).await;
    let group = unique("fanout");
    let ingest = spawn_ingest(ingest::Config::for_brokers(&brokers(), &topic.name)).await;
    let api = Api::new(ingest.url(""), "");
    let (survivor_port, peer_port) = (free_port(), free_port());
    let survivor = start_worker_on(&topic, &group, &db.url, None, survivor_port);
    joined(survivor_port).await;
    api.post("author0", "first", None).await;
    wait_until(
        "the first worker applies",
        Duration::from_secs(30),
        || async { (posts(&db).await == 1).then_some(()) },
    )
    .await;
    // The second joins a group with history: it lets a possibly crashed member expire first (11 s).
    let peer = start_worker_on(&topic, &group, &db.url, None, peer_port);
    joined(peer_port).await;
    // Both members share the partitions (the rebalance completes) before the peer goes.
    wait_until(
        "both workers own a share of the partitions",
        Duration::from_secs(60),
        || async {
            let survivor = assigned_partitions(survivor_port).await?;
            let peer = assigned_partitions(peer_port).await?;
            (survivor > 0 && peer > 0 && survivor + peer == i64::from(topic.partitions))
                .then_some(())
        },
    )
    .await;
    for i in 1..20 {
        api.post(&format!("author{i}"), "both running", None).await;
    }
    wait_until("both workers apply", Duration::from_secs(60), || async {
        (posts(&db).await == 20).then_some(())
    })
    .await;
    TwoWorkers {
        db,
        topic,
        group,
        ingest,
        api,
        survivor,
        peer,
    }
}

#[tokio::test]
async fn with_two_workers_the_survivor_takes_over_a_stopped_peer() {
    let TwoWorkers {
        db,
        ingest,
        api,
        survivor,
        peer,
        ..
    } = two_workers_applying().await;
    // Scaling down: a clean exit of a dynamic member leaves the group at once.
    stop_worker(peer).await;
    let gone = Instant::now();
    for i in 0..20 {
        api.post(&format!("author{i}"), "after the peer left", None)
            .await;
    }
    wait_until("the survivor applies everything", RECOVERY, || async {
        (posts(&db).await == 40).then_some(())
    })
    .await;
    println!(
        "survivor caught up {:?} after the peer left",
        gone.elapsed()
    );
    stop_worker(survivor).await;
    ingest.stop().await;
}

/// The broker killed with SIGKILL while clients post (each 503 retried with the same message id, as
/// clients are told to): with messages timing out during the outage, ingest's producer must not wedge
/// the broker (an idempotent producer bumps its epoch then, and tansu 0.6 fails every request after);
/// after the restart ingest acknowledges again within 30 s, and fanout applies every acknowledged post
/// exactly once.
#[tokio::test]
async fn ingest_and_fanout_carry_on_after_the_broker_is_killed() {
    use std::collections::BTreeSet;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::{Arc, Mutex};

    let mut broker = harness::broker::PrivateBroker::start().await;
    let topic = unique("fanline-crash");
    let dlq = format!("{topic}.dlq");
    let kafka = kafkakit::KafkaSettings::new(&broker.brokers(), &[]).unwrap();
    fanout::topics::ensure_topics(&kafka, &[(&topic, 2), (&dlq, 1)], 1)
        .await
        .unwrap();
    let db = TestDb::create().await;
    let mut ingest_config = ingest::Config::for_brokers(&broker.brokers(), &topic);
    ingest_config.produce_timeout_ms = 2000;
    let ingest = spawn_ingest(ingest_config).await;
    let mut fanout_config =
        fanout::Config::new(&broker.brokers(), &topic, &unique("fanout"), &db.url);
    fanout_config.dlq_topic = dlq;
    fanout_config.skip_setup = true;
    fanout_config.lag_interval_ms = 500;
    fanout_config.max_backoff_ms = 1000;
    let fanout = harness::spawn_fanout(fanout_config).await;

    let acknowledged = Arc::new(Mutex::new(BTreeSet::new()));
    // 503s seen per client: a client that saw one since the kill retries a post the dead broker
    // cannot acknowledge, so it adds nothing to `acknowledged` until the broker is back.
    let unavailable: Arc<Vec<std::sync::atomic::AtomicU64>> =
        Arc::new((0..4).map(|_| Default::default()).collect());
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|client| {
            let api = Api::new(ingest.url(""), "");
            let (acknowledged, unavailable, stop) =
                (acknowledged.clone(), unavailable.clone(), stop.clone());
            tokio::spawn(async move {
                let mut n = 0;
                while !stop.load(Ordering::Acquire) {
                    let message_id = format!("c{client}-{n}");
                    loop {
                        let (status, body) = api
                            .try_post(
                                &format!("author{client}"),
                                "through a crash",
                                Some(&message_id),
                            )
                            .await;
                        match status.as_u16() {
                            202 => break,
                            // A client gives up on a post only when the test ends: an
                            // unacknowledged post is the client's to retry, not lost.
                            503 if stop.load(Ordering::Acquire) => return,
                            503 => {
                                unavailable[client].fetch_add(1, Ordering::Relaxed);
                                // The client's retry pace, as a real client backs off.
                                tokio::time::sleep(Duration::from_millis(200)).await;
                            }
                            other => panic!("unexpected {other}: {body}"),
                        }
                    }
                    acknowledged.lock().unwrap().insert(message_id);
                    n += 1;
                }
            })
        })
        .collect();
    let acked = || acknowledged.lock().unwrap().len();
    let failed = || -> Vec<u64> {
        unavailable
            .iter()
            .map(|count| count.load(Ordering::Relaxed))
            .collect()
    };
    wait_until("posts to be acknowledged", RECOVERY, || async {
        (acked() >= 40).then_some(())
    })
    .await;
    let failed_before_kill = failed();
    broker.kill().await;
    let killed = Instant::now();
    // Answers already in flight when the broker died may still arrive; count from after them: once
    // every client got a 503 since the kill, none can be acknowledged until the broker is back.
    wait_until("every client to be refused", RECOVERY, || async {
        failed()
            .iter()
            .zip(&failed_before_kill)
            .all(|(now, before)| now > before)
            .then_some(())
    })
    .await;
    let before_outage = acked();
    // Not a synchronisation point: the outage under test lasts 9 s, long enough for queued messages to
    // time out (produce timeout 2 s), which is what wedged an idempotent producer on tansu.
    tokio::time::sleep(Duration::from_secs(9).saturating_sub(killed.elapsed())).await;
    broker.restart().await;
    let back = Instant::now();
    wait_until("ingest to acknowledge again", RECOVERY, || async {
        (acked() > before_outage).then_some(())
    })
    .await;
    let ingest_back = back.elapsed();
    let after_back = acked();
    wait_until("posts to flow after the restart", RECOVERY, || async {
        (acked() >= after_back + 40).then_some(())
    })
    .await;
    stop.store(true, Ordering::Release);
    for client in clients {
        tokio::time::timeout(Duration::from_secs(30), client)
            .await
            .expect("clients stop")
            .unwrap();
    }
    let acknowledged: BTreeSet<String> = acknowledged.lock().unwrap().clone();
    wait_until(
        "fanout applies every acknowledged post",
        Duration::from_secs(60),
        || async {
            let (posts, ids): (i64, i64) =
                sqlx::query_as("SELECT count(*), count(DISTINCT message_id) FROM posts")
                    .fetch_one(&db.pool)
                    .await
                    .unwrap();
            (posts == acknowledged.len() as i64 && ids == posts).then_some(())
        },
    )
    .await;
    let stored: Vec<(String,)> = sqlx::query_as("SELECT message_id FROM posts")
        .fetch_all(&db.pool)
        .await
        .unwrap();
    let stored: BTreeSet<String> = stored.into_iter().map(|(id,)| id).collect();
    assert_eq!(
        stored, acknowledged,
        "every acknowledged post, and nothing else"
    );
    // Exactly once where a duplicate could show: each post once in its author's sync timeline.
    let (entries, distinct): (i64, i64) =
        sqlx::query_as("SELECT count(*), count(DISTINCT (user_id, post_id)) FROM sync_entries")
            .fetch_one(&db.pool)
            .await
            .unwrap();
    assert_eq!(
        (entries, distinct),
        (stored.len() as i64, stored.len() as i64)
    );
    println!(
        "broker kill: {} posts acknowledged ({} before the kill), {} answers 503 during the outage; \
         ingest acknowledged again {ingest_back:?} after the broker was back; all applied once",
        acknowledged.len(),
        before_outage,
        failed().iter().sum::<u64>() - failed_before_kill.iter().sum::<u64>()
    );
    fanout.stop().await;
    ingest.stop().await;
}

/// A supervisor restarts a killed peer at once, before the dead member's session expired. On tansu 0.6
/// a member that joined then would share the partitions with the dead one and keep the dead one's
/// share unassigned after it expired; the restarted worker waits for the expiry before it joins, and
/// the coordinator then assigns everything to the live members.
#[tokio::test]
async fn with_two_workers_a_killed_peer_restarted_by_its_supervisor_rejoins_and_nothing_waits() {
    let TwoWorkers {
        db,
        topic,
        group,
        ingest,
        api,
        survivor,
        mut peer,
    } = two_workers_applying().await;
    peer.kill().await.expect("SIGKILL the peer");
    for i in 0..20 {
        api.post(&format!("author{i}"), "after the kill", None)
            .await;
    }
    // The supervisor starts the worker again (a new process: a new dynamic member).
    let back = Instant::now();
    let restarted = start_worker(&topic, &group, &db.url, None);
    wait_until("every acknowledged post applied", RECOVERY, || async {
        (posts(&db).await == 40).then_some(())
    })
    .await;
    println!(
        "killed peer restarted: caught up {:?} after it was back",
        back.elapsed()
    );
    stop_worker(restarted).await;
    stop_worker(survivor).await;
    ingest.stop().await;
}
