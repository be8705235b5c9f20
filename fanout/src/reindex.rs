//! The search backlog: rows stored without their searchable form — before search existed (migration
//! 20261209000001), or by a worker running with `FANLINE_SKIP_SEARCH_INDEX` — indexed in the background:
//! every worker that starts with indexing on walks the backlog in id order, batch by batch.
//!
//! Why not an event: a row's searchable form is a function of what the row already holds (its body, its
//! name), as an index is of its table, so writing it twice writes the same thing and a replay computes it
//! on its own. Workers share the backlog by `FOR NO KEY UPDATE SKIP LOCKED` (the search column is no
//! key, so the key-share locks of foreign-key checks do not make a walk skip rows); each write re-checks
//! that the row is still unindexed and searchable, so a recall, removal or delete in between wins. Rows
//! skipped because another transaction held them are walked again while any backlog is left.

use std::time::Duration;

use prometheus::IntCounterVec;
use sqlx::PgPool;
use tokio_util::sync::CancellationToken;

/// Rows indexed per transaction.
const BATCH: i64 = 1_000;
/// The pause before a step that failed (Postgres away) is tried again.
const RETRY: Duration = Duration::from_secs(5);

/// One table's backlog: how to pick rows (id, text; locked, via its partial index, after the id `$2`
/// where the previous batch ended) and write them.
struct Backlog {
    table: &'static str,
    pick: &'static str,
    write: &'static str,
    /// Whether any backlog is left, held by others or not.
    left: &'static str,
}

const BACKLOGS: [Backlog; 4] = [
    Backlog {
        table: "messages",
        pick: "SELECT message_id, body FROM messages
               WHERE search IS NULL AND recalled_at IS NULL AND erased_at IS NULL AND message_id > $2
               ORDER BY message_id LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
        write: "UPDATE messages m SET search = t.search::tsvector
                FROM UNNEST($1::text[], $2::text[]) AS t(id, search)
                WHERE m.message_id = t.id AND m.search IS NULL AND m.recalled_at IS NULL
                  AND m.erased_at IS NULL",
        left: "SELECT EXISTS (SELECT FROM messages
                       WHERE search IS NULL AND recalled_at IS NULL AND erased_at IS NULL)",
    },
    Backlog {
        table: "posts",
        pick: "SELECT post_id, body FROM posts
               WHERE search IS NULL AND deleted_at IS NULL AND post_id > $2
               ORDER BY post_id LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
        write: "UPDATE posts p SET search = t.search::tsvector
                FROM UNNEST($1::text[], $2::text[]) AS t(id, search)
                WHERE p.post_id = t.id AND p.search IS NULL AND p.deleted_at IS NULL",
        left: "SELECT EXISTS (SELECT FROM posts WHERE search IS NULL AND deleted_at IS NULL)",
    },
    Backlog {
        table: "users",
        pick: "SELECT user_id, display_name FROM users WHERE search IS NULL AND user_id > $2
               ORDER BY user_id LIMIT $1 FOR NO KEY UPDATE SKIP LOCKED",
        write: "UPDATE users u SET search = t.search::tsvector
                FROM UNNEST($1::text[], $2::text[]) AS t(id, search)
                WHERE u.user_id = t.id AND u.search IS NULL",
        left: "SELECT EXISTS (SELECT FROM users WHERE search IS NULL)",
    },
    Backlog {
        table: "groups",
        pick: "SELECT group_id, name || ' ' || coalesce(description, '') FROM groups
               WHERE search IS NULL AND group_id > $2 ORDER BY group_id LIMIT $1
               FOR NO KEY UPDATE SKIP LOCKED",
        write: "UPDATE groups g SET search = t.search::tsvector
                FROM UNNEST($1::text[], $2::text[]) AS t(id, search)
                WHERE g.group_id = t.id AND g.search IS NULL",
        left: "SELECT EXISTS (SELECT FROM groups WHERE search IS NULL)",
    },
];

/// Indexes the search backlog.
pub struct Reindexer {
    pub pool: PgPool,
    /// Rows indexed, by table (`fanline_fanout_search_backlog_indexed_total`).
    pub indexed: Option<IntCounterVec>,
}

impl Reindexer {
    /// Walks every table's backlog, again after a pause while some is left (rows another transaction
    /// held, rows a worker without indexing stored meanwhile), until none is or `cancel`.
    pub async fn run(self, cancel: CancellationToken) {
        loop {
            for backlog in &BACKLOGS {
                if !self.walk(backlog, &cancel).await {
                    return;
                }
            }
            match self.left().await {
                Ok(false) => return,
                Ok(true) => {}
                Err(err) => tracing::warn!(error = %err, "search backlog: retrying"),
            }
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(RETRY) => {}
            }
        }
    }

    /// One walk through a table's backlog, retrying failed steps; false if cancelled.
    async fn walk(&self, backlog: &Backlog, cancel: &CancellationToken) -> bool {
        let mut after = String::new();
        let mut total = 0;
        loop {
            let step = tokio::select! {
                _ = cancel.cancelled() => return false,
                step = self.step(backlog, &after) => step,
            };
            match step {
                Ok(None) => break,
                Ok(Some((rows, last))) => {
                    total += rows;
                    after = last;
                }
                Err(err) => {
                    tracing::warn!(table = backlog.table, error = %err, "search backlog: retrying");
                    tokio::select! {
                        _ = cancel.cancelled() => return false,
                        _ = tokio::time::sleep(RETRY) => {}
                    }
                }
            }
        }
        if total > 0 {
            tracing::info!(
                table = backlog.table,
                rows = total,
                "search backlog indexed"
            );
        }
        true
    }

    /// Whether any table has backlog left.
    async fn left(&self) -> Result<bool, sqlx::Error> {
        for backlog in &BACKLOGS {
            let (left,): (bool,) = sqlx::query_as(backlog.left).fetch_one(&self.pool).await?;
            if left {
                return Ok(true);
            }
        }
        Ok(false)
    }

    /// Indexes every table's backlog now; the rows indexed.
    pub async fn drain(&self) -> Result<u64, sqlx::Error> {
        let mut total = 0;
        for backlog in &BACKLOGS {
            let mut after = String::new();
            while let Some((rows, last)) = self.step(backlog, &after).await? {
                total += rows;
                after = last;
            }
        }
        Ok(total)
    }

    /// One batch of one table after the id `after`: the rows picked (all written: they were locked)
    /// and the last id, or none at the end of its backlog (rows other workers hold are theirs).
    async fn step(
        &self,
        backlog: &Backlog,
        after: &str,
    ) -> Result<Option<(u64, String)>, sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        let rows: Vec<(String, String)> = sqlx::query_as(backlog.pick)
            .bind(BATCH)
            .bind(after)
            .fetch_all(&mut *tx)
            .await?;
        let Some(last) = rows.last().map(|(id, _)| id.clone()) else {
            return Ok(None);
        };
        let picked = rows.len() as u64;
        let (ids, texts): (Vec<String>, Vec<String>) = rows.into_iter().unzip();
        let searchable: Vec<String> = texts
            .iter()
            .map(|text| schemas::search::document(text))
            .collect();
        let written = sqlx::query(backlog.write)
            .bind(&ids)
            .bind(&searchable)
            .execute(&mut *tx)
            .await?
            .rows_affected();
        tx.commit().await?;
        if let Some(indexed) = &self.indexed {
            indexed.with_label_values(&[backlog.table]).inc_by(written);
        }
        Ok(Some((picked, last)))
    }
}
