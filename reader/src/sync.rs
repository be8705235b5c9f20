//! Sync timeline scanning: one page of a user's sync timeline after a seq, for `/sync`, its long
//! poll, the WebSocket and the SSE stream — or, for a cursor below the user's retention floor, the
//! reset every one of them passes on.

use httpkit::ApiError;
use schemas::api::{AdvancedConversation, SyncPage};
use sqlx::PgPool;

use crate::db::ReadPool;
use crate::failure::{database_error, read_error};
use crate::queries;

/// One page of a user's sync timeline after `after`: the entries, and the large groups that advanced
/// within the scanned range. Shared by `/sync`, the long poll, the WebSocket and the SSE stream.
///
/// `snapshots` runs the two-statement snapshot (only when one of the user's large groups advanced after
/// the cursor): a transaction needs a connection of its own, which the shared page connections are not.
pub(crate) async fn sync_page(
    reads: &ReadPool,
    snapshots: &PgPool,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<SyncPage, ApiError> {
    // Most users have no large group that advanced: then one statement is the whole page.
    let flagged = queries::sync_flagged(reads, user, after, limit)
        .await
        .map_err(read_error)?;
    // Retention removed entries after the cursor (the floor is the highest seq it removed, so `after`
    // below it means the device never saw one of them): tell it, never skip silently. The floor and
    // the entries come from one snapshot, and floors commit before their rows go.
    if let Some(floor) = flagged.floor_seq.filter(|floor| after < *floor) {
        return Ok(SyncPage::reset(floor));
    }
    let scan = flagged.scan;
    if !flagged.large_group_advanced {
        return Ok(SyncPage {
            last_seq: scan.last_scanned_seq.unwrap_or(after),
            entries: scan.entries,
            conversations: Vec::new(),
            has_more: scan.has_more,
            reset: false,
            floor_seq: None,
        });
    }
    let user = user.to_owned();
    // In a task of its own, to completion: a request that goes away must not cancel the transaction
    // halfway (a cancelled `BEGIN` leaves the pooled connection inside a transaction; seen under wrk).
    let pool = snapshots.clone();
    let (scan, conversations, floor) =
        tokio::spawn(async move { snapshot_scan(&pool, &user, after, limit).await })
            .await
            .map_err(|err| {
                tracing::error!(error = %err, "snapshot read task failed");
                ApiError::internal()
            })?
            .map_err(database_error)?;
    // Again in this snapshot: retention may have moved the floor since the first statement.
    if let Some(floor) = floor.filter(|floor| after < *floor) {
        return Ok(SyncPage::reset(floor));
    }
    let last_position = conversations.iter().map(|c| c.position).max();
    let last_seq = scan
        .last_scanned_seq
        .into_iter()
        .chain(last_position)
        .max()
        .unwrap_or(after);
    Ok(SyncPage {
        entries: scan.entries,
        conversations,
        last_seq,
        has_more: scan.has_more,
        reset: false,
        floor_seq: None,
    })
}

/// The scan, the large groups that advanced in its range and the user's floor, from one snapshot: a
/// large group's position read after an entry committed that the scan did not see would move the
/// cursor past that entry.
async fn snapshot_scan(
    pool: &PgPool,
    user: &str,
    after: i64,
    limit: i64,
) -> Result<(queries::SyncScan, Vec<AdvancedConversation>, Option<i64>), sqlx::Error> {
    let mut snapshot = pool
        .begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .await?;
    let scan = queries::sync(&mut *snapshot, user, after, limit).await?;
    // Large groups advanced within the scanned range; without more entries, up to now.
    let upto = if scan.has_more {
        scan.last_scanned_seq
    } else {
        None
    };
    let conversations = queries::advanced_conversations(&mut *snapshot, user, after, upto).await?;
    // After the scan, whose lock on the partitions makes a detach wait for this transaction: the
    // entries are still here, or the floor committed before the snapshot (read first, the floor could
    // predate a floor, detach and drop that all land before the scan's lock).
    let floor = queries::sync_floor(&mut *snapshot, user).await?;
    snapshot.commit().await?;
    Ok((scan, conversations, floor))
}
