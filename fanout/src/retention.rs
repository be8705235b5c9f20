//! Sync timeline retention: `sync_entries` is partitioned by seq range (migration
//! 20261211000001), and this task, run by every worker (one at a time: an advisory lock elects it),
//! keeps the partitions:
//! - **ahead**: a partition beyond the open one always exists, so a fan-out never draws a seq that fits
//!   none (were one missing, the insert is retried until it exists, [`schemas::db::classify`]);
//! - **sealed**: the open partition is sealed when full, or after a slice of time (a day), by moving
//!   `sync_seq` to the next partition under the seq lock — so every partition spans a bounded time;
//! - **dropped**: a partition sealed longer ago than the retention age holds only older entries. Before
//!   it goes, each of its users' highest seq is recorded in `sync_floors` (and the highest post id, below
//!   which the home feed now reads the authors' store timelines), committed before the rows disappear:
//!   a reader sees either the entries or the floor, never neither. Then `DETACH … CONCURRENTLY` (no lock
//!   that stops reads or fan-outs) and `DROP`. Each step can be repeated, so a crash anywhere heals on
//!   the next run (a detach left pending is finalised).
//!
//! Why not an event: removing old entries is a function of time and policy over the table, like Kafka's
//! own retention; what a user sees of their data comes from histories and store timelines, which it does
//! not touch. A rebuild from the log stores entries anew and they age from then.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use prometheus::{IntCounter, IntGauge};
use sqlx::{Connection, PgConnection, PgPool, Postgres, Transaction};
use tokio_util::sync::CancellationToken;

use crate::floors::{FEED_CUT, FLOORS_ONLY_RISE};
use crate::seq_lock::SeqLock;

/// Key of the session-level advisory lock held by the worker that keeps the partitions ("FANLRETN").
const RETENTION_LOCK: i64 = 0x4641_4e4c_5245_544e;
/// How long a partition change may wait for its lock before the run gives up (and the next one tries).
const LOCK_TIMEOUT: &str = "5s";

/// What the task keeps and removes.
#[derive(Debug, Clone)]
pub struct RetentionSettings {
    /// Entries older than this are removed; `None`: kept forever (partitions are still kept ahead).
    pub age: Option<TimeDelta>,
    /// At most this many entries per user in sealed partitions; `None`: no cap.
    pub cap: Option<i64>,
    /// The open partition is sealed after this long.
    pub slice: TimeDelta,
    /// Seqs per partition.
    pub span: i64,
    /// Time between runs.
    pub every: Duration,
}

/// The task's metrics (`fanline_fanout_sync_retention_*`).
#[derive(Clone)]
pub struct RetentionMetrics {
    pub removed_rows: IntCounter,
    pub dropped_partitions: IntCounter,
    pub failed_runs: IntCounter,
    /// The configured retention in seconds (0: forever), for the alert that compares the oldest
    /// partition with it.
    pub retention_seconds: IntGauge,
    /// When the oldest live partition was opened (Unix seconds): how far back sync timelines reach.
    pub oldest_opened: IntGauge,
}

/// What one run did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct RunReport {
    /// False when another worker held the lock (this run did nothing).
    pub elected: bool,
    pub created: u32,
    pub sealed: u32,
    pub dropped: u32,
    /// Sealed partitions whose entries were counted for the cap.
    pub counted: u32,
    pub removed_rows: i64,
    pub floored_users: i64,
    /// Time spent recording floors, and detaching and dropping.
    pub floor_time: Duration,
    pub drop_time: Duration,
}

/// One partition as `sync_partitions` records it.
#[derive(Debug, Clone, sqlx::FromRow)]
struct Partition {
    name: String,
    lo: Option<i64>,
    hi: i64,
    opened_at: DateTime<Utc>,
}

/// Keeps `sync_entries`' partitions.
pub struct Retention {
    pub pool: PgPool,
    pub settings: RetentionSettings,
    pub metrics: Option<RetentionMetrics>,
}

impl Retention {
    /// Runs every `settings.every` until `cancel`; the first run at once.
    pub async fn run(self, cancel: CancellationToken) {
        if let Some(metrics) = &self.metrics {
            let age = self.settings.age.map_or(0, |age| age.num_seconds());
            metrics.retention_seconds.set(age);
        }
        let mut ticker = tokio::time::interval(self.settings.every);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = ticker.tick() => {}
            }
            match self.run_once(Utc::now()).await {
                Ok(report) if report.dropped > 0 || report.sealed > 0 => {
                    tracing::info!(?report, "sync partitions kept")
                }
                Ok(_) => {}
                Err(err) => {
                    if let Some(metrics) = &self.metrics {
                        metrics.failed_runs.inc();
                    }
                    tracing::warn!(error = %err, "sync retention run failed; retrying later")
                }
            }
        }
    }

    /// One run at time `now` (tests pass a later one), if no other worker is running one.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<RunReport, sqlx::Error> {
        // A connection of its own, closed at the end (or dropped with this future): the session lock
        // never stays behind on a pooled connection, and `DETACH … CONCURRENTLY` needs a session
        // outside any transaction.
        let mut conn = self.pool.acquire().await?.detach();
        sqlx::query(&format!("SET lock_timeout = '{LOCK_TIMEOUT}'"))
            .execute(&mut conn)
            .await?;
        let (elected,): (bool,) = sqlx::query_as("SELECT pg_try_advisory_lock($1)")
            .bind(RETENTION_LOCK)
            .fetch_one(&mut conn)
            .await?;
        let mut report = RunReport {
            elected,
            ..RunReport::default()
        };
        if elected {
            self.keep(&mut conn, now, &mut report).await?;
        }
        conn.close().await?;
        Ok(report)
    }

    async fn keep(
        &self,
        conn: &mut PgConnection,
        now: DateTime<Utc>,
        report: &mut RunReport,
    ) -> Result<(), sqlx::Error> {
        report.sealed += seal_full(conn, now).await?;
        let next = next_seq(conn).await?;
        report.created += ensure_ahead(conn, next, self.settings.span, now).await?;
        if seal_by_time(conn, now - self.settings.slice, now).await? {
            report.sealed += 1;
            let next = next_seq(conn).await?;
            report.created += ensure_ahead(conn, next, self.settings.span, now).await?;
        }
        if let Some(cap) = self.settings.cap {
            let (counted, trimmed) = crate::entry_cap::apply(conn, cap).await?;
            report.counted += counted;
            report.removed_rows += trimmed;
            if let Some(metrics) = &self.metrics {
                metrics.removed_rows.inc_by(trimmed.max(0) as u64);
            }
        }
        if let Some(age) = self.settings.age {
            for partition in expired(conn, now - age).await? {
                let (rows, users) = remove(conn, &partition.name, report).await?;
                report.dropped += 1;
                report.removed_rows += rows;
                report.floored_users += users;
                if let Some(metrics) = &self.metrics {
                    metrics.removed_rows.inc_by(rows.max(0) as u64);
                    metrics.dropped_partitions.inc();
                }
            }
        }
        if let Some(metrics) = &self.metrics {
            let oldest: Option<(DateTime<Utc>,)> =
                sqlx::query_as("SELECT min(opened_at) FROM sync_partitions")
                    .fetch_optional(&mut *conn)
                    .await?;
            if let Some((oldest,)) = oldest {
                metrics.oldest_opened.set(oldest.timestamp());
            }
        }
        Ok(())
    }
}

/// The seq the next fan-out will draw.
async fn next_seq(conn: &mut PgConnection) -> Result<i64, sqlx::Error> {
    let (next,): (i64,) = sqlx::query_as(
        "SELECT CASE WHEN is_called THEN last_value + 1 ELSE last_value END FROM sync_seq",
    )
    .fetch_one(conn)
    .await?;
    Ok(next)
}

/// Takes the seq lock in `tx` (fan-outs draw no seq until it commits; every one that drew before has
/// committed) and reads the seq the next fan-out will draw.
async fn next_seq_locked(tx: &mut Transaction<'_, Postgres>) -> Result<i64, sqlx::Error> {
    SeqLock::default().acquire(tx).await?;
    next_seq(tx).await
}

/// Seals the open partitions the sequence has passed; the next one is opened now. Under the seq lock,
/// with the sequence read there: every fan-out that drew a seq below it has committed, so a count of
/// the sealed partition ([`crate::entry_cap`]) sees all its rows.
async fn seal_full(conn: &mut PgConnection, now: DateTime<Utc>) -> Result<u32, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let next = next_seq_locked(&mut tx).await?;
    let sealed = sqlx::query(
        "UPDATE sync_partitions SET sealed_at = $2 WHERE sealed_at IS NULL AND hi <= $1",
    )
    .bind(next)
    .bind(now)
    .execute(&mut *tx)
    .await?
    .rows_affected();
    if sealed > 0 {
        open_from(&mut tx, next, now).await?;
    }
    tx.commit().await?;
    Ok(sealed as u32)
}

/// Marks the partition holding `seq` as opened at `now`.
async fn open_from(
    conn: &mut PgConnection,
    seq: i64,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE sync_partitions SET opened_at = $2
         WHERE sealed_at IS NULL AND coalesce(lo, $1) <= $1 AND $1 < hi",
    )
    .bind(seq)
    .bind(now)
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates the partition for `next` if none holds it (the task was not running while fan-outs drew
/// seqs), and one after the open partition; returns how many it created.
async fn ensure_ahead(
    conn: &mut PgConnection,
    next: i64,
    span: i64,
    now: DateTime<Utc>,
) -> Result<u32, sqlx::Error> {
    let (holding, top): (bool, Option<i64>) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM sync_partitions WHERE coalesce(lo, $1) <= $1 AND $1 < hi),
                (SELECT max(hi) FROM sync_partitions)",
    )
    .bind(next)
    .fetch_one(&mut *conn)
    .await?;
    let mut created = 0;
    let mut lo = top.unwrap_or(next);
    if !holding {
        // Seqs below `next` that fit nowhere were drawn by inserts that failed: nothing lost.
        lo = lo.max(next);
        create(conn, lo, lo + span, now).await?;
        lo += span;
        created += 1;
    }
    // The partition after the one holding `next`.
    let (ahead,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM sync_partitions WHERE coalesce(lo, $1) > $1")
            .bind(next)
            .fetch_one(&mut *conn)
            .await?;
    if ahead == 0 {
        create(conn, lo, lo + span, now).await?;
        created += 1;
    }
    Ok(created)
}

/// Creates and attaches the partition `[lo, hi)`. Created apart and attached (a lock that lets reads
/// and inserts go on) rather than `CREATE TABLE … PARTITION OF` (a lock that stops them).
async fn create(
    conn: &mut PgConnection,
    lo: i64,
    hi: i64,
    now: DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    let name = format!("sync_entries_{lo:019}");
    let mut tx = conn.begin().await?;
    sqlx::query(&format!(
        "CREATE TABLE {name} (LIKE sync_entries INCLUDING DEFAULTS INCLUDING CONSTRAINTS)"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query(&format!(
        "ALTER TABLE sync_entries ATTACH PARTITION {name} FOR VALUES FROM ({lo}) TO ({hi})"
    ))
    .execute(&mut *tx)
    .await?;
    sqlx::query("INSERT INTO sync_partitions (name, lo, hi, opened_at) VALUES ($1, $2, $3, $4)")
        .bind(&name)
        .bind(lo)
        .bind(hi)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await
}

/// Seals the open partition if it was opened before `before` and holds seqs: the sequence moves to the
/// next partition under the seq lock (no fan-out is drawing meanwhile). Returns whether it sealed.
async fn seal_by_time(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<bool, sqlx::Error> {
    let mut tx = conn.begin().await?;
    // The sequence only moves forward from here, to the open partition's end.
    let now_next = next_seq_locked(&mut tx).await?;
    let open: Option<Partition> = sqlx::query_as(
        "SELECT name, lo, hi, opened_at FROM sync_partitions
         WHERE sealed_at IS NULL AND coalesce(lo, $1) <= $1 AND $1 < hi",
    )
    .bind(now_next)
    .fetch_optional(&mut *tx)
    .await?;
    let Some(open) = open.filter(|open| open.opened_at < before) else {
        return Ok(false);
    };
    // The sequence may have crossed into the partition ahead since this run looked: a full partition
    // is still unsealed (the next run's `seal_full` opens the new one now), and one must wait beyond
    // this one, or the sequence would point past every partition.
    let (full_unsealed, ahead): (bool, bool) = sqlx::query_as(
        "SELECT EXISTS (SELECT 1 FROM sync_partitions WHERE sealed_at IS NULL AND hi <= $1),
                EXISTS (SELECT 1 FROM sync_partitions WHERE lo = $2)",
    )
    .bind(now_next)
    .bind(open.hi)
    .fetch_one(&mut *tx)
    .await?;
    if full_unsealed || !ahead {
        return Ok(false);
    }
    if open.lo.is_some_and(|lo| now_next == lo) {
        // Nothing drawn in it yet: it starts now.
        sqlx::query("UPDATE sync_partitions SET opened_at = $2 WHERE name = $1")
            .bind(&open.name)
            .bind(now)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        return Ok(false);
    }
    sqlx::query("SELECT setval('sync_seq', $1)")
        .bind(open.hi - 1)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sync_partitions SET sealed_at = $2 WHERE name = $1")
        .bind(&open.name)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    sqlx::query("UPDATE sync_partitions SET opened_at = $2 WHERE sealed_at IS NULL AND lo = $1")
        .bind(open.hi)
        .bind(now)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(true)
}

/// Sealed partitions whose entries are all older than `before`, oldest first.
async fn expired(
    conn: &mut PgConnection,
    before: DateTime<Utc>,
) -> Result<Vec<Partition>, sqlx::Error> {
    sqlx::query_as(
        "SELECT name, lo, hi, opened_at FROM sync_partitions
         WHERE sealed_at < $1 ORDER BY hi",
    )
    .bind(before)
    .fetch_all(conn)
    .await
}

/// Records the floors of a partition's users, then detaches and drops it. Returns (rows removed, users
/// whose floor it set). Each step may run again after a crash: floors only rise, a pending detach is
/// finalised, a missing table is already dropped.
async fn remove(
    conn: &mut PgConnection,
    name: &str,
    report: &mut RunReport,
) -> Result<(i64, i64), sqlx::Error> {
    let (exists, attached, pending): (bool, bool, bool) = sqlx::query_as(
        "SELECT to_regclass($1) IS NOT NULL,
                EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1)),
                EXISTS (SELECT 1 FROM pg_inherits WHERE inhrelid = to_regclass($1) AND inhdetachpending)",
    )
    .bind(name)
    .fetch_one(&mut *conn)
    .await?;
    let mut counted = (0, 0);
    if exists {
        let started = std::time::Instant::now();
        counted = record_floors(conn, name).await?;
        report.floor_time += started.elapsed();
        let started = std::time::Instant::now();
        if pending {
            sqlx::query(&format!(
                "ALTER TABLE sync_entries DETACH PARTITION {name} FINALIZE"
            ))
            .execute(&mut *conn)
            .await?;
        } else if attached {
            sqlx::query(&format!(
                "ALTER TABLE sync_entries DETACH PARTITION {name} CONCURRENTLY"
            ))
            .execute(&mut *conn)
            .await?;
        }
        sqlx::query(&format!("DROP TABLE {name}"))
            .execute(&mut *conn)
            .await?;
        report.drop_time += started.elapsed();
    }
    sqlx::query("DELETE FROM sync_partitions WHERE name = $1")
        .bind(name)
        .execute(&mut *conn)
        .await?;
    Ok(counted)
}

/// Raises the floor of every user with entries in partition `name` to the highest of their seqs there,
/// and their feed's cut above the highest post id there; takes the partition's entries off the users'
/// counts ([`crate::entry_cap`]) if they were counted, and marks it `dropping` — one transaction, so a
/// run after a crash raises floors again (they only rise) but never takes counts off twice. Returns
/// (rows, users).
async fn record_floors(conn: &mut PgConnection, name: &str) -> Result<(i64, i64), sqlx::Error> {
    sqlx::query_as(&format!(
        "WITH part AS (
             SELECT counted AND NOT dropping AS take_off FROM sync_partitions WHERE name = $1
         ), per_user AS (
             SELECT user_id, max(seq) AS floor_seq, {FEED_CUT} AS feed_below, count(*) AS rows
             FROM {name} GROUP BY user_id
         ), raised AS (
             INSERT INTO sync_floors (user_id, floor_seq, feed_below)
             SELECT user_id, floor_seq, feed_below FROM per_user
             {FLOORS_ONLY_RISE}
         ), taken_off AS (
             UPDATE sync_counts c SET sealed_entries = greatest(c.sealed_entries - p.rows, 0)
             FROM per_user p
             WHERE c.user_id = p.user_id AND (SELECT take_off FROM part)
         ), marked AS (
             UPDATE sync_partitions SET dropping = true WHERE name = $1
         )
         SELECT coalesce(sum(rows), 0)::bigint, count(*) FROM per_user"
    ))
    .bind(name)
    .fetch_one(conn)
    .await
}
