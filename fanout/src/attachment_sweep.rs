//! Deletes attachments nobody holds: uploads never sent (orphans, once `FANLINE_ATTACHMENT_ORPHAN_HOURS`
//! old) and attachments whose last message or post was recalled, removed, erased or deleted
//! (`attachment_garbage`, filled by the content migration's triggers). One worker at a time
//! ([`crate::election`]), every `FANLINE_ATTACHMENT_SWEEP_SECS`.
//!
//! "Held" is fanout's own record: `message_attachments` and `post_attachments` hold a row exactly while
//! a live message or post names the attachment. Orphans are found by listing the store one upload day
//! at a time (keys are `att/{day}/{id}`, ids are time-ordered ULIDs) from where the last round stopped
//! (`attachment_sweep.swept_through`), so a round costs the uploads since the last, not the store.
//! Ingest refuses to send an upload older than the orphan age less an hour, so a message in flight
//! does not lose its file to the sweep.

use std::sync::Arc;
use std::time::Duration;

use blobkit::{BlobError, Blobs};
use chrono::{DateTime, NaiveDate, Utc};
use schemas::AttachmentId;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

use crate::election::{every, if_elected};

/// The advisory lock of the sweep ("FANLATCH").
const SWEEP_LOCK: i64 = 0x4641_4e4c_4154_4348;
/// Most objects one round deletes of each kind (the next round goes on).
const PER_ROUND: usize = 10_000;

/// Why a round failed (it is retried at the next).
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    #[error(transparent)]
    Database(#[from] sqlx::Error),
    #[error(transparent)]
    Store(#[from] BlobError),
}

pub struct AttachmentSweep {
    pub pool: PgPool,
    pub blobs: Arc<Blobs>,
    pub every: Duration,
}

/// What a round did.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub elected: bool,
    /// Uploads old enough to be judged, and of those the ones never sent (deleted).
    pub judged: u64,
    pub orphans: u64,
    /// Attachments whose last holder went, deleted.
    pub released: u64,
}

impl AttachmentSweep {
    pub async fn run(self, cancel: CancellationToken) {
        let this = &self;
        every(self.every, cancel, "attachment sweep", || async move {
            let report = this.run_once(Utc::now()).await?;
            if report.orphans + report.released > 0 {
                tracing::info!(?report, "attachments nobody holds deleted");
            }
            Ok::<(), SweepError>(())
        })
        .await;
    }

    /// One round as of `now`, if this worker is elected.
    pub async fn run_once(&self, now: DateTime<Utc>) -> Result<SweepReport, SweepError> {
        let report = if_elected(&self.pool, SWEEP_LOCK, async {
            let (judged, orphans) = self.orphans(now).await?;
            let released = self.released().await?;
            Ok::<_, SweepError>(SweepReport {
                elected: true,
                judged,
                orphans,
                released,
            })
        })
        .await?;
        Ok(report.unwrap_or_default())
    }

    /// Deletes uploads older than the orphan age that nothing holds, from the last round's place on;
    /// returns (judged, deleted).
    async fn orphans(&self, now: DateTime<Utc>) -> Result<(u64, u64), SweepError> {
        let cutoff = AttachmentId::lowest_at(now - self.blobs.limits().orphan_after);
        let from: Option<String> = sqlx::query_scalar("SELECT swept_through FROM attachment_sweep")
            .fetch_optional(&self.pool)
            .await?;
        let from_day = from
            .as_deref()
            .and_then(|id| AttachmentId::parse("attachment", id).ok())
            .map(|id| blobkit::keys::uploaded_at(&id).date_naive());
        let mut judged: Vec<AttachmentId> = Vec::new();
        for day in self
            .days(from_day, blobkit::keys::uploaded_at(&cutoff).date_naive())
            .await?
        {
            let ids = self.blobs.list_day(day).await?;
            judged.extend(
                ids.into_iter()
                    .filter(|id| from.as_deref().is_none_or(|from| id.as_str() > from))
                    .filter(|id| *id < cutoff),
            );
            if judged.len() >= PER_ROUND {
                judged.truncate(PER_ROUND);
                break;
            }
        }
        let Some(last) = judged.last().cloned() else {
            return Ok((0, 0));
        };
        let deleted = self.delete_unheld(&judged).await?;
        sqlx::query(
            "INSERT INTO attachment_sweep (swept_through) VALUES ($1)
             ON CONFLICT (only_row) DO UPDATE SET swept_through = excluded.swept_through",
        )
        .bind(last.as_str())
        .execute(&self.pool)
        .await?;
        Ok((judged.len() as u64, deleted))
    }

    /// The upload days from `from` (none: the first there is) to `through`, as the store lists them.
    async fn days(
        &self,
        from: Option<NaiveDate>,
        through: NaiveDate,
    ) -> Result<Vec<NaiveDate>, SweepError> {
        let mut days = self.blobs.list_days().await?;
        days.retain(|day| *day <= through && from.is_none_or(|from| *day >= from));
        Ok(days)
    }

    /// Deletes the attachments released by their last holder that nothing holds now.
    async fn released(&self) -> Result<u64, SweepError> {
        let rows: Vec<(String, chrono::DateTime<Utc>)> = sqlx::query_as(
            "SELECT attachment_id, since FROM attachment_garbage ORDER BY since LIMIT $1",
        )
        .bind(PER_ROUND as i64)
        .fetch_all(&self.pool)
        .await?;
        let (ids, since): (Vec<String>, Vec<chrono::DateTime<Utc>>) = rows.into_iter().unzip();
        let parsed: Vec<AttachmentId> = ids
            .iter()
            .filter_map(|id| AttachmentId::parse("attachment", id).ok())
            .collect();
        let deleted = self.delete_unheld(&parsed).await?;
        // Only the rows read: a release since then (a newer `since`) is handled next round.
        sqlx::query(
            "DELETE FROM attachment_garbage g
             USING unnest($1::text[], $2::timestamptz[]) AS t(id, since)
             WHERE g.attachment_id = t.id AND g.since = t.since",
        )
        .bind(&ids)
        .bind(&since)
        .execute(&self.pool)
        .await?;
        Ok(deleted)
    }

    /// Deletes the objects of those of `ids` no live message or post holds; returns how many.
    async fn delete_unheld(&self, ids: &[AttachmentId]) -> Result<u64, SweepError> {
        let all: Vec<&str> = ids.iter().map(AttachmentId::as_str).collect();
        let unheld: Vec<String> = sqlx::query_scalar(
            "SELECT id FROM unnest($1::text[]) AS id
             WHERE NOT EXISTS (SELECT 1 FROM message_attachments WHERE attachment_id = id)
               AND NOT EXISTS (SELECT 1 FROM post_attachments WHERE attachment_id = id)",
        )
        .bind(&all)
        .fetch_all(&self.pool)
        .await?;
        for id in unheld
            .iter()
            .filter_map(|id| AttachmentId::parse("attachment", id).ok())
        {
            self.blobs.delete(&id).await?;
        }
        Ok(unheld.len() as u64)
    }
}
