//! Operators and disabled accounts, as every service checks them.
//!
//! - [`Operators`]: the accounts the deployment's configuration names (`FANLINE_OPERATORS`); nothing a
//!   user can do grants the role, and a token carries no role: each service compares the caller with
//!   its own configuration.
//! - [`DisabledAccounts`]: the accounts an operator disabled, and the deleted ones (`erased_users`),
//!   polled from Postgres in the background (both written by fanout), so
//!   the check on every request is a lookup in memory, not a query. A disabled account's access tokens are refused from the first poll that sees it: within
//!   fanout's lag plus the poll interval (docs/limits.md). The [`crate::Bearer`] extractor refuses
//!   them when the set is a request extension.

use std::collections::HashSet;
use std::sync::{Arc, PoisonError, RwLock};
use std::time::Duration;

use axum::http::StatusCode;
use httpkit::ApiError;
use sqlx::PgPool;

/// The operators of a deployment.
#[derive(Debug, Clone, Default)]
pub struct Operators(HashSet<String>);

impl Operators {
    /// From the configuration's list (user ids; empty: nobody is an operator).
    pub fn new<I: IntoIterator<Item = String>>(users: I) -> Self {
        Operators(users.into_iter().filter(|u| !u.is_empty()).collect())
    }

    pub fn contains(&self, user: &str) -> bool {
        self.0.contains(user)
    }

    /// `403` unless `user` is an operator.
    pub fn require(&self, user: &str) -> Result<(), ApiError> {
        if self.contains(user) {
            return Ok(());
        }
        Err(ApiError {
            status: StatusCode::FORBIDDEN,
            message: "only the deployment's operators may do this".into(),
            field: Some("token".into()),
        })
    }
}

/// The accounts an operator disabled and the deleted ones, as of the last poll.
#[derive(Debug, Default)]
pub struct DisabledAccounts {
    users: RwLock<HashSet<String>>,
    deleted: RwLock<HashSet<String>>,
}

impl DisabledAccounts {
    /// Disabled or deleted: its tokens are refused.
    pub fn is_disabled(&self, user: &str) -> bool {
        self.users
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(user)
    }

    /// Deleted.
    pub fn is_deleted(&self, user: &str) -> bool {
        self.deleted
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .contains(user)
    }

    /// Reads the tables again; returns the accounts disabled or deleted since the last poll.
    pub async fn poll(&self, pool: &PgPool) -> Result<Vec<String>, sqlx::Error> {
        let rows: Vec<(String, bool)> = sqlx::query_as(
            "SELECT user_id, false FROM disabled_accounts
             UNION ALL
             SELECT user_id, true FROM erased_users",
        )
        .fetch_all(pool)
        .await?;
        let deleted: HashSet<String> = rows
            .iter()
            .filter(|(_, deleted)| *deleted)
            .map(|(user, _)| user.clone())
            .collect();
        let now: HashSet<String> = rows.into_iter().map(|(user, _)| user).collect();
        *self.deleted.write().unwrap_or_else(PoisonError::into_inner) = deleted;
        let mut users = self.users.write().unwrap_or_else(PoisonError::into_inner);
        let new: Vec<String> = now.difference(&users).cloned().collect();
        *users = now;
        Ok(new)
    }

    /// Polls every `interval` until the task is dropped, handing newly disabled accounts to
    /// `on_disabled` (the reader ends their sessions). A failed poll keeps the last set and retries.
    pub async fn keep_polling<F, Fut>(
        self: Arc<Self>,
        pool: PgPool,
        interval: Duration,
        on_disabled: F,
    ) where
        F: Fn(Vec<String>) -> Fut,
        Fut: std::future::Future<Output = ()>,
    {
        let mut ticks = tokio::time::interval(interval);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            ticks.tick().await;
            match self.poll(&pool).await {
                Ok(new) if !new.is_empty() => {
                    tracing::info!(accounts = ?new, "accounts disabled");
                    on_disabled(new).await;
                }
                Ok(_) => {}
                Err(err) => tracing::warn!(error = %err, "cannot read the disabled accounts"),
            }
        }
    }

    /// `403` for a disabled or deleted account.
    pub fn check(&self, user: &str) -> Result<(), ApiError> {
        if self.is_disabled(user) {
            let message = if self.is_deleted(user) {
                "this account was deleted"
            } else {
                "this account is disabled"
            };
            return Err(ApiError {
                status: StatusCode::FORBIDDEN,
                message: message.into(),
                field: Some("token".into()),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn operators_are_only_those_configured() {
        let operators = Operators::new(["root".to_owned(), String::new()]);
        assert!(operators.require("root").is_ok());
        assert_eq!(
            operators.require("alice").unwrap_err().status,
            StatusCode::FORBIDDEN
        );
        assert!(!operators.contains(""));
    }
}

/// The moderation flags every service shares.
#[derive(Debug, Clone, clap::Args)]
pub struct ModerationArgs {
    /// The deployment's operators: user ids, comma-separated (they list and resolve reports, disable
    /// accounts, remove content). Empty: nobody.
    #[arg(
        long = "operators",
        env = "FANLINE_OPERATORS",
        value_delimiter = ',',
        default_value = ""
    )]
    pub operators: Vec<String>,

    /// How often the disabled accounts are read from Postgres, in milliseconds (0: never — tests and
    /// embedding without a database). A disabled account's tokens are refused within this plus
    /// fanout's lag.
    #[arg(long, env = "FANLINE_DISABLED_POLL_MS", default_value_t = DISABLED_POLL_MS)]
    pub disabled_poll_ms: u64,
}

/// Default of `FANLINE_DISABLED_POLL_MS`.
pub const DISABLED_POLL_MS: u64 = 5_000;

impl ModerationArgs {
    /// No operators, no polling.
    pub fn off() -> Self {
        ModerationArgs {
            operators: Vec::new(),
            disabled_poll_ms: 0,
        }
    }

    pub fn operators(&self) -> Operators {
        Operators::new(self.operators.iter().map(|u| u.trim().to_owned()))
    }

    /// The poll interval, `None` when polling is off.
    pub fn disabled_poll(&self) -> Option<Duration> {
        (self.disabled_poll_ms > 0).then(|| Duration::from_millis(self.disabled_poll_ms))
    }
}
