//! The per-user cap of sync timeline retention (`FANLINE_SYNC_RETENTION_ENTRIES`): a user with more
//! entries than the cap in sealed partitions loses the oldest, with their floor raised as a dropped
//! partition raises it ([`crate::retention`]), so their devices are told, never left with a gap.
//!
//! Counting all of a user's entries on every read or write would cost the hot path; instead each
//! partition is counted once, when it is sealed (one `GROUP BY` into `sync_counts`, in the transaction
//! that marks it counted), and entries are taken off the counts when they are trimmed here or their
//! partition is dropped. The open partition is not counted: a user may hold up to a partition's worth of
//! entries (a day, by default) over the cap until the next seal. Counts can drift (an unfollow takes
//! posts out of an inbox without telling them): a user found over the cap is counted exactly before
//! anything is removed, so drift costs a recount, never an entry.

use sqlx::{Connection, PgConnection};

use crate::floors::{FEED_CUT, FLOORS_ONLY_RISE};

/// Counts the sealed partitions not counted yet and trims every user over `cap`. Returns (partitions
/// counted, entries removed). Users over the cap are looked for at every run (one scan of
/// `sync_counts`), so a trim cut short by a crash or an outage resumes at the next run.
pub(crate) async fn apply(conn: &mut PgConnection, cap: i64) -> Result<(u32, i64), sqlx::Error> {
    let counted = count_sealed(conn).await?;
    // Entries below this seq are in counted partitions.
    let (below,): (Option<i64>,) =
        sqlx::query_as("SELECT max(hi) FROM sync_partitions WHERE counted AND NOT dropping")
            .fetch_one(&mut *conn)
            .await?;
    let Some(below) = below else {
        return Ok((counted, 0));
    };
    let over: Vec<String> =
        sqlx::query_scalar("SELECT user_id FROM sync_counts WHERE sealed_entries > $1")
            .bind(cap)
            .fetch_all(&mut *conn)
            .await?;
    let mut removed = 0;
    for user in over {
        removed += trim(conn, &user, cap, below).await?;
    }
    Ok((counted, removed))
}

/// Adds each sealed, uncounted partition's entries to its users' counts, one partition per transaction.
async fn count_sealed(conn: &mut PgConnection) -> Result<u32, sqlx::Error> {
    let names: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sync_partitions
         WHERE sealed_at IS NOT NULL AND NOT counted AND NOT dropping ORDER BY hi",
    )
    .fetch_all(&mut *conn)
    .await?;
    for name in &names {
        let mut tx = conn.begin().await?;
        sqlx::query(&format!(
            "INSERT INTO sync_counts (user_id, sealed_entries)
             SELECT user_id, count(*) FROM {name} GROUP BY user_id
             ON CONFLICT (user_id) DO UPDATE
                 SET sealed_entries = sync_counts.sealed_entries + EXCLUDED.sealed_entries"
        ))
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sync_partitions SET counted = true WHERE name = $1")
            .bind(name)
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
    }
    Ok(names.len() as u32)
}

/// Counts `user`'s entries below `below` exactly (a count can drift: an unfollow takes posts out of an
/// inbox without telling the counts) and, if they are over `cap`, removes the oldest beyond it, raising
/// their floor (and feed cut) over them in the same statement. Returns the entries removed.
async fn trim(
    conn: &mut PgConnection,
    user: &str,
    cap: i64,
    below: i64,
) -> Result<i64, sqlx::Error> {
    let mut tx = conn.begin().await?;
    let (exact,): (i64,) =
        sqlx::query_as("SELECT count(*) FROM sync_entries WHERE user_id = $1 AND seq < $2")
            .bind(user)
            .bind(below)
            .fetch_one(&mut *tx)
            .await?;
    let mut removed = 0;
    if exact > cap {
        // The cut is MATERIALIZED: inlined, the planner ran it once per row
        // (docs/retention-research.md).
        removed = sqlx::query_scalar(&format!(
            "WITH cut AS MATERIALIZED (
                 SELECT seq FROM sync_entries WHERE user_id = $1 AND seq < $3
                 ORDER BY seq OFFSET $2 - 1 LIMIT 1
             ), gone AS (
                 DELETE FROM sync_entries s USING cut WHERE s.user_id = $1 AND s.seq <= cut.seq
                 RETURNING s.seq, s.kind, s.post_id
             ), raised AS (
                 INSERT INTO sync_floors (user_id, floor_seq, feed_below)
                 SELECT $1, max(seq), {FEED_CUT} FROM gone HAVING count(*) > 0
                 {FLOORS_ONLY_RISE}
             )
             SELECT count(*) FROM gone",
        ))
        .bind(user)
        .bind(exact - cap)
        .bind(below)
        .fetch_one(&mut *tx)
        .await?;
    }
    sqlx::query("UPDATE sync_counts SET sealed_entries = $2 WHERE user_id = $1")
        .bind(user)
        .bind(exact - removed)
        .execute(&mut *tx)
        .await?;
    tx.commit().await?;
    Ok(removed)
}
