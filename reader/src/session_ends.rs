//! Ending a session ends its connections: a WebSocket or event stream opened under a session closes
//! when that session is revoked (logout, "log out everywhere", refresh-token reuse), on any reader.
//!
//! The revoking statement notifies `s:<session id>` on the hub's channel in its own transaction, so
//! every reader hears it at commit ([`crate::hub`] dispatches it here). Notifications sent while a
//! reader's LISTEN connection was down are lost, so after every (re)connect the hub calls [`sweep`],
//! which asks the database about every session with an open connection in one statement.
//!
//! [`sweep`]: SessionEnds::sweep

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

use sqlx::PgPool;
use tokio_util::sync::{CancellationToken, WaitForCancellationFuture};

/// The sessions that have open connections on this reader.
#[derive(Default)]
pub struct SessionEnds {
    open: Mutex<HashMap<String, Watched>>,
}

struct Watched {
    ended: CancellationToken,
    connections: usize,
}

/// One connection's interest in its session; dropping it stops watching.
pub struct SessionWatch {
    ends: Arc<SessionEnds>,
    session: String,
    ended: CancellationToken,
}

impl SessionWatch {
    /// Completes when the session ends.
    pub fn ended(&self) -> WaitForCancellationFuture<'_> {
        self.ended.cancelled()
    }

    pub fn has_ended(&self) -> bool {
        self.ended.is_cancelled()
    }
}

impl Drop for SessionWatch {
    fn drop(&mut self) {
        let mut open = self
            .ends
            .open
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        if let Some(watched) = open.get_mut(&self.session) {
            watched.connections -= 1;
            if watched.connections == 0 {
                open.remove(&self.session);
            }
        }
    }
}

impl SessionEnds {
    /// Watches `session`, then checks that it is still live (an access token outlives its session
    /// by up to its lifetime): the watch has ended at once if it is not.
    pub async fn watch(self: &Arc<Self>, pool: &PgPool, session: &str) -> SessionWatch {
        let watch = {
            let mut open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            let watched = open.entry(session.to_owned()).or_insert_with(|| Watched {
                ended: CancellationToken::new(),
                connections: 0,
            });
            watched.connections += 1;
            SessionWatch {
                ends: self.clone(),
                session: session.to_owned(),
                ended: watched.ended.clone(),
            }
        };
        // Watched first, checked second: a revocation between the two is heard either way.
        self.sweep_sessions(pool, &[session.to_owned()]).await;
        watch
    }

    /// Ends the connections of `session` on this reader.
    pub fn end(&self, session: &str) {
        let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(watched) = open.get(session) {
            tracing::info!(session, "session ended: closing its connections");
            watched.ended.cancel();
        }
    }

    /// Ends the connections of every watched session the database holds as revoked or expired.
    pub async fn sweep(&self, pool: &PgPool) {
        let watched: Vec<String> = {
            let open = self.open.lock().unwrap_or_else(PoisonError::into_inner);
            open.keys().cloned().collect()
        };
        if !watched.is_empty() {
            self.sweep_sessions(pool, &watched).await;
        }
    }

    async fn sweep_sessions(&self, pool: &PgPool, sessions: &[String]) {
        // Rows only: a session row is removed a day after it ended, long after its access tokens
        // expired, so a token without a row is one the key's holder made (tests do).
        let ended: Result<Vec<String>, sqlx::Error> = sqlx::query_scalar(
            "SELECT session_id FROM sessions
             WHERE session_id = ANY($1) AND (revoked_at IS NOT NULL OR expires_at <= now())",
        )
        .bind(sessions)
        .fetch_all(pool)
        .await;
        match ended {
            Ok(ended) => ended.iter().for_each(|session| self.end(session)),
            // Not knowing, keep the connections: the next sweep (or the token's expiry) decides.
            Err(err) => tracing::warn!(error = %err, "cannot check sessions of open connections"),
        }
    }
}
