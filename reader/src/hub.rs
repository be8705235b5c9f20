//! Wake-ups for realtime readers: one `LISTEN fanline_sync` connection per reader process, fanned out
//! in memory to the connections (long polls, WebSockets, SSE streams) of the users it names.
//!
//! The notifications come from triggers on `sync_entries` and `conversations`
//! (`schemas/migrations/20261126000002_sync_notify.sql`), delivered by Postgres at commit: a woken
//! connection always finds what woke it. No connection ever polls the database on a timer.
//!
//! A wake-up says "look again": a connection reads its own page from its own cursor, so a missed or
//! doubled wake-up can only cost a query, never an entry. To spare most of those queries, the hub reads
//! the new entries of every notified user in **one** statement, from the highest seq a connection of
//! that user reported as caught up, and hands the page along with the wake-up ([`Batch`]); a connection
//! whose cursor is exactly the batch's start uses it, any other reads for itself. Notifications sent
//! while the listening connection was down are lost, so after every (re)connect everyone is woken.
//!
//! The same channel carries session ends (`s:<session id>`, see [`crate::session_ends`]).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use prometheus::{IntCounter, IntGauge, Registry};
use sqlx::postgres::PgListener;
use sqlx::PgPool;
use tokio::sync::watch;

/// The channel the triggers notify.
pub const CHANNEL: &str = schemas::db::SYNC_CHANNEL;

impl Wake {
    fn plain(&mut self) {
        self.count = self.count.wrapping_add(1);
        self.batch = None;
    }
}

/// Per-user wake-up senders, shared by the listener task and the connections.
pub struct Hub {
    users: Mutex<HashMap<String, Slot>>,
    /// The sessions of open connections, ended when a notification (or a sweep) says so.
    pub sessions: Arc<crate::session_ends::SessionEnds>,
    listening: AtomicBool,
    metrics: HubMetrics,
}

struct Slot {
    wake: watch::Sender<Wake>,
    subscribers: usize,
    /// The highest seq up to which some connection of this user has everything (reported by
    /// [`Hub::caught_up`], advanced by each batch): where the next batch starts.
    known_upto: Option<i64>,
}

/// What a wake-up carries: a counter, and maybe the page that woke it.
#[derive(Clone, Default)]
pub struct Wake {
    count: u64,
    batch: Option<Arc<Batch>>,
}

/// The user's entries with seq in (`after`, `last_seq`], all of them (no more followed then).
pub struct Batch {
    pub after: i64,
    pub last_seq: i64,
    pub entries: Vec<schemas::api::SyncEntry>,
}

/// Entries a batch reads per user; more, and connections read for themselves.
const BATCH_ENTRIES: i64 = 100;

#[derive(Clone)]
struct HubMetrics {
    subscribers: IntGauge,
    notifications: IntCounter,
    reconnects: IntCounter,
}

/// A connection's interest in one user's inbox; dropping it unsubscribes.
pub struct Subscription {
    hub: Arc<Hub>,
    user: String,
    wake: watch::Receiver<Wake>,
}

impl Subscription {
    /// Completes at the next wake-up after the last one seen (at once if one came since).
    pub async fn woken(&mut self) {
        if self.wake.changed().await.is_err() {
            // The sender lives as long as a subscription does; never reached, but never busy-loop.
            std::future::pending::<()>().await;
        }
    }

    /// The page the latest wake-up brought, if it brought one.
    pub fn batch(&self) -> Option<Arc<Batch>> {
        self.wake.borrow().batch.clone()
    }
}

impl Drop for Subscription {
    fn drop(&mut self) {
        self.hub.unsubscribe(&self.user);
    }
}

impl Hub {
    pub fn new(registry: &Registry) -> Result<Arc<Hub>, prometheus::Error> {
        let subscribers = IntGauge::new(
            "fanline_reader_realtime_subscriptions",
            "Open realtime subscriptions (long polls, WebSockets, SSE streams).",
        )?;
        let notifications = IntCounter::new(
            "fanline_reader_notifications_total",
            "Notifications received on the fanline_sync channel.",
        )?;
        let reconnects = IntCounter::new(
            "fanline_reader_listener_connects_total",
            "Times the LISTEN connection was (re)established; every one wakes every subscriber.",
        )?;
        registry.register(Box::new(subscribers.clone()))?;
        registry.register(Box::new(notifications.clone()))?;
        registry.register(Box::new(reconnects.clone()))?;
        Ok(Arc::new(Hub {
            users: Mutex::new(HashMap::new()),
            sessions: Arc::default(),
            listening: AtomicBool::new(false),
            metrics: HubMetrics {
                subscribers,
                notifications,
                reconnects,
            },
        }))
    }

    pub fn subscribe(self: &Arc<Self>, user: &str) -> Subscription {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        let slot = users.entry(user.to_owned()).or_insert_with(|| Slot {
            wake: watch::channel(Wake::default()).0,
            subscribers: 0,
            known_upto: None,
        });
        slot.subscribers += 1;
        self.metrics.subscribers.inc();
        Subscription {
            hub: self.clone(),
            user: user.to_owned(),
            wake: slot.wake.subscribe(),
        }
    }

    fn unsubscribe(&self, user: &str) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = users.get_mut(user) {
            slot.subscribers -= 1;
            if slot.subscribers == 0 {
                users.remove(user);
            }
        }
        self.metrics.subscribers.dec();
    }

    fn wake(&self, user: &str) {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = users.get(user) {
            slot.wake.send_modify(Wake::plain);
        }
    }

    fn wake_all(&self) {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        for slot in users.values() {
            slot.wake.send_modify(Wake::plain);
        }
    }

    /// A connection of `user` has every entry up to `seq`: batches for the user may start there.
    pub fn caught_up(&self, user: &str, seq: i64) {
        let mut users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(slot) = users.get_mut(user) {
            slot.known_upto = Some(slot.known_upto.map_or(seq, |known| known.max(seq)));
        }
    }

    /// Reads the new entries of the notified users in one statement and wakes each with its page;
    /// users without a known start, or whose page is not the whole story, get a plain wake-up.
    async fn wake_with_batches(&self, pool: &PgPool, notified: &[&str]) {
        let (mut users, mut cursors) = (Vec::new(), Vec::new());
        {
            let slots = self.users.lock().unwrap_or_else(PoisonError::into_inner);
            for user in notified {
                if let Some(slot) = slots.get(*user) {
                    match slot.known_upto {
                        Some(known) => {
                            users.push((*user).to_owned());
                            cursors.push(known);
                        }
                        None => slot.wake.send_modify(Wake::plain),
                    }
                }
            }
        }
        if users.is_empty() {
            return;
        }
        let scans = match crate::queries::sync_batch(pool, &users, &cursors, BATCH_ENTRIES).await {
            Ok(scans) => scans,
            Err(err) => {
                tracing::warn!(error = %err, "batch read failed; connections read for themselves");
                users.iter().for_each(|user| self.wake(user));
                return;
            }
        };
        let after: HashMap<&str, i64> = users
            .iter()
            .map(String::as_str)
            .zip(cursors.iter().copied())
            .collect();
        let mut slots = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        for found in scans {
            let Some(slot) = slots.get_mut(&found.user) else {
                continue;
            };
            let (Some(&start), Some(last_seq)) =
                (after.get(found.user.as_str()), found.scan.last_scanned_seq)
            else {
                continue;
            };
            if found.scan.has_more || found.large_group_advanced {
                slot.wake.send_modify(Wake::plain);
                continue;
            }
            slot.known_upto = Some(
                slot.known_upto
                    .map_or(last_seq, |known| known.max(last_seq)),
            );
            let batch = Arc::new(Batch {
                after: start,
                last_seq,
                entries: found.scan.entries,
            });
            slot.wake.send_modify(|wake| {
                wake.count = wake.count.wrapping_add(1);
                wake.batch = Some(batch);
            });
        }
    }

    fn subscribed_users(&self) -> Vec<String> {
        let users = self.users.lock().unwrap_or_else(PoisonError::into_inner);
        users.keys().cloned().collect()
    }

    /// Handles one notification payload: user ids wake those users; large groups' conversation ids
    /// wake their subscribed active members (one query for all the groups of the payload).
    async fn dispatch(&self, pool: &PgPool, payload: &str) {
        self.metrics.notifications.inc();
        let mut groups: Vec<&str> = Vec::new();
        let mut notified: Vec<&str> = Vec::new();
        for item in payload.split(',') {
            if let Some(group) = item.strip_prefix("g:") {
                groups.push(group);
            } else if let Some(session) = item.strip_prefix(schemas::db::SESSION_ENDED_PREFIX) {
                self.sessions.end(session);
            } else {
                notified.push(item);
            }
        }
        self.wake_with_batches(pool, &notified).await;
        if groups.is_empty() {
            return;
        }
        let subscribed = self.subscribed_users();
        if subscribed.is_empty() {
            return;
        }
        let members: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT DISTINCT user_id FROM group_members
             WHERE group_id = ANY($1) AND active AND user_id = ANY($2)",
        )
        .bind(&groups)
        .bind(&subscribed)
        .fetch_all(pool)
        .await;
        match members {
            Ok(members) => members.iter().for_each(|user| self.wake(user)),
            // Not knowing who is a member, wake everyone: a spare query beats a miss.
            Err(_) => self.wake_all(),
        }
    }

    /// Whether the LISTEN connection is up (readiness: without it nothing realtime is woken).
    pub fn listening(&self) -> bool {
        self.listening.load(Ordering::Acquire)
    }

    /// Listens until the process ends, reconnecting after any failure (and then waking everyone).
    pub async fn run_listener(self: Arc<Self>, pool: PgPool) {
        let mut backoff = Duration::from_millis(200);
        loop {
            let mut listener = match PgListener::connect_with(&pool).await {
                Ok(listener) => listener,
                Err(err) => {
                    tracing::warn!(error = %err, "cannot open the LISTEN connection; retrying");
                    tokio::time::sleep(backoff).await;
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                    continue;
                }
            };
            if let Err(err) = listener.listen(CHANNEL).await {
                tracing::warn!(error = %err, "LISTEN failed; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
            backoff = Duration::from_millis(200);
            self.listening.store(true, Ordering::Release);
            self.metrics.reconnects.inc();
            tracing::info!(channel = CHANNEL, "listening for sync wake-ups");
            self.wake_all();
            self.sessions.sweep(&pool).await;
            loop {
                match listener.try_recv().await {
                    Ok(Some(notification)) => {
                        // Everything already received goes into one dispatch (one batch read): a
                        // fan-out of many users arrives as several notifications at once.
                        let mut payload = notification.payload().to_owned();
                        while let Some(more) = listener.next_buffered() {
                            payload.push(',');
                            payload.push_str(more.payload());
                        }
                        self.dispatch(&pool, &payload).await
                    }
                    // The connection was lost and re-established: what was sent meanwhile is lost.
                    Ok(None) => {
                        self.metrics.reconnects.inc();
                        self.wake_all();
                        self.sessions.sweep(&pool).await;
                    }
                    Err(err) => {
                        self.listening.store(false, Ordering::Release);
                        tracing::warn!(error = %err, "LISTEN connection failed; reconnecting");
                        tokio::time::sleep(backoff).await;
                        break;
                    }
                }
            }
        }
    }
}
