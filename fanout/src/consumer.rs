//! The live worker: a group consumer subscribed to the events topic, feeding the shared batching loop
//! ([`crate::batches`]) until shutdown.
//!
//! Crash recovery: a watchdog rejoins with a fresh consumer when this member owns nothing while the
//! group lags without progress (see [`crate::lag::GroupHealth`]): on tansu 0.6 a member that joins
//! before a crashed member's session expired can otherwise stay empty indefinitely. And a worker
//! joins a group that may hold a crashed member only after one session timeout (the crashed member has
//! expired by then), because on tansu 0.6 joining earlier strands the dead member's share of the
//! partitions ([`let_crashed_members_expire`]). Members are
//! dynamic by default, so a clean shutdown leaves the group and hands its partitions over at once;
//! `--instance-id` makes the first consumer a static member (faster restarts on Apache Kafka).
//!
//! Delivery is at-least-once: `enable.auto.offset.store=false`, and an offset is stored only after the
//! transaction holding its effect committed. librdkafka commits stored offsets every second, on partition
//! revocation and on close. Anything applied but not yet committed is redelivered after a crash or
//! rebalance, which the idempotent writes in [`crate::store`] absorb.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::{CommitMode, Consumer, ConsumerContext, Rebalance, StreamConsumer};
use rdkafka::error::{KafkaError, KafkaResult, RDKafkaErrorCode};
use rdkafka::{ClientContext, TopicPartitionList};
use tokio_util::sync::CancellationToken;

use crate::applier::Applier;
use crate::batches::{BatchLoop, Checkpoint};
use crate::config::Config;
use crate::lag::GroupHealth;

/// The broker declares a silent member dead after this. It is also how long the watchdog lets a member
/// own nothing while the group stalls before rejoining: a healthy rebalance completes well within it
/// (and rejoins that do not help back off).
pub const SESSION_TIMEOUT: Duration = Duration::from_secs(10);
const STUCK_GRACE: Duration = SESSION_TIMEOUT;
/// The longest a member waits between rejoins that did not help.
const MAX_STUCK_GRACE: Duration = Duration::from_secs(300);

/// Logs rebalances and commit failures, remembers that the group was joined (for `/readyz`) and which
/// partitions this member owns (for the watchdog).
pub struct FanoutContext {
    pub(crate) joined: Arc<AtomicBool>,
    pub(crate) assigned: prometheus::IntGauge,
    pub(crate) owned: Owned,
}

/// The partitions of the events topic this member owns.
pub(crate) type Owned = Arc<std::sync::Mutex<BTreeSet<i32>>>;

fn owned_set(owned: &Owned) -> std::sync::MutexGuard<'_, BTreeSet<i32>> {
    owned
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl ClientContext for FanoutContext {}

impl ConsumerContext for FanoutContext {
    fn pre_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // With auto-commit on, librdkafka commits the stored offsets of these partitions now.
            tracing::info!(partitions = %describe(tpl), "partitions revoked");
            self.assigned.sub(tpl.count() as i64);
            let mut owned = owned_set(&self.owned);
            for element in tpl.elements() {
                owned.remove(&element.partition());
            }
            // Ready again once the group assigns partitions (possibly none) after this rebalance.
            self.joined.store(false, Ordering::Release);
        }
    }

    fn post_rebalance(&self, _: &rdkafka::consumer::BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.joined.store(true, Ordering::Release);
                self.assigned.add(tpl.count() as i64);
                owned_set(&self.owned).extend(tpl.elements().iter().map(|e| e.partition()));
                tracing::info!(partitions = %describe(tpl), "partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(err) => tracing::warn!(error = %err, "rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => tracing::debug!(offsets = %describe(offsets), "offsets committed"),
            // Nothing stored since the last commit: not a failure.
            Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset)) => {}
            Err(err) => {
                tracing::warn!(error = %err, "offset commit failed; it is retried with the next commit")
            }
        }
    }
}

fn describe(tpl: &TopicPartitionList) -> String {
    tpl.elements()
        .iter()
        .map(|e| format!("{}[{}]", e.topic(), e.partition()))
        .collect::<Vec<_>>()
        .join(",")
}

pub type FanoutConsumer = StreamConsumer<FanoutContext>;

/// Creates the group consumer (not yet subscribed). With `--instance-id` the first consumer
/// of a process is a static member; a rejoin (`rejoins` > 0) is always dynamic: the broker could hand
/// a static identity its cached, empty assignment again, and tansu 0.6 evicts members whose session
/// expired only when a *dynamic* member joins (its JoinGroup skips that sweep for static ones).
pub fn create_consumer(
    config: &Config,
    kafka: &kafkakit::KafkaSettings,
    context: FanoutContext,
    rejoins: u32,
) -> Result<FanoutConsumer, KafkaError> {
    let mut client = kafka.client(
        "fanline-fanout",
        &[
            ("group.id", &config.group),
            ("enable.auto.commit", "true"),
            ("auto.commit.interval.ms", "1000"),
            ("enable.auto.offset.store", "false"),
            ("auto.offset.reset", "earliest"),
            ("enable.partition.eof", "false"),
            (
                "session.timeout.ms",
                &SESSION_TIMEOUT.as_millis().to_string(),
            ),
            ("heartbeat.interval.ms", "1000"),
            // librdkafka's default lets the broker hold a fetch for 500 ms; tansu 0.6 holds it that
            // long even when records arrive meanwhile, which put ~450 ms into every delivery
            // (fanline-realtime-bench: p50 480 ms → 170 ms). Kafka answers as soon as records are there,
            // so a short wait only costs a few more idle fetches. Overridable with --kafka-property.
            ("fetch.wait.max.ms", "20"),
        ],
    );
    if let (Some(instance_id), 0) = (&config.instance_id, rejoins) {
        // Static membership: a restarted worker with the same id gets its partitions back without
        // waiting for the dead member's session to expire.
        client.set("group.instance.id", instance_id);
    }
    // Not subscribed yet: the worker decides when to join ([`Worker::run`]).
    client.create_with_context(context)
}

/// Creates a fresh group consumer for the given number of earlier rejoins.
pub(crate) type Connect = Box<dyn Fn(u32) -> Result<FanoutConsumer, KafkaError> + Send + Sync>;

/// One fanout worker: owns the consumer's loop until cancelled.
pub struct Worker {
    pub(crate) consumer: Arc<FanoutConsumer>,
    pub(crate) connect: Connect,
    pub(crate) applier: Applier,
    pub(crate) batch_max_events: usize,
    pub(crate) batch_linger: Duration,
    pub(crate) health: Arc<GroupHealth>,
    pub(crate) joined: Arc<std::sync::atomic::AtomicBool>,
    pub(crate) assigned: prometheus::IntGauge,
    pub(crate) owned: Owned,
    pub(crate) topic: String,
    pub(crate) group: String,
    /// Whether the first consumer is a static member (`--instance-id`).
    pub(crate) static_member: bool,
    /// A client outside the group, to describe it before joining.
    pub(crate) observer: Arc<rdkafka::consumer::BaseConsumer>,
}

/// The live worker's checkpoint: store offsets for librdkafka's auto-commit; never finished.
struct StoreForAutoCommit;

impl Checkpoint<FanoutContext> for StoreForAutoCommit {
    fn applied(
        &mut self,
        consumer: &FanoutConsumer,
        next: &TopicPartitionList,
        _events: usize,
    ) -> Result<(), KafkaError> {
        if let Err(err) = consumer.store_offsets(next) {
            // The partition was revoked while the batch was applied: its new owner re-reads these
            // events from the last commit, and the idempotent writes make that harmless.
            tracing::info!(error = %err, "offsets not stored; partition no longer assigned");
        }
        Ok(())
    }
}

impl Worker {
    /// Consumes until `cancel` fires, then commits what was applied. Rejoins the group with a fresh
    /// consumer whenever the watchdog finds this member stuck.
    pub async fn run(self, cancel: CancellationToken) {
        let Worker {
            consumer,
            connect,
            applier,
            batch_max_events,
            batch_linger,
            health,
            joined,
            assigned,
            owned,
            topic,
            group,
            static_member,
            observer,
        } = self;
        // The only reference: `close` must really close it (LeaveGroup) before a rejoin.
        let mut consumer = consumer;
        let mut rejoins = 0;
        let mut grace = STUCK_GRACE;
        loop {
            let round = cancel.child_token();
            if rejoins == 0 && !static_member {
                let_crashed_members_expire(&observer, &group, &topic, &round).await;
            }
            if let Err(err) = consumer.subscribe(&[&topic]) {
                // Ends this round at once: the consumer is replaced (and the rejoins back off).
                tracing::error!(error = %err, "cannot subscribe to the events topic; retrying");
                round.cancel();
            }
            let watchdog = tokio::spawn(watch_for_stuck(
                health.clone(),
                owned.clone(),
                grace,
                round.clone(),
            ));
            let batches = BatchLoop {
                consumer: &consumer,
                applier: &applier,
                max_events: batch_max_events,
                linger: batch_linger,
            };
            // The live checkpoint never fails and never finishes: this returns on shutdown or rejoin.
            let _ = batches.run(&mut StoreForAutoCommit, &round).await;
            watchdog.abort();
            let owned_partitions_this_round = watchdog.await.unwrap_or(false);
            close(consumer).await;
            if cancel.is_cancelled() {
                break;
            }
            // Rejoins back off while they do not help (more members than partitions, a group stalled
            // for another reason), so that an idle member cannot keep the group rebalancing.
            grace = if owned_partitions_this_round {
                STUCK_GRACE
            } else {
                (grace * 2).min(MAX_STUCK_GRACE)
            };
            joined.store(false, Ordering::Release);
            assigned.set(0);
            owned_set(&owned).clear();
            health.reset();
            rejoins += 1;
            consumer = loop {
                match connect(rejoins) {
                    Ok(fresh) => break Arc::new(fresh),
                    Err(err) => {
                        tracing::error!(error = %err, "cannot create a consumer to rejoin; retrying");
                        tokio::select! {
                            () = cancel.cancelled() => {
                                applier.dead_letters.flush().await;
                                return;
                            }
                            () = tokio::time::sleep(Duration::from_secs(1)) => {}
                        }
                    }
                }
            };
            tracing::info!(
                next_grace_s = grace.as_secs(),
                "rejoined the consumer group with a fresh consumer"
            );
        }
        applier.dead_letters.flush().await;
    }
}

/// Waits one session timeout before the first join when the group may hold a crashed worker (this
/// process's predecessor) whose session has not expired yet. On tansu 0.6 a member that joins before
/// then is handed a share of the partitions *with* the dead member, and when the dead one expires its
/// share stays assigned to it (the coordinator drops the member but keeps the assignment) until the
/// next join: those partitions would stall. Joining after the expiry makes the coordinator sweep the
/// dead member first and assign everything to the live ones.
///
/// "May hold a crashed worker": the broker lists members for the group; or, when it cannot describe the
/// group (tansu 0.6 fails DescribeGroups), the group has committed offsets, i.e. has run before. A new
/// group (first start, every test's fresh group) is joined at once; so is a static member restarted
/// under its id, which takes its own place back (the caller skips this for static members).
async fn let_crashed_members_expire(
    observer: &Arc<rdkafka::consumer::BaseConsumer>,
    group: &str,
    topic: &str,
    cancel: &CancellationToken,
) {
    let probing = observer.clone();
    let group = group.to_owned();
    let topic = topic.to_owned();
    let reason = tokio::task::spawn_blocking(move || {
        match probing.fetch_group_list(Some(&group), Duration::from_secs(5)) {
            Ok(list) => {
                let members: usize = list
                    .groups()
                    .iter()
                    .filter(|g| g.name() == group)
                    .map(|g| g.members().len())
                    .sum();
                (members > 0).then(|| format!("the group lists {members} member(s)"))
            }
            Err(describe) => match crate::lag::measure(probing.as_ref(), &topic, Duration::from_secs(5)) {
                Ok(lags) if lags.iter().all(|lag| lag.committed.is_none()) => None,
                Ok(_) => Some(format!(
                    "the group has committed offsets and the broker cannot describe it ({describe})"
                )),
                Err(measure) => Some(format!(
                    "the broker can neither describe the group ({describe}) nor its offsets ({measure})"
                )),
            },
        }
    })
    .await
    .unwrap_or_else(|err| Some(format!("the group check failed ({err})")));
    let Some(reason) = reason else {
        return;
    };
    let wait = SESSION_TIMEOUT + Duration::from_secs(1);
    tracing::info!(
        reason,
        wait_s = wait.as_secs(),
        "a crashed member may still hold a session in the group; joining once it has expired"
    );
    tokio::select! {
        () = cancel.cancelled() => {}
        () = tokio::time::sleep(wait) => {}
    }
}

/// Cancels `round` once this member has owned nothing for `grace`, continuously, while other members'
/// partitions lagged without progress for as long ([`GroupHealth::stuck`]); returns whether the member
/// owned partitions at some point of the round. "Continuously" matters: every member owns nothing for
/// a moment during an eager rebalance. A member that owns partitions does not rejoin even when the
/// others stall: on tansu 0.6 a leader that leaves to rejoin leaves the group waiting for it forever
/// (SyncGroup answers "rebalance in progress"), which stops every partition instead of some.
async fn watch_for_stuck(
    health: Arc<GroupHealth>,
    owned: Owned,
    grace: Duration,
    round: CancellationToken,
) -> bool {
    let mut owned_some = false;
    let mut empty_since: Option<Instant> = None;
    loop {
        tokio::select! {
            () = round.cancelled() => return owned_some,
            () = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
        let now = Instant::now();
        if !owned_set(&owned).is_empty() {
            owned_some = true;
            empty_since = None;
            continue;
        }
        let since = *empty_since.get_or_insert(now);
        if now.duration_since(since) < grace {
            continue;
        }
        if let Some(lag) = health.stuck(&BTreeSet::new(), grace, now) {
            tracing::warn!(
                lag,
                grace_s = grace.as_secs(),
                "this member owns no partitions while the group lags without progress; rejoining"
            );
            round.cancel();
            return owned_some;
        }
    }
}

/// Commits what was applied and closes the consumer off the async runtime.
async fn close(consumer: Arc<FanoutConsumer>) {
    let committing = consumer.clone();
    let committed =
        tokio::task::spawn_blocking(move || committing.commit_consumer_state(CommitMode::Sync))
            .await;
    match committed {
        Ok(Ok(())) | Ok(Err(KafkaError::ConsumerCommit(RDKafkaErrorCode::NoOffset))) => {
            tracing::info!("offsets committed")
        }
        Ok(Err(err)) => {
            tracing::warn!(error = %err, "final commit failed; uncommitted events will be redelivered")
        }
        Err(err) => tracing::warn!(error = %err, "final commit task failed"),
    }
    // Dropping a consumer can block while it leaves the group; keep that off the async runtime.
    let _ = tokio::task::spawn_blocking(move || drop(consumer)).await;
}
