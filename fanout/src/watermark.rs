//! One effect per IM event: the `applied_positions` watermark, the Kafka position of the last IM event
//! applied per event key (a conversation, or a user for accounts and profiles; all of a key's events
//! share a partition, where offsets order them).
//!
//! An event at or below its key's watermark was handled when it was new, whatever came of it: it is
//! skipped, so a refused event stays refused on a replay even where the state it met has changed since
//! (a read marker sent before the conversation's first message, a join sent before the group existed,
//! a removal by a member promoted later). An event from another partition counts as newer: the topic
//! was recreated. The watermark moves in the transaction that applies the event, so it never runs
//! ahead of (or behind) the event's effects.
//!
//! It is the only position check of IM events. An event that passes it is newer than every event of
//! its key applied before, so a per-row guard ("ignore an event older than the one that set this row")
//! could never fire behind it; rows still name the event that last changed them (`src_partition`,
//! `src_offset` of `group_members`, `users`, `accounts`), and nothing compares those. A database whose
//! IM rows predate the watermark (migration 20261125000004 created it empty) has it backfilled from
//! those positions by migration 20261126000004.

use sqlx::{Postgres, Transaction};

use crate::sourced::SourcedEvent;

/// Moves the watermark of `event`'s key to `event`'s position; `false` when the event is at or below
/// it (already handled: apply nothing).
pub(crate) async fn advance(
    tx: &mut Transaction<'static, Postgres>,
    event: &SourcedEvent,
) -> Result<bool, sqlx::Error> {
    let moved = sqlx::query(
        "INSERT INTO applied_positions (event_key, src_partition, src_offset) VALUES ($1, $2, $3)
         ON CONFLICT (event_key) DO UPDATE
         SET src_partition = EXCLUDED.src_partition, src_offset = EXCLUDED.src_offset
         WHERE applied_positions.src_partition <> EXCLUDED.src_partition
            OR applied_positions.src_offset < EXCLUDED.src_offset",
    )
    .bind(event.envelope.key.as_str())
    .bind(event.partition)
    .bind(event.offset)
    .execute(&mut **tx)
    .await?
    .rows_affected();
    Ok(moved > 0)
}
