//! Which user ids have accounts, so that writes addressed to an id nobody owns are refused where they
//! enter (ingest's routes, the reader's socket sends) — issue 19, finding 2 (id squatting: a message to
//! `carol` before Carol registered was readable by whoever registered `carol` first).
//!
//! Why at the edge and not in fanout: fanout would have to decide "has an account" the same way on a
//! replay, but a registration (the user's partition) and a message (the conversation's partition) are
//! ordered only within their partitions, so a rebuild could apply them the other way round. Decided
//! here, the decision is recorded by the log itself: only accepted writes are in it, and a replay
//! applies them all. The price: ingest reads one fact from Postgres (read-only, cached once true —
//! accounts are never deleted), and a write to an id not yet cached waits for that query (`503` while
//! Postgres is down; posts, which address no one, never ask).
//!
//! Registration asks too: an id without an account that already holds data (from before accounts
//! existed, or from before this rule) may be registered only with an operator's claim code
//! ([`crate::TokenKey::claim_code`]), so nobody takes over an existing inbox by registering first.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, PoisonError};

use axum::http::StatusCode;
use httpkit::ApiError;
use schemas::UserId;
use sqlx::PgPool;

/// Ids remembered as having accounts before the set is forgotten and rebuilt from queries.
const MAX_CACHED: usize = 1_000_000;

/// What an id is to a registration.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdStatus {
    /// Someone registered it.
    Account,
    /// No account, but posts, inbox entries, conversations or followers from before.
    HoldsData,
    /// Nothing: anyone may register it.
    Free,
    /// A deleted account's: nobody may register it.
    Erased,
}

pub struct AccountDirectory {
    /// `None`: switched off (`FANLINE_ACCOUNTS_REQUIRED=false`): every id passes, as before the rule.
    pool: Option<PgPool>,
    with_account: Mutex<HashSet<String>>,
    /// The polled deleted accounts: an id cached as having an account is refused once deleted.
    deleted: Option<Arc<crate::DisabledAccounts>>,
}

impl AccountDirectory {
    pub fn new(pool: PgPool) -> Self {
        AccountDirectory {
            pool: Some(pool),
            with_account: Mutex::new(HashSet::new()),
            deleted: None,
        }
    }

    /// A directory that asks nothing and lets every id pass (tests and embedding that never
    /// register their users).
    pub fn disabled() -> Self {
        AccountDirectory {
            pool: None,
            with_account: Mutex::new(HashSet::new()),
            deleted: None,
        }
    }

    /// Refuses the ids `accounts` reports deleted (its polls), also those cached as having an account.
    pub fn watching(mut self, accounts: Arc<crate::DisabledAccounts>) -> Self {
        self.deleted = Some(accounts);
        self
    }

    /// `Ok` when `user` has an account; `404` naming `field` when not, `503` when the database cannot
    /// say.
    pub async fn require(&self, field: &'static str, user: &UserId) -> Result<(), ApiError> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        if self
            .deleted
            .as_ref()
            .is_some_and(|d| d.is_deleted(user.as_str()))
        {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("the account {user} was deleted").into(),
                field: Some(field.into()),
            });
        }
        if self.cached(user) {
            return Ok(());
        }
        let exists: bool =
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM accounts WHERE user_id = $1)")
                .bind(user.as_str())
                .fetch_one(pool)
                .await
                .map_err(unavailable)?;
        if !exists {
            return Err(ApiError {
                status: StatusCode::NOT_FOUND,
                message: format!("no account has the id {user}").into(),
                field: Some(field.into()),
            });
        }
        self.remember(user);
        Ok(())
    }

    /// `403` naming `field` when either user blocked the other: a follow between them would only be
    /// refused by fanout (which decides it, on the edge's key); this tells the client at once. Not
    /// cached: blocks come and go.
    pub async fn require_unblocked(
        &self,
        field: &'static str,
        user: &UserId,
        other: &UserId,
    ) -> Result<(), ApiError> {
        let Some(pool) = &self.pool else {
            return Ok(());
        };
        let blocked: bool = sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM blocks
                            WHERE (blocker = $1 AND target = $2) OR (blocker = $2 AND target = $1))",
        )
        .bind(user.as_str())
        .bind(other.as_str())
        .fetch_one(pool)
        .await
        .map_err(unavailable)?;
        if blocked {
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: "a block stands between you and this user".into(),
                field: Some(field.into()),
            });
        }
        Ok(())
    }

    /// What `user` is to a registration.
    pub async fn status(&self, user: &UserId) -> Result<IdStatus, ApiError> {
        let Some(pool) = &self.pool else {
            return Ok(IdStatus::Free);
        };
        let (account, data, erased): (bool, bool, bool) = sqlx::query_as(
            "SELECT EXISTS (SELECT 1 FROM accounts WHERE user_id = $1),
                    EXISTS (SELECT 1 FROM posts WHERE author = $1)
                    OR EXISTS (SELECT 1 FROM sync_entries WHERE user_id = $1)
                    -- Retention may have removed every entry: the floor stays.
                    OR EXISTS (SELECT 1 FROM sync_floors WHERE user_id = $1)
                    OR EXISTS (SELECT 1 FROM follows WHERE follower = $1)
                    OR EXISTS (SELECT 1 FROM conversation_members WHERE user_id = $1)
                    OR EXISTS (SELECT 1 FROM follows WHERE followee = $1),
                    EXISTS (SELECT 1 FROM erased_users WHERE user_id = $1)",
        )
        .bind(user.as_str())
        .fetch_one(pool)
        .await
        .map_err(unavailable)?;
        Ok(match (account, data, erased) {
            (true, _, _) => IdStatus::Account,
            (false, _, true) => IdStatus::Erased,
            (false, true, false) => IdStatus::HoldsData,
            (false, false, false) => IdStatus::Free,
        })
    }

    fn cached(&self, user: &UserId) -> bool {
        let known = self
            .with_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        known.contains(user.as_str())
    }

    fn remember(&self, user: &UserId) {
        let mut known = self
            .with_account
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if known.len() >= MAX_CACHED {
            known.clear();
        }
        known.insert(user.as_str().to_owned());
    }
}

fn unavailable(err: sqlx::Error) -> ApiError {
    tracing::warn!(error = %err, "cannot look up accounts");
    ApiError::unavailable("cannot check the account directory now; try again")
}
