//! The fault suite: the whole stack as `scripts/up.sh --watch` runs it (its own broker, a private
//! Postgres cluster, its own ports and state directory), under continuous load, with faults injected
//! round after round; afterwards every acknowledged post is looked up in every follower's sync
//! timeline and feed and in its author's timeline.
//!
//! Load: every author posts continuously with a unique `message_id` and retries every 5xx, timeout or
//! refused connection with the same `message_id`, as clients are told to; a client gives up only after
//! `give_up` (a failure of the suite). A few followers' devices poll their sync timeline from their
//! last seq. Nothing here restarts a crashed process: `up.sh --watch` does, as it would for a user.
//!
//! Per round: wait until the stack is healthy and posts flow end to end, inject the fault, note when
//! the process is back (its `/healthz` answers with a new pid; the broker's port accepts again;
//! Postgres restarted), and when delivery resumed: a device sees a post first sent after the fault.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use schemas::api::{FeedPage, SyncPage};
use tokio::process::{Child, Command};

use crate::postgres::PrivatePostgres;

/// One kind of fault, injected once per round.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// SIGKILL the only fanout worker.
    Fanout,
    /// SIGKILL one of two fanout workers (alternating), the other keeps running.
    FanoutOfTwo,
    /// SIGKILL the broker.
    Broker,
    /// `pg_ctl stop -m immediate`, then start.
    Postgres,
    /// SIGKILL ingest.
    Ingest,
    /// SIGKILL the reader.
    Reader,
}

impl Fault {
    pub const ALL: [Fault; 6] = [
        Fault::Fanout,
        Fault::Broker,
        Fault::Postgres,
        Fault::Ingest,
        Fault::Reader,
        Fault::FanoutOfTwo,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Fault::Fanout => "fanout",
            Fault::FanoutOfTwo => "fanout-of-two",
            Fault::Broker => "broker",
            Fault::Postgres => "postgres",
            Fault::Ingest => "ingest",
            Fault::Reader => "reader",
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Fault::Fanout => "kill -9 fanout (1 worker)",
            Fault::FanoutOfTwo => "kill -9 fanout (1 of 2 workers)",
            Fault::Broker => "kill -9 broker",
            Fault::Postgres => "Postgres immediate restart",
            Fault::Ingest => "kill -9 ingest",
            Fault::Reader => "kill -9 reader",
        }
    }
}

impl std::str::FromStr for Fault {
    type Err = String;

    fn from_str(name: &str) -> Result<Fault, String> {
        Fault::ALL
            .into_iter()
            .find(|fault| fault.name() == name)
            .ok_or_else(|| {
                let names: Vec<_> = Fault::ALL.iter().map(|f| f.name()).collect();
                format!("unknown fault {name:?}; one of {}", names.join(", "))
            })
    }
}

pub struct Options {
    /// The repository: `scripts/up.sh` and `scripts/down.sh` are run from it.
    pub root: PathBuf,
    /// The stack's state directory (pid files, broker data, logs); emptied first.
    pub state_dir: PathBuf,
    /// `release` or `debug` (passed to up.sh as FANLINE_PROFILE).
    pub profile: String,
    /// ingest listens on it, the reader on +1, fanout on +2 (a second worker on +12), the lag exporter on +3.
    pub base_port: u16,
    pub broker_port: u16,
    pub postgres_port: u16,
    pub faults: Vec<Fault>,
    pub rounds: u32,
    pub authors: usize,
    /// Followers of every author (each follows all authors).
    pub followers: usize,
    /// Followers whose device polls its sync timeline while the faults happen.
    pub devices: usize,
    /// Pause between one author's posts.
    pub post_interval: Duration,
    /// Quiet time after a round has recovered, before the next fault.
    pub settle: Duration,
    /// The longest delivery may take to resume once the faulted process is back.
    pub max_stall: Duration,
    /// How long a client retries one post before giving up.
    pub give_up: Duration,
}

/// One round: when the fault was injected, when the process was back, whether delivery resumed.
#[derive(Debug, Clone)]
struct Round {
    fault: Fault,
    at: Instant,
    back: Instant,
    /// Every author's posts reach devices again (`None`: not within the timeout).
    resumed: bool,
    /// When the round's settle time ended: the round's posts were first sent from `at` until then.
    until: Instant,
}

/// What the posts of one round waited for.
struct Waits {
    /// The longest any post sent during the round waited from first send to a device seeing it.
    longest: Duration,
    /// The same, counted from the process being back for posts sent before.
    after_back: Duration,
    /// Posts of the round no device saw.
    unseen: usize,
}

impl Round {
    fn waits(&self, ledger: &Ledger) -> Waits {
        let mut waits = Waits {
            longest: Duration::ZERO,
            after_back: Duration::ZERO,
            unseen: 0,
        };
        for post in ledger
            .posts
            .iter()
            .filter(|p| p.acked && p.attempted >= self.at && p.attempted < self.until)
        {
            match post.seen {
                Some(seen) => {
                    waits.longest = waits.longest.max(seen.duration_since(post.attempted));
                    let from = post.attempted.max(self.back);
                    waits.after_back = waits.after_back.max(seen.saturating_duration_since(from));
                }
                None => waits.unseen += 1,
            }
        }
        waits
    }
}

#[derive(Default, Clone, Copy)]
struct PhaseErrors {
    server_errors: u64,
    connection_errors: u64,
    gave_up: u64,
    rejected: u64,
}

struct Post {
    author: String,
    body: String,
    phase: usize,
    attempted: Instant,
    acked: bool,
    /// When a polling device first saw it.
    seen: Option<Instant>,
}

#[derive(Default)]
struct Ledger {
    posts: Vec<Post>,
    by_body: HashMap<String, usize>,
}

/// State shared by the load tasks and the injector.
struct Shared {
    /// Which phase new posts and errors belong to: 0 before the first fault, then one per fault kind.
    phase: AtomicUsize,
    stop_posting: AtomicBool,
    stop_polling: AtomicBool,
    ledger: Mutex<Ledger>,
    errors: Mutex<Vec<PhaseErrors>>,
}

impl Shared {
    fn ledger(&self) -> std::sync::MutexGuard<'_, Ledger> {
        self.ledger.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn count(&self, update: impl FnOnce(&mut PhaseErrors)) {
        let phase = self.phase.load(Ordering::Acquire);
        let mut errors = self.errors.lock().unwrap_or_else(PoisonError::into_inner);
        update(&mut errors[phase]);
    }

    /// Whether, for every author, a post first sent after `after` has reached a device: delivery
    /// flows on every partition the authors' posts go to.
    fn resumed_since(&self, after: Instant, authors: usize) -> bool {
        let ledger = self.ledger();
        let mut flowing: Vec<&str> = Vec::with_capacity(authors);
        for post in ledger.posts.iter().rev() {
            if post.attempted <= after {
                break;
            }
            if post.seen.is_some() && !flowing.contains(&post.author.as_str()) {
                flowing.push(&post.author);
            }
        }
        flowing.len() == authors
    }
}

/// The token key the stack under test is started with (a fresh random one per run), to sign the
/// tokens of its authors and followers.
static TOKEN_KEY: std::sync::OnceLock<(String, authkit::TokenKey)> = std::sync::OnceLock::new();

fn token_key() -> &'static (String, authkit::TokenKey) {
    TOKEN_KEY.get_or_init(|| {
        use rand::Rng;
        let secret: String = rand::thread_rng()
            .sample_iter(&rand::distributions::Alphanumeric)
            .take(48)
            .map(char::from)
            .collect();
        let key = authkit::TokenKey::from_secret(secret.as_bytes()).expect("48 bytes is enough");
        (secret, key)
    })
}

/// An access token of `user` for the stack under test.
fn bearer(user: &str) -> String {
    token_key()
        .1
        .issue(user, "fault-suite", Duration::from_secs(24 * 3600))
}

/// The stack under test: `scripts/up.sh --watch` on private ports, broker and Postgres.
struct Stack {
    options: Options,
    postgres: PrivatePostgres,
    watcher: Option<Child>,
    workers: u32,
    http: reqwest::Client,
}

impl Stack {
    fn url(&self, offset: u16) -> String {
        format!("http://127.0.0.1:{}", self.options.base_port + offset)
    }

    fn ingest(&self) -> String {
        self.url(0)
    }

    fn reader(&self) -> String {
        self.url(1)
    }

    /// Worker 1 is `fanout`, worker k is `fanout-k` (up.sh's names and ports).
    fn fanout(&self, worker: u32) -> (String, String) {
        let name = if worker == 1 {
            "fanout".to_owned()
        } else {
            format!("fanout-{worker}")
        };
        (name, self.url(2 + 10 * (worker as u16 - 1)))
    }

    fn env(&self) -> Vec<(&'static str, String)> {
        let address = |offset: u16| format!("127.0.0.1:{}", self.options.base_port + offset);
        vec![
            (
                "FANLINE_STATE_DIR",
                self.options.state_dir.display().to_string(),
            ),
            ("FANLINE_PROFILE", self.options.profile.clone()),
            ("FANLINE_BROKER_HOST", "127.0.0.1".to_owned()),
            ("FANLINE_BROKER_PORT", self.options.broker_port.to_string()),
            (
                "FANLINE_KAFKA_BROKERS",
                format!("127.0.0.1:{}", self.options.broker_port),
            ),
            ("FANLINE_DATABASE_URL", self.postgres.url("fanline")),
            ("FANLINE_INGEST_LISTEN", address(0)),
            ("FANLINE_READER_LISTEN", address(1)),
            // Operations ports (metrics) beside them, clear of fanout workers' 2 + 10·(k−1).
            ("FANLINE_INGEST_OPS_LISTEN", address(5)),
            ("FANLINE_READER_OPS_LISTEN", address(6)),
            ("FANLINE_FANOUT_LISTEN", address(2)),
            ("FANLINE_LAG_EXPORTER_LISTEN", address(3)),
            ("FANLINE_FANOUT_WORKERS", self.workers.to_string()),
            ("FANLINE_TOKEN_KEY", token_key().0.clone()),
            // The authors register first (follows need accounts); registration limits are not
            // this suite's subject.
            (
                "FANLINE_REGISTER_PER_ADDRESS_PER_MINUTE",
                "10000".to_owned(),
            ),
        ]
    }

    fn script(&self, name: &str) -> Command {
        let mut command = Command::new(self.options.root.join("scripts").join(name));
        command
            .current_dir(&self.options.root)
            .envs(self.env())
            // Topic names and Kafka properties from the caller's shell would leak into the stack.
            .env_remove("FANLINE_EVENTS_TOPIC")
            .env_remove("FANLINE_DLQ_TOPIC")
            .env_remove("FANLINE_FANOUT_GROUP")
            .env_remove("FANLINE_INGEST_KAFKA_PROPERTIES")
            .env_remove("FANLINE_FANOUT_KAFKA_PROPERTIES")
            .stdin(Stdio::null());
        command
    }

    fn log_file(&self) -> anyhow::Result<std::fs::File> {
        let dir = self.options.state_dir.join("logs");
        std::fs::create_dir_all(&dir)?;
        Ok(std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("watch.log"))?)
    }

    /// (Re)starts `up.sh --watch` with `workers` fanout workers and waits until every service is ready.
    async fn watch(&mut self, workers: u32) -> anyhow::Result<()> {
        self.stop_watching().await;
        self.workers = workers;
        let log = self.log_file()?;
        let child = self
            .script("up.sh")
            .arg("--watch")
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .context("cannot run scripts/up.sh --watch")?;
        self.watcher = Some(child);
        let deadline = Instant::now() + Duration::from_secs(600);
        while !self.ready().await {
            if let Some(watcher) = self.watcher.as_mut() {
                if let Some(status) = watcher.try_wait()? {
                    bail!(
                        "scripts/up.sh --watch exited ({status}); see {}",
                        self.options.state_dir.join("logs").display()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("the stack did not become ready in 10 minutes");
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }

    async fn stop_watching(&mut self) {
        if let Some(mut watcher) = self.watcher.take() {
            // The watcher only; the services it started keep running.
            let _ = watcher.kill().await;
        }
    }

    async fn answers(&self, url: &str) -> bool {
        self.http
            .get(url)
            .timeout(Duration::from_secs(2))
            .send()
            .await
            .is_ok_and(|response| response.status().is_success())
    }

    /// Every service answers `/readyz` (fanout: joined, owns its share, database reachable).
    async fn ready(&self) -> bool {
        let mut urls = vec![self.ingest(), self.reader(), self.url(3)];
        urls.extend((1..=self.workers).map(|worker| self.fanout(worker).1));
        for url in urls {
            if !self.answers(&format!("{url}/readyz")).await {
                return false;
            }
        }
        true
    }

    fn pid(&self, service: &str) -> Option<u32> {
        std::fs::read_to_string(self.options.state_dir.join(format!("{service}.pid")))
            .ok()?
            .trim()
            .parse()
            .ok()
    }

    fn kill(&self, service: &str) -> anyhow::Result<u32> {
        let pid = self
            .pid(service)
            .with_context(|| format!("no pid file for {service}"))?;
        let status = std::process::Command::new("kill")
            .args(["-KILL", &pid.to_string()])
            .status()?;
        if !status.success() {
            bail!("kill -KILL {pid} ({service}) failed");
        }
        Ok(pid)
    }

    /// Waits until `service` runs under a new pid and its `/healthz` answers.
    async fn back(&self, service: &str, old_pid: u32, url: &str) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if self.pid(service).is_some_and(|pid| pid != old_pid)
                && self.answers(&format!("{url}/healthz")).await
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("{service} was not restarted within 180 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    async fn broker_back(&self, old_pid: u32) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(180);
        let address = format!("127.0.0.1:{}", self.options.broker_port);
        loop {
            if self.pid("tansu").is_some_and(|pid| pid != old_pid)
                && tokio::net::TcpStream::connect(&address).await.is_ok()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("the broker was not restarted within 180 s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Injects `fault` (round `round`, from 1) and returns once the faulted process is back.
    async fn inject(&self, fault: Fault, round: u32) -> anyhow::Result<()> {
        match fault {
            Fault::Fanout | Fault::FanoutOfTwo => {
                // With two workers, alternate: the group's leader and the other one.
                let worker = if fault == Fault::FanoutOfTwo && round % 2 == 1 {
                    2
                } else {
                    1
                };
                let (name, url) = self.fanout(worker);
                let pid = self.kill(&name)?;
                self.back(&name, pid, &url).await
            }
            Fault::Broker => {
                let pid = self.kill("tansu")?;
                self.broker_back(pid).await
            }
            Fault::Postgres => self.postgres.restart_immediate(),
            Fault::Ingest => {
                let pid = self.kill("ingest")?;
                self.back("ingest", pid, &self.ingest()).await
            }
            Fault::Reader => {
                let pid = self.kill("reader")?;
                self.back("reader", pid, &self.reader()).await
            }
        }
    }

    async fn down(&mut self) {
        self.stop_watching().await;
        match self.script("down.sh").status().await {
            Ok(status) if status.success() => {}
            Ok(status) => eprintln!("scripts/down.sh failed ({status})"),
            Err(err) => eprintln!("cannot run scripts/down.sh: {err}"),
        }
    }
}

fn empty_dir(dir: &Path) -> anyhow::Result<()> {
    if dir.exists() {
        std::fs::remove_dir_all(dir).with_context(|| format!("cannot empty {}", dir.display()))?;
    }
    std::fs::create_dir_all(dir)?;
    Ok(())
}

/// Runs the suite; returns the report (a Markdown table and the verdict) and whether it passed.
pub async fn run(options: Options) -> anyhow::Result<(String, bool)> {
    if options.faults.is_empty() || options.rounds == 0 || options.authors == 0 {
        bail!("nothing to do: give at least one fault, one round and one author");
    }
    if options.devices > options.followers {
        bail!("--devices cannot exceed --followers");
    }
    let state_dir = std::path::absolute(&options.state_dir)?;
    // A previous run's stack may still be running on these ports and state.
    let postgres = PrivatePostgres::start(options.postgres_port)?;
    let mut stack = Stack {
        options: Options {
            state_dir,
            ..options
        },
        postgres,
        watcher: None,
        workers: 1,
        http: reqwest::Client::new(),
    };
    stack.down().await;
    empty_dir(&stack.options.state_dir)?;
    let result = drive(&mut stack).await;
    stack.down().await;
    result
}

async fn drive(stack: &mut Stack) -> anyhow::Result<(String, bool)> {
    let faults = stack.options.faults.clone();
    let first_workers = if faults.first() == Some(&Fault::FanoutOfTwo) {
        2
    } else {
        1
    };
    progress(format!(
        "starting the stack (scripts/up.sh --watch, {first_workers} fanout worker(s))"
    ));
    stack.watch(first_workers).await?;
    let shared = Arc::new(Shared {
        phase: AtomicUsize::new(0),
        stop_posting: AtomicBool::new(false),
        stop_polling: AtomicBool::new(false),
        ledger: Mutex::default(),
        errors: Mutex::new(vec![PhaseErrors::default(); faults.len() + 1]),
    });
    let authors: Vec<String> = (0..stack.options.authors)
        .map(|a| format!("fault-author-{a}"))
        .collect();
    let followers: Vec<String> = (0..stack.options.followers)
        .map(|f| format!("fault-follower-{f}"))
        .collect();
    register_all(stack, &authors).await?;
    follow_all(stack, &authors, &followers).await?;

    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()?;
    let mut posting = Vec::new();
    for author in &authors {
        posting.push(tokio::spawn(post_continuously(
            shared.clone(),
            client.clone(),
            stack.ingest(),
            author.clone(),
            stack.options.post_interval,
            stack.options.give_up,
        )));
    }
    let mut polling = Vec::new();
    for device in followers.iter().take(stack.options.devices) {
        polling.push(tokio::spawn(poll_sync(
            shared.clone(),
            client.clone(),
            stack.reader(),
            device.clone(),
        )));
    }

    let mut rounds: Vec<Round> = Vec::new();
    let mut failure: Option<anyhow::Error> = None;
    'faults: for (index, fault) in faults.iter().copied().enumerate() {
        let workers = if fault == Fault::FanoutOfTwo { 2 } else { 1 };
        if workers != stack.workers {
            progress(format!(
                "restarting the watcher with {workers} fanout worker(s)"
            ));
            if let Err(err) = stack.watch(workers).await {
                failure = Some(err);
                break;
            }
        }
        for round in 1..=stack.options.rounds {
            if let Err(err) = steady(stack, &shared).await {
                failure = Some(err.context(format!("before {} round {round}", fault.name())));
                break 'faults;
            }
            shared.phase.store(index + 1, Ordering::Release);
            let at = Instant::now();
            if let Err(err) = stack.inject(fault, round).await {
                failure = Some(err.context(format!("{} round {round}", fault.name())));
                break 'faults;
            }
            let back = Instant::now();
            let deadline = back + stack.options.max_stall.max(Duration::from_secs(60)) * 2;
            let resumed = loop {
                if shared.resumed_since(at, stack.options.authors) {
                    break true;
                }
                if Instant::now() > deadline {
                    break false;
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            };
            progress(format!(
                "{} round {round}: back after {}, every author's posts delivered again after {}",
                fault.describe(),
                seconds(back - at),
                if resumed {
                    seconds(at.elapsed())
                } else {
                    "— (timed out)".to_owned()
                }
            ));
            tokio::time::sleep(stack.options.settle).await;
            // The round's posts: sent from the fault until the settle ended (not during the next
            // round's wait for a steady stack, nor a watcher restart in between).
            rounds.push(Round {
                fault,
                at,
                back,
                resumed,
                until: Instant::now(),
            });
        }
    }

    progress(
        "stopping the load; every unacknowledged post is retried until acknowledged".to_owned(),
    );
    shared.stop_posting.store(true, Ordering::Release);
    for task in posting {
        task.await?;
    }
    if let Some(err) = failure {
        return Err(err);
    }
    progress(
        "checking every follower's sync timeline and feed, and every author's timeline".to_owned(),
    );
    let check = check_timelines(stack, &shared, &authors, &followers).await?;
    // The devices kept polling until every post was applied: give them one more poll to see the last.
    tokio::time::sleep(Duration::from_secs(1)).await;
    shared.stop_polling.store(true, Ordering::Release);
    for task in polling {
        task.await?;
    }
    Ok(report(stack, &shared, &faults, &rounds, &check))
}

fn progress(line: String) {
    eprintln!("[fault] {line}");
}

/// Registers every author: ids without an account cannot be followed.
async fn register_all(stack: &Stack, authors: &[String]) -> anyhow::Result<()> {
    for author in authors {
        let response = stack
            .http
            .post(format!("{}/v1/accounts", stack.ingest()))
            .json(&serde_json::json!({"user": author, "password": "fault suite author"}))
            .send()
            .await?;
        // 409: registered by an earlier run on the same state directory.
        let status = response.status();
        if status != reqwest::StatusCode::ACCEPTED && status != reqwest::StatusCode::CONFLICT {
            bail!("register {author}: {status}");
        }
    }
    Ok(())
}

/// Every follower follows every author (once fanout applied the author's registration: until then
/// ingest answers 404). Follow changes are keyed by the author, like the author's posts: every post
/// acknowledged after these is ordered after them, no wait needed.
async fn follow_all(stack: &Stack, authors: &[String], followers: &[String]) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(60);
    for follower in followers {
        for author in authors {
            let url = format!("{}/v1/users/{follower}/following/{author}", stack.ingest());
            loop {
                let response = stack
                    .http
                    .put(&url)
                    .bearer_auth(bearer(follower))
                    .send()
                    .await?;
                match response.status() {
                    reqwest::StatusCode::ACCEPTED => break,
                    reqwest::StatusCode::NOT_FOUND if Instant::now() < deadline => {
                        // The registration is not applied yet: a client's retry pace.
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    status => bail!("follow {follower} → {author}: {status}"),
                }
            }
        }
    }
    Ok(())
}

/// Waits until every service is ready and a post sent from now on reaches a device.
async fn steady(stack: &Stack, shared: &Shared) -> anyhow::Result<()> {
    let deadline = Instant::now() + Duration::from_secs(180);
    while !stack.ready().await {
        if Instant::now() > deadline {
            bail!("the stack did not become ready again within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let from = Instant::now();
    while !shared.resumed_since(from, stack.options.authors) {
        if Instant::now() > deadline {
            bail!("posts did not flow end to end within 180 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Ok(())
}

enum Outcome {
    Accepted,
    Retry,
    Rejected,
}

async fn post_once(
    shared: &Shared,
    client: &reqwest::Client,
    ingest: &str,
    author: &str,
    body: &str,
    message_id: &str,
) -> Outcome {
    let request = serde_json::json!({"author": author, "body": body, "message_id": message_id});
    match client
        .post(format!("{ingest}/v1/posts"))
        .bearer_auth(bearer(author))
        .json(&request)
        .send()
        .await
    {
        Ok(response) if response.status() == reqwest::StatusCode::ACCEPTED => Outcome::Accepted,
        Ok(response) if response.status().is_server_error() => {
            shared.count(|e| e.server_errors += 1);
            Outcome::Retry
        }
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_default();
            progress(format!("post {message_id} rejected: {status} {body}"));
            shared.count(|e| e.rejected += 1);
            Outcome::Rejected
        }
        Err(_) => {
            shared.count(|e| e.connection_errors += 1);
            Outcome::Retry
        }
    }
}

/// One author: posts until told to stop, each post retried with the same `message_id` until it is
/// acknowledged (or `give_up` passed).
async fn post_continuously(
    shared: Arc<Shared>,
    client: reqwest::Client,
    ingest: String,
    author: String,
    interval: Duration,
    give_up: Duration,
) {
    let mut number = 0u64;
    while !shared.stop_posting.load(Ordering::Acquire) {
        number += 1;
        let message_id = format!("{author}-{number}");
        let body = format!("fault suite post {message_id}");
        let attempted = Instant::now();
        let index = {
            let mut ledger = shared.ledger();
            let index = ledger.posts.len();
            ledger.posts.push(Post {
                author: author.clone(),
                body: body.clone(),
                phase: shared.phase.load(Ordering::Acquire),
                attempted,
                acked: false,
                seen: None,
            });
            ledger.by_body.insert(body.clone(), index);
            index
        };
        loop {
            match post_once(&shared, &client, &ingest, &author, &body, &message_id).await {
                Outcome::Accepted => {
                    shared.ledger().posts[index].acked = true;
                    break;
                }
                Outcome::Rejected => break,
                Outcome::Retry if attempted.elapsed() > give_up => {
                    progress(format!(
                        "a client gave up on {message_id} after {give_up:?}"
                    ));
                    shared.count(|e| e.gave_up += 1);
                    break;
                }
                Outcome::Retry => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
        tokio::time::sleep(interval).await;
    }
}

/// One device: scans its user's sync timeline from its last seq, as a client does.
async fn poll_sync(shared: Arc<Shared>, client: reqwest::Client, reader: String, user: String) {
    let mut after = 0;
    while !shared.stop_polling.load(Ordering::Acquire) {
        let url = format!("{reader}/v1/users/{user}/sync?after={after}&limit=200");
        let mut more = false;
        match client.get(&url).bearer_auth(bearer(&user)).send().await {
            Ok(response) if response.status().is_success() => {
                if let Ok(page) = response.json::<SyncPage>().await {
                    let now = Instant::now();
                    let mut ledger = shared.ledger();
                    for entry in &page.entries {
                        if let Some(&index) = ledger.by_body.get(&entry.body) {
                            ledger.posts[index].seen.get_or_insert(now);
                        }
                    }
                    after = page.last_seq;
                    more = page.has_more;
                }
            }
            Ok(response) if response.status().is_server_error() => {
                shared.count(|e| e.server_errors += 1)
            }
            Ok(_) => {}
            Err(_) => shared.count(|e| e.connection_errors += 1),
        }
        if !more {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// How often each post body occurs, per timeline.
type Counts = HashMap<String, usize>;

struct Check {
    /// Per follower: bodies in the sync timeline.
    sync: Vec<Counts>,
    /// Per follower: bodies in the feed.
    feed: Vec<Counts>,
    /// Per author: bodies in the author's timeline.
    posts: HashMap<String, Counts>,
}

/// GET with retries: the stack has recovered by now, but be patient with a slow machine.
async fn get_json<T: serde::de::DeserializeOwned>(
    http: &reqwest::Client,
    user: &str,
    url: &str,
) -> anyhow::Result<T> {
    let mut attempt = 0;
    loop {
        attempt += 1;
        let request = http.get(url).bearer_auth(bearer(user));
        match request.timeout(Duration::from_secs(30)).send().await {
            Ok(response) if response.status().is_success() => return Ok(response.json().await?),
            Ok(response) if attempt >= 10 => bail!("GET {url}: {}", response.status()),
            Err(err) if attempt >= 10 => bail!("GET {url}: {err}"),
            _ => tokio::time::sleep(Duration::from_secs(1)).await,
        }
    }
}

async fn sync_counts(stack: &Stack, user: &str) -> anyhow::Result<Counts> {
    let mut counts = Counts::new();
    let mut after = 0;
    loop {
        let url = format!(
            "{}/v1/users/{user}/sync?after={after}&limit=200",
            stack.reader()
        );
        let page: SyncPage = get_json(&stack.http, user, &url).await?;
        for entry in page.entries {
            *counts.entry(entry.body).or_default() += 1;
        }
        after = page.last_seq;
        if !page.has_more {
            return Ok(counts);
        }
    }
}

/// Walks a feed or an author's timeline (`kind` = "feed" or "posts") to its end.
async fn page_counts(stack: &Stack, user: &str, kind: &str) -> anyhow::Result<Counts> {
    let mut counts = Counts::new();
    let mut cursor = String::new();
    loop {
        let url = format!(
            "{}/v1/users/{user}/{kind}?limit=200{cursor}",
            stack.reader()
        );
        let page: FeedPage = get_json(&stack.http, user, &url).await?;
        for entry in page.entries {
            *counts.entry(entry.body).or_default() += 1;
        }
        match page.next_cursor {
            Some(next) => cursor = format!("&cursor={next}"),
            None => return Ok(counts),
        }
    }
}

/// Waits (up to 3 minutes) until every acknowledged post is in every follower's sync timeline, then
/// reads every timeline once more for the verdict.
async fn check_timelines(
    stack: &Stack,
    shared: &Shared,
    authors: &[String],
    followers: &[String],
) -> anyhow::Result<Check> {
    let acknowledged: Vec<String> = shared
        .ledger()
        .posts
        .iter()
        .filter(|post| post.acked)
        .map(|post| post.body.clone())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(180);
    let mut sync = Vec::new();
    loop {
        sync.clear();
        for follower in followers {
            sync.push(sync_counts(stack, follower).await?);
        }
        let complete = sync
            .iter()
            .all(|counts| acknowledged.iter().all(|body| counts.contains_key(body)));
        if complete || Instant::now() > deadline {
            break;
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    let mut feed = Vec::new();
    for follower in followers {
        feed.push(page_counts(stack, follower, "feed").await?);
    }
    let mut posts = HashMap::new();
    for author in authors {
        posts.insert(author.clone(), page_counts(stack, author, "posts").await?);
    }
    Ok(Check { sync, feed, posts })
}

#[derive(Default)]
struct Row {
    acknowledged: u64,
    delivered: u64,
    lost: u64,
    duplicated: u64,
    feed_missing: u64,
}

fn seconds(duration: Duration) -> String {
    format!("{:.1} s", duration.as_secs_f64())
}

fn report(
    stack: &Stack,
    shared: &Shared,
    faults: &[Fault],
    rounds: &[Round],
    check: &Check,
) -> (String, bool) {
    let ledger = shared.ledger();
    let errors = shared.errors.lock().unwrap_or_else(PoisonError::into_inner);
    let mut rows: Vec<Row> = (0..=faults.len()).map(|_| Row::default()).collect();
    for post in ledger.posts.iter().filter(|post| post.acked) {
        let row = &mut rows[post.phase];
        row.acknowledged += 1;
        for counts in &check.sync {
            match counts.get(&post.body).copied().unwrap_or(0) {
                0 => row.lost += 1,
                n => {
                    row.delivered += 1;
                    row.duplicated += n as u64 - 1;
                }
            }
        }
        for counts in &check.feed {
            match counts.get(&post.body).copied().unwrap_or(0) {
                0 => row.feed_missing += 1,
                n => row.duplicated += n as u64 - 1,
            }
        }
        match check
            .posts
            .get(&post.author)
            .and_then(|counts| counts.get(&post.body))
            .copied()
            .unwrap_or(0)
        {
            0 => row.lost += 1,
            n => row.duplicated += n as u64 - 1,
        }
    }
    let options = &stack.options;
    let mut out = format!(
        "Fault suite: {} author(s) posting every {} ms, {} follower(s) each ({} polling), {} round(s) per fault, \
         services built {}; delivery must resume within {} s of the process being back.\n\n\
         | fault | rounds | acknowledged | delivered | lost | duplicated | missing from feed | longest stall | after back | 5xx | refused/timed out | gave up |\n\
         |---|---|---|---|---|---|---|---|---|---|---|---|\n",
        options.authors,
        options.post_interval.as_millis(),
        options.followers,
        options.devices,
        options.rounds,
        options.profile,
        options.max_stall.as_secs(),
    );
    let mut passed = true;
    let mut problems = Vec::new();
    for (phase, row) in rows.iter().enumerate() {
        let (name, of_fault): (&str, Vec<&Round>) = if phase == 0 {
            ("warm-up (no fault)", Vec::new())
        } else {
            let fault = faults[phase - 1];
            (
                fault.describe(),
                rounds.iter().filter(|r| r.fault == fault).collect(),
            )
        };
        let waits: Vec<Waits> = of_fault.iter().map(|r| r.waits(&ledger)).collect();
        let stall = waits
            .iter()
            .map(|w| w.longest)
            .max()
            .map_or("–".to_owned(), seconds);
        let longest_after_back = waits.iter().map(|w| w.after_back).max();
        let after_back = longest_after_back.map_or("–".to_owned(), seconds);
        let e = errors[phase];
        out.push_str(&format!(
            "| {name} | {} | {} | {} | {} | {} | {} | {stall} | {after_back} | {} | {} | {} |\n",
            if phase == 0 {
                "–".to_owned()
            } else {
                of_fault.len().to_string()
            },
            row.acknowledged,
            row.delivered,
            row.lost,
            row.duplicated,
            row.feed_missing,
            e.server_errors,
            e.connection_errors,
            e.gave_up,
        ));
        if row.lost > 0 || row.duplicated > 0 || row.feed_missing > 0 {
            problems.push(format!(
                "{name}: {} lost, {} duplicated, {} missing from feeds",
                row.lost, row.duplicated, row.feed_missing
            ));
        }
        if e.gave_up > 0 || e.rejected > 0 {
            problems.push(format!(
                "{name}: clients gave up on {} post(s), {} rejected",
                e.gave_up, e.rejected
            ));
        }
        if of_fault.iter().any(|r| !r.resumed) {
            problems.push(format!("{name}: delivery did not resume for every author"));
        }
        if let Some(after_back) = longest_after_back.filter(|d| *d > options.max_stall) {
            problems.push(format!(
                "{name}: a post waited {} after the process was back",
                seconds(after_back)
            ));
        }
        let unseen: usize = waits.iter().map(|w| w.unseen).sum();
        if unseen > 0 {
            problems.push(format!(
                "{name}: {unseen} post(s) never reached a polling device"
            ));
        }
    }
    if rounds.len() != faults.len() * options.rounds as usize {
        problems.push("not every round ran".to_owned());
    }
    if problems.is_empty() {
        out.push_str("\nPASSED: nothing lost, nothing duplicated, no client gave up, every stall within the bound.\n");
    } else {
        passed = false;
        out.push_str("\nFAILED:\n");
        for problem in problems {
            out.push_str(&format!("- {problem}\n"));
        }
    }
    out.push_str(
        "\nlongest stall: the longest any post sent during a round (from the fault until the settle time after recovery) waited from its first \
         send to a polling device seeing it; after back: the same, counted from the moment the faulted process was back \
         (pid file renewed and /healthz answering; broker: port open; Postgres: restarted) for posts sent before. \
         5xx and refused/timed out: answers seen by the posting clients and polling devices.\n",
    );
    (out, passed)
}
