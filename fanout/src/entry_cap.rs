//! The per-user cap of sync timeline retention (`FANLINE_SYNC_RETENTION_ENTRIES`): a user with more
//! entries than the cap in sealed partitions loses the oldest, with their floor raised as a dropped
//! partition raises it ([`crate::retention`]), so their devices are told, never left with a gap.
//!
//! Counting all of a user's entries on every read or write would cost the hot path; instead each
//! partition is counted once, when it is sealed (one `GROUP BY` into `sync_counts`, in the transaction
//! that marks it counted), and entries are taken off the counts when they are trimmed here or their
//! partition is dropped. The open partition is not counted: a user may hold up to a partition's worth of
//! entries (a day, by default) over the cap until the next seal. Trimming runs only after a count, the
//! only time a count rises.

use sqlx::{Connection, PgConnection};

/// Counts the sealed partitions not counted yet and trims every user over `cap`. Returns (partitions
/// counted, entries removed).
pub(crate) async fn apply(conn: &mut PgConnection, cap: i64) -> Result<(u32, i64), sqlx::Error> {
    let counted = count_sealed(conn).await?;
    if counted == 0 {
        return Ok((0, 0));
    }
    let over: Vec<(String, i64)> = sqlx::query_as(
        "SELECT user_id, sealed_entries - $1 FROM sync_counts WHERE sealed_entries > $1",
    )
    .bind(cap)
    .fetch_all(&mut *conn)
    .await?;
    let mut removed = 0;
    for (user, excess) in over {
        removed += trim(conn, &user, excess).await?;
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

/// Removes `user`'s `excess` oldest entries, raising their floor (and feed cut) over them and taking
/// them off their count, in one statement. Returns the entries removed.
async fn trim(conn: &mut PgConnection, user: &str, excess: i64) -> Result<i64, sqlx::Error> {
    // The cut is MATERIALIZED: inlined, the planner ran it once per row (docs/retention-research.md).
    sqlx::query_scalar(
        "WITH cut AS MATERIALIZED (
             SELECT seq FROM sync_entries WHERE user_id = $1 ORDER BY seq OFFSET $2 - 1 LIMIT 1
         ), gone AS (
             DELETE FROM sync_entries s USING cut WHERE s.user_id = $1 AND s.seq <= cut.seq
             RETURNING s.seq, s.kind, s.post_id
         ), raised AS (
             INSERT INTO sync_floors (user_id, floor_seq, feed_below)
             SELECT $1, max(seq), max(post_id) FILTER (WHERE kind = 'post') || '0' FROM gone
             HAVING count(*) > 0
             ON CONFLICT (user_id) DO UPDATE
                 SET floor_seq = greatest(sync_floors.floor_seq, EXCLUDED.floor_seq),
                     feed_below = greatest(sync_floors.feed_below, EXCLUDED.feed_below)
         ), taken_off AS (
             UPDATE sync_counts SET sealed_entries = greatest(sealed_entries - (SELECT count(*) FROM gone), 0)
             WHERE user_id = $1
         )
         SELECT count(*) FROM gone",
    )
    .bind(user)
    .bind(excess)
    .fetch_one(conn)
    .await
}
